//! Archived instances over the API: 410 with the summary by id, found by business key.

use crate::common::*;
use nagare_engine::archive::ArchiveOptions;
use serde_json::json;

const DONE: &str = "id: quick\nretention: 30d\nstart: { next: end }\nnodes:\n  end: { end: }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_instances_answer_410_by_id_and_are_found_by_business_key() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("quick.yaml", DONE).unwrap();
    let body = json!({ "process": "quick", "business_key": "INV-2026-001" });
    let done = api.post(SATO, "/api/v1/instances", body).await.expect(201)["id"].as_u64().unwrap();
    let live = api.start_expense(SATO, 1_000).await["id"].as_u64().unwrap();
    let out = tempfile::tempdir().unwrap();
    let engine = api.engine.clone();
    let dir = out.path().to_path_buf();
    let r = tokio::task::spawn_blocking(move || {
        engine.archive(&ArchiveOptions {
            before: Some("2100-01-01T00:00:00Z".parse().unwrap()),
            ..ArchiveOptions::new(dir)
        })
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.archived, 1, "the finished one only");

    let gone = api.get(SATO, &format!("/api/v1/instances/{done}")).await.error(410, "archived");
    assert_eq!(gone["details"]["archived"], true);
    assert_eq!(gone["details"]["business_key"], "INV-2026-001");
    assert_eq!(gone["details"]["status"], "completed");
    api.get(SATO, &format!("/api/v1/instances/{done}/history")).await.error(410, "archived");
    // Someone who never saw it gets the same 404 as for an unknown id.
    api.get(KATO, &format!("/api/v1/instances/{done}")).await.error(404, "unknown-instance");

    let found = api.get(SATO, "/api/v1/instances/by-key/quick/INV-2026-001").await.expect(200);
    assert_eq!((found["archived"].as_bool(), found["id"].as_u64()), (Some(true), Some(done)));
    assert!(found["file"].as_str().unwrap().starts_with("archive-"));
    api.get(SATO, "/api/v1/instances/by-key/quick/INV-2026-999").await.error(404, "unknown-instance");
    api.get(KATO, "/api/v1/instances/by-key/quick/INV-2026-001").await.error(404, "unknown-instance");
    let admin = api.get(ADMIN, "/api/v1/instances/by-key/quick/INV-2026-001").await.expect(200);
    assert_eq!(admin["archived"], true);
    // A live one is still itself.
    api.get(SATO, &format!("/api/v1/instances/{live}")).await.expect(200);
    api.finish().await;
}
