//! `nagare run`: the job executor on the data directory.

use super::{open_with, run_jobs};
use crate::output::Out;
use anyhow::Context;
use nagare_connectors::kintone::trigger::Watcher;
use nagare_engine::Executor;
use std::path::Path;
use std::process::ExitCode;

pub fn run(out: &Out, data: &Path, until_idle: bool) -> anyhow::Result<ExitCode> {
    if until_idle {
        let (engine, connectors) = open_with(data)?;
        poll_once(out, &Watcher::new(engine.clone(), connectors))?;
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
    let (engine, connectors) = open_with(data)?;
    let watcher = Watcher::new(engine.clone(), connectors);
    let exec = Executor::new(engine);
    println!("nagare executor running on {} (Ctrl-C to stop)", data.display());
    let watched = watcher.watched();
    if !watched.is_empty() {
        println!("watching kintone for: {}", watched.join(", "));
    }
    rt.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut w_stop = stopped.clone();
        let watch = async move {
            watcher
                .run(async move {
                    let _ = w_stop.changed().await;
                })
                .await
        };
        let mut e_stop = stopped;
        let execute = exec.run(async move {
            let _ = e_stop.changed().await;
        });
        let signal = async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        };
        tokio::join!(watch, execute, signal);
    });
    println!("nagare executor stopped");
    Ok(ExitCode::SUCCESS)
}

/// Poll every kintone watch once, saying what started.
fn poll_once(out: &Out, watcher: &Watcher) -> anyhow::Result<()> {
    if watcher.watched().is_empty() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    for r in rt.block_on(watcher.poll_all()) {
        match r {
            Ok(r) if !out.json => {
                for id in &r.started {
                    println!("{}: started instance {id} for a kintone record", r.process);
                }
                for (rec, why) in &r.failed {
                    eprintln!("{}: kintone record {rec} could not start an instance: {why}", r.process);
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    Ok(())
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
