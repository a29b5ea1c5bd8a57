//! BPMN files deployed through the API: as the body itself (XML content type) or
//! as the JSON `source`; hostile XML is a 422 with a diagnostic, never a crash.

use crate::common::*;
use serde_json::json;

fn peers_gateway() -> String {
    std::fs::read_to_string(root().join("tests/fixtures/bpmn/peers/python/gateway.bpmn")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bpmn_deploys_as_an_xml_body_or_as_json_source_and_runs() {
    let api = Api::start(sample_users()).await;
    let xml = peers_gateway();
    let d = api.post_raw(ADMIN, "/api/v1/processes", "application/xml", xml.clone().into_bytes()).await.expect(201);
    assert_eq!((d["id"].as_str(), d["version"].as_u64()), (Some("gateway"), Some(1)));
    let again =
        api.post(ADMIN, "/api/v1/processes", json!({ "source": xml, "file": "gateway.bpmn" })).await.expect(200);
    assert_eq!(again["created"], false, "the same model imports to the same YAML");
    let inst = api.post(ADMIN, "/api/v1/instances", json!({ "process": "gateway", "variables": {} })).await.expect(201);
    let id = inst["id"].as_u64().unwrap();
    let done = api.wait_for(id, |i| i["status"] == "completed").await;
    assert_eq!(done["variables"]["branch"], "A", "{done}");
    assert_eq!(done["variables"]["p3"], 3, "{done}");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bpmn_is_refused_with_a_diagnostic() {
    let api = Api::start(sample_users()).await;
    let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>\n<definitions>&lol2;</definitions>";
    let e = api
        .post_raw(ADMIN, "/api/v1/processes", "application/xml", laughs.as_bytes().to_vec())
        .await
        .error(422, "invalid-process");
    let d = &e["details"]["diagnostics"][0];
    assert_eq!((d["code"].as_str(), d["line"].as_u64()), (Some("xml-doctype"), Some(2)), "{e}");
    let deep = format!("<definitions>{}", "<a>".repeat(50_000));
    let e = api.post(ADMIN, "/api/v1/processes", json!({ "source": deep })).await.error(422, "invalid-process");
    assert_eq!(e["details"]["diagnostics"][0]["code"], "too-deep", "{e}");
    let unsupported = std::fs::read_to_string(root().join("tests/fixtures/bpmn/unsupported.bpmn")).unwrap();
    let e = api
        .post_raw(ADMIN, "/api/v1/processes", "text/xml; charset=utf-8", unsupported.into_bytes())
        .await
        .error(422, "invalid-process");
    let first =
        &e["details"]["diagnostics"].as_array().unwrap().iter().find(|d| d["severity"] == "error").unwrap().clone();
    assert_eq!((first["code"].as_str(), first["line"].as_u64()), (Some("unsupported-element"), Some(8)), "{e}");
    api.finish().await;
}
