//! The child processes of the crash tests (`crash.rs`, `migrate_crash.rs`,
//! `archive_crash.rs`): the test binary re-executes itself to run one `#[test]`,
//! which does nothing unless the variable naming its directory is set, so no extra
//! binary is needed. The parent kills it with SIGKILL at random moments, starts it
//! again, and checks what the store kept. Each run writes its output to
//! `child-<run>.log` in the directory.
#![cfg(unix)]

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// xorshift64*: enough randomness for kill delays, no dependency.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `NAGARE_CRASH_SEED`, or afresh each run (RandomState is randomly
    /// keyed); the seed is printed, with `test`, so a failing run can be replayed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("NAGARE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        }) | 1;
        eprintln!("{test}: NAGARE_CRASH_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number from `lo` to `hi`, both included.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Runs the test `test` of this binary in a child process with `dir_env` (and
/// `env`) set; its output goes to `child-<run>.log` in `dir`.
pub fn spawn(test: &str, dir_env: &str, dir: &Path, run: usize, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    let log = File::create(dir.join(format!("child-{run}.log"))).expect("child log");
    Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(dir_env, dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("spawn child")
}

/// Lets the child run for `delay`: its exit status if it ended by then, else it is
/// killed with SIGKILL (no chance to flush or clean up) and reaped: `None`.
pub fn kill_after(child: &mut Child, delay: Duration) -> Option<ExitStatus> {
    std::thread::sleep(delay);
    if let Some(status) = child.try_wait().expect("try_wait") {
        return Some(status);
    }
    child.kill().expect("SIGKILL child");
    child.wait().expect("wait child");
    None
}

/// Waits up to `limit` for the child to end: its exit status, or `None` when it
/// was still running (it is then killed and reaped).
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that run `run` ended well and really ran its test: a child test name
/// that matches nothing would also exit 0, having done nothing.
pub fn assert_succeeded(status: ExitStatus, dir: &Path, run: usize) {
    let text = std::fs::read_to_string(dir.join(format!("child-{run}.log"))).unwrap_or_default();
    assert!(status.success(), "child run {run} failed ({status}):\n{}", log(dir, run));
    assert!(text.contains("running 1 test"), "child run {run} ran no test:\n{}", log(dir, run));
}

/// The end of run `run`'s output for a failure message: the panic first (a
/// backtrace would push it out of the tail), then the last 40 lines.
pub fn log(dir: &Path, run: usize) -> String {
    let text = std::fs::read_to_string(dir.join(format!("child-{run}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let panic: Vec<&str> = match lines.iter().rposition(|l| l.contains("panicked at")) {
        Some(i) => lines[i..].iter().take(6).copied().collect(),
        None => Vec::new(),
    };
    let tail = &lines[lines.len().saturating_sub(40)..];
    format!("{}\n…\n{}", panic.join("\n"), tail.join("\n"))
}
