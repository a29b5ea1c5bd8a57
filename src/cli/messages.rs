//! `nagare message`: correlate a message by name and key.

use super::{explain, open, run_jobs};
use crate::output::Out;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use nagare_engine::{messages, Correlation, MessageOptions};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct MessageArgs {
    /// Message name, as in the process (`message: 署名完了`).
    name: String,
    /// Correlation key (omit for messages without a key).
    #[arg(long, default_value = "")]
    key: String,
    /// A payload field: name=value; the value is read as JSON when it parses
    /// (numbers, true/false, lists), as text otherwise (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// A JSON object file as the payload (applied before --var).
    #[arg(long, value_name = "FILE")]
    payload_file: Option<PathBuf>,
    /// How long to keep it if nobody waits yet, e.g. 1h or 7d (default 1 day);
    /// 0s refuses it instead.
    #[arg(long)]
    ttl: Option<String>,
    /// Do not run due jobs inline afterwards (leave them to `nagare run`).
    #[arg(long)]
    no_run: bool,
}

fn payload(a: &MessageArgs) -> anyhow::Result<Value> {
    let mut map = Map::new();
    if let Some(f) = &a.payload_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        match serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", f.display()))? {
            Value::Object(o) => map = o,
            _ => bail!("{} must hold a JSON object", f.display()),
        }
    }
    for pair in &a.vars {
        let Some((name, text)) = pair.split_once('=') else {
            bail!("--var `{pair}` must look like name=value");
        };
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
        map.insert(name.trim().to_string(), value);
    }
    Ok(Value::Object(map))
}

/// `--ttl`: a duration text, at most 10 years ([`messages::MAX_MESSAGE_TTL`]).
fn parse_ttl(t: &str) -> anyhow::Result<Duration> {
    let d = humantime::parse_duration(t.trim()).map_err(|e| anyhow!("--ttl `{t}`: {e}; write e.g. 1h or 7d"))?;
    messages::check_ttl(d).map_err(|e| anyhow!("--ttl `{t}`: {e}; write e.g. 1h or 7d"))?;
    Ok(d)
}

pub fn send(out: &Out, data: &Path, a: MessageArgs) -> anyhow::Result<ExitCode> {
    let payload = payload(&a)?;
    let ttl = a.ttl.as_deref().map(parse_ttl).transpose()?;
    let engine = open(data)?;
    let result = engine.correlate(&a.name, &a.key, payload, &MessageOptions { ttl }).map_err(explain)?;
    let ran = if a.no_run { 0 } else { run_jobs(&engine)? };
    if out.json {
        out.json(&result)?;
        return Ok(ExitCode::SUCCESS);
    }
    match &result {
        Correlation::Delivered { instance, node } => println!("delivered to instance {instance} at {node}"),
        Correlation::Started { instance, process } => println!("started instance {instance} of {process}"),
        Correlation::Buffered { message, expires_at } => println!(
            "nobody waits for `{}` with key {:?} yet: kept as message {message} until {}",
            a.name,
            a.key,
            crate::output::time(expires_at)
        ),
    }
    if ran > 0 {
        println!("  ran {ran} job(s)");
    }
    Ok(ExitCode::SUCCESS)
}
