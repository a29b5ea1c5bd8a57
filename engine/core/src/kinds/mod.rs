//! The node kinds: one table, [`KINDS`], and one module per kind.
//!
//! Each module holds what makes its kind: the table entry (the kind key, the other
//! keys it takes, a description), its compile step (`NodeDef` → [`NodeKind`]) and
//! its run step (what a token does on arriving), side by side, so a kind is read
//! and changed in one file. The schema check ([`node_keys`]), the compiler
//! ([`which`], [`owners`]), the docs ([`markdown`]) all read the table; the
//! runtime dispatches on the [`NodeKind`] enum, exhaustively, into these modules.
//!
//! Adding a kind: a new module here, its line in [`KINDS`], its field in
//! [`crate::model::NodeDef`] and its variant in [`NodeKind`] (the compiler then
//! points at every `match` that must learn it).

use crate::compile::for_kinds::NodeCx;
use crate::model::NodeDef;
use crate::process::NodeKind;
use std::sync::LazyLock;

pub(crate) mod call;
pub(crate) mod circulate;
pub(crate) mod consensus;
pub(crate) mod end;
pub(crate) mod event_based;
pub(crate) mod exclusive;
pub(crate) mod inclusive;
pub(crate) mod join;
pub(crate) mod message;
pub(crate) mod parallel;
pub mod route;
pub(crate) mod script;
pub(crate) mod service;
pub(crate) mod sub_process;
pub(crate) mod timer;
pub(crate) mod user_task;

/// One node kind, as the table describes it.
pub struct Kind {
    /// The key that makes a node this kind (`user_task:`).
    pub key: &'static str,
    /// What the kind does, one line (docs).
    pub summary: &'static str,
    /// What the kind key's value is, with an example (docs, and the hint when the
    /// key is written with nothing after it).
    pub body: &'static str,
    /// The other keys a node of this kind may carry, besides [`COMMON_KEYS`].
    pub keys: &'static [&'static str],
    /// For a kind without `next`: why, when a designer writes one.
    pub no_next: &'static str,
    /// Whether a node definition is of this kind (its kind key is present).
    pub(crate) present: fn(&NodeDef) -> bool,
    /// Compile a node of this kind; `None` when it has errors (reported).
    pub(crate) compile: fn(&mut NodeCx<'_, '_>) -> Option<NodeKind>,
}

/// Every node kind, in the order the diagnostics and the docs list them.
pub static KINDS: &[Kind] = &[
    user_task::KIND,
    service::KIND,
    script::KIND,
    exclusive::KIND,
    inclusive::KIND,
    parallel::KIND,
    event_based::KIND,
    join::KIND,
    timer::KIND,
    message::KIND,
    sub_process::KIND,
    call::KIND,
    circulate::KIND,
    end::KIND,
];

/// Keys every node may carry, whatever its kind.
pub const COMMON_KEYS: &[&str] = &["name", "description"];

/// The kind of table entry `key`.
pub fn kind(key: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.key == key)
}

/// The kinds a node definition says it is, in table order (one, when it is well formed).
pub fn which(n: &NodeDef) -> Vec<&'static Kind> {
    KINDS.iter().filter(|k| (k.present)(n)).collect()
}

/// The kind keys, in table order.
pub fn kind_keys() -> impl Iterator<Item = &'static str> + Clone {
    KINDS.iter().map(|k| k.key)
}

/// The kinds that take key `key`, in table order.
pub fn owners(key: &str) -> Vec<&'static str> {
    KINDS.iter().filter(|k| k.keys.contains(&key)).map(|k| k.key).collect()
}

/// Every key a node may have: the common keys, the kind keys, then the keys of
/// the kinds in table order (each once). The schema check allows exactly these.
pub fn node_keys() -> &'static [&'static str] {
    static KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        let mut keys: Vec<&'static str> = COMMON_KEYS.to_vec();
        keys.extend(kind_keys());
        for k in KINDS.iter().flat_map(|k| k.keys.iter().copied()) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys
    });
    &KEYS
}

/// The keys besides the kind keys and the common ones (`lane`, `next`, `form` ...).
pub fn attribute_keys() -> impl Iterator<Item = &'static str> {
    node_keys().iter().copied().filter(|k| !COMMON_KEYS.contains(k) && kind(k).is_none())
}

/// The reference of node kinds in Markdown, generated from the table
/// (`docs/node-kinds.md` holds it; a test keeps the file in step).
pub fn markdown() -> String {
    let mut out = String::from(
        "# Node kinds\n\n\
         Generated from the kinds table (`engine/core/src/kinds/mod.rs`); do not edit by hand.\n\
         Run `UPDATE_EXPECT=1 cargo test --workspace --test kinds_doc` after changing the table.\n\n\
         Every node is exactly one kind, named by its kind key. Every node may also carry ",
    );
    out.push_str(&COMMON_KEYS.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and "));
    out.push_str(".\n\n| kind | what it does | its value | other keys |\n| --- | --- | --- | --- |\n");
    for k in KINDS {
        let keys = if k.keys.is_empty() {
            "—".to_string()
        } else {
            k.keys.iter().map(|key| format!("`{key}`")).collect::<Vec<_>>().join(", ")
        };
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", k.key, k.summary, k.body.replace('|', "\\|"), keys));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_keys_are_unique_and_not_attribute_keys() {
        let keys: Vec<&str> = kind_keys().collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(!keys[i + 1..].contains(k), "kind `{k}` is listed twice");
            assert!(!COMMON_KEYS.contains(k));
            for kind in KINDS {
                assert!(!kind.keys.contains(k), "kind `{}` lists the kind key `{k}` as one of its keys", kind.key);
            }
        }
    }

    #[test]
    fn kinds_without_next_say_why() {
        for k in KINDS {
            assert_eq!(k.keys.contains(&"next"), k.no_next.is_empty(), "kind `{}`: `no_next` iff no `next`", k.key);
        }
    }

    /// The serde model and the table name the same node keys: a key in one and not
    /// the other would be refused by one check and accepted by the other.
    #[test]
    fn node_keys_are_the_fields_of_the_model() {
        let serde_value = serde_json::to_value(NodeDef::default()).unwrap();
        let mut model: Vec<&str> = serde_value.as_object().unwrap().keys().map(String::as_str).collect();
        let mut table: Vec<&str> = node_keys().to_vec();
        model.sort_unstable();
        table.sort_unstable();
        assert_eq!(model, table);
        for k in attribute_keys() {
            assert!(NodeDef::default().has(k).is_some(), "NodeDef::has does not know `{k}`");
        }
    }

    /// Each kind's `present` reads its own key: a node with only that key is that kind.
    #[test]
    fn present_reads_the_kind_key() {
        for k in KINDS {
            let yaml = format!("{}: x", k.key);
            // Values of the wrong shape fail to parse; those kinds are checked with a list.
            let n: NodeDef = serde_yaml::from_str(&yaml)
                .or_else(|_| serde_yaml::from_str(&format!("{}: []", k.key)))
                .or_else(|_| serde_yaml::from_str(&format!("{}: {{}}", k.key)))
                .or_else(|_| serde_yaml::from_str(&format!("{}: ~", k.key)))
                .unwrap_or_else(|e| panic!("`{}`: {e}", k.key));
            let found: Vec<&str> = which(&n).iter().map(|k| k.key).collect();
            assert_eq!(found, [k.key]);
        }
    }
}
