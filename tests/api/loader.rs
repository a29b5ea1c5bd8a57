//! Process files deployed through the API go through the same loader checks as the
//! CLI (issue 10, findings 10 and 13).

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_accepts_a_bom_and_refuses_static_type_errors_with_line_and_column() {
    let api = Api::start(sample_users()).await;
    let plain = "id: bom\nstart: { next: done }\nnodes:\n  done: { end: }\n";
    let d = api.post(ADMIN, "/api/v1/processes", json!({ "source": format!("\u{feff}{plain}") })).await.expect(201);
    assert_eq!(d["id"], "bom");
    let again = api.post(ADMIN, "/api/v1/processes", json!({ "source": plain })).await.expect(200);
    assert_eq!(again["created"], false, "the mark is not part of the process");

    let typed = "id: typed\nvariables:\n  日数: { type: number }\nstart: { next: route }\nnodes:\n  route:\n    exclusive:\n      - when: 日数 >= \"5\"\n        next: done\n    default: done\n  done: { end: }\n";
    let e = api
        .post(ADMIN, "/api/v1/processes", json!({ "source": typed, "file": "typed.yaml" }))
        .await
        .error(422, "invalid-process");
    let d = &e["details"]["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["line"].as_u64(), d["col"].as_u64()),
        (Some("type-mismatch"), Some(8), Some(15)),
        "{e}"
    );
    assert_eq!(d["hint"], "write `日数 >= 5`");
    api.finish().await;
}

/// `nagare serve` deploys processes/ at start through the same bounded read: a file
/// that never ends (`/dev/zero`) or is not UTF-8 stops the start with a diagnostic,
/// and a file with a byte-order mark is deployed.
#[cfg(unix)]
#[test]
fn serve_reads_process_files_bounded_and_checks_their_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let procs = dir.path().join("processes");
    std::fs::create_dir(&procs).unwrap();
    std::os::unix::fs::symlink("/dev/zero", procs.join("zero.yaml")).unwrap();
    std::fs::write(procs.join("sjis.yaml"), b"id: s\nname: \x8c\x6f\x94\xef\n").unwrap();
    std::fs::write(procs.join("bom.yaml"), "\u{feff}id: bom\nstart: { next: done }\nnodes:\n  done: { end: }\n")
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nagare"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["serve", "--addr", "127.0.0.1:0", "--processes"])
        .arg(&procs)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .env_remove("NAGARE_USERS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("zero.yaml:1:1: error[file-too-large]"), "{err}");
    assert!(err.contains("sjis.yaml:2:7: error[invalid-utf8]"), "{err}");
    assert!(err.contains("2 process file(s)"), "the BOM file is fine: {err}");
}
