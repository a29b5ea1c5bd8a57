//! Failed connector calls and thrown errors: retries, boundaries that catch, incidents.

use super::*;

impl Run<'_> {
    /// The job of parked `token` failed: retry it, or throw the failure.
    pub(super) fn job_failed(&mut self, token: Token, job: &str, failure: Failure) {
        let p = self.p;
        let attempt = match token.wait {
            Wait::Job { attempt, .. } => attempt,
            _ => 1,
        };
        let token = Moving::from(token);
        let Some((_, node)) = p.node(&token.node) else {
            return self.incident(token, "node vanished".into(), None);
        };
        let NodeKind::Service(spec) = &node.kind else {
            return self.incident(token, format!("node `{}` is not a service task", node.id), None);
        };
        let message = failure.message();
        if matches!(failure, Failure::Retryable { .. }) && attempt < spec.retry.attempts {
            let salt = u64::from(token.id) << 32 | u64::from(attempt);
            let mut wait = spec.retry.backoff(attempt, salt ^ self.inst.id);
            if let Failure::Retryable { retry_after_ms: Some(ms), .. } = failure {
                // The service's own wait wins when longer, up to an hour.
                wait = wait.max(std::time::Duration::from_millis(ms.min(MAX_RETRY_AFTER_MS)));
            }
            // Backoffs are at most 100 years (checked at deploy); the clamp only
            // guards against a clock near year 9999.
            let due = crate::schedule::checked_add(self.now, chrono::Duration::from_std(wait).unwrap_or_default())
                .unwrap_or_else(|_| crate::schedule::latest());
            self.log(
                Some(node.id.clone()),
                None,
                HistoryEvent::JobFailed { job: job.to_string(), attempt, message, retry_at: Some(due) },
            );
            self.out.commands.push(Command::RetryJob { job: job.to_string(), due, attempt: attempt + 1 });
            self.park(token, Wait::Job { job: job.to_string(), attempt: attempt + 1 });
            return;
        }
        self.log(
            Some(node.id.clone()),
            None,
            HistoryEvent::JobFailed { job: job.to_string(), attempt, message: message.clone(), retry_at: None },
        );
        let (code, text, why) = match failure {
            Failure::Retryable { message, .. } => {
                (None, message.clone(), format!("`{}` failed {attempt} times; last error: {message}", spec.connector))
            }
            Failure::Business { code, message } => {
                let why = format!("`{}` failed: [{code}] {message}", spec.connector);
                (Some(code), message, why)
            }
            Failure::Fatal { message } => (None, message.clone(), format!("`{}` failed: {message}", spec.connector)),
        };
        self.throw(token, code.as_deref(), &text, true, why);
    }

    /// The boundary that catches an error with `code` (`None`: a technical failure)
    /// thrown by `token`: its own node's (when `own`), then its forks', innermost first.
    pub(super) fn catcher(&self, node: &str, scope: &[Frame], code: Option<&str>, own: bool) -> Option<Catcher> {
        let p = self.p;
        // An item's node has the boundaries of the whole multi-instance body: they
        // catch through its frame, below.
        let item = scope.last().is_some_and(|f| f.body && f.fork == node);
        if own && !item {
            if let Some((_, n)) = p.node(node) {
                if let Some(i) = n.kind.boundary().iter().position(|b| b.catches(code)) {
                    return Some(Catcher::Own(i));
                }
            }
        }
        for (fi, frame) in scope.iter().enumerate().rev() {
            if let Some((_, fork)) = p.node(&frame.fork) {
                if let Some(i) = fork.kind.boundary().iter().position(|b| b.catches(code)) {
                    return Some(Catcher::Fork { frame: fi, boundary: i });
                }
            }
        }
        None
    }

    /// Throw an error from `token` (no longer parked): the nearest boundary that
    /// catches it takes over, else the token stops with the incident `uncaught`.
    pub(crate) fn throw(&mut self, mut token: Moving, code: Option<&str>, message: &str, own: bool, uncaught: String) {
        let p = self.p;
        let (owner, b, scope) = match self.catcher(&token.node, &token.scope, code, own) {
            None => return self.incident(token, uncaught, None),
            Some(Catcher::Own(i)) => {
                let (_, n) = p.node(&token.node).expect("catcher found the node");
                (n, &n.kind.boundary()[i], token.scope.clone())
            }
            Some(Catcher::Fork { frame, boundary }) => {
                let f = token.scope[frame].clone();
                let (_, n) = p.node(&f.fork).expect("catcher found the fork");
                self.cancel_activation(f.activation);
                if f.body {
                    // The body token waiting for the items goes too (its timers with it).
                    self.drop_body(f.activation);
                }
                (n, &n.kind.boundary()[boundary], token.scope[..frame].to_vec())
            }
        };
        let error = serde_json::json!({ "code": code, "message": message });
        let values = match map_payload(p, &b.set, Some(self.inst), &error, "error", self.now) {
            Ok(v) if !b.set.is_empty() => v,
            Ok(_) => Vars::new(),
            Err(msg) => {
                return self.incident(token, format!("error `{}` caught, but {msg}", code.unwrap_or("-")), None)
            }
        };
        self.enter(&scope);
        self.set_vars(values);
        self.log(
            Some(owner.id.clone()),
            None,
            HistoryEvent::ErrorCaught {
                code: code.map(str::to_string),
                by: owner.id.clone(),
                to: p.nodes[b.next].id.clone(),
            },
        );
        self.disarm(&mut token);
        token.scope = scope;
        self.go(token, b.next);
    }
}
