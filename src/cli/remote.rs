//! The commands that also work through a running `nagare serve` (`--server URL`
//! with `--token`): `deploy`, `start`, `tasks`, `claim`, `complete`, `show`, `processes`.
//! The data directory is then the server's; the token decides who acts.

use super::instances::StartArgs;
use super::processes::ProcessLine;
use super::tasks::{CompleteArgs, ListArgs};
use crate::output::{self, Out, Table};
use anyhow::{anyhow, bail, Context};
use nagare::server::views::{CompletionView, InstanceView, TaskPage, TaskView};
use nagare_engine::process::Process;
use nagare_engine::{Engine, Vars};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// A client of one server's `/api/v1`.
pub struct Remote {
    base: String,
    token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Remote {
    /// A client of the server at `url` (`http://127.0.0.1:8080`), acting with `token`.
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Remote> {
        let base = url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server `{url}`: give the server's URL, e.g. http://127.0.0.1:8080");
        }
        let token = token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            anyhow!("--server needs a token: --token TOKEN or NAGARE_TOKEN (the demo users' are demo-<user>, e.g. demo-admin)")
        })?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("cannot make an HTTP client")?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
        Ok(Remote { base, token, http, rt })
    }

    /// `method path` with an optional JSON body; the JSON answer, or the server's
    /// `{code, message}` as the error.
    pub(crate) fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token).query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.rt.block_on(async {
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach the server at {} (is `nagare serve` running?)", self.base))?;
            let status = resp.status();
            let text = resp.text().await.context("the server's answer was cut off")?;
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
            if status.is_success() {
                return Ok(v);
            }
            Err(server_error(status, &v))
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<T> {
        let v = self.call(reqwest::Method::GET, path, query, None)?;
        serde_json::from_value(v).with_context(|| format!("unexpected answer from GET {path}"))
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, &[], Some(body))
    }

    /// The process `id` (`version`, else the latest) as the server has it, compiled
    /// here (with the local connectors) so that `--var` values are typed by the same
    /// declarations. `None` when it does not compile here (a connector only the
    /// server has): the values are then guessed from their text.
    fn process(&self, id: &str, version: Option<u32>) -> anyhow::Result<Option<Process>> {
        let query: Vec<(&str, String)> = version.map(|v| ("version", v.to_string())).into_iter().collect();
        let detail: Value = self.get(&format!("/processes/{}", seg(id)), &query)?;
        let source = detail["source"].as_str().ok_or_else(|| anyhow!("the server sent no source for `{id}`"))?;
        let engine = Engine::builder()
            .in_memory()
            .connectors(super::connectors()?.registry())
            .build()
            .map_err(super::explain)?;
        Ok(engine.validate(id, source).ok().map(|l| l.process))
    }

    /// `--var` pairs typed by `process` when known, else guessed (JSON, or text).
    fn vars(
        &self,
        process: Option<&Process>,
        pairs: &[String],
        file: Option<&std::path::Path>,
    ) -> anyhow::Result<Vars> {
        if let Some(p) = process {
            return super::parse_vars(p, pairs, file);
        }
        let mut vars = match file {
            Some(_) => bail!("--vars-file with --server needs a process that compiles here; use --var"),
            None => Vars::new(),
        };
        for pair in pairs {
            let (name, text) =
                pair.split_once('=').ok_or_else(|| anyhow!("--var `{pair}` must look like name=value"))?;
            let v = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
            vars.insert(name.trim().to_string(), v);
        }
        Ok(vars)
    }
}

/// One path segment, percent-encoded (process ids may be Japanese).
fn seg(s: &str) -> String {
    url_escape(s)
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The server's error body as a message: `message`, field errors and diagnostics one per line.
fn server_error(status: reqwest::StatusCode, v: &Value) -> anyhow::Error {
    let Some(message) = v["message"].as_str() else {
        return anyhow!("the server answered {status}: {}", output::value(v));
    };
    let mut lines = vec![format!("{message} ({status}, {})", v["code"].as_str().unwrap_or("-"))];
    for e in v["details"]["errors"].as_array().into_iter().flatten() {
        lines.push(format!("  {}: {}", e["field"].as_str().unwrap_or("?"), e["problem"].as_str().unwrap_or("?")));
    }
    for d in v["details"]["diagnostics"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  {}:{}:{}: {}[{}]: {}",
            d["file"].as_str().unwrap_or("?"),
            d["line"],
            d["col"],
            d["severity"].as_str().unwrap_or("error"),
            d["code"].as_str().unwrap_or("-"),
            d["message"].as_str().unwrap_or("")
        ));
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        lines.push("  hint: check --token (or NAGARE_TOKEN): a token of the server's users file".into());
    }
    anyhow!(lines.join("\n"))
}

