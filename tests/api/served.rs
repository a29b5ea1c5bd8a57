//! `nagare serve` as a child process, for the tests of the binary itself (signals,
//! flags, files read at start): the command without the settings of the shell the
//! tests run in, its stderr collected in the background (so the server never blocks
//! on a full pipe and a failure can show it), its address read from that log.

use crate::common::root;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What serve logs once it listens, followed by its URL.
const LISTENING: &str = "nagare API and web inbox on ";

/// `nagare --data <data>`, run from the repository root, with no `NAGARE_*` variable
/// and no `RUST_LOG` of the environment: a developer's settings must not change
/// what a test runs.
pub fn nagare(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nagare"));
    c.arg("--data").arg(data).current_dir(root()).env_remove("RUST_LOG");
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("NAGARE_") {
            c.env_remove(var);
        }
    }
    c
}

/// A running `nagare serve`; killed when dropped, so a failing test leaves no server.
pub struct Served {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Served {
    /// Spawns `cmd` (a `nagare … serve …` command, stderr taken over) and waits
    /// until it listens.
    pub async fn start(mut cmd: Command) -> Served {
        let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn nagare serve");
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut served = Served { child: Some(child), log, reader: Some(reader), url: String::new() };
        let text = served.wait_log(LISTENING).await;
        let after = text.split(LISTENING).nth(1).expect("the line just found");
        served.url = after.split_whitespace().next().expect("an address after the words").to_string();
        served
    }

    /// Waits (up to 10 s) until the log holds `needle`, and returns the log so far.
    /// Fails at once, with the log, if serve ends without writing it.
    pub async fn wait_log(&self, needle: &str) -> String {
        for _ in 0..500 {
            let ended = self.reader.as_ref().is_none_or(|r| r.is_finished());
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(!ended, "serve ended without logging `{needle}`:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no `{needle}` in the log within 10 s:\n{}", self.log());
    }

    /// What serve has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` (`HUP`, `TERM`) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// SIGTERM, then the exit: its status and the whole log.
    pub async fn stop(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        let reader = self.reader.take().expect("reader");
        let status = tokio::task::spawn_blocking(move || {
            let status = child.wait().unwrap();
            // The pipe is closed now: the reader ends once it has read the rest.
            reader.join().unwrap();
            status
        })
        .await
        .unwrap();
        (status, self.log())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
