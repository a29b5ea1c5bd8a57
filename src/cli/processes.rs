//! `nagare processes`: what is deployed, from the data directory or a server.

use super::open_existing;
use crate::output::{Out, Table};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::ExitCode;

/// One deployed process, as `GET /api/v1/processes` lists it (the same JSON from
/// the data directory and from a server).
#[derive(Serialize, Deserialize)]
pub struct ProcessLine {
    pub id: String,
    pub name: String,
    pub latest_version: u32,
    pub versions: Vec<VersionLine>,
}

#[derive(Serialize, Deserialize)]
pub struct VersionLine {
    pub version: u32,
    pub digest: String,
}

/// The processes deployed in the data directory.
pub fn list(out: &Out, data: &Path) -> anyhow::Result<ExitCode> {
    let engine = open_existing(data)?;
    let lines: Vec<ProcessLine> = engine
        .processes()
        .into_iter()
        .filter_map(|all| {
            let latest = all.last()?.clone();
            Some(ProcessLine {
                id: latest.id.clone(),
                name: latest.name.clone(),
                latest_version: latest.version,
                versions: all.iter().map(|p| VersionLine { version: p.version, digest: p.digest.clone() }).collect(),
            })
        })
        .collect();
    print(out, &lines)
}

/// Print the list: a table, or the API's JSON with `--json`.
pub fn print(out: &Out, lines: &[ProcessLine]) -> anyhow::Result<ExitCode> {
    if out.json {
        out.json(lines)?;
        return Ok(ExitCode::SUCCESS);
    }
    if lines.is_empty() {
        println!("no processes deployed (nagare deploy FILE, or nagare serve deploys processes/)");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["id", "versions", "latest", "name"]).right(&[1, 2]);
    for p in lines {
        t.row(vec![p.id.clone(), p.versions.len().to_string(), p.latest_version.to_string(), p.name.clone()]);
    }
    t.print();
    Ok(ExitCode::SUCCESS)
}
