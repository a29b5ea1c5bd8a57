//! `nagare proxy`: proxies (代理人) through a running server (`--server`, with
//! the token of the user who sets them; administrators may set anyone's with
//! `--for`). The relations are the server's (`<data>/proxies.json`).

use super::remote::Remote;
use crate::output::{self, Out, Table};
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use clap::{Args, Subcommand};
use nagare::server::proxies::{ProxyList, ProxyView};
use serde_json::json;
use std::process::ExitCode;

#[derive(Args)]
pub struct ProxyArgs {
    #[command(subcommand)]
    pub command: ProxyCommand,
}

#[derive(Subcommand)]
pub enum ProxyCommand {
    /// The relations you are in (administrators: all).
    List,
    /// Name a proxy for a period.
    Set {
        /// Who acts for you.
        proxy: String,
        /// Last day covered (`2026-12-10`: through that day in Japan) or an RFC 3339 time (exclusive).
        #[arg(long)]
        until: String,
        /// First day covered (default: now).
        #[arg(long)]
        from: Option<String>,
        /// Administrators: set the proxy of this user instead of your own.
        #[arg(long = "for")]
        principal: Option<String>,
        /// The proxy may also file requests in your name (代理申請).
        #[arg(long)]
        filing: bool,
    },
    /// End a relation.
    Remove {
        /// Relation id (from `nagare proxy list`).
        id: u64,
    },
}

/// A day in Japan (`first`: its start; else the start of the next day) or an RFC 3339 time.
fn moment(s: &str, first: bool) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| anyhow!("`{s}` is neither a date (2026-12-10) nor an RFC 3339 time"))?;
    let d = if first { d } else { d.succ_opt().context("date out of range")? };
    // Japan keeps +09:00 all year (no daylight saving time).
    let jst = chrono::FixedOffset::east_opt(9 * 3600).context("offset")?;
    let t = jst.from_local_datetime(&d.and_hms_opt(0, 0, 0).context("midnight")?).single();
    Ok(t.context("no such time in Japan")?.with_timezone(&Utc))
}

pub fn run(remote: Option<anyhow::Result<Remote>>, out: &Out, a: ProxyArgs) -> anyhow::Result<ExitCode> {
    let Some(r) = remote else {
        bail!("proxies are kept by the server: pass --server URL --token TOKEN (e.g. --server http://127.0.0.1:8080 --token demo-tanaka)")
    };
    let r = r?;
    match a.command {
        ProxyCommand::List => {
            let v = r.call(reqwest::Method::GET, "/proxies", &[], None)?;
            if out.json {
                out.json(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            let list: ProxyList = serde_json::from_value(v).context("unexpected answer from GET /proxies")?;
            let mut t = Table::new(&["id", "principal", "proxy", "from", "until", "filing"]);
            for p in &list.items {
                t.row(vec![
                    p.id.to_string(),
                    p.principal.clone(),
                    p.proxy.clone(),
                    output::time(&p.from),
                    output::time(&p.until),
                    if p.filing { "yes" } else { "no" }.to_string(),
                ]);
            }
            t.print();
        }
        ProxyCommand::Set { proxy, until, from, principal, filing } => {
            let mut body = json!({ "proxy": proxy, "until": moment(&until, false)?, "filing": filing });
            if let Some(f) = from {
                body["from"] = json!(moment(&f, true)?);
            }
            if let Some(p) = principal {
                body["principal"] = json!(p);
            }
            let v = r.call(reqwest::Method::POST, "/proxies", &[], Some(&body))?;
            if out.json {
                out.json(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            let p: ProxyView = serde_json::from_value(v).context("unexpected answer from POST /proxies")?;
            println!(
                "proxy {}: {} acts for {} from {} until {}{}",
                p.id,
                p.proxy,
                p.principal,
                output::time(&p.from),
                output::time(&p.until),
                if p.filing { " (may file requests)" } else { "" }
            );
        }
        ProxyCommand::Remove { id } => {
            r.call(reqwest::Method::DELETE, &format!("/proxies/{id}"), &[], None)?;
            if out.json {
                out.json(&json!({ "removed": id }))?;
            } else {
                println!("proxy {id} removed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_day_covers_that_whole_day_in_japan() {
        assert_eq!(moment("2026-12-10", false).unwrap().to_rfc3339(), "2026-12-10T15:00:00+00:00");
        assert_eq!(moment("2026-12-10", true).unwrap().to_rfc3339(), "2026-12-09T15:00:00+00:00");
        assert_eq!(moment("2026-12-10T09:00:00+09:00", false).unwrap().to_rfc3339(), "2026-12-10T00:00:00+00:00");
        assert!(moment("next week", false).is_err());
    }
}
