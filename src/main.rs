//! `nagare`: the command-line front end of the workflow engine.
//!
//! Argument definitions and dispatch live here; each command group is a module
//! under [`cli`], printing goes through [`output`], and `nagare bench` is [`cli::bench`].

mod cli;
mod output;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "nagare", version, about = "A BPMN-style workflow engine for back-office paperwork")]
#[command(
    after_help = "Example:\n  nagare validate processes/*.yaml\n  nagare --data ./nagare-data deploy processes/expense-approval.yaml"
)]
struct Cli {
    /// Data directory [default: ./nagare-data; for `emulate`: ./<service>-emulator-data].
    #[arg(long, global = true, env = "NAGARE_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Config file (connectors and their credentials); default ./nagare.yaml if present.
    #[arg(long, global = true, env = "NAGARE_CONFIG")]
    config: Option<PathBuf>,
    /// Go through a running `nagare serve` at this URL instead of opening the data
    /// directory (deploy, start, tasks, claim, complete, show, processes); needs --token.
    #[arg(long, global = true, env = "NAGARE_SERVER", value_name = "URL")]
    server: Option<String>,
    /// API token for --server (the demo users' are demo-<user>, e.g. demo-admin).
    #[arg(long, global = true, env = "NAGARE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Log to stderr (-v info, -vv debug, -vvv trace; RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy processes/ and play one 経費精算 (expense approval) through end to end.
    #[command(after_help = "Example:\n  nagare demo\n  nagare --data /tmp/try demo")]
    Demo,
    /// Check process files without deploying them.
    #[command(after_help = "Example:\n  nagare validate processes/*.yaml")]
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Draw a process file as SVG (lanes, BPMN-like shapes) or as a Mermaid flowchart.
    #[command(
        after_help = "Example:\n  nagare diagram processes/expense-approval.yaml -o expense.svg\n  nagare diagram processes/expense-approval.yaml --format mermaid"
    )]
    Diagram(cli::draw::DiagramArgs),
    /// Export a process file as BPMN 2.0 XML with its diagram (Camunda Modeler, bpmn.io).
    #[command(after_help = "Example:\n  nagare export processes/expense-approval.yaml --format bpmn -o expense.bpmn")]
    Export(cli::export::ExportArgs),
    /// Import a BPMN 2.0 file (Camunda Modeler, bpmn.io, Signavio, ...) as nagare YAML.
    #[command(
        after_help = "Example:\n  nagare import order.bpmn -o processes/order.yaml\n  nagare import approval.bpmn --var approved:bool"
    )]
    Import(cli::import::ImportArgs),
    /// Print the JSON Schema of process files (for editors: completion and checks as you type).
    #[command(after_help = "Example:\n  nagare schema -o nagare-process.schema.json")]
    Schema {
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Deploy process files (a changed file becomes a new version).
    #[command(after_help = "Example:\n  nagare deploy processes/expense-approval.yaml")]
    Deploy {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the deployed processes: id, number of versions, latest version, name.
    #[command(
        after_help = "Example:\n  nagare processes\n  nagare --server http://127.0.0.1:8080 --token demo-admin processes"
    )]
    Processes,
    /// Start an instance of the latest version of a process.
    #[command(
        after_help = "Example:\n  nagare start expense-approval --var 件名=出張 --var 金額=32000 --var 費目=交通費 --var 利用日=2026-11-20 --user sato"
    )]
    Start(cli::instances::StartArgs),
    /// List instances.
    #[command(after_help = "Example:\n  nagare instances --status incident --limit 20")]
    Instances(cli::instances::ListArgs),
    /// Show one instance: state, variables, tokens, tasks, incidents and history.
    #[command(after_help = "Example:\n  nagare show 1")]
    Show {
        /// Instance id.
        instance: u64,
    },
    /// List open tasks.
    #[command(after_help = "Example:\n  nagare tasks --group managers\n  nagare tasks --user tanaka")]
    Tasks(cli::tasks::ListArgs),
    /// Claim an open task for a user.
    #[command(after_help = "Example:\n  nagare claim 1-3 --user tanaka")]
    Claim {
        /// Task id.
        task: String,
        #[arg(long)]
        user: String,
    },
    /// Complete a task with form data, an outcome or a send-back.
    #[command(
        after_help = "Example:\n  nagare complete 1-3 --user tanaka --var 上長コメント=OK\n  nagare complete 1-3 --user tanaka --outcome reject\n  nagare complete 1-3 --user tanaka --send-back --comment \"領収書が不鮮明です\""
    )]
    Complete(cli::tasks::CompleteArgs),
    /// Proxies (代理人) through a running server: list, set for a period, remove.
    #[command(
        after_help = "Example:\n  nagare --server http://127.0.0.1:8080 --token demo-tanaka proxy set kato --until 2026-12-10\n  nagare --server http://127.0.0.1:8080 --token demo-tanaka proxy list\n  nagare --server http://127.0.0.1:8080 --token demo-admin proxy set suzuki --for kimura --until 2026-12-31 --filing"
    )]
    Proxy(cli::proxy::ProxyArgs),
    /// Cancel a running instance.
    #[command(after_help = "Example:\n  nagare cancel 1 --user admin --reason \"duplicate\"")]
    Cancel {
        /// Instance id.
        instance: u64,
        #[arg(long, default_value = "cli")]
        user: String,
        #[arg(long, default_value = "cancelled from the command line")]
        reason: String,
    },
    /// Retry an incident, optionally after correcting variables.
    #[command(after_help = "Example:\n  nagare retry 1 7 --var 金額=30000")]
    Retry(cli::incidents::IncidentTarget),
    /// Send a message: it goes to the waiting token with this name and key, starts a
    /// process that listens for it, or is kept until someone waits (--ttl).
    #[command(
        after_help = "Example:\n  nagare message 署名完了 --key C-100 --var signed_on=2026-11-24\n  nagare message 回答 --key Q-7 --var text=OK --ttl 0s   # refuse if nobody waits"
    )]
    Message(cli::messages::MessageArgs),
    /// List incidents across instances, or retry / resolve one.
    #[command(
        after_help = "Example:\n  nagare incidents --process expense-approval\n  nagare incidents retry 1 7 --var 金額=30000\n  nagare incidents resolve 1 7 --var 番号=R-1   # the step was done by hand: move on"
    )]
    Incidents(cli::incidents::IncidentsArgs),
    /// Show or change a process's settings; pause or resume its timer start.
    #[command(
        after_help = "Example:\n  nagare config contract-approval\n  nagare config contract-approval --set cloudsign=required\n  nagare config master-sync --pause"
    )]
    Config(cli::config::ConfigArgs),
    /// Run the job executor (service calls and timers) on the data directory.
    #[command(
        after_help = "Example:\n  nagare run              # until Ctrl-C\n  nagare run --until-idle # run due jobs, then exit"
    )]
    Run {
        /// Run the jobs that are due until none remain, then exit.
        #[arg(long)]
        until_idle: bool,
    },
    /// Serve the task-list HTTP API (and run service calls) until Ctrl-C or SIGTERM.
    #[command(
        after_help = "Example:\n  nagare serve                                   # 127.0.0.1:8080, config/users.yaml, processes/\n  nagare serve --addr 0.0.0.0:8080 --users /etc/nagare/users.yaml"
    )]
    Serve(cli::serve::ServeArgs),
    /// Make a new API token and the hash line for the users file.
    #[command(after_help = "Example:\n  nagare token")]
    Token,
    /// Serve a local emulator of a SaaS API (kintone, CloudSign, Rakuraku Seisan) or an SMTP sink for development and demos.
    #[command(
        after_help = "Example:\n  nagare emulate kintone --addr 127.0.0.1:8081 --data ./kintone-data\n  nagare emulate cloudsign --webhook http://127.0.0.1:8080/hooks/cloudsign/SECRET   # 127.0.0.1:8082\n  nagare emulate rakuraku                 # 127.0.0.1:8083\n  nagare emulate smtp                     # SMTP on 127.0.0.1:2525, mail listed on http://127.0.0.1:8025/mails"
    )]
    Emulate {
        /// The service to emulate.
        #[arg(value_parser = ["kintone", "cloudsign", "rakuraku", "smtp"])]
        service: String,
        /// Address to listen on (default 127.0.0.1:8081 kintone, :8082 cloudsign, :8083 rakuraku, :2525 smtp).
        #[arg(long)]
        addr: Option<String>,
        /// smtp only: address of the HTTP listing of received mail.
        #[arg(long, default_value = "127.0.0.1:8025")]
        http_addr: String,
        #[command(flatten)]
        cloudsign: cli::emulate::CloudsignArgs,
    },
    /// Measure throughput and latency: the peer benchmark processes, service tasks, HTTP, queries, timers.
    #[command(
        after_help = "Example:\n  nagare bench --case straight --mode mem --n 20000\n  nagare bench --mode durable --concurrency 64\n  nagare bench --case inbox                 # 100,000 open tasks, 32 HTTP clients\n  nagare bench --case service --mode durable\n  nagare bench timers                     # 1M timers on a virtual clock, 10k in one second on the real clock"
    )]
    Bench(cli::bench::BenchArgs),
    /// Run the seeded fault simulation of the engine (random processes, crashes,
    /// failing disk and connectors, hostile values) and check its invariants.
    #[command(
        after_help = "Example:\n  nagare simulate --seeds 10000\n  nagare simulate --start 4711 --seeds 1     # replay one seed"
    )]
    Simulate(cli::simulate::SimulateArgs),
    /// Copy a whole sled store into an empty PostgreSQL database, verified by rows
    /// and a checksum per table.
    #[command(
        after_help = "Example:\n  nagare migrate-store --from sled:./nagare-data --to postgres://nagare@localhost/nagare"
    )]
    MigrateStore(cli::migrate::MigrateStoreArgs),
    /// Move running instances of one process version to another: a plan (dry run),
    /// then its apply.
    #[command(
        after_help = "Example:\n  nagare migrate plan --process expense-approval --from 1 --to 2 --map 領収書確認=証憑確認 \\\n      --set '領収書あり=if 領収書あり { \"あり\" } else { \"なし\" }' --out plan.json\n  nagare migrate apply plan.json"
    )]
    Migrate(cli::migrate_instances::MigrateArgs),
    /// Move finished instances past their process's `retention:` (or `--before`)
    /// into JSON Lines files, keeping a summary; `--dry-run` shows what would move.
    #[command(
        after_help = "Example:\n  nagare archive --dry-run\n  nagare archive --before 2026-01-01 --to /backup/nagare-archive"
    )]
    Archive(cli::archive::ArchiveArgs),
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// Set for commands that serve HTTP: a panic there is contained (one request's `500`,
/// see `nagare::server::panic`) and must not end the process.
static SERVING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What the panic hook does with a panic.
#[derive(Debug, PartialEq, Eq)]
enum PanicAction {
    /// A command whose stdout was closed (`nagare show 1 | head`): end quietly (141,
    /// as a shell reports SIGPIPE).
    QuietExit,
    /// A command: one `error:` line, exit 1.
    Exit,
    /// A server: log it and let the unwinding reach whoever contains it.
    Log,
}

