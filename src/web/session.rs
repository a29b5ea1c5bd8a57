//! Web sessions: signing in with an API token gives an opaque random session id in
//! a cookie; the server keeps, per session, the token's SHA-256 (never the token)
//! and a CSRF token that every form carries back.
//!
//! Sessions live in memory: a restart signs everyone out. Each expires
//! [`WebConfig::session_ttl`] after sign-in; at most [`WebConfig::max_sessions`]
//! exist at once (signing in past the cap drops the session closest to expiry).

use super::WebConfig;
use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "nagare_session";

#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the API token signed in with; resolved to a user on every request.
    pub token_digest: [u8; 32],
    /// Every form of this session carries it back (`_csrf`).
    pub csrf: String,
    expires: Instant,
}

impl Session {
    /// Does a submitted form token match? Constant time.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    cap: usize,
}

/// 256 random bits, hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub fn new(cfg: &WebConfig) -> Self {
        assert!(cfg.max_sessions > 0, "at least one session");
        Sessions { map: Mutex::new(HashMap::new()), ttl: cfg.session_ttl, cap: cfg.max_sessions }
    }

    /// A new session for the token with this digest; its id.
    pub fn create(&self, token_digest: [u8; 32]) -> String {
        let id = random_hex();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.cap {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= self.cap {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), Session { token_digest, csrf: random_hex(), expires: now + self.ttl });
        debug_assert!(map.len() <= self.cap);
        id
    }

    /// The live session with this id (an expired one is dropped).
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id in the request's cookies, if any.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == COOKIE && v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(id: &str, cfg: &WebConfig) -> String {
    let secure = if cfg.secure_cookie { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", cfg.session_ttl.as_secs())
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(cfg: &WebConfig) -> String {
    let secure = if cfg.secure_cookie { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_capped() {
        let cfg = WebConfig { session_ttl: Duration::from_secs(3600), max_sessions: 2, ..WebConfig::default() };
        let s = Sessions::new(&cfg);
        let a = s.create([1; 32]);
        let b = s.create([2; 32]);
        let c = s.create([3; 32]);
        assert_eq!(s.len(), 2);
        assert!(s.get(&a).is_none(), "the oldest went");
        assert!(s.get(&b).is_some() && s.get(&c).is_some());
        assert!(s.get(&c).unwrap().csrf_ok(&s.get(&c).unwrap().csrf));
        assert!(!s.get(&c).unwrap().csrf_ok(""));
        assert!(!s.get(&c).unwrap().csrf_ok(&s.get(&b).unwrap().csrf));
        let gone = Sessions::new(&WebConfig { session_ttl: Duration::ZERO, ..WebConfig::default() });
        let d = gone.create([4; 32]);
        assert!(gone.get(&d).is_none(), "expired at once");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let id = "ab".repeat(32);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("x=1; {COOKIE}={id}; y=2").parse().unwrap());
        assert_eq!(session_id(&h), Some(id));
        h.insert(header::COOKIE, format!("{COOKIE}=<script>").parse().unwrap());
        assert_eq!(session_id(&h), None);
        let cfg = WebConfig { secure_cookie: true, ..WebConfig::default() };
        let c = set_cookie("x", &cfg);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("; Secure"), "{c}");
    }
}
