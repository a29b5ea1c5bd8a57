//! Who is calling: users, groups and API tokens from a YAML file, checked on every
//! request but `/health` and `/ready`.
//!
//! ```yaml
//! users:
//!   sato:
//!     name: 佐藤 花子            # optional display name
//!     groups: [staff]           # lanes name groups; a lane without `groups:` is its own group
//!     tokens: [sha256:9f86d0…]  # SHA-256 of each token, from `nagare token`
//!   admin:
//!     admin: true               # may deploy, cancel, assign and see everything
//!     tokens: [sha256:…]
//!   pdf-worker:
//!     worker: true              # may activate, complete and fail jobs of external connectors
//!     tokens: [sha256:…]
//! ```
//!
//! Only hashes are stored, so the file is not a secret in itself. Tokens are 256-bit
//! random strings, so a plain SHA-256 (not a slow password hash) is the right tool:
//! nobody can guess their way to a preimage. Every stored hash is compared in
//! constant time against the presented one.

use super::error::ApiError;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use indexmap::IndexMap;
use nagare_engine::runtime::{Instance, Task};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Prefix of the stored form of a token.
pub const HASH_PREFIX: &str = "sha256:";
/// Prefix of tokens made by `nagare token`, so they are recognisable in a leak scan.
pub const TOKEN_PREFIX: &str = "nagare_";

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read the users file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: IndexMap<String, UserDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDef {
    #[serde(default)]
    name: Option<String>,
    /// Mail address for notifications and reports (`users.lookup`).
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    worker: bool,
    #[serde(default)]
    tokens: Vec<String>,
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's key in the users file; this is the name history records.
    pub id: String,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub admin: bool,
    /// Users this one is the proxy (代理人) of right now, filled per request from
    /// the proxy book ([`super::proxies`]): their assigned and offered tasks are
    /// this user's to work, in their name.
    pub acting_for: Vec<String>,
}

impl Caller {
    /// A member of `group`: one of the user's groups, or the `user:<id>` group a
    /// task offered to candidates lists for them (or for a user they act for).
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
            || group.strip_prefix("user:").is_some_and(|u| u == self.id || self.acting_for.iter().any(|p| p == u))
    }

    /// The groups whose open tasks make up the user's inbox: their own, and the
    /// `user:` groups of candidate tasks offered to them or to whom they act for.
    pub fn inbox_groups(&self) -> Vec<String> {
        let own = std::iter::once(&self.id).chain(&self.acting_for);
        self.groups.iter().cloned().chain(own.map(|u| nagare_engine::org::candidate_group(u))).collect()
    }

    /// May this user work (claim, complete, send back) the task? Members of one of
    /// its groups, whoever it is assigned to (or their proxy), and administrators.
    pub fn may_work(&self, t: &Task) -> bool {
        self.admin
            || nagare_engine::may_work(t, &self.id, &self.groups)
            || t.groups.iter().any(|g| self.in_group(g))
            || t.assignee.as_deref() == Some(&self.id)
            || t.assignee.as_ref().is_some_and(|a| self.acting_for.contains(a))
    }

    /// The user in whose name this caller works task `t` as their proxy, when the
    /// caller may not work it in their own right.
    pub fn principal_for(&self, t: &Task) -> Option<&str> {
        let own = |g: &String| self.groups.contains(g) || *g == nagare_engine::org::candidate_group(&self.id);
        let in_own_right =
            self.admin || t.assignee.as_deref() == Some(&self.id) || (t.assignee.is_none() && t.groups.iter().any(own));
        if in_own_right {
            return None;
        }
        self.acting_for
            .iter()
            .find(|p| match &t.assignee {
                Some(a) => a == *p,
                None => t.groups.contains(&nagare_engine::org::candidate_group(p)),
            })
            .map(String::as_str)
    }

    /// May this user see the task? Those who may work it, and whoever completed it.
    pub fn may_see_task(&self, t: &Task) -> bool {
        self.may_work(t) || t.completed_by.as_deref() == Some(&self.id)
    }

    /// May this user see the instance? Administrators, users who started it or acted
    /// on it, and users with one of its open tasks in their inbox (`open_tasks`).
    pub fn may_see_instance(&self, i: &Instance, open_tasks: &[Task]) -> bool {
        self.admin
            || i.started_by.as_deref() == Some(&self.id)
            || i.participants.contains(&self.id)
            || open_tasks.iter().any(|t| self.may_work(t))
    }

    /// Whether the caller may start `p` by hand: its `start: groups:` (if any) name
    /// one of the caller's groups, or the caller is an administrator.
    pub fn may_start(&self, p: &nagare_engine::process::Process) -> bool {
        self.admin || p.start_groups.is_empty() || p.start_groups.iter().any(|g| self.groups.contains(g))
    }

    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("only administrators may {what}; `{}` is not one", self.id)))
        }
    }
}

