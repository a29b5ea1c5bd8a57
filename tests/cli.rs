//! The `nagare` binary end to end: validate, deploy, start, tasks, complete, show.

use std::path::Path;
use std::process::{Command, Output};

fn nagare(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nagare"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NAGARE_DATA")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("nagare runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validate_ok_and_broken() {
    let dir = tempfile::tempdir().unwrap();
    let ok = nagare(dir.path(), &["validate", "processes/bench-usertask.yaml"]);
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).contains("ok: processes/bench-usertask.yaml (process bench-usertask, 3 nodes)"));

    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "id: broken\nstart: { next: nowhere }\nnodes:\n  done: { end: }\n").unwrap();
    let b = broken.to_str().unwrap();
    let bad = nagare(dir.path(), &["validate", "processes/bench-straight.yaml", b]);
    assert_eq!(bad.status.code(), Some(1));
    let text = stdout(&bad);
    assert!(text.contains(&format!("{b}:2:")), "{text}");
    assert!(text.contains("error["), "{text}");
    assert!(text.contains("ok: processes/bench-straight.yaml"), "every file is checked: {text}");

    let json = nagare(dir.path(), &["--json", "validate", "processes/bench-straight.yaml", b]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[1]["ok"], false);
    assert!(v[1]["diagnostics"][0]["line"].as_u64().is_some());

    let missing = nagare(dir.path(), &["validate", "no-such-file.yaml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("error: cannot read no-such-file.yaml"), "{}", stderr(&missing));
}

#[test]
fn usertask_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = nagare(&data, &["deploy", "processes/bench-usertask.yaml"]);
    assert!(d.status.success(), "{}", stderr(&d));
    assert!(stdout(&d).contains("deployed bench-usertask version 1"));
    let again = nagare(&data, &["deploy", "processes/bench-usertask.yaml"]);
    assert!(stdout(&again).contains("unchanged bench-usertask version 1"));

    let unknown = nagare(&data, &["start", "bench-usertask", "--var", "nope=1"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("declared: approved"), "{}", stderr(&unknown));

    let s = nagare(&data, &["--json", "start", "bench-usertask", "--user", "sato"]);
    assert!(s.status.success(), "{}", stderr(&s));
    let inst: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    let id = inst["id"].as_u64().unwrap().to_string();
    let task = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();

    let t = nagare(&data, &["--json", "tasks", "--group", "staff"]);
    let tasks: serde_json::Value = serde_json::from_slice(&t.stdout).unwrap();
    assert_eq!(tasks[0]["id"], task.as_str());
    let table = nagare(&data, &["tasks"]);
    assert!(stdout(&table).contains(&task), "{}", stdout(&table));

    let bad = nagare(&data, &["complete", &task, "--user", "sato"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("approved: required"), "{}", stderr(&bad));

    let c = nagare(&data, &["complete", &task, "--user", "sato", "--var", "approved=true"]);
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(stdout(&c).contains("completed"), "{}", stdout(&c));

    let twice = nagare(&data, &["complete", &task, "--user", "sato", "--var", "approved=true"]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(stderr(&twice).starts_with("error: conflict"), "{}", stderr(&twice));

    let show = nagare(&data, &["show", &id]);
    let text = stdout(&show);
    for event in ["started", "task_opened", "task_completed", "completed"] {
        assert!(text.contains(event), "{event} missing in\n{text}");
    }
    let list = nagare(&data, &["--json", "instances", "--status", "completed"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn bench_smoke() {
    let dir = tempfile::tempdir().unwrap();
    let o = nagare(dir.path(), &["--json", "bench", "--n", "20", "--concurrency", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // straight, gateway, usertask and service, in memory then durable.
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[0]["engine"], "nagare");
    assert_eq!((&lines[3]["case"], &lines[3]["mode"]), (&"service".into(), &"mem-c4".into()));
    assert_eq!(lines[7]["mode"], "durable-c4");
    assert!(lines.iter().all(|l| l["p99_ms"].as_f64().unwrap() >= l["p50_ms"].as_f64().unwrap()));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "durable temp dirs are removed");
}

/// `bench --case http` and `--case worker`: the HTTP API and an external worker
/// over HTTP, each one peers-shaped line with percentiles; an unknown case is refused.
#[test]
fn bench_http_and_worker_cases_print_peers_lines() {
    let dir = tempfile::tempdir().unwrap();
    for (case, mode) in [("http", "durable-http-c4"), ("worker", "durable-http-worker-c4")] {
        let o = nagare(dir.path(), &["--json", "bench", "--case", case, "--n", "40", "--concurrency", "4"]);
        assert!(o.status.success(), "{case}: {}", stderr(&o));
        let r: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
        assert_eq!((&r["case"], &r["mode"], &r["n"]), (&case.into(), &mode.into(), &40.into()), "{r}");
        assert!(r["ips"].as_f64().unwrap() > 0.0 && r["p99_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    let bad = nagare(dir.path(), &["bench", "--case", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("possible values"), "{}", stderr(&bad));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "temp dirs are removed");
}

#[test]
fn locked_data_dir_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = nagare(&data, &["deploy", "processes/bench-usertask.yaml"]);
    assert!(d.status.success(), "{}", stderr(&d));
    let mut run = Command::new(env!("CARGO_BIN_EXE_nagare"))
        .arg("--data")
        .arg(&data)
        .arg("run")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the executor's start line: the store is open and locked by then.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(run.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.contains("executor running"), "{line}");
    let t = nagare(&data, &["tasks"]);
    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(t.status.code(), Some(1));
    let err = stderr(&t);
    assert!(err.starts_with("error: the data directory"), "{err}");
    assert!(err.contains("in use by another nagare process"), "{err}");
    assert_eq!(err.matches("in use").count(), 1, "said once: {err}");
}

#[test]
fn demo_runs_the_expense_approval_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nagare"))
        .args(["--data", dir.path().to_str().unwrap(), "demo"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for needle in
        ["deployed  expense-approval version 1", "sent_back", "joined", "job_succeeded", "status       completed"]
    {
        assert!(stdout.contains(needle), "demo output lacks `{needle}`:\n{stdout}");
    }
    // A second run on the same data deploys nothing new and runs another instance.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_nagare"))
        .args(["--data", dir.path().to_str().unwrap(), "demo"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(stdout.contains("unchanged expense-approval version 1"), "{stdout}");
    assert!(stdout.contains("instance 2 completed"), "{stdout}");
}

/// Every broken file in the corpus makes `nagare validate` exit non-zero and point
/// at `file:line:col` with a hint; the warning-only files pass.
#[test]
fn validate_exit_codes_over_the_broken_corpus() {
    let mut files: Vec<_> = std::fs::read_dir("tests/invalid").unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 25);
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nagare")).arg("validate").arg(&f).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if name.starts_with("warn-") {
            assert!(out.status.success(), "{name} should validate:\n{stdout}");
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{name} should fail:\n{stdout}");
        let prefix = format!("{}:", f.display());
        let located = stdout.lines().any(|l| {
            l.strip_prefix(&prefix).is_some_and(|rest| {
                let mut parts = rest.splitn(3, ':');
                parts.next().is_some_and(|x| x.parse::<usize>().is_ok())
                    && parts.next().is_some_and(|x| x.parse::<usize>().is_ok())
            })
        });
        assert!(located, "{name}: no file:line:col in\n{stdout}");
        assert!(stdout.contains("hint: "), "{name}: no hint in\n{stdout}");
    }
}

/// Run `nagare` and give up (failing the test) if it has not finished in `secs`.
fn nagare_within(secs: u64, data: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nagare"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nagare runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("nagare {args:?} still running after {secs}s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Regression (issue 10, finding 10): `nagare validate /dev/zero` read until memory ran
/// out. Reading stops at 1 MiB + 1 byte and the file is refused as too large.
#[test]
fn validate_dev_zero_stops_at_the_size_limit() {
    if !Path::new("/dev/zero").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["validate", "deploy"] {
        let out = nagare_within(60, &dir.path().join("data"), &[cmd, "/dev/zero"]);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}{}", stdout(&out), stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("/dev/zero:1:1: error[file-too-large]"), "{cmd}: {text}");
        assert!(text.contains("the limit for a process file is 1048576 bytes"), "{cmd}: {text}");
    }
}

/// A file in another encoding is named as such, with the position of the first bad byte.
#[test]
fn validate_shift_jis_file_points_at_the_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sjis.yaml");
    std::fs::write(&f, b"id: p\nname: \x8c\x6f\x94\xef\nstart: { next: done }\nnodes:\n  done: { end: }\n").unwrap();
    let name = f.to_str().unwrap();
    let out = nagare(dir.path(), &["validate", name]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains(&format!("{name}:2:7: error[invalid-utf8]")), "{text}");
}

/// Every process shipped in `processes/` validates with the built-in connectors.
#[test]
fn every_shipped_process_validates() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("processes"))
        .unwrap()
        .map(|e| format!("processes/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(files.contains(&"processes/order-delivery.yaml".to_string()));
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = nagare(dir.path(), &args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("ok: processes/order-delivery.yaml (process order-delivery, 15 nodes)"));
}

/// A broken config file stops the command with what is wrong and where.
#[test]
fn broken_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nagare.yaml");
    std::fs::write(&cfg, "connectors:\n  kintone: { type: kintone, base_url: http://127.0.0.1:1 }\n").unwrap();
    let out = nagare(dir.path(), &["--config", cfg.to_str().unwrap(), "validate", "processes/order-delivery.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("connector `kintone`: set `token`"), "{}", stderr(&out));
}

/// `nagare emulate kintone` serves the API on the address given and keeps its
/// state in its data directory.
#[test]
fn emulate_kintone_serves_the_api() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    /// Stops the server however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        Command::new(env!("CARGO_BIN_EXE_nagare"))
            .args(["--json", "--data"])
            .arg(dir.path())
            .args(["emulate", "kintone", "--addr", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let base = info["base_url"].as_str().unwrap().trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&base).unwrap();
    write!(
        s,
        "GET /k/v1/record.json?app=1&id=1 HTTP/1.1\r\nHost: {base}\r\nX-Cybozu-API-Token: {}\r\nConnection: close\r\n\r\n",
        info["token"].as_str().unwrap()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    drop(child);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("山田 太郎"), "{resp}");
    assert!(dir.path().join("kintone.json").exists());
}

/// `nagare emulate cloudsign` issues tokens to the demo client ids and keeps its
/// state in its data directory.
#[test]
fn emulate_cloudsign_serves_the_api() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        Command::new(env!("CARGO_BIN_EXE_nagare"))
            .args(["--json", "--data"])
            .arg(dir.path())
            .args(["emulate", "cloudsign", "--addr", "127.0.0.1:0", "--token-ttl", "2m"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let base = info["base_url"].as_str().unwrap().trim_start_matches("http://").to_string();
    let client = info["clients"][0]["client_id"].as_str().unwrap();
    let body = format!("client_id={client}");
    let mut s = std::net::TcpStream::connect(&base).unwrap();
    write!(
        s,
        "POST /token HTTP/1.1\r\nHost: {base}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    drop(child);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"expires_in\":120") && resp.contains("\"token_type\":\"Bearer\""), "{resp}");
    assert!(dir.path().join("cloudsign.json").exists());
}

/// `nagare message` delivers, buffers or refuses; `nagare incidents` lists, and
/// `incidents resolve` moves the stopped token on.
#[test]
fn message_and_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("reply.yaml");
    std::fs::write(
        &file,
        r#"
id: reply
variables:
  no: { type: string, required: true }
  text: { type: string }
  x: { type: number }
start: { next: wait }
nodes:
  wait: { message: 回答, key: no, next: calc }
  calc: { script: 'x = 1 / 0;', next: done }
  done: { end: }
"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    assert!(nagare(&data, &["deploy", file]).status.success());
    assert!(nagare(&data, &["start", "reply", "--var", "no=Q-1"]).status.success());
    let sent = nagare(&data, &["--json", "message", "回答", "--key", "Q-1", "--var", "text=はい"]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(stdout(&sent).contains("\"delivered\""), "{}", stdout(&sent));
    let kept = nagare(&data, &["message", "回答", "--key", "Q-1", "--var", "text=again"]);
    assert!(stdout(&kept).contains("kept as message"), "{}", stdout(&kept));
    let refused = nagare(&data, &["message", "回答", "--key", "Q-2", "--ttl", "0s"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("no one waits"), "{}", stderr(&refused));

    let list = nagare(&data, &["--json", "incidents"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["node"], "calc");
    let id = v[0]["id"].to_string();
    let bad = nagare(&data, &["incidents", "resolve", "1", &id, "--var", "x=abc"]);
    assert_eq!(bad.status.code(), Some(1), "a wrong type is refused");
    // `nagare retry` runs the step again: 1 / 0 fails again, a new incident replaces it.
    let again = nagare(&data, &["--json", "retry", "1", &id]);
    let inst: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(inst["status"], "incident", "{inst}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&nagare(&data, &["--json", "incidents"]))).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_ne!(v[0]["id"].to_string(), id, "a new incident: {v}");
    let id = v[0]["id"].to_string();
    let ok = nagare(&data, &["--json", "incidents", "resolve", "1", &id, "--var", "x=5"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let inst: serde_json::Value = serde_json::from_str(&stdout(&ok)).unwrap();
    assert_eq!(inst["status"], "completed");
    assert_eq!(inst["vars"]["text"], "はい");
    assert_eq!(inst["vars"]["x"], 5);
    assert!(stdout(&nagare(&data, &["incidents"])).contains("no incidents"));
}

/// Issue 10, finding 3: `nagare message --ttl 99999999999d` ended with an overflow
/// panic; now it is refused with a clear message and a non-zero exit.
#[test]
fn message_ttl_past_ten_years_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for ttl in ["99999999999d", "300000y", "3651d"] {
        let out = nagare(&data, &["message", "回答", "--key", "Q-1", "--ttl", ttl]);
        assert_eq!(out.status.code(), Some(1), "{ttl}: {}", stderr(&out));
        assert!(stderr(&out).contains("longer than 10 years"), "{ttl}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

/// Issue 15.3: `nagare tasks` shows who sent a reopened task back, and why.
#[test]
fn tasks_show_the_send_back_comment_of_a_reopened_task() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("sendback.yaml");
    std::fs::write(
        &file,
        "id: sendback\nlanes:\n  a: { groups: [staff] }\nvariables:\n  x: { type: string }\n\
         start: { next: draft }\nnodes:\n  draft: { user_task: Draft, lane: a, form: { x: optional }, next: check }\n\
         \x20 check: { user_task: Check, lane: a, send_back: draft, next: done }\n  done: { end: }\n",
    )
    .unwrap();
    let d = nagare(&data, &["deploy", file.to_str().unwrap()]);
    assert!(d.status.success(), "{}{}", stdout(&d), stderr(&d));
    let s = nagare(&data, &["--json", "start", "sendback", "--user", "sato"]);
    let inst: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    let draft = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();
    assert!(nagare(&data, &["complete", &draft, "--user", "sato"]).status.success());
    let t: serde_json::Value = serde_json::from_slice(&nagare(&data, &["--json", "tasks"]).stdout).unwrap();
    let check = t[0]["id"].as_str().unwrap().to_string();
    assert!(t[0].get("sent_back").is_none(), "{t}");
    let back = nagare(&data, &["complete", &check, "--user", "suzuki", "--send-back", "--comment", "金額が違います"]);
    assert!(back.status.success(), "{}", stderr(&back));
    let table = stdout(&nagare(&data, &["tasks"]));
    assert!(table.contains("sent back by suzuki at") && table.contains(": 金額が違います"), "{table}");
    let t: serde_json::Value = serde_json::from_slice(&nagare(&data, &["--json", "tasks"]).stdout).unwrap();
    assert_eq!(t[0]["sent_back"]["by"], "suzuki", "{t}");
    assert_eq!(t[0]["sent_back"]["comment"], "金額が違います");
    assert_eq!(t[0]["sent_back"]["from_node"], "check");
}

#[test]
fn diagram_draws_svg_and_mermaid_and_refuses_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let svg = nagare(dir.path(), &["diagram", "processes/expense-approval.yaml"]);
    assert!(svg.status.success(), "{}", stderr(&svg));
    let text = stdout(&svg);
    assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && text.trim_end().ends_with("</svg>"));
    assert!(text.contains("data-node=\"上長承認\"") && text.contains("data-lane=\"経理\""));
    assert!(!dir.path().join("data").exists(), "no data directory is created");

    let out = dir.path().join("e.mmd");
    let m = nagare(
        dir.path(),
        &["diagram", "processes/expense-approval.yaml", "--format", "mermaid", "-o", out.to_str().unwrap()],
    );
    assert!(m.status.success(), "{}", stderr(&m));
    assert!(stdout(&m).is_empty());
    let mermaid = std::fs::read_to_string(&out).unwrap();
    assert!(mermaid.starts_with("flowchart LR\n") && mermaid.contains("subgraph lane"), "{mermaid}");

    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "id: broken\nstart: { next: nowhere }\nnodes:\n  done: { end: }\n").unwrap();
    let bad = nagare(dir.path(), &["diagram", broken.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("broken.yaml:2:") && stderr(&bad).contains("has errors"), "{}", stderr(&bad));
}

#[test]
fn schema_prints_the_json_schema_of_process_files() {
    let dir = tempfile::tempdir().unwrap();
    let o = nagare(dir.path(), &["schema"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(v["$defs"]["node"]["properties"]["user_task"]["description"].is_string());
}

/// A `nagare serve` on a temp data directory and an ephemeral port; stopped however
/// the test ends.
struct Serve {
    child: std::process::Child,
    url: String,
    /// The server's log lines, read off its stderr so that it never blocks on a full pipe.
    _stderr: std::sync::mpsc::Receiver<String>,
}

impl Serve {
    fn start(data: &Path, extra: &[&str]) -> Serve {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_nagare"))
            .arg("--data")
            .arg(data)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("NAGARE_SERVER")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut url = None;
        while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
            if let Some(rest) = line.split("nagare API and web inbox on ").nth(1) {
                url = rest.split_whitespace().next().map(str::to_string);
                break;
            }
        }
        let url = url.expect("serve printed its address");
        Serve { child, url, _stderr: rx }
    }

    /// `nagare` as an API client of this server with `token`.
    fn client(&self, token: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nagare"))
            .args(["--server", &self.url, "--token", token])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NAGARE_DATA")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("nagare runs")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue #21: `nagare proxy` sets, lists and removes proxies through a running
/// serve (which read config/org.yaml at start), kept in the data directory.
#[test]
fn proxies_are_set_listed_and_removed_through_a_running_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &[]);
    let until = (chrono::Utc::now() + chrono::Duration::days(7)).format("%Y-%m-%d").to_string();
    let set = serve.client("demo-tanaka", &["proxy", "set", "kato", "--until", &until, "--filing"]);
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(stdout(&set).contains("kato acts for tanaka"), "{}", stdout(&set));
    assert!(stdout(&set).contains("(may file requests)"), "{}", stdout(&set));
    let list = serve.client("demo-kato", &["--json", "proxy", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["items"][0]["principal"], "tanaka", "{v}");
    let stored = std::fs::read_to_string(data.join("proxies.json")).expect("kept in the data directory");
    assert!(stored.contains("\"proxy\": \"kato\""), "{stored}");
    let other = serve.client("demo-tanaka", &["proxy", "set", "kato", "--until", &until, "--for", "yamada"]);
    assert_eq!(other.status.code(), Some(1), "only administrators set someone else's");
    let id = v["items"][0]["id"].as_u64().unwrap().to_string();
    let removed = serve.client("demo-tanaka", &["proxy", "remove", &id]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    let list = serve.client("demo-kato", &["proxy", "list"]);
    assert!(!stdout(&list).contains("tanaka"), "{}", stdout(&list));
    let local = nagare(&data, &["proxy", "list"]);
    assert!(stderr(&local).contains("--server"), "says where proxies live: {}", stderr(&local));
}

/// Issue #16: with `serve` running, the CLI goes through the API (`--server`,
/// `--token`); without it, the lock error says what to do.
#[test]
fn the_cli_works_through_a_running_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &[]);

    let local = nagare(&data, &["tasks"]);
    assert_eq!(local.status.code(), Some(1));
    let err = stderr(&local);
    assert!(err.contains("in use by another nagare process"), "{err}");
    assert!(err.contains("--server http://127.0.0.1:8080"), "the hint says what to do: {err}");
    assert!(!err.contains("Os {"), "no raw OS error: {err}");

    // `nagare processes` through the server: what `serve` deployed, without the bench ones.
    let p = serve.client("demo-admin", &["processes"]);
    assert!(p.status.success(), "{}", stderr(&p));
    let text = stdout(&p);
    assert!(text.contains("expense-approval") && text.contains("経費精算"), "{text}");
    assert!(!text.contains("bench-"), "a plain serve deploys no bench process: {text}");

    let deploy = serve.client("demo-admin", &["deploy", "processes/bench-usertask.yaml"]);
    assert!(deploy.status.success(), "{}", stderr(&deploy));
    assert!(stdout(&deploy).contains("deployed bench-usertask version 1"), "{}", stdout(&deploy));
    let refused = serve.client("demo-sato", &["deploy", "processes/bench-usertask.yaml"]);
    assert_eq!(refused.status.code(), Some(1), "only administrators deploy");

    let s = serve.client(
        "demo-sato",
        &[
            "--json",
            "start",
            "expense-approval",
            "--var",
            "件名=出張",
            "--var",
            "金額=32000",
            "--var",
            "費目=交通費",
            "--var",
            "利用日=2026-11-20",
        ],
    );
    assert!(s.status.success(), "{}", stderr(&s));
    let inst: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    let id = inst["id"].as_u64().unwrap().to_string();
    assert_eq!(inst["started_by"], "sato");
    let task = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();

    let bad = serve.client("demo-sato", &["start", "expense-approval", "--var", "金額=たくさん"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("金額"), "typed like the local CLI: {}", stderr(&bad));

    let t = serve.client("demo-sato", &["tasks"]);
    assert!(stdout(&t).contains(&task), "{}", stdout(&t));
    let claimed = serve.client("demo-sato", &["claim", &task, "--user", "sato"]);
    assert!(stdout(&claimed).contains("claimed by sato"), "{}{}", stdout(&claimed), stderr(&claimed));
    let c = serve.client("demo-sato", &["complete", &task, "--user", "sato"]);
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(stdout(&c).contains(&format!("instance {id}")), "{}", stdout(&c));

    let mine = serve.client("demo-tanaka", &["--json", "tasks"]);
    let items: serde_json::Value = serde_json::from_slice(&mine.stdout).unwrap();
    assert!(
        items.as_array().unwrap().iter().any(|t| t["instance"].as_u64().map(|n| n.to_string()) == Some(id.clone())),
        "{items}"
    );

    let show = serve.client("demo-admin", &["show", &id]);
    assert!(show.status.success(), "{}", stderr(&show));
    let text = stdout(&show);
    assert!(text.contains("status       running") && text.contains("出張"), "{text}");

    let no_token = Command::new(env!("CARGO_BIN_EXE_nagare"))
        .args(["--server", &serve.url, "tasks"])
        .env_remove("NAGARE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(no_token.status.code(), Some(1));
    assert!(stderr(&no_token).contains("--token"), "{}", stderr(&no_token));
    let wrong = serve.client("nope", &["tasks"]);
    assert!(stderr(&wrong).contains("hint: check --token"), "{}", stderr(&wrong));
    drop(serve);
}

/// `serve --with-bench` deploys the bench processes too (`nagare bench` needs none).
#[test]
fn serve_deploys_bench_processes_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &["--with-bench"]);
    let p = serve.client("demo-admin", &["--json", "processes"]);
    let list: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    let ids: Vec<&str> = list.as_array().unwrap().iter().filter_map(|p| p["id"].as_str()).collect();
    assert!(ids.contains(&"bench-straight") && ids.contains(&"expense-approval"), "{ids:?}");
}

/// `nagare processes` on the data directory: id, versions, latest, name.
#[test]
fn processes_lists_what_is_deployed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let none = nagare(&data, &["processes"]);
    assert_eq!(none.status.code(), Some(1), "no data directory yet");
    assert!(nagare(&data, &["deploy", "processes/bench-usertask.yaml", "processes/expense-approval.yaml"])
        .status
        .success());
    let changed = dir.path().join("bench-usertask.yaml");
    let text = std::fs::read_to_string("processes/bench-usertask.yaml").unwrap();
    std::fs::write(&changed, format!("{text}\n# changed\n")).unwrap();
    assert!(nagare(&data, &["deploy", changed.to_str().unwrap()]).status.success());
    let o = nagare(&data, &["processes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let row = text.lines().find(|l| l.starts_with("bench-usertask")).expect("listed");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..3], ["2", "2"], "two versions, latest 2: {text}");
    assert!(text.contains("経費精算"), "{text}");
    let json = nagare(&data, &["--json", "processes"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["versions"].as_array().unwrap().len() + v[1]["versions"].as_array().unwrap().len(), 3);
}

/// The emulators' default data directory is said once (in `--data`), and ignored by git.
#[test]
fn emulator_data_dirs_are_documented_once_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let help = nagare(dir.path(), &["emulate", "--help"]);
    let text = stdout(&help);
    assert_eq!(text.matches("<service>-emulator-data").count(), 1, "{text}");
    assert!(!text.contains("[default: ./nagare-data]"), "{text}");
    let ignore = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "/*-emulator-data/"), "{ignore}");
}

/// `migrate-store`: a data directory copied into PostgreSQL, the comparison
/// printed, a second copy into the same database refused. Runs when
/// `NAGARE_TEST_PG` holds a connection string.
#[cfg(feature = "postgres")]
#[test]
fn migrate_store_copies_a_data_directory_into_postgres_once() {
    use nagare_engine::store::{InstanceFilter, PgOptions, PgStore, Store};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let nowhere = nagare(&data, &["migrate-store", "--from", "sled:/no/such/dir", "--to", "host=/tmp"]);
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(stderr(&nowhere).contains("no sled store there"), "{}", stderr(&nowhere));
    let Ok(url) = std::env::var("NAGARE_TEST_PG") else {
        eprintln!("note: migrate_store: skipped (set NAGARE_TEST_PG to a PostgreSQL connection string)");
        return;
    };
    assert!(nagare(&data, &["deploy", "processes/bench-usertask.yaml"]).status.success());
    for _ in 0..3 {
        assert!(nagare(&data, &["start", "bench-usertask", "--user", "sato"]).status.success());
    }
    let schema = format!("cli_migrate_{}", std::process::id());
    drop(PgStore::open(&PgOptions::new(&url).schema(&schema)).unwrap());
    let to = if url.starts_with("postgres") {
        format!("{url}{}options=-csearch_path%3D{schema}", if url.contains('?') { '&' } else { '?' })
    } else {
        format!("{url} options=-csearch_path={schema}")
    };
    let from = format!("sled:{}", data.display());
    let m = nagare(&data, &["migrate-store", "--from", &from, "--to", &to]);
    assert!(m.status.success(), "{}", stderr(&m));
    assert!(stdout(&m).contains("copied and verified"), "{}", stdout(&m));
    let line = stdout(&m).lines().find(|l| l.starts_with("instances ")).unwrap().to_string();
    assert_eq!(line.split_whitespace().nth(1), Some("3"), "{line}");
    assert!(stderr(&m).contains("migrate-store: instances: 3 of 3"), "{}", stderr(&m));
    let again = nagare(&data, &["migrate-store", "--from", &from, "--to", &to]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already holds a nagare store"), "{}", stderr(&again));
    let pg = PgStore::open(&PgOptions::new(&url).schema(&schema)).unwrap();
    assert_eq!(pg.instances(&InstanceFilter::default()).unwrap().len(), 3);
    drop(pg);
    PgStore::drop_schema(&url, &schema).unwrap();
}

/// `bench --nodes`: several engines on one PostgreSQL schema, latency percentiles
/// reported; refused without --store.
#[test]
fn bench_on_several_nodes_reports_latency_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let no_store = nagare(dir.path(), &["bench", "--case", "usertask", "--mode", "durable", "--nodes", "2"]);
    assert_eq!(no_store.status.code(), Some(1));
    assert!(stderr(&no_store).contains("--nodes 2 needs --mode durable and --store"), "{}", stderr(&no_store));
    let Ok(url) = std::env::var("NAGARE_TEST_PG") else {
        eprintln!("note: bench_on_several_nodes: skipped (set NAGARE_TEST_PG to a PostgreSQL connection string)");
        return;
    };
    let args = ["--json", "bench", "--case", "usertask", "--mode", "durable", "--n", "40", "--concurrency", "4"];
    let o = nagare(dir.path(), &[&args[..], &["--store", &url, "--nodes", "2"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(r["mode"], "durable-pg-2nodes-c4");
    let (p50, p99) = (r["p50_ms"].as_f64().unwrap(), r["p99_ms"].as_f64().unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{r}");
}

/// The README's "A session with curl", run against a real `nagare serve`: every
/// `curl` of the session is sent as written (method, headers, body, URL with
/// `$API`), and every `"key":value` its shown answer names is in the real answer
/// (times, which differ from run to run, only as keys). A README that drifts from
/// the server fails here.
#[test]
fn the_readme_curl_session_works_as_shown() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("### A session with curl").expect("the section")..];
    let block = section.split("```console\n").nth(2).expect("the session block");
    let block = &block[..block.find("```").unwrap()];
    let steps = curl_steps(block);
    assert!(steps.len() >= 8, "the session has its curl calls: {}", steps.len());

    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[]);
    let api = format!("{}/api/v1", serve.url);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::new();
    let pair = shown_pairs();
    for (command, shown) in &steps {
        let call = parse_curl(command, &api);
        let mut req = client.request(call.method.parse().unwrap(), &call.url);
        for (k, v) in &call.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &call.body {
            req = req.body(b.clone());
        }
        let got = rt.block_on(async { req.send().await.unwrap().text().await.unwrap() });
        for (key, value) in pair(shown) {
            let time_like =
                value.len() > 11 && value.as_bytes()[1..5].iter().all(u8::is_ascii_digit) && value.contains('T');
            let want = if time_like { format!("\"{key}\":\"") } else { format!("\"{key}\":{value}") };
            assert!(got.contains(&want), "README step `{command}`\nshows {want}\ngot {got}");
        }
    }
}

/// The `curl` commands of a console block (continuation lines joined) and the
/// answer shown under each.
fn curl_steps(block: &str) -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut lines = block.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(cmd) = line.strip_prefix("$ ") else {
            if let Some(last) = steps.last_mut() {
                last.1.push_str(line);
                last.1.push('\n');
            }
            continue;
        };
        let mut cmd = cmd.to_string();
        while cmd.trim_end().ends_with('\\') {
            cmd = cmd.trim_end().trim_end_matches('\\').to_string();
            cmd.push_str(lines.next().unwrap_or_default().trim());
        }
        // A trailing comment is for the reader.
        if let Some(i) = cmd.find("  #") {
            cmd.truncate(i);
        }
        if cmd.starts_with("curl ") {
            steps.push((cmd, String::new()));
        }
    }
    steps
}

struct CurlCall {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// The parts of a `curl` command line as the README writes them (`-s`, `-X`,
/// `-H`, `-d`, the URL), with `$API` expanded outside single quotes.
fn parse_curl(cmd: &str, api: &str) -> CurlCall {
    let mut words = Vec::new();
    let (mut cur, mut quote, mut any) = (String::new(), None::<char>, false);
    for c in cmd.chars() {
        match (quote, c) {
            (None, '\'' | '"') => (quote, any) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (q, c) => {
                cur.push(c);
                any = true;
                if c == 'I' && q != Some('\'') && cur.ends_with("$API") {
                    cur.truncate(cur.len() - 4);
                    cur.push_str(api);
                }
            }
        }
    }
    if any {
        words.push(cur);
    }
    let mut call = CurlCall { method: "GET".into(), url: String::new(), headers: Vec::new(), body: None };
    let mut it = words.into_iter().skip(1);
    while let Some(w) = it.next() {
        match w.as_str() {
            "-s" => {}
            "-X" => call.method = it.next().unwrap(),
            "-H" => {
                let h = it.next().unwrap();
                let (k, v) = h.split_once(':').unwrap();
                call.headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            "-d" => {
                call.body = it.next();
                if call.method == "GET" {
                    call.method = "POST".into();
                }
            }
            url => call.url = url.to_string(),
        }
    }
    call
}

/// `"key":value` pairs (scalar values) of a shown answer.
fn shown_pairs() -> impl Fn(&str) -> Vec<(String, String)> {
    |text: &str| {
        let mut out = Vec::new();
        let b = text;
        let mut i = 0;
        while let Some(start) = b[i..].find('"') {
            let s = i + start + 1;
            let Some(len) = b[s..].find('"') else { break };
            let key = &b[s..s + len];
            let after = s + len + 1;
            i = after;
            if !b[after..].starts_with(':') {
                continue;
            }
            let v = &b[after + 1..];
            let value = if let Some(rest) = v.strip_prefix('"') {
                match rest.find('"') {
                    Some(end) => format!("\"{}\"", &rest[..end]),
                    None => break,
                }
            } else {
                let end = v.find([',', '}', ']', '\n']).unwrap_or(v.len());
                let raw = v[..end].trim();
                if raw.is_empty() || raw.starts_with(['{', '[']) || raw.contains('…') {
                    continue;
                }
                raw.to_string()
            };
            if value.contains('…') {
                continue;
            }
            i = after + 1 + value.len();
            out.push((key.to_string(), value));
        }
        out
    }
}

#[test]
fn migrate_plan_then_apply_moves_running_instances() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(nagare(&data, &["deploy", "processes/expense-approval.yaml"]).status.success());
    let start = ["start", "expense-approval", "--var", "件名=出張", "--var", "費目=交通費", "--var", "金額=3000"];
    for _ in 0..2 {
        let s = nagare(&data, &[&start[..], &["--var", "利用日=2026-11-30"]].concat());
        assert!(s.status.success(), "{}", stderr(&s));
    }
    let v1 = std::fs::read_to_string("processes/expense-approval.yaml").unwrap();
    let v2 = v1
        .replace("  申請:\n", "  申請入力:\n")
        .replace("send_back: 申請\n", "send_back: 申請入力\n")
        .replace("next: 申請 }", "next: 申請入力 }");
    let file = dir.path().join("expense-approval.yaml");
    std::fs::write(&file, v2).unwrap();
    let d = nagare(&data, &["deploy", file.to_str().unwrap()]);
    assert!(stdout(&d).contains("version 2"), "{}", stdout(&d));

    let base = ["migrate", "plan", "--process", "expense-approval", "--from", "1", "--to", "2"];
    let dry = nagare(&data, &base);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let text = stdout(&dry);
    assert!(text.contains("INVALID") && text.contains("node-gone") && text.contains("2 invalid"), "{text}");

    let plan = dir.path().join("plan.json");
    let p = nagare(&data, &[&base[..], &["--map", "申請=申請入力", "--out", plan.to_str().unwrap()]].concat());
    assert!(stdout(&p).contains("2 can move"), "{}", stdout(&p));
    let a = nagare(&data, &["migrate", "apply", plan.to_str().unwrap()]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(stdout(&a).contains("migrated 2"), "{}", stdout(&a));
    let again = nagare(&data, &["migrate", "apply", plan.to_str().unwrap()]);
    assert!(stdout(&again).contains("already_migrated 2"), "{}", stdout(&again));
    let show = nagare(&data, &["show", "1"]);
    assert!(stdout(&show).contains("migrated"), "{}", stdout(&show));
    assert!(stdout(&show).contains("申請入力"), "{}", stdout(&show));
}
