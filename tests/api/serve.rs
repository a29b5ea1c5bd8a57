//! `nagare serve` as a process: starts with the sample users and processes/, answers,
//! and on SIGTERM finishes its requests, stops, and keeps what it acknowledged.

use crate::common::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn nagare(data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nagare"));
    c.arg("--data").arg(data).current_dir(root()).env_remove("RUST_LOG").env_remove("NAGARE_DATA");
    c.env_remove("NAGARE_ADDR").env_remove("NAGARE_USERS").env_remove("NAGARE_PROCESSES");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_with_sample_users_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = nagare(&data)
        .args(["serve", "--addr", "127.0.0.1:0", "--with-bench"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let url = loop {
        let line = lines.next().expect("serve prints its address").unwrap();
        log.push_str(&line);
        log.push('\n');
        if let Some(rest) = line.split("nagare API and web inbox on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
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

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
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
    let mut child = nagare(&dir.path().join("data"))
        .args(["serve", "--addr", "127.0.0.1:0", "--users"])
        .arg(&users)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Collect stderr in the background: the address first, then the reload logs.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let wait_log = |needle: &'static str| {
        let log = log.clone();
        async move {
            for _ in 0..500 {
                if log.lock().unwrap().contains(needle) {
                    return log.lock().unwrap().clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("no `{needle}` in the log:\n{}", log.lock().unwrap());
        }
    };
    let text = wait_log("nagare API and web inbox on ").await;
    let url = text.split("nagare API and web inbox on ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let http = reqwest::Client::new();
    let status = |token: &'static str| {
        let req = http.get(format!("{url}/api/v1/processes")).bearer_auth(token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let hup = || assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    assert_eq!((status("token-alice").await, status("token-bob").await), (200, 401));

    std::fs::write(&users, file("bob", "token-bob")).unwrap();
    hup();
    wait_log("users file reloaded").await;
    assert_eq!((status("token-alice").await, status("token-bob").await), (401, 200), "no restart needed");

    std::fs::write(&users, "users:\n  carol: { groups: [staff], tokens: [\"not-a-hash\"] }\n").unwrap();
    hup();
    wait_log("users file not reloaded").await;
    assert_eq!(status("token-bob").await, 200, "a broken file leaves the users in force");

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(exit.success(), "{}", log.lock().unwrap());
}