fn panic_action(serving: bool, msg: &str) -> PanicAction {
    if serving {
        PanicAction::Log
    } else if msg.contains("Broken pipe") {
        PanicAction::QuietExit
    } else {
        PanicAction::Exit
    }
}

/// No Rust panic message or backtrace for users: a closed stdout (`nagare show 1 |
/// head`) ends quietly, anything else is one `error:` line. A server logs the panic
/// and goes on: the request (or instance step) that panicked fails alone.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = nagare::server::panic::payload_text(info.payload());
        match panic_action(SERVING.load(std::sync::atomic::Ordering::SeqCst), msg) {
            PanicAction::QuietExit => std::process::exit(141),
            PanicAction::Exit => {
                eprintln!("error: internal error: {msg}");
                std::process::exit(1);
            }
            PanicAction::Log => {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                tracing::error!(panic = %msg, at = %at, "internal error (a bug; please report it); the server goes on");
            }
        }
    }));
}

fn main() -> ExitCode {
    install_panic_hook();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_) | Command::Emulate { .. }) {
        SERVING.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    // A server logs its requests at info unless told otherwise.
    // The simulation and the benchmarks provoke warnings on purpose (incidents, failed
    // writes): quiet unless -v.
    if !matches!(cli.command, Command::Simulate(_) | Command::Bench(_)) || cli.verbose > 0 {
        init_tracing(if matches!(cli.command, Command::Serve(_)) { cli.verbose.max(1) } else { cli.verbose });
    }
    let out = output::Out { json: cli.json };
    // Whether the user chose a data directory (emulators and bench have their own default).
    let data_given = cli.data.is_some();
    let data = cli.data.unwrap_or_else(|| PathBuf::from("./nagare-data"));
    cli::set_config(cli.config);
    // With --server, the commands that have an API client go through it; the
    // others run here as usual (and say so if the server holds the data directory).
    let command = match cli.server.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => match remote(url, cli.token, &out, cli.command) {
            Ok(result) => return finish(result),
            Err(other) => other,
        },
        None => cli.command,
    };
    let result = match command {
        Command::Processes => cli::processes::list(&out, &data),
        Command::Demo => cli::demo::demo(&out, &data),
        Command::Validate { files } => cli::files::validate(&out, &files),
        Command::Deploy { files } => cli::files::deploy(&out, &data, &files),
        Command::Diagram(a) => cli::draw::diagram(&out, a),
        Command::Export(a) => cli::export::export(&out, a),
        Command::Import(a) => cli::import::import(&out, a),
        Command::Schema { output } => cli::draw::schema(&out, output.as_deref()),
        Command::Start(a) => cli::instances::start(&out, &data, a),
        Command::Instances(a) => cli::instances::list(&out, &data, a),
        Command::Show { instance } => cli::instances::show(&out, &data, instance),
        Command::Tasks(a) => cli::tasks::list(&out, &data, a),
        Command::Claim { task, user } => cli::tasks::claim(&out, &data, &task, &user),
        Command::Complete(a) => cli::tasks::complete(&out, &data, a),
        Command::Cancel { instance, user, reason } => cli::instances::cancel(&out, &data, instance, &user, &reason),
        Command::Retry(a) => cli::incidents::retry(&out, &data, a),
        Command::Message(a) => cli::messages::send(&out, &data, a),
        Command::Incidents(a) => cli::incidents::run(&out, &data, a),
        Command::Config(a) => cli::config::run(&out, &data, a),
        Command::Run { until_idle } => cli::run::run(&out, &data, until_idle),
        Command::Proxy(a) => cli::proxy::run(None, &out, a),
        Command::Serve(a) => cli::serve::serve(&data, a),
        Command::Token => cli::serve::token(&out),
        Command::Emulate { service, addr, http_addr, cloudsign } => {
            let dir = if data_given { data.clone() } else { PathBuf::from(format!("{service}-emulator-data")) };
            cli::emulate::emulate(&out, &service, addr.as_deref(), &http_addr, &dir, &cloudsign)
        }
        Command::Bench(a) => cli::bench::run(&out, &data, a, data_given),
        Command::Simulate(a) => cli::simulate::run(&out, a),
        Command::MigrateStore(a) => cli::migrate::run(&out, a),
        Command::Migrate(a) => cli::migrate_instances::run(&out, &data, a),
        Command::Archive(a) => cli::archive::run(&out, &data, a),
    };
    finish(result)
}

