//! `message:` — an intermediate message catch: the token waits for a message with
//! its name and correlation key.

use crate::compile::for_kinds::*;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "message",
    summary: "Waits for a message by name and correlation key; `set` maps its payload to variables.",
    body: "name the message to wait for: `message: 返信`",
    keys: &["key", "set", "next"],
    no_next: "",
    present: |n| n.message.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n, nm) = (nc.id, nc.n, nc.nm);
    let name = n.message.as_deref().unwrap_or_default();
    let message = compile_message(nc.cx, &["nodes", id, "message"], name, n.key.as_ref(), n.set.as_ref(), nm);
    let next = nc.next();
    Some(NodeKind::MessageCatch { message: message?, next: next? })
}

/// Subscribe to the message with the key evaluated now; the token waits.
pub(crate) fn exec(run: &mut Run<'_>, token: Moving, node: &Node, message: &MessageSpec) {
    match run.message_key(message) {
        Ok(key) => {
            run.subscribe(token.id, &node.id, &message.name, &key);
            run.park(token, Wait::Message { name: message.name.clone(), key });
        }
        Err(msg) => run.incident(token, msg, None),
    }
}