/// `--user` with `--server`: the token decides who acts, so a different name is a mistake.
fn check_user(given: Option<&str>, actual: Option<&str>) {
    if let (Some(g), Some(a)) = (given, actual) {
        if g != a {
            eprintln!("warning: --user {g} was ignored: the server acted as {a}, the user of the token");
        }
    }
}

pub fn deploy(r: &Remote, out: &Out, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut results = Vec::new();
    let mut failed = 0;
    for path in files {
        let name = path.display().to_string();
        let bytes = super::files::read_process_file(path).with_context(|| format!("cannot read {name}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("{name} is not UTF-8 (`nagare validate {name}` shows where)"))?;
        match r.post("/processes", &json!({ "source": text, "file": name })) {
            Ok(v) => {
                if !out.json {
                    let word = if v["created"] == true { "deployed" } else { "unchanged" };
                    println!("{word} {} version {}", v["id"].as_str().unwrap_or("?"), v["version"]);
                }
                results.push(json!({ "file": name, "ok": true, "result": v }));
            }
            Err(e) => {
                failed += 1;
                if !out.json {
                    eprintln!("error: {name}: {e:#}");
                }
                results.push(json!({ "file": name, "ok": false, "error": format!("{e:#}") }));
            }
        }
    }
    if out.json {
        out.json(&results)?;
    }
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub fn start(r: &Remote, out: &Out, a: StartArgs) -> anyhow::Result<ExitCode> {
    let process = r.process(&a.process, None)?;
    let vars = r.vars(process.as_ref(), &a.vars, a.vars_file.as_deref())?;
    let mut body = json!({ "process": a.process, "variables": vars });
    if let Some(k) = &a.key {
        body["business_key"] = json!(k);
    }
    let v = r.post("/instances", &body)?;
    let inst: InstanceView = serde_json::from_value(v.clone()).context("unexpected answer from POST /instances")?;
    check_user(a.user.as_deref(), inst.summary.started_by.as_deref());
    if out.json {
        out.json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_instance_line(&inst);
    Ok(ExitCode::SUCCESS)
}

fn print_instance_line(inst: &InstanceView) {
    let s = &inst.summary;
    println!("instance {}  {}@{}  {}", s.id, s.process, s.version, s.status);
    for t in &inst.open_tasks {
        print_open_task(t);
    }
    for i in &inst.incidents {
        println!("  incident {} at {}: {}", i.id, i.node, i.message);
    }
}

fn print_open_task(t: &TaskView) {
    let who = t.assignee.as_deref().map(|a| format!(", claimed by {a}")).unwrap_or_default();
    println!("  open task {}  {}  (lane {}: {}{who})", t.id, t.title, t.lane, t.groups.join(","));
}

pub fn tasks(r: &Remote, out: &Out, a: ListArgs) -> anyhow::Result<ExitCode> {
    if a.groups.len() > 1 {
        bail!("with --server, give one --group at a time");
    }
    let mut query: Vec<(&str, String)> = vec![("limit", "500".into())];
    if let Some(g) = a.groups.first() {
        query.push(("group", g.clone()));
    }
    for (k, v) in [("lane", &a.lane), ("assignee", &a.user), ("process", &a.process)] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    if a.overdue {
        query.push(("overdue", "true".into()));
    }
    let page: TaskPage = r.get("/tasks", &query)?;
    if out.json {
        out.json(&page.items)?;
        return Ok(ExitCode::SUCCESS);
    }
    if page.items.is_empty() {
        println!("no open tasks");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["id", "title", "lane", "groups", "assignee", "due", "instance"]);
    for task in &page.items {
        t.row(vec![
            task.id.clone(),
            task.title.clone(),
            task.lane.clone(),
            task.groups.join(","),
            task.assignee.clone().unwrap_or_else(|| "-".into()),
            output::opt_time(&task.due),
            task.instance.to_string(),
        ]);
    }
    t.print();
    if page.next.is_some() {
        println!("(first 500 shown; narrow with --group, --lane or --process)");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn complete(r: &Remote, out: &Out, a: CompleteArgs) -> anyhow::Result<ExitCode> {
    let id = seg(&a.task);
    let task: TaskView = r.get(&format!("/tasks/{id}"), &[])?;
    let process = r.process(&task.process, Some(task.version))?;
    let vars = r.vars(process.as_ref(), &a.vars, None)?;
    let v = if let Some(code) = &a.error {
        if !vars.is_empty() {
            bail!("--error ends the task without its form; leave out --var");
        }
        r.post(&format!("/tasks/{id}/error"), &json!({ "code": code, "message": a.error_message.unwrap_or_default() }))?
    } else if a.send_back {
        r.post(
            &format!("/tasks/{id}/send-back"),
            &json!({ "comment": a.comment.unwrap_or_default(), "variables": vars }),
        )?
    } else {
        r.post(&format!("/tasks/{id}/complete"), &json!({ "variables": vars, "outcome": a.outcome }))?
    };
    if out.json {
        out.json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    match serde_json::from_value::<CompletionView>(v.clone()) {
        Ok(c) => {
            check_user(Some(&a.user), c.task.completed_by.as_deref());
            let i = &c.instance;
            println!("instance {}  {}@{}  {}", i.id, i.process, i.version, i.status);
            for t in &c.next_tasks {
                print_open_task(t);
            }
        }
        // `/error` answers with the instance.
        Err(_) => match serde_json::from_value::<InstanceView>(v) {
            Ok(inst) => print_instance_line(&inst),
            Err(_) => println!("done"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

pub fn claim(r: &Remote, out: &Out, task: &str, user: &str) -> anyhow::Result<ExitCode> {
    let v = r.post(&format!("/tasks/{}/claim", seg(task)), &json!({}))?;
    let t: TaskView = serde_json::from_value(v.clone()).context("unexpected answer from POST /tasks/{id}/claim")?;
    check_user(Some(user), t.assignee.as_deref());
    if out.json {
        out.json(&v)?;
    } else {
        print_open_task(&t);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn show(r: &Remote, out: &Out, id: u64) -> anyhow::Result<ExitCode> {
    let v = r.call(reqwest::Method::GET, &format!("/instances/{id}"), &[], None)?;
    let history = r.call(reqwest::Method::GET, &format!("/instances/{id}/history"), &[], None)?;
    if out.json {
        let mut both = v;
        both["history"] = history;
        out.json(&both)?;
        return Ok(ExitCode::SUCCESS);
    }
    let inst: InstanceView = serde_json::from_value(v.clone()).context("unexpected answer from GET /instances/{id}")?;
    let s = &inst.summary;
    println!("instance     {}", s.id);
    println!("process      {}", s.process);
    println!("version      {}", s.version);
    println!("status       {}", s.status);
    println!("business key {}", s.business_key.as_deref().unwrap_or("-"));
    let by = s.started_by.as_deref().map(|u| format!(" by {u}")).unwrap_or_default();
    println!("started      {}{by}", output::time(&s.started_at));
    println!("ended        {}", output::opt_time(&s.ended_at));
    println!("\nvariables");
    if inst.variables.is_empty() {
        println!("  (none)");
    }
    let w = inst.variables.keys().map(|k| output::width(k)).max().unwrap_or(0);
    for (k, val) in &inst.variables {
        println!("  {k}{}  {}", " ".repeat(w - output::width(k)), output::value(val));
    }
    if !inst.open_tasks.is_empty() {
        println!("\nopen tasks");
        for t in &inst.open_tasks {
            print_open_task(t);
        }
    }
    if !inst.incidents.is_empty() {
        println!("\nincidents");
        for i in &inst.incidents {
            println!("  {}  at {}  {}", i.id, i.node, i.message);
        }
    }
    println!("\nhistory");
    let items = history["items"].as_array().or(history.as_array()).cloned().unwrap_or_default();
    let mut t = Table::new(&["seq", "time", "node", "event", "user"]).right(&[0]);
    for h in &items {
        t.row(vec![
            h["seq"].to_string(),
            h["at"].as_str().unwrap_or("-").to_string(),
            h["node"].as_str().unwrap_or("-").to_string(),
            h["event"].as_str().or(h["type"].as_str()).unwrap_or("-").to_string(),
            match (h["user"].as_str(), h["proxy"].as_str()) {
                (Some(u), Some(p)) => format!("{p} for {u}"),
                (u, _) => u.unwrap_or("-").to_string(),
            },
        ]);
    }
    for l in t.render().lines() {
        println!("  {l}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn processes(r: &Remote, out: &Out) -> anyhow::Result<ExitCode> {
    let lines: Vec<ProcessLine> = r.get("/processes", &[])?;
    super::processes::print(out, &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ids_are_escaped_as_one_path_segment() {
        assert_eq!(url_escape("expense-approval"), "expense-approval");
        assert_eq!(url_escape("a/b c"), "a%2Fb%20c");
        assert_eq!(url_escape("経費"), "%E7%B5%8C%E8%B2%BB");
    }
}
