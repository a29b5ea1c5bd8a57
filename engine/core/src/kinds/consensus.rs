//! The run side of `approvers:` (合議) on a user task — not a kind of its own.
//!
//! The node runs as a multi-instance user task over its approvers (see
//! `compile/approvers`); the multi-instance runtime asks here for the approvers
//! (checked, each once), whether the rule can still be met, and, once the
//! [`ConsensusSpec::verdict`] is certain, which way the token goes.

use crate::process::{ConsensusSpec, NodeIx, Verdict};
use crate::runtime::step::for_kinds::*;

/// Longest user id an approver list may hold (as for `assignee:`).
const MAX_USER_CHARS: usize = 200;

/// The approvers a `users:` expression gave: user ids (text, trimmed, bounded),
/// each once (a later duplicate is dropped: one person, one decision). An empty
/// list is an error: nobody could approve.
pub(crate) fn approvers(items: Vec<Value>) -> Result<Vec<Value>, String> {
    let out = user_ids(items, "approver")?;
    if out.is_empty() {
        return Err("the list of approvers is empty, so nobody could approve; fix the variable and retry".into());
    }
    Ok(out.into_iter().map(Value::String).collect())
}

/// User ids from a list an expression gave (each `what`, e.g. `approver`): text,
/// trimmed, at most 200 characters, each once (later duplicates dropped).
pub(crate) fn user_ids(items: Vec<Value>, what: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, v) in items.into_iter().enumerate() {
        let user = match v {
            Value::String(s) if !s.trim().is_empty() && s.chars().count() <= MAX_USER_CHARS => s.trim().to_string(),
            Value::String(s) if s.trim().is_empty() => return Err(format!("{what} {i} is an empty user id")),
            Value::String(_) => return Err(format!("{what} {i}: a user id is at most {MAX_USER_CHARS} characters")),
            Value::Null => {
                return Err(format!(
                    "{what} {i} is nobody: an org lookup (`manager_of`, `position_in`...) found no one there; \
                     fill the post in the org (or change the list) and retry"
                ))
            }
            other => return Err(format!("{what} {i} is {other}, not a user id (text)")),
        };
        if !out.contains(&user) {
            out.push(user);
        }
    }
    Ok(out)
}

/// Why the rule can never be met with `total` approvers, if it cannot.
pub(crate) fn unreachable(c: &ConsensusSpec, total: usize) -> Option<String> {
    let needed = c.rule.needed(total as u32) as usize;
    (needed > total).then(|| {
        format!("the rule needs {needed} approvals but the list has only {total} approver(s); fix the list (or the rule) and retry")
    })
}

/// Where a decided consensus goes (`None`: its `next`), and its history line.
pub(crate) fn decide(c: &ConsensusSpec, results: &[Value], total: u32) -> (Option<NodeIx>, HistoryEvent) {
    let tally = c.count(results);
    // Only called once decided; a body ended otherwise (all done) is decided too,
    // since approvals + rejections = total then.
    let verdict = c.verdict(results, total).unwrap_or(Verdict::Rejected);
    let (to, name) = match verdict {
        Verdict::Approved => (None, "approved"),
        Verdict::Rejected => (Some(c.rejected), "rejected"),
    };
    let event = HistoryEvent::ConsensusDecided {
        verdict: name.into(),
        approvals: tally.approvals,
        rejections: tally.rejections,
        needed: c.needed(tally, total),
        total,
    };
    (to, event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ConsensusRule;
    use serde_json::json;

    fn spec(rule: ConsensusRule) -> ConsensusSpec {
        ConsensusSpec { rule, decision: "d".into(), approve: json!(true), comment: None, rejected: 7 }
    }

    /// For every rule, list length and order of decisions: the verdict is given
    /// exactly when the remaining approvers can no longer change it, and always by
    /// the time everyone decided.
    #[test]
    fn the_verdict_comes_exactly_when_it_is_certain() {
        for total in 1u32..=5 {
            let mut rules = vec![ConsensusRule::All, ConsensusRule::Any];
            rules.extend((1..=total).map(ConsensusRule::AtLeast));
            for rule in rules {
                let c = spec(rule);
                let needed = rule.needed(total);
                for pattern in 0u32..(1 << total) {
                    let mut results = vec![Value::Null; total as usize];
                    for i in 0..total as usize {
                        results[i] = json!({ "user": format!("u{i}"), "decision": pattern & (1 << i) != 0 });
                        let t = c.count(&results);
                        let (yes, no) = (t.approvals, t.rejections);
                        let open = total - yes - no;
                        let certain_yes = yes >= needed;
                        let certain_no = yes + open < needed;
                        let expected = if certain_yes {
                            Some(Verdict::Approved)
                        } else if certain_no {
                            Some(Verdict::Rejected)
                        } else {
                            None
                        };
                        assert_eq!(c.verdict(&results, total), expected, "{rule:?} of {total}, {results:?}");
                        if expected.is_some() {
                            break;
                        }
                        assert!(i + 1 < total as usize, "undecided after everyone decided: {rule:?} {results:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn approvers_are_user_ids_each_once() {
        let got = approvers(vec![json!(" tanaka "), json!("suzuki"), json!("tanaka")]).unwrap();
        assert_eq!(got, vec![json!("tanaka"), json!("suzuki")]);
        assert!(approvers(vec![]).unwrap_err().contains("empty"));
        assert!(approvers(vec![json!("a"), json!(1)]).unwrap_err().contains("approver 1 is 1"));
        assert!(approvers(vec![json!("a"), json!(null)]).unwrap_err().contains("approver 1 is nobody: an org lookup"));
        assert!(approvers(vec![json!("x".repeat(201))]).unwrap_err().contains("200 characters"));
        assert!(unreachable(&spec(ConsensusRule::AtLeast(3)), 2).is_some());
        assert!(unreachable(&spec(ConsensusRule::All), 2).is_none());
        let (to, _) = decide(&spec(ConsensusRule::Any), &[json!({ "decision": false })], 1);
        assert_eq!(to, Some(7), "rejected goes to `rejected`");
    }

    /// An approver done without a decision (a skipped task) is out of the count:
    /// `all` needs the others, N of M still needs N, and nobody left passes.
    #[test]
    fn an_approver_without_a_decision_abstains() {
        let yes = json!({ "decision": true });
        let none = json!({ "decision": null });
        let all = spec(ConsensusRule::All);
        assert_eq!(all.verdict(&[none.clone(), yes.clone(), Value::Null], 3), None);
        assert_eq!(all.verdict(&[none.clone(), yes.clone(), yes.clone()], 3), Some(Verdict::Approved));
        let two = spec(ConsensusRule::AtLeast(2));
        assert_eq!(two.verdict(&[none.clone(), yes.clone(), Value::Null], 3), None);
        assert_eq!(two.verdict(&[none.clone(), none.clone(), Value::Null], 3), Some(Verdict::Rejected));
        assert_eq!(spec(ConsensusRule::Any).verdict(&[none.clone(), none], 2), Some(Verdict::Approved));
    }
}
