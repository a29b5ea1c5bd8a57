//! `end:` — an end event: ends its token, the whole instance (`end: terminate`),
//! or throws an error (`end: { error: CODE }`).

use crate::compile::for_kinds::*;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "end",
    summary: "Ends its token; `terminate` ends the whole instance; `{ error: CODE }` throws an error to the nearest boundary that catches it.",
    body: "nothing, `terminate`, or `{ error: 書類不備, message: 印鑑なし }`",
    keys: &[],
    no_next: "an end has no `next`",
    present: |n| n.end.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n) = (nc.id, nc.n);
    Some(match &n.end {
        Some(Some(EndDef::Error(e))) => {
            if e.error.trim().is_empty() || e.error == "any" {
                nc.cx.err(
                    "bad-error",
                    nc.cx.loc(&["nodes", id, "end", "error"]),
                    format!("`{}` cannot be thrown as an error code", e.error),
                    "write the code a boundary catches, e.g. `end: { error: 書類不備 }`",
                );
                return None;
            }
            NodeKind::ErrorEnd { code: e.error.clone(), message: e.message.clone() }
        }
        other => NodeKind::End { terminate: matches!(other, Some(Some(EndDef::Kind(EndKind::Terminate)))) },
    })
}

/// A token arrives at a plain end: it ends here (`terminate`: with every other of
/// the instance, or inside a sub-process, of that run of it). The last token of a
/// sub-process run to end completes the run.
pub(crate) fn exec(run: &mut Run<'_>, token: Moving, node: &Node, terminate: bool) {
    let here = Some(node.id.clone());
    run.log(here, None, HistoryEvent::Ended);
    let in_run = token.scope.last().is_some_and(|f| f.body);
    if terminate && !in_run {
        run.ready.clear();
        run.clear_all(TaskStatus::Cancelled);
    } else if in_run {
        if terminate {
            run.cancel_run(&token);
        }
        run.token_ended(token);
    }
}

/// A token arrives at an error end: it throws the error to the nearest catcher.
pub(crate) fn exec_error(run: &mut Run<'_>, token: Moving, node: &Node, code: &str, message: &Option<String>) {
    let here = Some(node.id.clone());
    let message = message.clone().unwrap_or_default();
    run.log(here, None, HistoryEvent::ErrorThrown { code: Some(code.to_string()), message: message.clone() });
    let uncaught = if message.is_empty() {
        format!("error `{code}` was thrown and no boundary catches it")
    } else {
        format!("error `{code}` was thrown and no boundary catches it: {message}")
    };
    run.throw(token, Some(code), &message, false, uncaught);
}