/// The users file, loaded: token hashes → users.
#[derive(Debug, Default)]
pub struct Users {
    by_hash: Vec<([u8; 32], Arc<Caller>)>,
    users: IndexMap<String, Arc<Caller>>,
    /// Users with `worker: true`: they serve external connectors (`/api/v1/jobs`).
    workers: std::collections::HashSet<String>,
    /// `email:` of the users that have one.
    emails: std::collections::HashMap<String, String>,
}

/// Longest mail address accepted in the users file (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// A plain `local@domain` address: one `@`, no spaces, brackets or line breaks.
fn plain_address(s: &str) -> bool {
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"".contains(c);
    s.chars().count() <= MAX_EMAIL_CHARS
        && s.split('@').count() == 2
        && s.split('@').all(|p| !p.is_empty())
        && !s.chars().any(bad)
}

/// SHA-256 of a token, as stored in the users file (`sha256:<hex>`).
pub fn hash_line(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{HASH_PREFIX}{hex}")
}

/// SHA-256 of a token, as bytes.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token (256 bits) and its hash line.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("{TOKEN_PREFIX}{hex}");
    let hash = hash_line(&token);
    Ok((token, hash))
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let hex = s.trim().strip_prefix(HASH_PREFIX)?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| UsersError::Read { path: path.display().to_string(), source })?;
        Users::from_yaml(&path.display().to_string(), &text)
    }

    /// Parse a users file; `file` names it in error messages.
    pub fn from_yaml(file: &str, text: &str) -> Result<Users, UsersError> {
        let invalid = |message: String| UsersError::Invalid { path: file.to_string(), message };
        let parsed: UsersFile = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut users = Users::default();
        for (id, def) in parsed.users {
            if id.trim().is_empty() || id.chars().count() > 100 {
                return Err(invalid(format!("user name `{id}` must be 1 to 100 characters")));
            }
            let caller = Arc::new(Caller {
                id: id.clone(),
                name: def.name,
                groups: def.groups,
                admin: def.admin,
                acting_for: Vec::new(),
            });
            for t in &def.tokens {
                let hash = parse_hash(t).ok_or_else(|| {
                    invalid(format!(
                        "user `{id}`: token `{t}` is not a hash line; store `sha256:<64 hex digits>` as printed by \
                         `nagare token`, never the token itself"
                    ))
                })?;
                if let Some((_, other)) = users.by_hash.iter().find(|(h, _)| *h == hash) {
                    return Err(invalid(format!(
                        "users `{}` and `{id}` share a token hash; give each its own",
                        other.id
                    )));
                }
                users.by_hash.push((hash, caller.clone()));
            }
            if def.worker {
                users.workers.insert(id.clone());
            }
            if let Some(email) = def.email {
                if !plain_address(&email) {
                    return Err(invalid(format!(
                        "user `{id}`: `email: {email}` is not a plain address like `sato@example.com` (at most {MAX_EMAIL_CHARS} characters)"
                    )));
                }
                users.emails.insert(id.clone(), email);
            }
            users.users.insert(id, caller);
        }
        Ok(users)
    }

    /// A users set from code (embedding apps, tests): `(user, token)` pairs.
    pub fn from_callers(list: impl IntoIterator<Item = (Caller, Vec<String>)>) -> Users {
        let mut users = Users::default();
        for (caller, tokens) in list {
            let caller = Arc::new(caller);
            for t in tokens {
                let hash = parse_hash(&hash_line(&t)).expect("hash_line makes a valid hash");
                users.by_hash.push((hash, caller.clone()));
            }
            users.users.insert(caller.id.clone(), caller);
        }
        users
    }

    /// The user a token belongs to. Compares against every stored hash, in constant
    /// time each, so timing tells nothing about which hash came close.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Caller>> {
        self.authenticate_digest(&token_digest(token))
    }

    /// The user whose token has this SHA-256 ([`token_digest`]): the web inbox keeps
    /// the digest in a session, never the token, and asks again on every request so
    /// that a token revoked by a reload of the users file ends its sessions too.
    pub fn authenticate_digest(&self, presented: &[u8; 32]) -> Option<Arc<Caller>> {
        let mut found = None;
        for (hash, caller) in &self.by_hash {
            if bool::from(hash.ct_eq(presented)) {
                found = Some(caller.clone());
            }
        }
        found
    }

    /// Let user `id` act as a job worker (what `worker: true` says in the file).
    pub fn allow_worker(&mut self, id: &str) {
        self.workers.insert(id.to_string());
    }

    /// May `caller` activate and report jobs of external connectors? Workers and
    /// administrators.
    pub fn may_serve_jobs(&self, caller: &Caller) -> bool {
        caller.admin || self.workers.contains(&caller.id)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Caller>> {
        self.users.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Caller>> {
        self.users.values()
    }

    /// Set the mail address of user `id` (embedding apps, tests).
    pub fn set_email(&mut self, id: &str, email: &str) {
        self.emails.insert(id.to_string(), email.to_string());
    }

    /// Every user's name, address and groups, for `users.lookup` and notifications.
    pub fn contacts(&self) -> Vec<nagare_connectors::users::Contact> {
        self.users
            .values()
            .map(|u| nagare_connectors::users::Contact {
                id: u.id.clone(),
                name: u.name.clone(),
                email: self.emails.get(&u.id).cloned(),
                groups: u.groups.clone(),
            })
            .collect()
    }

    /// Every group some user is in.
    pub fn groups(&self) -> std::collections::BTreeSet<&str> {
        self.users.values().flat_map(|u| u.groups.iter().map(String::as_str)).collect()
    }
}

/// The users the server answers to now. `nagare serve` replaces them when the
/// users file changes (SIGHUP), without a restart: a request in flight keeps the
/// caller it authenticated, the next one sees the new file.
#[derive(Debug)]
pub struct UserDirectory {
    current: std::sync::RwLock<Arc<Users>>,
    /// Who is whose proxy, and when ([`super::proxies`]).
    pub proxies: super::proxies::ProxyBook,
    /// The org file the server reads (and the admin API writes), if any.
    pub org_file: std::sync::Mutex<Option<std::path::PathBuf>>,
}

impl UserDirectory {
    pub fn new(users: Users) -> Self {
        UserDirectory {
            current: std::sync::RwLock::new(Arc::new(users)),
            proxies: super::proxies::ProxyBook::in_memory(),
            org_file: std::sync::Mutex::new(None),
        }
    }

    /// The users as they are now (cheap: one `Arc` clone).
    pub fn current(&self) -> Arc<Users> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Put a new set of users in place, all at once.
    pub fn replace(&self, users: Users) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
    }
}

