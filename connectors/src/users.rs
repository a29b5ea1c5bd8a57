//! `users.lookup`: the name and mail address of users of the users file, so that a
//! process can mail the user who started it, a lane's group, or anyone by id.
//!
//! The connectors crate does not read the users file (the server owns it and
//! reloads it on SIGHUP); the server hands the contacts over with
//! [`crate::Connectors::set_users`] whenever it (re)loads the file. Without that
//! (an embedding app, the CLI) the directory is empty and every lookup finds
//! nobody: `missing` says who.
//!
//! Input: `user` (an id, or empty/`()` for nobody, e.g. `started_by` of a timer
//! start), `users` (a list of ids) and/or `group` (every member), at least one.
//! Result: `{users: [{id, name, email}], emails: ["佐藤 花子 <sato@example.com>"],
//! missing: [ids unknown or without an address]}`; `emails` is what `mail.send`'s
//! `to:` takes.

use crate::settings::Settings;
use nagare_engine::connector::BoxFuture;
use nagare_engine::{Call, Connector, ConnectorError};
use serde_json::{json, Value};

/// Most ids one lookup takes.
pub const MAX_IDS: usize = 1_000;

/// A user as the users file describes them, for addressing mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

impl Contact {
    /// `Name <address>` (the name quoted by mail.send's encoder), or the address.
    pub fn mailbox(&self) -> Option<String> {
        let email = self.email.as_deref()?;
        Some(match &self.name {
            Some(n) if !n.trim().is_empty() => format!("{} <{email}>", n.replace(['<', '>', '"', '\r', '\n'], " ")),
            _ => email.to_string(),
        })
    }
}

/// The contacts in force (replaced as a whole when the users file is reloaded).
pub type Contacts = Settings<Vec<Contact>>;

/// Who a lookup names: ids and groups, checked.
fn wanted(input: &Value) -> Result<(Vec<String>, Vec<String>), ConnectorError> {
    let fatal = |m: &str| ConnectorError::Fatal(m.to_string());
    let mut ids = Vec::new();
    let mut groups = Vec::new();
    let Some(map) = input.as_object() else {
        return Err(fatal("`with:` must be a map with `user`, `users` or `group`"));
    };
    if !["user", "users", "group"].iter().any(|k| map.contains_key(*k)) {
        return Err(fatal("give `user` (an id), `users` (a list of ids) or `group`"));
    }
    for (k, v) in map {
        match (k.as_str(), v) {
            ("user", Value::Null) => {}
            ("user", Value::String(s)) if s.trim().is_empty() => {}
            ("user", Value::String(s)) => ids.push(s.clone()),
            ("users", Value::Array(a)) => {
                for x in a {
                    ids.push(x.as_str().ok_or_else(|| fatal("`users` must be a list of user ids"))?.to_string());
                }
            }
            ("group", Value::String(g)) => groups.push(g.clone()),
            ("group", Value::Array(a)) => {
                for x in a {
                    groups.push(
                        x.as_str().ok_or_else(|| fatal("`group` must be a group or a list of groups"))?.to_string(),
                    );
                }
            }
            ("user" | "users" | "group", _) => {
                return Err(fatal(&format!("`{k}` must be {}", if k == "users" { "a list of ids" } else { "text" })))
            }
            _ => return Err(fatal(&format!("`{k}` is not an input of users.lookup (user, users, group)"))),
        }
    }
    if ids.len() + groups.len() > MAX_IDS {
        return Err(fatal(&format!("at most {MAX_IDS} users and groups in one lookup")));
    }
    Ok((ids, groups))
}

/// Look users up: the named ids in order, then the groups' members, each once.
pub fn lookup(contacts: &[Contact], input: &Value) -> Result<Value, ConnectorError> {
    let (ids, groups) = wanted(input)?;
    let mut found: Vec<&Contact> = Vec::new();
    let mut missing = Vec::new();
    for id in &ids {
        match contacts.iter().find(|c| &c.id == id) {
            Some(c) if c.email.is_some() => found.push(c),
            _ => missing.push(id.clone()),
        }
    }
    for c in contacts.iter().filter(|c| c.groups.iter().any(|g| groups.contains(g))) {
        if c.email.is_none() {
            missing.push(c.id.clone());
        } else if !found.iter().any(|f| f.id == c.id) {
            found.push(c);
        }
    }
    let users: Vec<Value> = found.iter().map(|c| json!({ "id": c.id, "name": c.name, "email": c.email })).collect();
    let emails: Vec<String> = found.iter().filter_map(|c| c.mailbox()).collect();
    Ok(json!({ "users": users, "emails": emails, "missing": missing }))
}

/// `users.lookup` over the contacts in force.
pub struct Lookup(pub Contacts);

impl Connector for Lookup {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(async move { lookup(&self.0.get(), &call.input) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> Vec<Contact> {
        let c = |id: &str, email: Option<&str>, g: &str| Contact {
            id: id.into(),
            name: Some(format!("{id} さん")),
            email: email.map(str::to_string),
            groups: vec![g.into()],
        };
        vec![
            c("sato", Some("sato@example.com"), "staff"),
            c("kato", None, "staff"),
            c("suzuki", Some("s@example.com"), "acc"),
        ]
    }

    #[test]
    fn a_user_a_group_and_nobody() {
        let r = lookup(&book(), &json!({"user": "sato"})).unwrap();
        assert_eq!(r["emails"], json!(["sato さん <sato@example.com>"]));
        let r = lookup(&book(), &json!({"group": "staff", "user": "suzuki"})).unwrap();
        assert_eq!(r["emails"].as_array().unwrap().len(), 2);
        assert_eq!(r["missing"], json!(["kato"]));
        // A timer start has no starter: nobody, no error.
        let r = lookup(&book(), &json!({"user": null})).unwrap();
        assert_eq!(r["emails"], json!([]));
        assert!(lookup(&book(), &json!({"nobody": 1})).is_err());
        assert!(lookup(&book(), &json!({})).is_err());
    }
}
