//! `nagare serve` as a process: starts with the sample users and processes/, answers,
//! and on SIGTERM finishes its requests, stops, and keeps what it acknowledged.

use crate::common::*;
use crate::served::{nagare, Served};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_with_sample_users_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cmd = nagare(&data);
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--with-bench"]);
    let served = Served::start(cmd).await;
    let url = served.url.clone();
    let http = reqwest::Client::new();
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let started = http
        .post(format!("{url}/api/v1/instances"))
        .bearer_auth(SATO)
        .json(&json!({ "process": "bench-usertask" }))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201, "processes/ deployed at start, demo users loaded");
    let id = started.json::<serde_json::Value>().await.unwrap()["id"].as_u64().unwrap();

    let (status, log) = served.stop().await;
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(log.contains("DEMO tokens"), "warns about the demo tokens:\n{log}");
    assert!(log.contains("nagare API stopped"), "{log}");

    // What it acknowledged is on disk.
    let engine = nagare_engine::Engine::open(&data).unwrap();
    assert_eq!(engine.instance(id).unwrap().started_by.as_deref(), Some("sato"));
}

#[test]
fn serve_refuses_a_missing_users_file_and_token_prints_a_hash_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = nagare(dir.path()).args(["serve", "--users", "nope.yaml", "--addr", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.yaml") && err.contains("hint:"), "{err}");

    let out = nagare(dir.path()).args(["--json", "token"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (token, hash) = (v["token"].as_str().unwrap(), v["hash"].as_str().unwrap());
    assert_eq!(nagare::server::auth::hash_line(token), hash);
    // The printed line works in a users file.
    let users = nagare::server::auth::Users::from_yaml("u.yaml", &format!("users:\n  x: {{ tokens: [\"{hash}\"] }}\n"))
        .unwrap();
    assert_eq!(users.authenticate(token).unwrap().id, "x");
}

/// SIGHUP reads the users file again: a new user works at once, a removed token is
/// refused, and a broken file is refused whole while the users before stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_users_file_and_a_broken_file_changes_nothing() {
    use nagare::server::auth::hash_line;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    let file = |who: &str, token: &str| {
        format!("users:\n  {who}: {{ groups: [staff], tokens: [\"{}\"] }}\n", hash_line(token))
    };
    std::fs::write(&users, file("alice", "token-alice")).unwrap();
    let mut cmd = nagare(&dir.path().join("data"));
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--users"]).arg(&users);
    let served = Served::start(cmd).await;
    let url = served.url.clone();
    let http = reqwest::Client::new();
    let status = |token: &'static str| {
        let req = http.get(format!("{url}/api/v1/processes")).bearer_auth(token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let hup = || served.signal("HUP");
    assert_eq!((status("token-alice").await, status("token-bob").await), (200, 401));

    std::fs::write(&users, file("bob", "token-bob")).unwrap();
    hup();
    served.wait_log("users file reloaded").await;
    assert_eq!((status("token-alice").await, status("token-bob").await), (401, 200), "no restart needed");

    std::fs::write(&users, "users:\n  carol: { groups: [staff], tokens: [\"not-a-hash\"] }\n").unwrap();
    hup();
    served.wait_log("users file not reloaded").await;
    assert_eq!(status("token-bob").await, 200, "a broken file leaves the users in force");

    let (exit, log) = served.stop().await;
    assert!(exit.success(), "{log}");
}
