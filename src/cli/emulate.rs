//! `nagare emulate kintone|cloudsign|rakuraku|smtp`: local services for development and demos.
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

/// Settings of the CloudSign emulator.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CloudsignArgs {
    /// cloudsign: where status changes are posted (e.g. http://127.0.0.1:8080/hooks/cloudsign/SECRET).
    #[arg(long)]
    pub webhook: Option<String>,
    /// cloudsign: lifetime of access tokens (default 1h, as CloudSign), e.g. `2m`.
    #[arg(long)]
    pub token_ttl: Option<humantime::Duration>,
}

pub fn emulate(
    out: &Out,
    service: &str,
    addr: Option<&str>,
    http_addr: &str,
    data: &Path,
    cs: &CloudsignArgs,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        service == "cloudsign" || (cs.webhook.is_none() && cs.token_ttl.is_none()),
        "--webhook and --token-ttl are settings of the cloudsign emulator"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    match service {
        "kintone" => rt.block_on(kintone(out, addr.unwrap_or("127.0.0.1:8081"), data))?,
        "cloudsign" => rt.block_on(cloudsign(out, addr.unwrap_or("127.0.0.1:8082"), data, cs))?,
        "rakuraku" => rt.block_on(rakuraku(out, addr.unwrap_or("127.0.0.1:8083"), data))?,
        "smtp" => rt.block_on(smtp(out, addr.unwrap_or("127.0.0.1:2525"), http_addr, data))?,
        other => anyhow::bail!("no emulator for `{other}`; available: kintone, cloudsign, rakuraku, smtp"),
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
        println!(
            "  app 3 契約書台帳 (CloudSign import ledger), API token: {}",
            nagare_connectors::kintone::emulator::DEMO_CONTRACT_TOKEN
        );
        println!("  password auth: demo / {DEMO_PASSWORD}");
        println!("  connector config (nagare.yaml):");
        println!("    connectors:");
        println!("      kintone: {{ type: kintone, base_url: {base}, app: 1, token: {{ env: KINTONE_TOKEN }} }}");
        println!("  try: curl -H 'X-Cybozu-API-Token: {DEMO_TOKEN}' '{base}/k/v1/record.json?app=1&id=1'");
    }
    emu.serve(listener, super::run::shutdown_signal()).await.context("the emulator stopped")
}

async fn cloudsign(out: &Out, addr: &str, data: &Path, cs: &CloudsignArgs) -> anyhow::Result<()> {
    use nagare_connectors::cloudsign::emulator::{Emulator, DEMO_CLIENTS};
    let emu = Emulator::open(data)?;
    if let Some(ttl) = cs.token_ttl {
        emu.set_token_ttl(ttl.into());
    }
    if let Some(url) = &cs.webhook {
        reqwest::Url::parse(url).with_context(|| format!("--webhook `{url}` is not a URL"))?;
        emu.set_webhook(Some(url.clone()));
    }
    let (listener, local) = listen(addr).await?;
    let base = format!("http://{local}");
    let clients: Vec<serde_json::Value> = DEMO_CLIENTS
        .iter()
        .map(|(cid, user, email, _)| serde_json::json!({ "client_id": cid, "user": user, "email": email }))
        .collect();
    if out.json {
        println!(
            "{}",
            serde_json::json!({ "base_url": base, "clients": clients, "webhook": cs.webhook, "data": data.display().to_string() })
        );
    } else {
        println!("CloudSign emulator on {base} (data in {}; Ctrl-C to stop)", data.display());
        for (cid, user, email, _) in DEMO_CLIENTS {
            println!("  client id {cid:<24} → CloudSign user {user} <{email}>");
        }
        match &cs.webhook {
            Some(u) => println!("  webhook: {u}"),
            None => println!("  webhook: none (pass --webhook URL)"),
        }
        println!("  connector config (nagare.yaml):");
        println!("    connectors:");
        println!("      cloudsign:");
        println!("        type: cloudsign");
        println!("        base_url: {base}");
        println!("        users: {{ sato: demo-client-sato, tanaka: demo-client-tanaka }}");
        println!("  play the signer: curl -X POST {base}/emulator/documents/<id>/agree   (or /decline)");
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
