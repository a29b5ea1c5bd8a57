//! `nagare bench`: every benchmark, one file each, and what they share.
//!
//! * [`peers`]: the peers' three processes (`straight`, `gateway`, `usertask`) and
//!   `service` (one in-process service task), in memory or durable (sled or
//!   PostgreSQL, 1–16 nodes), N instances from C threads;
//! * [`worker`]: the service task served by an external worker over HTTP;
//! * [`http`]: start + complete round trips through the HTTP API;
//! * [`inbox`]: the task-list API under a 100,000-task inbox;
//! * [`query`]: an admin's filtered instance list and the incident list at 1,000,000 instances;
//! * [`timers`]: timers on a virtual and on the real clock;
//! * [`multi`]: one multi-instance service task over many items;
//! * [`priority`]: one process floods low-priority jobs, another's job latency;
//! * [`archive`]: completed instances archived, the store's size before and after;
//! * [`measure`]: temp dirs, RSS, percentiles, rounding and the peers-shaped JSON
//!   line ([`measure::PeersLine`]) every benchmark prints.
//!
//! A new benchmark is a file here with a `pub fn run(out, &Ctx, &BenchArgs)`, a
//! [`Case`] variant and one line in [`run`].

pub mod archive;
pub mod http;
pub mod inbox;
pub mod measure;
pub mod multi;
pub mod peers;
pub mod priority;
pub mod query;
pub mod stores;
pub mod timers;
pub mod worker;

use crate::output::Out;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What `--case` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Case {
    /// start → 10 script tasks → end (peers).
    Straight,
    /// XOR and AND gateways (peers).
    Gateway,
    /// start → user task → end; the task is completed (peers).
    Usertask,
    /// start → one service task (an in-process connector that answers at once) → end.
    Service,
    /// straight, gateway, usertask and service.
    All,
    /// The service task served by an external worker over HTTP (activate in
    /// batches with a long poll, complete).
    Worker,
    /// start + complete round trips through the HTTP API (bench-usertask), --concurrency clients.
    Http,
    /// The HTTP task list with a 100,000-task inbox (--n tasks, --concurrency clients).
    Inbox,
    /// An admin's filtered instance list and the incident list at --n instances (default 1,000,000).
    Query,
    /// 1M timers on a virtual clock, 10k due in one second on the real clock.
    Timers,
    /// One multi-instance service task over --n items (default 1000).
    Multi,
    /// One process floods --n low-priority jobs (default 10000): another process's job latency.
    Priority,
    /// --n completed instances archived (default 100000): store size before and after.
    Archive,
}

/// In memory, durable (fsync before each answer), or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Mem,
    Durable,
    All,
}

/// `bench timers` as a positional word (same as `--case timers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    Timers,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `timers`: the timer benchmark (same as --case timers).
    #[arg(value_enum)]
    pub suite: Option<Suite>,
    /// Which benchmark.
    #[arg(long, value_enum, default_value_t = Case::All)]
    pub case: Case,
    /// Timers in the virtual-clock run of `bench timers` (default 1000000; 0 skips it).
    #[arg(long)]
    pub timers: Option<usize>,
    /// Timers due within one second in the real-clock run (default 10000; 0 skips it).
    #[arg(long)]
    pub timers_real: Option<usize>,
    /// With `bench timers`: instead, measure as many instances waiting on a user task (no timers).
    #[arg(long)]
    pub baseline: bool,
    /// In memory, durable, or both (the peers' cases).
    #[arg(long, value_enum, default_value_t = ModeArg::All)]
    pub mode: ModeArg,
    /// Instances per run (default: 20000 in memory, 5000 durable; see each case).
    #[arg(long)]
    pub n: Option<usize>,
    /// Instances in flight, or HTTP clients (default: 1 in memory, 64 durable, 32 clients).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// The durable runs on PostgreSQL (a connection string) instead of sled, each in
    /// a schema of its own that is dropped afterwards.
    #[arg(long, value_name = "postgres://...")]
    pub store: Option<String>,
    /// With --store: engines on the one database (1–16), as several nodes would be;
    /// the threads take turns, a user task is completed on the next node.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub nodes: u16,
    /// Run straight/gateway/usertask from the peers' BPMN files in this directory
    /// (e.g. ../shared/peers/processes/python) through `nagare import`.
    #[arg(long, value_name = "DIR")]
    pub from_bpmn: Option<PathBuf>,
}

/// Where a benchmark puts its temp directories.
pub struct Ctx {
    pub temp_root: PathBuf,
}

impl Ctx {
    pub fn temp_root(&self) -> &Path {
        &self.temp_root
    }
}

/// `nagare bench`: dispatch on the case.
pub fn run(out: &Out, data: &Path, a: BenchArgs, data_given: bool) -> anyhow::Result<ExitCode> {
    let ctx = Ctx { temp_root: if data_given { data.to_path_buf() } else { std::env::temp_dir() } };
    let case = if a.suite == Some(Suite::Timers) { Case::Timers } else { a.case };
    match case {
        Case::Timers => timers::run(out, &ctx, &a),
        Case::Multi => multi::run(out, &ctx, &a),
        Case::Priority => priority::run(out, &a),
        Case::Archive => archive::run(out, &ctx, &a),
        Case::Inbox => inbox::run(out, &ctx, &a),
        Case::Worker => worker::run(out, &ctx, &a),
        Case::Http => http::run(out, &ctx, &a),
        Case::Query => query::run(out, &ctx, &a),
        Case::Straight | Case::Gateway | Case::Usertask | Case::Service | Case::All => peers::run(out, &ctx, case, &a),
    }
}
