//! `nagare run`: the job executor on the data directory.

use super::{open, run_jobs};
use crate::output::Out;
use anyhow::Context;
use nagare_engine::Executor;
use std::path::Path;
use std::process::ExitCode;

pub fn run(out: &Out, data: &Path, until_idle: bool) -> anyhow::Result<ExitCode> {
    let engine = open(data)?;
    if until_idle {
        let n = run_jobs(&engine)?;
        if out.json {
            out.json(&serde_json::json!({ "jobs_run": n }))?;
        } else {
            println!("ran {n} job(s); none is due now");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    let exec = Executor::new(engine);
    println!("nagare executor running on {} (Ctrl-C to stop)", data.display());
    rt.block_on(exec.run(shutdown_signal()));
    println!("nagare executor stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, or SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