/// Paths that need no token: health and readiness, the webhooks (which carry
/// their own secret), and the web inbox (`/` and `/web/…`, which signs in with a
/// session cookie of its own). Everything else, known route or not, needs one.
pub fn is_public(path: &str) -> bool {
    path == "/health" || path == "/ready" || path.starts_with("/hooks/") || crate::web::is_web_path(path)
}

/// Middleware, in front of routing: a valid `Authorization: Bearer <token>` or 401,
/// on every path but the [public](is_public) ones. Being in front, it answers before
/// the router can say 404 or 405, so strangers learn nothing about the routes.
pub async fn require_token(
    State(users): State<Arc<UserDirectory>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if is_public(req.uri().path()) {
        return Ok(next.run(req).await);
    }
    let header = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("this endpoint needs `Authorization: Bearer <token>`; `nagare token` makes one")
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
    let caller =
        users.current().authenticate(token).ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
    let caller = users.proxies.with_principals(caller);
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// Extractor: the caller that [`require_token`] authenticated.
pub struct Auth(pub Arc<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Caller>>()
            .cloned()
            .map(Auth)
            .ok_or_else(|| ApiError::unauthorized("this endpoint needs `Authorization: Bearer <token>`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_lines_and_lookup() {
        // sha256("foo")
        let foo = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
        assert_eq!(hash_line("foo"), foo);
        let file = format!(
            "users:\n  sato: {{ name: 佐藤, groups: [staff], tokens: [\"{foo}\"] }}\n  boss: {{ admin: true }}\n"
        );
        let users = Users::from_yaml("users.yaml", &file).unwrap();
        let sato = users.authenticate("foo").expect("known token");
        assert_eq!((sato.id.as_str(), sato.groups.as_slice()), ("sato", &["staff".to_string()][..]));
        assert!(users.authenticate("fo").is_none());
        assert!(users.authenticate("").is_none());
        assert!(users.get("boss").unwrap().admin);
        assert!(!users.may_serve_jobs(&sato) && users.may_serve_jobs(users.get("boss").unwrap()));
        let bot = Users::from_yaml("u.yaml", "users:\n  bot: { worker: true }\n").unwrap();
        assert!(bot.may_serve_jobs(bot.get("bot").unwrap()));
    }

    #[test]
    fn new_tokens_are_random_and_verify() {
        let (a, ha) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(hash_line(&a), ha);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let plain = "users:\n  sato: { tokens: [demo-token] }\n";
        let e = Users::from_yaml("u.yaml", plain).unwrap_err().to_string();
        assert!(e.contains("never the token itself"), "{e}");
        let typo = "users:\n  sato: { grups: [staff] }\n";
        let e = Users::from_yaml("u.yaml", typo).unwrap_err().to_string();
        assert!(e.contains("u.yaml") && e.contains("grups"), "{e}");
        let h = hash_line("x");
        let shared = format!("users:\n  a: {{ tokens: [\"{h}\"] }}\n  b: {{ tokens: [\"{h}\"] }}\n");
        let e = Users::from_yaml("u.yaml", &shared).unwrap_err().to_string();
        assert!(e.contains("share a token"), "{e}");
    }

    #[test]
    fn emails_are_plain_addresses_and_reach_the_contacts() {
        let ok = "users:\n  sato: { name: 佐藤, email: sato@example.com, groups: [staff] }\n  kato: {}\n";
        let users = Users::from_yaml("u.yaml", ok).unwrap();
        let c = users.contacts();
        assert_eq!(c[0].mailbox().as_deref(), Some("佐藤 <sato@example.com>"));
        assert_eq!(c[1].email, None);
        for bad in ["sato", "a@b@c", "佐藤 <s@example.com>", "s@example.com\r\nBcc: x@y"] {
            let text = format!("users:\n  sato: {{ email: {:?} }}\n", bad);
            let e = Users::from_yaml("u.yaml", &text).unwrap_err().to_string();
            assert!(e.contains("not a plain address"), "{bad}: {e}");
        }
    }
}
