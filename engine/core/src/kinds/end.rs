//! `end:` — an end event: ends its token, the whole instance (`end: terminate`),
//! or throws an error (`end: { error: CODE }`).

use crate::compile::for_kinds::*;
use crate::process::*;

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
