//! Timers and messages: arming, firing, correlation and boundary timers.

use super::*;

impl Run<'_> {
    /// When a timer fires, for a token arriving now.
    pub(crate) fn timer_due(&self, when: &TimerWhen, task_due: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, String> {
        let tz = self.p.time_zone;
        match when {
            TimerWhen::After(span) => span.add_to(self.now, tz).map_err(|m| format!("timer: {m}")),
            TimerWhen::Date(t) => Ok(*t),
            TimerWhen::Due => task_due.ok_or_else(|| "the task has no due date".to_string()),
            TimerWhen::At(e) => match e.eval(&self.env()) {
                Ok(Value::String(s)) => {
                    schedule::parse_instant(&s, tz).map_err(|m| format!("timer `{}`: {m}", e.source.trim()))
                }
                Ok(other) => Err(format!("timer `{}` gave {other}, not a date or datetime", e.source.trim())),
                Err(err) => Err(format!("timer `{}` failed: {err}", e.source.trim())),
            },
        }
    }

    /// Schedule a timer job for `token`; returns its id.
    pub(crate) fn schedule_timer(&mut self, token: u32, node: &str, due: DateTime<Utc>) -> String {
        let seq = self.inst.next_seq();
        let job = format!("{}-{}", self.inst.id, seq);
        self.out.commands.push(Command::ScheduleJob(Job {
            id: job.clone(),
            instance: self.inst.id,
            token,
            node: node.to_string(),
            due,
            attempt: 1,
            kind: JobKind::Timer,
        }));
        self.log(Some(node.to_string()), None, HistoryEvent::TimerSet { job: job.clone(), due });
        job
    }

    /// The correlation key of a message catch, as text.
    pub(crate) fn message_key(&self, spec: &MessageSpec) -> Result<String, String> {
        let Some(e) = &spec.key else { return Ok(String::new()) };
        match e.eval(&self.env()) {
            Ok(Value::String(s)) if !s.is_empty() => Ok(s),
            Ok(Value::Number(n)) => Ok(n.to_string()),
            Ok(Value::Bool(b)) => Ok(b.to_string()),
            Ok(other) => {
                Err(format!("correlation key `{}` gave {other}; a key must be text or a number", e.source.trim()))
            }
            Err(err) => Err(format!("correlation key `{}` failed: {err}", e.source.trim())),
        }
    }

    pub(crate) fn subscribe(&mut self, token: u32, node: &str, name: &str, key: &str) {
        self.out.commands.push(Command::Subscribe {
            token,
            node: node.to_string(),
            name: name.to_string(),
            key: key.to_string(),
        });
        self.log(Some(node.to_string()), None, HistoryEvent::MessageWaiting { name: name.into(), key: key.into() });
    }

    /// Evaluate a task's boundary timers before it opens: (index, due).
    pub(crate) fn boundary_dues(
        &self,
        boundary: &[crate::process::Boundary],
        task_due: Option<DateTime<Utc>>,
    ) -> Result<Vec<(u16, DateTime<Utc>)>, String> {
        let mut out = Vec::new();
        for (i, b) in boundary.iter().enumerate() {
            if let BoundaryTrigger::Timer { when, .. } = &b.trigger {
                out.push((i as u16, self.timer_due(when, task_due)?));
            }
        }
        Ok(out)
    }

    pub(crate) fn arm(&mut self, token: &mut Moving, dues: Vec<(u16, DateTime<Utc>)>) {
        let node = token.node.clone();
        for (index, due) in dues {
            let job = self.schedule_timer(token.id, &node, due);
            token.timers.push(Armed { job, index, due, fired: 0 });
        }
    }

    /// A timer job of token `tok` is due.
    pub(super) fn timer_fired(&mut self, tok: usize, job: &str) {
        let p = self.p;
        let node = self.inst.tokens[tok].node.clone();
        let Some((_, n)) = p.node(&node) else {
            let token = self.inst.tokens.remove(tok);
            return self.incident(token.into(), format!("node `{node}` vanished"), None);
        };
        if matches!(&self.inst.tokens[tok].wait, Wait::Timer { job: j } if j == job) {
            let token = self.inst.tokens.remove(tok);
            self.log(Some(node), None, HistoryEvent::TimerFired { job: job.to_string() });
            let NodeKind::TimerCatch { next, .. } = &n.kind else {
                return self.incident(token.into(), "a timer wait on a node that is not a timer".into(), None);
            };
            return self.go(token.into(), *next);
        }
        let armed_pos = self.inst.tokens[tok].timers.iter().position(|a| a.job == job).expect("found by index");
        let armed = self.inst.tokens[tok].timers[armed_pos].clone();
        self.log(Some(node.clone()), None, HistoryEvent::TimerFired { job: job.to_string() });
        match &n.kind {
            NodeKind::EventBased { branches } => {
                let mut token = self.inst.tokens.remove(tok);
                token.timers.remove(armed_pos);
                self.release_wait(&token);
                token.timers.clear();
                let target = branches[usize::from(armed.index)].1;
                self.log(Some(node), None, HistoryEvent::Routed { to: p.nodes[target].id.clone() });
                self.go(token.into(), target);
            }
            kind => {
                let Some(b) = kind.boundary().get(usize::from(armed.index)) else {
                    let token = self.inst.tokens.remove(tok);
                    return self.incident(token.into(), format!("boundary {} of `{node}` vanished", armed.index), None);
                };
                let BoundaryTrigger::Timer { interrupting, every, times, .. } = &b.trigger else {
                    let token = self.inst.tokens.remove(tok);
                    return self.incident(token.into(), "an error boundary cannot fire as a timer".into(), None);
                };
                if *interrupting {
                    let mut token = self.inst.tokens.remove(tok);
                    token.timers.remove(armed_pos);
                    self.release_wait(&token);
                    token.timers.clear();
                    self.log(Some(node), None, HistoryEvent::Interrupted { to: p.nodes[b.next].id.clone() });
                    return self.go(token.into(), b.next);
                }
                // A reminder: the task stays; a side token runs the boundary's path.
                let fired = armed.fired + 1;
                let again = every.filter(|_| times.is_none_or(|t| fired < t));
                match again {
                    // Missed repeats (downtime) collapse into this one firing. A next
                    // time past year 9999 ends the repeats.
                    Some(every) => match every.next_after(armed.due, self.now, p.time_zone) {
                        Ok(due) => {
                            let new_job = self.schedule_timer(self.inst.tokens[tok].id, &node, due);
                            self.inst.tokens[tok].timers[armed_pos] =
                                Armed { job: new_job, index: armed.index, due, fired };
                        }
                        Err(_) => {
                            self.inst.tokens[tok].timers.remove(armed_pos);
                        }
                    },
                    None => {
                        self.inst.tokens[tok].timers.remove(armed_pos);
                    }
                }
                let scope = self.inst.tokens[tok].scope.clone();
                let side = self.new_token(&node, scope);
                self.go(side, b.next);
            }
        }
    }

    /// Withdraw what a token waits on (task, job, timers, subscriptions, incident),
    /// without moving it.
    pub(super) fn release_wait(&mut self, t: &Token) {
        match &t.wait {
            Wait::Task { task, .. } => self.out.commands.push(Command::CloseTask {
                task: task.clone(),
                status: TaskStatus::Cancelled,
                by: None,
                outcome: None,
            }),
            Wait::Job { job, .. } | Wait::Timer { job } => {
                self.out.commands.push(Command::CancelJob { job: job.clone() })
            }
            Wait::Incident { incident } => {
                let id = *incident;
                self.inst.incidents.retain(|i| i.id != id);
            }
            Wait::Message { .. } | Wait::Events { .. } => {}
            Wait::Scope { activation } => self.end_items(*activation),
        }
        for (name, key) in t.wait.messages() {
            self.out.commands.push(Command::Unsubscribe { token: t.id, name: name.into(), key: key.into() });
        }
        for a in &t.timers {
            self.out.commands.push(Command::CancelJob { job: a.job.clone() });
        }
    }

    /// A message for `token`, which waits for it.
    pub(super) fn message_received(&mut self, token: Token, name: &str, key: &str, payload: Value) {
        let branch = match &token.wait {
            Wait::Events { messages } => messages.iter().find(|m| m.name == name && m.key == key).map(|m| m.branch),
            _ => None,
        };
        self.release_wait(&token);
        let mut token = Moving::from(token);
        self.disarm_quietly(&mut token);
        self.apply_message(token, branch, name, key, payload);
    }

    /// Drop armed timers whose CancelJob was already issued.
    pub(super) fn disarm_quietly(&mut self, token: &mut Moving) {
        token.timers.clear();
    }

    pub(super) fn apply_message(&mut self, token: Moving, branch: Option<u16>, name: &str, key: &str, payload: Value) {
        let p = self.p;
        let Some((_, node)) = p.node(&token.node) else {
            return self.incident(token, "node vanished".into(), None);
        };
        let (spec, next) = match (&node.kind, branch) {
            (NodeKind::MessageCatch { message, next }, _) => (message, *next),
            (NodeKind::EventBased { branches }, Some(b)) => match branches.get(usize::from(b)) {
                Some((EventTrigger::Message(m), next)) => (m, *next),
                _ => return self.incident(token, format!("branch {b} of `{}` is not a message", node.id), None),
            },
            _ => return self.incident(token, format!("node `{}` does not wait for messages", node.id), None),
        };
        match map_payload(p, &spec.set, Some(self.inst), &payload, "payload", self.now) {
            Ok(values) => {
                let names = values.keys().cloned().collect();
                self.enter(&token.scope);
                self.set_vars(values);
                self.log(
                    Some(node.id.clone()),
                    None,
                    HistoryEvent::MessageReceived { name: name.into(), key: key.into(), set: names },
                );
                if let NodeKind::EventBased { .. } = node.kind {
                    self.log(Some(node.id.clone()), None, HistoryEvent::Routed { to: p.nodes[next].id.clone() });
                }
                self.go(token, next);
            }
            Err(msg) => {
                self.incident_with(token, format!("message `{name}`: {msg}"), Some(payload), branch);
            }
        }
    }
}
