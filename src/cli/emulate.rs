//! `nagare emulate kintone|rakuraku|smtp`: local services for development and demos.
//!
//! Each serves its emulator until Ctrl-C, with its state in its own data
//! directory, and prints what a connector config needs to use it.

use crate::output::Out;
use anyhow::Context;
use nagare_connectors::kintone::emulator::{Emulator, DEMO_PASSWORD, DEMO_TOKEN};
use nagare_connectors::mail::sink::Sink;
use nagare_connectors::rakuraku::emulator as rakuraku;
use std::path::Path;
use std::process::ExitCode;

pub fn emulate(out: &Out, service: &str, addr: Option<&str>, http_addr: &str, data: &Path) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    match service {
        "kintone" => rt.block_on(kintone(out, addr.unwrap_or("127.0.0.1:8081"), data))?,
        "rakuraku" => rt.block_on(rakuraku(out, addr.unwrap_or("127.0.0.1:8082"), data))?,
        "smtp" => rt.block_on(smtp(out, addr.unwrap_or("127.0.0.1:2525"), http_addr, data))?,
        other => anyhow::bail!("no emulator for `{other}`; available: kintone, rakuraku, smtp"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn listen(addr: &str) -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?.to_string();
    Ok((listener, local))
}

async fn kintone(out: &Out, addr: &str, data: &Path) -> anyhow::Result<()> {
    let emu = Emulator::open(data)?;
    let (listener, local) = listen(addr).await?;
    let base = format!("http://{local}");
    if out.json {
        // One line, so a script can read it while the server keeps running.
        println!(
            "{}",
            serde_json::json!({
                "base_url": base, "app": 1, "token": DEMO_TOKEN, "user": "demo", "password": DEMO_PASSWORD,
                "data": data.display().to_string(),
            })
        );
    } else {
        println!("kintone emulator on {base} (data in {}; Ctrl-C to stop)", data.display());
        println!("  app 1 契約台帳 (contract ledger), API token: {DEMO_TOKEN}");
        println!("  password auth: demo / {DEMO_PASSWORD}");
        println!("  connector config (nagare.yaml):");
        println!("    connectors:");
        println!("      kintone: {{ type: kintone, base_url: {base}, app: 1, token: {{ env: KINTONE_TOKEN }} }}");
        println!("  try: curl -H 'X-Cybozu-API-Token: {DEMO_TOKEN}' '{base}/k/v1/record.json?app=1&id=1'");
    }
    emu.serve(listener, super::run::shutdown_signal()).await.context("the emulator stopped")
}

async fn rakuraku(out: &Out, addr: &str, data: &Path) -> anyhow::Result<()> {
    let emu = rakuraku::Emulator::open(data)?;
    let (listener, local) = listen(addr).await?;
    let base = format!("http://{local}");
    let (account, token) = (rakuraku::DEMO_ACCOUNT, rakuraku::DEMO_TOKEN);
    if out.json {
        println!(
            "{}",
            serde_json::json!({ "base_url": base, "account": account, "token": token, "data": data.display().to_string() })
        );
    } else {
        println!("Rakuraku Seisan emulator on {base} (data in {}; Ctrl-C to stop)", data.display());
        println!("  import: POST {base}/{account}/api/v1/csvimport, X-RS-apitoken: {token}");
        println!("  imported rows: {base}/emulator/masters/0 (employees), maintenance: PUT {base}/emulator/settings");
        println!("  connector config (nagare.yaml):");
        println!("    connectors:");
        println!("      rakuraku: {{ type: rakuraku, base_url: {base}, account: {account}, token: {{ env: RAKURAKU_TOKEN }} }}");
    }
    emu.serve(listener, super::run::shutdown_signal()).await.context("the emulator stopped")
}

async fn smtp(out: &Out, addr: &str, http_addr: &str, data: &Path) -> anyhow::Result<()> {
    let sink = Sink::open(data).with_context(|| format!("cannot use {}", data.display()))?;
    let (smtp, smtp_local) = listen(addr).await?;
    let (http, http_local) = listen(http_addr).await?;
    let (host, port) = smtp_local.rsplit_once(':').unwrap_or((&smtp_local, "25"));
    if out.json {
        println!(
            "{}",
            serde_json::json!({ "smtp": smtp_local, "http": format!("http://{http_local}"), "data": data.display().to_string() })
        );
    } else {
        println!("SMTP sink on {smtp_local}, mail stored as .eml in {} (Ctrl-C to stop)", data.display());
        println!("  received mail: curl http://{http_local}/mails");
        println!("  connector config (nagare.yaml):");
        println!("    connectors:");
        println!(
            "      mail: {{ type: smtp, host: {host}, port: {port}, tls: none, from: 'nagare <nagare@example.com>' }}"
        );
    }
    let listing = sink.router();
    let http_task =
        tokio::spawn(
            async move { axum::serve(http, listing).with_graceful_shutdown(super::run::shutdown_signal()).await },
        );
    sink.serve_smtp(smtp, super::run::shutdown_signal()).await.context("the SMTP sink stopped")?;
    http_task.await.context("the listing stopped")?.context("the listing stopped")
}
