//! `nagare emulate kintone`: a local kintone for development and demos.
//!
//! Serves [`nagare_connectors::kintone::emulator`] until Ctrl-C, with its state in
//! its own data directory, and prints what a connector config needs to use it.

use crate::output::Out;
use anyhow::Context;
use nagare_connectors::kintone::emulator::{Emulator, DEMO_PASSWORD, DEMO_TOKEN};
use std::path::Path;
use std::process::ExitCode;

pub fn emulate(out: &Out, service: &str, addr: &str, data: &Path) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(service == "kintone", "no emulator for `{service}`; available: kintone");
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
