//! External workers over HTTP (issue #5): activate (long poll), complete, fail.

use crate::common::*;
use nagare_engine::Engine;
use serde_json::{json, Value};
use std::time::Duration;

const PDF: &str = r#"
id: pdf
variables:
  name: { type: text, required: true }
  url: { type: text }
start: { next: render }
nodes:
  render:
    service: pdf.render
    with: { title: name }
    set: { url: result.url }
    retry: { attempts: 3, backoff: 50ms..50ms }
    next: done
  done: { end: }
"#;

async fn pdf_api() -> Api {
    let engine =
        Engine::builder().in_memory().connectors(nagare_connectors::builtin()).external("pdf.render").build().unwrap();
    engine.deploy("pdf.yaml", PDF).unwrap();
    Api::start_with(engine, sample_users()).await
}

/// `POST /api/v1/jobs/{job}/{action}` (complete or fail).
async fn report(api: &Api, token: &str, job: &str, action: &str, body: Value) -> Resp {
    api.post(token, &format!("/api/v1/jobs/{job}/{action}"), body).await
}

/// Long-poll in the background as `token`.
fn poll(api: &Api, token: &'static str, body: Value) -> tokio::task::JoinHandle<Resp> {
    let (http, base) = (api.http.clone(), api.base.clone());
    tokio::spawn(async move {
        let resp = http.post(format!("{base}/api/v1/jobs/activate")).bearer_auth(token).json(&body).send().await;
        let resp = resp.expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_an_external_connector_over_http() {
    let api = pdf_api().await;
    // Nothing due yet: an empty list at once.
    let none = api.post(WORKER, "/api/v1/jobs/activate", json!({ "connector": "pdf.render" })).await.expect(200);
    assert_eq!(none, json!([]));

    // A long poll waiting before the instance starts returns when its job comes due.
    let waiting = poll(&api, WORKER, json!({ "connector": "pdf.render", "wait": 30, "lease": "1m" }));
    let inst = api
        .post(ADMIN, "/api/v1/instances", json!({ "process": "pdf", "variables": { "name": "見積書" } }))
        .await
        .expect(201);
    let id = inst["id"].as_u64().unwrap();
    let jobs = waiting.await.unwrap().expect(200);
    let job = &jobs.as_array().unwrap()[..];
    assert_eq!(job.len(), 1, "{jobs}");
    let job = &job[0];
    assert_eq!((job["instance"].as_u64(), &job["node"], &job["attempt"]), (Some(id), &json!("render"), &json!(1)));
    assert_eq!((&job["connector"], &job["input"]), (&json!("pdf.render"), &json!({ "title": "見積書" })));
    assert!(job["idempotency_key"].as_str().is_some_and(|k| !k.is_empty()) && job["lease_until"].is_string());
    let job_id = job["id"].as_str().unwrap().to_string();
    // Leased: nobody else gets it.
    let other = api.post(ADMIN, "/api/v1/jobs/activate", json!({ "connectors": ["pdf.render"], "max_jobs": 10 }));
    assert_eq!(other.await.expect(200), json!([]));

    // Another worker (the admin, or the same user under another worker name) cannot report it.
    let e =
        report(&api, ADMIN, &job_id, "complete", json!({ "output": { "url": "x" } })).await.error(409, "not-leased");
    assert_eq!(e["details"]["holder"], "worker");
    let body = json!({ "worker": "b", "output": { "url": "x" } });
    api.post(WORKER, &format!("/api/v1/jobs/{job_id}/complete"), body).await.error(409, "not-leased");

    // A retryable failure: retried after the backoff as a new attempt of the same call.
    let body = json!({ "message": "renderer busy", "retryable": true });
    let after = api.post(WORKER, &format!("/api/v1/jobs/{job_id}/fail"), body).await.expect(200);
    assert_eq!(after["status"], "running", "{after}");
    let retry = poll(&api, WORKER, json!({ "connector": "pdf.render", "wait": 30, "worker": "w1" }));
    let retry = retry.await.unwrap().expect(200);
    let retry = &retry[0];
    assert_eq!((&retry["attempt"], &retry["idempotency_key"]), (&json!(2), &job["idempotency_key"]));
    let retry_id = retry["id"].as_str().unwrap().to_string();
    // The first attempt's report comes too late now.
    let late = api.post(WORKER, &format!("/api/v1/jobs/{job_id}/complete"), json!({ "output": {} })).await;
    assert_eq!(late.status, 409, "{}", late.text);

    // Completed by the lease holder (same worker name): the output lands in variables.
    let body = json!({ "worker": "w1", "output": { "url": "https://files/見積書.pdf" } });
    let done = api.post(WORKER, &format!("/api/v1/jobs/{retry_id}/complete"), body.clone()).await.expect(200);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["variables"]["url"], "https://files/見積書.pdf");
    let history = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    assert!(history.to_string().contains("renderer busy"), "the failure is in the history: {history}");
    // Twice: the job is no longer awaited.
    api.post(WORKER, &format!("/api/v1/jobs/{retry_id}/complete"), body).await.error(409, "job-not-awaited");
    assert_eq!(api.engine.worker_pool_len(), 0);
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_workers_serve_jobs_and_bad_requests_say_why() {
    let api = pdf_api().await;
    let activate = json!({ "connector": "pdf.render" });
    for token in [SATO, SUZUKI] {
        api.post(token, "/api/v1/jobs/activate", activate.clone()).await.error(403, "forbidden");
        api.post(token, "/api/v1/jobs/1-1-1/complete", json!({})).await.error(403, "forbidden");
        api.post(token, "/api/v1/jobs/1-1-1/fail", json!({ "message": "x" })).await.error(403, "forbidden");
    }
    let cases = [
        (json!({}), "required"),
        (json!({ "connector": "kintone.get" }), "not-external"),
        (json!({ "connector": "pdf.nothing" }), "not-external"),
        (json!({ "connector": "pdf.render", "max_jobs": 0 }), "bad-max-jobs"),
        (json!({ "connector": "pdf.render", "max_jobs": 101 }), "bad-max-jobs"),
        (json!({ "connector": "pdf.render", "wait": 61 }), "bad-wait"),
        (json!({ "connector": "pdf.render", "lease": "soon" }), "bad-lease"),
        (json!({ "connector": "pdf.render", "lease": 0 }), "bad-lease"),
        (json!({ "connector": "pdf.render", "worker": " " }), "required"),
    ];
    for (body, code) in cases {
        let e = api.post(WORKER, "/api/v1/jobs/activate", body.clone()).await.error(422, code);
        if code == "not-external" {
            assert!(e["message"].as_str().unwrap().contains("type: external"), "says how to declare one: {e}");
        }
    }
    api.post(WORKER, "/api/v1/jobs/activate", json!({ "connector": 5 })).await.error(400, "invalid-body");
    let fails = [
        (json!({ "message": "" }), "required"),
        (json!({ "message": "no", "error_code": "NG", "retryable": true }), "bad-failure"),
        (json!({ "message": "no", "retryable": false, "retry_after": 5 }), "bad-failure"),
    ];
    for (body, code) in fails {
        api.post(WORKER, "/api/v1/jobs/1-1-1/fail", body).await.error(422, code);
    }
    api.post(WORKER, "/api/v1/jobs/1-1-1/complete", json!({})).await.error(409, "job-not-awaited");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_error_goes_to_the_boundary_and_a_fatal_one_to_an_incident() {
    let engine =
        Engine::builder().in_memory().connectors(nagare_connectors::builtin()).external("pdf.render").build().unwrap();
    let boundary = "    next: done\n    boundary:\n      - error: 様式不正\n        set: { url: error.message }\n        next: done\n";
    engine.deploy("pdf.yaml", &PDF.replace("    next: done\n", boundary)).unwrap();
    let api = Api::start_with(engine, sample_users()).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let inst = api.post(ADMIN, "/api/v1/instances", json!({ "process": "pdf", "variables": { "name": "x" } }));
        ids.push(inst.await.expect(201)["id"].as_u64().unwrap());
    }
    let jobs = poll(&api, WORKER, json!({ "connector": "pdf.render", "max_jobs": 2, "wait": 30 }));
    let mut jobs = jobs.await.unwrap().expect(200).as_array().unwrap().clone();
    if jobs.len() < 2 {
        // The second came due after the first poll answered.
        let more = poll(&api, WORKER, json!({ "connector": "pdf.render", "wait": 30 })).await.unwrap().expect(200);
        jobs.extend(more.as_array().unwrap().iter().cloned());
    }
    jobs.sort_by_key(|j| j["instance"].as_u64());
    let (business, fatal) = (&jobs[0], &jobs[1]);
    let body = json!({ "message": "様式が違います", "error_code": "様式不正" });
    let caught = report(&api, WORKER, business["id"].as_str().unwrap(), "fail", body).await.expect(200);
    assert_eq!(caught["status"], "completed", "ended on the boundary's path: {caught}");
    assert_eq!(caught["variables"]["url"], "様式が違います");
    let body = json!({ "message": "template missing", "retryable": false });
    let stopped = report(&api, WORKER, fatal["id"].as_str().unwrap(), "fail", body).await.expect(200);
    assert_eq!(stopped["status"], "incident", "{stopped}");
    assert!(stopped["incidents"][0]["message"].as_str().unwrap().contains("template missing"));
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_in_flight_does_not_hold_up_shutdown() {
    let api = pdf_api().await;
    let waiting = poll(&api, WORKER, json!({ "connector": "pdf.render", "wait": 60 }));
    // Let the request reach the server (a hang guard follows, not a timing assertion).
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(30), api.finish()).await.expect("shutdown does not wait for the poll");
    assert_eq!(waiting.await.unwrap().expect(200), json!([]));
}

/// The Python worker of `examples/external_worker.py`, run as it is against the
/// server: it serves the job and the instance completes with its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_worker_example_serves_a_job() {
    let probe = std::process::Command::new("python3").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: no python3 on PATH (the Rust worker example runs in .ci/run regardless)");
        return;
    }
    let api = pdf_api().await;
    let child = std::process::Command::new("python3")
        .arg(root().join("examples/external_worker.py"))
        .env("NAGARE_URL", &api.base)
        .env("NAGARE_TOKEN", WORKER)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let mut worker = KillOnDrop(Some(child));
    let inst = api
        .post(ADMIN, "/api/v1/instances", json!({ "process": "pdf", "variables": { "name": "請求書" } }))
        .await
        .expect(201);
    let id = inst["id"].as_u64().unwrap();
    let done = api.wait_for(id, |v| v["status"] == "completed").await;
    assert_eq!(done["variables"]["url"], "https://files.example/pdf/請求書.pdf", "{done}");
    // The worker prints the instance's status after its complete call returns, so
    // the instance may be completed before the line is written: read until it is.
    let stdout = worker.0.as_mut().unwrap().stdout.take().unwrap();
    let expected = format!("instance {id} is completed");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.contains(&expected)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("the worker never printed `{expected}`; it printed:\n{}", printed.join("\n")),
        }
    }
    api.finish().await;
}

/// Stops the worker process even when an assertion fails first.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
