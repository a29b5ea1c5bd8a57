//! nagare's own connection options, given inside the `--store` string next to
//! libpq's: `postgres://u@h/db?pool_size=16&statement_timeout=30s&job_lease=60s`;
//! and the TLS ones, `sslmode` and `sslrootcert`, which nagare handles itself
//! ([`super::tls`])
//! or `host=/run/postgresql dbname=nagare pool_size=16`. They are taken out
//! before the rest goes to the PostgreSQL driver (which refuses names it does not
//! know), so one string configures everything and `NAGARE_STORE` carries it.

use super::super::StoreError;
use std::time::Duration;

/// Longest statement timeout accepted (a longer one hides a stuck database).
pub const MAX_STATEMENT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Shortest and longest job lease beyond the call's timeout. Shorter than 1 s
/// would let a busy node's job be taken over while it is still starting it.
pub const MIN_JOB_LEASE: Duration = Duration::from_secs(1);
/// Longest job lease (a day).
pub const MAX_JOB_LEASE: Duration = Duration::from_secs(86_400);

/// Whether connections use TLS (`sslmode`; see [`super::tls`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `disable`, `prefer` or none: no TLS, as before (loopback, Unix sockets).
    #[default]
    Off,
    /// `require` or `verify-full`: TLS, the server's certificate and host name checked.
    Verify,
}

/// The options found in a store string, and the string without them.
#[derive(Debug, Default, PartialEq)]
pub struct StoreParams {
    /// The connection string without nagare's own options.
    pub url: String,
    /// `pool_size=`.
    pub pool_size: Option<usize>,
    /// `statement_timeout=`.
    pub statement_timeout: Option<Duration>,
    /// `job_lease=`.
    pub job_lease: Option<Duration>,
    /// `sslmode=`: plain, or TLS with the certificate checked.
    pub tls: TlsMode,
    /// `sslrootcert`: a PEM file of the certificates to trust instead of the Mozilla roots.
    pub root_cert: Option<std::path::PathBuf>,
}

fn bad(name: &str, value: &str, how: &str) -> StoreError {
    StoreError::Io(format!("PostgreSQL option `{name}={value}`: {how}"))
}

/// `30s`, `500ms`, `2m`, or plain seconds.
fn duration(name: &str, value: &str) -> Result<Duration, StoreError> {
    let d = match value.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(value),
    };
    d.map_err(|_| bad(name, value, "use a duration such as `30s`, `500ms` or `2m`"))
}

