//! An external worker: serves the connector `pdf.render` out of process, over HTTP.
//!
//! The engine has no code for `pdf.render`; the config file declares it
//! (`connectors: { pdf: { type: external, operations: [render] } }`). This worker
//! long-polls `POST /api/v1/jobs/activate`, "renders" each job, and reports
//! `complete` with the output (the step's `set:` maps it to variables) or `fail`.
//! Any language with HTTP and JSON can do the same (see external_worker.py).
//!
//! Run against a running `nagare serve` (a token of a `worker: true` user):
//!   cargo run --example external_worker -- http://127.0.0.1:8080 demo-worker
//! Run alone (as CI does): it starts a server in-process on 127.0.0.1:0 over an
//! engine in a temporary directory, deploys a process using `pdf.render`, starts
//! one instance, serves its job, and exits when the instance has completed.
//!   cargo run --example external_worker

use nagare::server::auth::{hash_line, Users};
use nagare::server::Server;
use nagare_engine::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

const CONNECTOR: &str = "pdf.render";

/// A job as `activate` hands it out (the fields this worker uses).
#[derive(Debug, Deserialize)]
struct Job {
    id: String,
    attempt: u32,
    instance: u64,
    input: Value,
    idempotency_key: String,
}

/// The work itself. A real worker would call a PDF service here, sending
/// `job.idempotency_key` (e.g. as an `Idempotency-Key` header) so that a job run
/// twice (a lease ran out, the engine restarted) renders once.
fn render(job: &Job) -> Result<Value, String> {
    let title = job.input["title"].as_str().ok_or("input `title` missing")?;
    let _key = &job.idempotency_key;
    Ok(json!({ "url": format!("https://files.example/pdf/{title}.pdf") }))
}

/// Poll and serve jobs until `done` says so about an instance a report returned.
async fn serve(base: &str, token: &str, done: impl Fn(&Value) -> bool) -> Result<(), reqwest::Error> {
    let http = reqwest::Client::new();
    let post = |path: String, body: Value| http.post(format!("{base}{path}")).bearer_auth(token).json(&body).send();
    loop {
        // Long poll: answers when a job is due, or [] after 30 s.
        let body = json!({ "connector": CONNECTOR, "max_jobs": 10, "lease": "1m", "wait": 30 });
        let jobs: Vec<Job> = post("/api/v1/jobs/activate".into(), body).await?.error_for_status()?.json().await?;
        for job in jobs {
            println!("job {} (instance {}, attempt {}): {}", job.id, job.instance, job.attempt, job.input);
            let (action, body) = match render(&job) {
                Ok(output) => ("complete", json!({ "output": output })),
                Err(message) => ("fail", json!({ "message": message, "retryable": false })),
            };
            let resp = post(format!("/api/v1/jobs/{}/{action}", job.id), body).await?;
            if resp.status() == reqwest::StatusCode::CONFLICT {
                // Our lease ran out and another worker has the job, or it was cancelled.
                println!("  {action} refused: {}", resp.text().await?);
                continue;
            }
            let instance: Value = resp.error_for_status()?.json().await?;
            println!("  {action}d; instance {} is {}", job.instance, instance["status"].as_str().unwrap_or("?"));
            if done(&instance) {
                return Ok(());
            }
        }
    }
}

const PROCESS: &str = r#"
id: 見積書作成
variables:
  件名: { type: text, required: true }
  pdf: { type: text }
start: { next: 作成 }
nodes:
  作成:
    service: pdf.render          # served by the external worker
    with: { title: 件名 }
    set: { pdf: result.url }
    retry: { attempts: 3, backoff: 1s..10s }
    next: 完了
  完了: { end: }
"#;

/// The self-contained run: a server of our own, one instance, served to the end.
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::builder().data_dir(dir.path())?.external(CONNECTOR).build()?;
    engine.deploy("見積書作成.yaml", PROCESS)?;
    let token = "example-worker-token";
    let users = Users::from_yaml(
        "users.yaml",
        &format!("users:\n  pdf-worker: {{ worker: true, tokens: [\"{}\"] }}\n", hash_line(token)),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = Server::start(listener, engine.clone(), users, std::future::pending())?;
    println!("server on {}", server.url());

    let vars = [("件名".to_string(), json!("株式会社ながれ様 御見積"))].into();
    let inst = engine.start("見積書作成", vars, Default::default())?;
    println!("started instance {} of 見積書作成", inst.id);

    serve(&server.url(), token, |i| i["id"] == inst.id && i["status"] == "completed").await?;
    let done = engine.instance(inst.id)?;
    println!("instance {} is {}; pdf = {}", done.id, done.status.as_str(), done.vars["pdf"]);
    server.shutdown().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => demo().await,
        [url, token] => {
            println!("serving {CONNECTOR} for {url}; Ctrl-C stops");
            Ok(serve(url.trim_end_matches('/'), token, |_| false).await?)
        }
        _ => Err("usage: external_worker [URL TOKEN]".into()),
    }
}
