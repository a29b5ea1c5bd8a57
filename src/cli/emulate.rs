//! `nagare emulate kintone|cloudsign`: a local kintone or CloudSign for development
//! and demos.
//!
//! Serves [`nagare_connectors::kintone::emulator`] or
//! [`nagare_connectors::cloudsign::emulator`] until Ctrl-C, with its state in its
//! own data directory, and prints what a connector config needs to use it.

use crate::output::Out;
use anyhow::Context;
use nagare_connectors::kintone::emulator::{Emulator, DEMO_PASSWORD, DEMO_TOKEN};
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
    data: &Path,
    cs: &CloudsignArgs,
) -> anyhow::Result<ExitCode> {
    match service {
        "kintone" => {
            anyhow::ensure!(
                cs.webhook.is_none() && cs.token_ttl.is_none(),
                "--webhook and --token-ttl are settings of the cloudsign emulator"
            );
            kintone(out, addr.unwrap_or("127.0.0.1:8081"), data)
        }
        "cloudsign" => cloudsign(out, addr.unwrap_or("127.0.0.1:8082"), data, cs),
        _ => anyhow::bail!("no emulator for `{service}`; available: kintone, cloudsign"),
    }
}

fn cloudsign(out: &Out, addr: &str, data: &Path, cs: &CloudsignArgs) -> anyhow::Result<ExitCode> {
    use nagare_connectors::cloudsign::emulator::{Emulator, DEMO_CLIENTS};
    let emu = Emulator::open(data)?;
    if let Some(ttl) = cs.token_ttl {
        emu.set_token_ttl(ttl.into());
    }
    if let Some(url) = &cs.webhook {
        reqwest::Url::parse(url).with_context(|| format!("--webhook `{url}` is not a URL"))?;
        emu.set_webhook(Some(url.clone()));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let base = format!("http://{}", listener.local_addr()?);
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
        emu.serve(listener, super::run::shutdown_signal()).await.context("the emulator stopped")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn kintone(out: &Out, addr: &str, data: &Path) -> anyhow::Result<ExitCode> {
    let emu = Emulator::open(data)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
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
        emu.serve(listener, super::run::shutdown_signal()).await.context("the emulator stopped")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
