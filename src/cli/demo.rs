//! `nagare demo`: the main job of a fresh checkout.
//!
//! Deploys the processes in `processes/` (copies are built in, so it works from
//! any directory), then plays one 経費精算 (expense approval) through as the people
//! in its lanes would: the manager sends it back, the applicant attaches the
//! receipt, manager and department head approve, accounting checks the receipt
//! while a script computes the tax, and the accounting-system step runs through the
//! executor. Everything is stored in the data directory, so `nagare show`,
//! `nagare tasks` and `nagare instances` can look at it afterwards.

use super::instances::{open_tasks, show_with};
use super::{explain, open, run_jobs};
use crate::output::Out;
use anyhow::{anyhow, Context};
use nagare_engine::runtime::{Instance, Outcome, Status};
use nagare_engine::{Engine, StartOptions, Vars};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

/// The processes the demo deploys: file name and built-in copy.
const PROCESSES: &[(&str, &str)] = &[
    ("processes/expense-approval.yaml", include_str!("../../processes/expense-approval.yaml")),
    ("processes/bench-straight.yaml", include_str!("../../processes/bench-straight.yaml")),
    ("processes/bench-gateway.yaml", include_str!("../../processes/bench-gateway.yaml")),
    ("processes/bench-usertask.yaml", include_str!("../../processes/bench-usertask.yaml")),
];

fn vars(pairs: &[(&str, serde_json::Value)]) -> Vars {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// Complete the single open task at `node` as `user`, narrating it.
fn act(
    engine: &Engine,
    inst: &Instance,
    node: &str,
    user: &str,
    data: Vars,
    outcome: Outcome,
) -> anyhow::Result<Instance> {
    let task = open_tasks(engine, inst)
        .into_iter()
        .find(|t| t.node == node)
        .ok_or_else(|| anyhow!("expected an open task at `{node}` in instance {}", inst.id))?;
    let what = match &outcome {
        Outcome::Next => "completes".to_string(),
        Outcome::SendBack { comment } => format!("sends back (\"{comment}\")"),
        Outcome::Named(n) => format!("chooses `{n}` on"),
    };
    println!("  {user:<8} [{}] {what} task {} 「{}」", task.lane, task.id, task.title);
    let inst = engine.complete(&task.id, user, data, outcome).map_err(explain)?;
    run_jobs(engine)?;
    engine.instance(inst.id).map_err(explain)
}

pub fn demo(out: &Out, data: &Path) -> anyhow::Result<ExitCode> {
    let engine = open(data)?;
    println!("nagare demo — data directory {}", data.display());
    for (file, builtin) in PROCESSES {
        // The demo's own files; a missing or unreadable one falls back to the copy built in.
        let text = super::files::read_process_file(std::path::Path::new(file))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| builtin.to_string());
        let d = engine.deploy(file, &text).map_err(explain).with_context(|| format!("deploying {file}"))?;
        println!("  {} {} version {}", if d.created { "deployed " } else { "unchanged" }, d.id, d.version);
    }

    let start = vars(&[
        ("件名", json!("大阪出張 新幹線往復")),
        ("内容", json!("顧客訪問（株式会社ながれ）")),
        ("費目", json!("交通費")),
        ("金額", json!(55_000)),
        ("利用日", json!("2026-11-20")),
    ]);
    let inst = engine
        .start("expense-approval", start, StartOptions { by: Some("sato".into()), ..Default::default() })
        .map_err(explain)?;
    println!("\nsato starts 経費精算 instance {} (55,000円, 交通費)", inst.id);
    let inst = act(&engine, &inst, "申請", "sato", Vars::new(), Outcome::Next)?;
    let inst = act(
        &engine,
        &inst,
        "上長承認",
        "tanaka",
        Vars::new(),
        Outcome::SendBack { comment: "領収書を添付してください".into() },
    )?;
    let inst =
        act(&engine, &inst, "申請", "sato", vars(&[("添付ファイル", json!(["receipt-osaka.pdf"]))]), Outcome::Next)?;
    let inst =
        act(&engine, &inst, "上長承認", "tanaka", vars(&[("上長コメント", json!("確認しました"))]), Outcome::Next)?;
    let inst = act(&engine, &inst, "部長承認", "yamada", Vars::new(), Outcome::Next)?;
    let inst = act(&engine, &inst, "領収書確認", "suzuki", vars(&[("領収書確認済", json!(true))]), Outcome::Next)?;
    if inst.status != Status::Completed {
        return Err(anyhow!("the demo instance ended as {}, expected completed", inst.status.as_str()));
    }
    println!("\ninstance {} completed. Its record:\n", inst.id);
    show_with(out, &engine, inst.id)?;
    println!(
        "\nNext: `nagare show {id}`, `nagare instances`, `nagare bench`, or start your own:\n  \
         nagare start expense-approval --user sato --var 件名=備品購入 --var 費目=消耗品費 --var 金額=3200 --var 利用日=2026-11-21",
        id = inst.id
    );
    Ok(ExitCode::SUCCESS)
}