impl StoreParams {
    /// Take nagare's options out of `store`; libpq's stay in [`StoreParams::url`].
    pub fn parse(store: &str) -> Result<StoreParams, StoreError> {
        let mut p = StoreParams::default();
        let is_url = store.starts_with("postgres://") || store.starts_with("postgresql://");
        let (head, pairs, sep): (&str, Vec<&str>, &str) = if is_url {
            match store.split_once('?') {
                Some((head, query)) => (head, query.split('&').filter(|s| !s.is_empty()).collect(), "&"),
                None => (store, Vec::new(), "&"),
            }
        } else {
            ("", store.split_whitespace().collect(), " ")
        };
        let mut kept = Vec::new();
        for pair in pairs {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name.trim() {
                "pool_size" => {
                    let n =
                        value.trim().parse::<usize>().map_err(|_| bad(name, value, "use a number of connections"))?;
                    if n == 0 || n > super::MAX_POOL_SIZE {
                        return Err(bad(name, value, &format!("use 1 to {} connections", super::MAX_POOL_SIZE)));
                    }
                    p.pool_size = Some(n);
                }
                "statement_timeout" => {
                    let d = duration(name, value.trim())?;
                    if d > MAX_STATEMENT_TIMEOUT {
                        return Err(bad(name, value, "at most 1 hour (0 = no timeout)"));
                    }
                    p.statement_timeout = Some(d);
                }
                "job_lease" => {
                    let d = duration(name, value.trim())?;
                    if !(MIN_JOB_LEASE..=MAX_JOB_LEASE).contains(&d) {
                        return Err(bad(name, value, "use 1s to 24h"));
                    }
                    p.job_lease = Some(d);
                }
                // Taken out: the driver knows only disable, prefer and require, and
                // nagare decides how TLS is done.
                "sslmode" => {
                    p.tls =
                        match value.trim() {
                            "disable" | "prefer" => TlsMode::Off,
                            "require" | "verify-full" => TlsMode::Verify,
                            "verify-ca" => return Err(bad(
                                name,
                                value,
                                "nagare always checks the server's host name too: use `verify-full` (or `require`, \
                                 which checks as much)",
                            )),
                            _ => return Err(bad(name, value, "use disable, prefer, require or verify-full")),
                        }
                }
                "sslrootcert" => {
                    if value.trim().is_empty() {
                        return Err(bad(name, value, "give the path of a PEM file of CA certificates"));
                    }
                    p.root_cert = Some(std::path::PathBuf::from(value.trim()));
                }
                _ => kept.push(pair),
            }
        }
        if p.root_cert.is_some() && p.tls == TlsMode::Off {
            return Err(bad("sslrootcert", "…", "only used with TLS: add `sslmode=verify-full`"));
        }
        p.url = match (is_url, kept.is_empty()) {
            (true, true) => head.to_string(),
            (true, false) => format!("{head}?{}", kept.join(sep)),
            (false, _) => kept.join(sep),
        };
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nagare_options_are_taken_out_of_a_url_and_the_rest_kept() {
        let p = StoreParams::parse(
            "postgres://u@h/db?pool_size=16&sslmode=disable&statement_timeout=30s&job_lease=5&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(p.url, "postgres://u@h/db?connect_timeout=3");
        assert_eq!(p.tls, TlsMode::Off);
        assert_eq!(p.pool_size, Some(16));
        assert_eq!(p.statement_timeout, Some(Duration::from_secs(30)));
        assert_eq!(p.job_lease, Some(Duration::from_secs(5)));
        let p = StoreParams::parse("postgres://u@h/db?job_lease=2m").unwrap();
        assert_eq!((p.url.as_str(), p.job_lease), ("postgres://u@h/db", Some(Duration::from_secs(120))));
    }

    #[test]
    fn nagare_options_are_taken_out_of_a_key_value_string() {
        let p = StoreParams::parse("host=/tmp dbname=n pool_size=2 statement_timeout=500ms").unwrap();
        assert_eq!(p.url, "host=/tmp dbname=n");
        assert_eq!(p.pool_size, Some(2));
        assert_eq!(p.statement_timeout, Some(Duration::from_millis(500)));
        assert_eq!(StoreParams::parse("postgres://h/db").unwrap().url, "postgres://h/db");
    }

    #[test]
    fn sslmode_and_sslrootcert_choose_tls() {
        for (s, tls) in [
            ("postgres://h/db", TlsMode::Off),
            ("postgres://h/db?sslmode=prefer", TlsMode::Off),
            ("postgres://h/db?sslmode=require", TlsMode::Verify),
            ("host=db.example sslmode=verify-full sslrootcert=/etc/ca.pem", TlsMode::Verify),
        ] {
            let p = StoreParams::parse(s).unwrap();
            assert_eq!(p.tls, tls, "{s}");
            assert!(!p.url.contains("ssl"), "taken out of the driver's string: {}", p.url);
        }
        let p = StoreParams::parse("postgres://h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem").unwrap();
        assert_eq!(p.root_cert.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
    }

    #[test]
    fn out_of_range_options_are_refused_with_their_limits() {
        for (s, says) in [
            ("postgres://h/db?pool_size=0", "1 to 256"),
            ("postgres://h/db?pool_size=300", "1 to 256"),
            ("postgres://h/db?pool_size=x", "number of connections"),
            ("postgres://h/db?statement_timeout=2h", "at most 1 hour"),
            ("postgres://h/db?statement_timeout=soon", "duration"),
            ("host=/tmp job_lease=0", "1s to 24h"),
            ("host=/tmp job_lease=2d", "1s to 24h"),
            ("postgres://h/db?sslmode=verify-ca", "use `verify-full`"),
            ("postgres://h/db?sslmode=allow", "use disable, prefer, require or verify-full"),
            ("postgres://h/db?sslrootcert=/ca.pem", "add `sslmode=verify-full`"),
        ] {
            let e = StoreParams::parse(s).unwrap_err().to_string();
            assert!(e.contains(says), "{s}: {e}");
        }
    }
}