/// The commands that go through a running server with `--server`; the others are
/// handed back (once per run, so the size of the `Err` does not matter).
#[allow(clippy::result_large_err)]
fn remote(
    url: &str,
    token: Option<String>,
    out: &output::Out,
    command: Command,
) -> Result<anyhow::Result<ExitCode>, Command> {
    use cli::remote::{self as r, Remote};
    let client = || Remote::new(url, token.clone());
    Ok(match command {
        Command::Deploy { files } => client().and_then(|c| r::deploy(&c, out, &files)),
        Command::Start(a) => client().and_then(|c| r::start(&c, out, a)),
        Command::Tasks(a) => client().and_then(|c| r::tasks(&c, out, a)),
        Command::Claim { task, user } => client().and_then(|c| r::claim(&c, out, &task, &user)),
        Command::Complete(a) => client().and_then(|c| r::complete(&c, out, a)),
        Command::Show { instance } => client().and_then(|c| r::show(&c, out, instance)),
        Command::Processes => client().and_then(|c| r::processes(&c, out)),
        Command::Proxy(a) => cli::proxy::run(Some(client()), out, a),
        other => return Err(other),
    })
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_logs_panics_and_a_command_exits_with_one_line() {
        assert_eq!(panic_action(true, "boom"), PanicAction::Log);
        assert_eq!(panic_action(true, "failed printing to stdout: Broken pipe (os error 32)"), PanicAction::Log);
        assert_eq!(panic_action(false, "boom"), PanicAction::Exit);
        assert_eq!(panic_action(false, "failed printing to stdout: Broken pipe (os error 32)"), PanicAction::QuietExit);
    }
}
