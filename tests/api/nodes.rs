//! Two `nagare serve` processes on one PostgreSQL database (two nodes): a task
//! completed through both at once has one winner, every other request is a 409,
//! and the instance moves on once. Runs when `NAGARE_TEST_PG` holds a connection
//! string; skipped (with a note) otherwise.

use crate::common::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A node: the server process, its URL, and its stderr read to the end on drop.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Node {
    fn start(data: &std::path::Path, store: &str) -> Node {
        Node::start_with(data, store, None)
    }

    /// A node deploying the processes of `processes` (the repository's otherwise);
    /// its log goes to `data/serve.log` when `processes` is given.
    pub(crate) fn start_with(data: &std::path::Path, store: &str, processes: Option<&std::path::Path>) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nagare"));
        cmd.arg("--data").arg(data).args(["serve", "--addr", "127.0.0.1:0", "--with-bench", "--store", store]);
        if let Some(p) = processes {
            cmd.arg("--processes").arg(p);
        }
        let mut child = cmd
            .current_dir(root())
            .env_remove("RUST_LOG")
            .env_remove("NAGARE_STORE")
            .env_remove("NAGARE_USERS")
            .env_remove("NAGARE_PROCESSES")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = String::new();
        let url = loop {
            let Some(Ok(line)) = lines.next() else { panic!("serve ended before it listened:\n{log}") };
            log.push_str(&line);
            log.push('\n');
            if let Some(rest) = line.split("nagare API and web inbox on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep reading stderr so the server never blocks on a full pipe.
        let log_file = processes.map(|_| data.join("serve.log"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut out = log_file.and_then(|f| std::fs::OpenOptions::new().create(true).append(true).open(f).ok());
            if let Some(o) = out.as_mut() {
                let _ = o.write_all(log.as_bytes());
            }
            for line in lines.map_while(Result::ok) {
                if let Some(o) = out.as_mut() {
                    let _ = writeln!(o, "{line}");
                }
            }
        });
        Node { child, url }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `url` with PostgreSQL's search path set to `schema` (URL or key=value form).
pub(crate) fn in_schema(url: &str, schema: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{schema}")
    } else {
        format!("{url} options=-csearch_path={schema}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_database_race_for_a_task_and_one_wins() {
    let Ok(url) = std::env::var("NAGARE_TEST_PG") else {
        eprintln!("note: two_nodes_on_one_database: skipped (set NAGARE_TEST_PG to a PostgreSQL connection string)");
        return;
    };
    use nagare_engine::store::{PgOptions, PgStore};
    let schema = format!("api_nodes_{}", std::process::id());
    // Create the schema and its tables; the nodes find them through the search path.
    drop(PgStore::open(&PgOptions::new(&url).schema(&schema)).unwrap());
    let store = in_schema(&url, &schema);
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&dir.path().join("a"), &store);
    let b = Node::start(&dir.path().join("b"), &store);
    let http = reqwest::Client::new();
    for round in 0..5 {
        let via = if round % 2 == 0 { &a.url } else { &b.url };
        let r = http
            .post(format!("{via}/api/v1/instances"))
            .bearer_auth(SATO)
            .json(&json!({ "process": "bench-usertask" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let inst: serde_json::Value = r.json().await.unwrap();
        let id = inst["id"].as_u64().unwrap();
        let task = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();
        let mut handles = Vec::new();
        for i in 0..8 {
            let node = if i % 2 == 0 { a.url.clone() } else { b.url.clone() };
            let (http, task) = (http.clone(), task.clone());
            handles.push(tokio::spawn(async move {
                let r = http
                    .post(format!("{node}/api/v1/tasks/{task}/complete"))
                    .bearer_auth(if i % 4 < 2 { SATO } else { KATO })
                    .json(&json!({ "variables": { "approved": true } }))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap();
                (status, body)
            }));
        }
        let mut statuses = Vec::new();
        for h in handles {
            let (status, body) = h.await.unwrap();
            if status == 409 {
                assert_eq!(body["code"], "task-not-open", "{body}");
            }
            statuses.push(status);
        }
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 7, "{statuses:?}");
        // Both nodes see the instance completed, advanced once.
        for node in [&a.url, &b.url] {
            let h: serde_json::Value = http
                .get(format!("{node}/api/v1/instances/{id}/history"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let names: Vec<&str> = h.as_array().unwrap().iter().map(|x| x["event"].as_str().unwrap()).collect();
            assert_eq!(names, ["started", "task_opened", "task_completed", "ended", "completed"]);
        }
    }
    drop((a, b));
    PgStore::drop_schema(&url, &schema).unwrap();
}
