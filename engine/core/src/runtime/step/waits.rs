//! Timers and messages: arming, firing, correlation and boundary timers.

use super::*;
use crate::process::Boundary;

/// Boundary events evaluated for a node about to wait, not armed yet
/// ([`Run::prepare_boundaries`]).
#[derive(Debug, Default)]
pub(crate) struct Armings {
    /// (boundary index, due).
    timers: Vec<(u16, DateTime<Utc>)>,
    messages: Vec<MessageWait>,
}

impl Armings {
    pub(crate) fn is_empty(&self) -> bool {
        self.timers.is_empty() && self.messages.is_empty()
    }
}

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
            priority: self.p.priority,
            process: self.p.id.clone(),
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

    /// Evaluate the boundary timers and message keys of a node about to wait, without
    /// arming anything: a failure (a bad `at:` or key expression) leaves no trace.
    pub(crate) fn prepare_boundaries(
        &self,
        boundary: &[Boundary],
        task_due: Option<DateTime<Utc>>,
    ) -> Result<Armings, String> {
        let mut out = Armings::default();
        for (i, b) in boundary.iter().enumerate() {
            let index = i as u16;
            match &b.trigger {
                BoundaryTrigger::Timer { when, .. } => out.timers.push((index, self.timer_due(when, task_due)?)),
                BoundaryTrigger::Message { message, .. } => {
                    let key =
                        self.message_key(message).map_err(|m| format!("message boundary `{}`: {m}", message.name))?;
                    out.messages.push(MessageWait { branch: index, name: message.name.clone(), key });
                }
                BoundaryTrigger::Error { .. } => {}
            }
        }
        Ok(out)
    }

    /// Arm what [`Run::prepare_boundaries`] evaluated for subscriber `owner` (a token
    /// id, or a fork activation) at `node`: timer jobs scheduled, messages subscribed.
    pub(crate) fn arm_prepared(&mut self, owner: u32, node: &str, armings: Armings) -> (Vec<Armed>, Vec<MessageWait>) {
        let mut timers = Vec::with_capacity(armings.timers.len());
        for (index, due) in armings.timers {
            let job = self.schedule_timer(owner, node, due);
            timers.push(Armed { job, index, due, fired: 0 });
        }
        for m in &armings.messages {
            self.subscribe(owner, node, &m.name, &m.key);
        }
        (timers, armings.messages)
    }

    /// Arm the boundary events of the node `token` is about to wait at: its timers
    /// and its messages, whatever the node's kind (a task, a scope). All or nothing:
    /// an error arms none of them. Kinds that must evaluate before they open
    /// something (a task) call [`Run::prepare_boundaries`] and [`Run::arm_prepared`].
    #[allow(dead_code)] // the entry point for kinds without a task to open first (scopes)
    pub(crate) fn arm_boundaries(
        &mut self,
        token: &mut Moving,
        boundary: &[Boundary],
        task_due: Option<DateTime<Utc>>,
    ) -> Result<(), String> {
        let armings = self.prepare_boundaries(boundary, task_due)?;
        self.arm_token(token, armings);
        Ok(())
    }

    /// [`Run::arm_prepared`] for a token: it keeps what was armed.
    pub(crate) fn arm_token(&mut self, token: &mut Moving, armings: Armings) {
        let node = token.node.clone();
        let (timers, listens) = self.arm_prepared(token.id, &node, armings);
        token.timers.extend(timers);
        token.listens.extend(listens);
    }

    /// Arm the timer branches of an event-based gateway: (branch, due).
    pub(crate) fn arm(&mut self, token: &mut Moving, dues: Vec<(u16, DateTime<Utc>)>) {
        self.arm_token(token, Armings { timers: dues, messages: Vec::new() });
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
                let token = self.withdrawn(token);
                let target = branches[usize::from(armed.index)].1;
                self.log(Some(node), None, HistoryEvent::Routed { to: p.nodes[target].id.clone() });
                self.go(token, target);
            }
            kind => {
                let Some(b) = kind.boundary().get(usize::from(armed.index)) else {
                    let token = self.inst.tokens.remove(tok);
                    return self.incident(token.into(), format!("boundary {} of `{node}` vanished", armed.index), None);
                };
                let BoundaryTrigger::Timer { interrupting, every, times, .. } = &b.trigger else {
                    let token = self.inst.tokens.remove(tok);
                    return self.incident(token.into(), "only a timer boundary can fire as a timer".into(), None);
                };
                if *interrupting {
                    let mut token = self.inst.tokens.remove(tok);
                    token.timers.remove(armed_pos);
                    let token = self.withdrawn(token);
                    self.log(Some(node), None, HistoryEvent::Interrupted { to: p.nodes[b.next].id.clone() });
                    return self.go(token, b.next);
                }
                // A reminder: the task stays; a side token runs the boundary's path.
                let owner = self.inst.tokens[tok].id;
                match self.repeat(owner, &node, &armed, *every, *times) {
                    Some(again) => self.inst.tokens[tok].timers[armed_pos] = again,
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

    /// A non-interrupting boundary timer fired: its next arming, if it repeats.
    /// Missed repeats (downtime) collapse into this one firing; a next time past
    /// year 9999 ends the repeats.
    fn repeat(
        &mut self,
        owner: u32,
        node: &str,
        armed: &Armed,
        every: Option<crate::schedule::Span>,
        times: Option<u32>,
    ) -> Option<Armed> {
        let fired = armed.fired + 1;
        let every = every.filter(|_| times.is_none_or(|t| fired < t))?;
        let due = every.next_after(armed.due, self.now, self.p.time_zone).ok()?;
        let job = self.schedule_timer(owner, node, due);
        Some(Armed { job, index: armed.index, due, fired })
    }

    /// A boundary timer of fork activation `forks[w]` is due: an interrupting one
    /// ends every branch and goes on outside the fork; another starts a side path.
    pub(super) fn fork_timer_fired(&mut self, w: usize, job: &str) {
        let p = self.p;
        let watch = self.inst.forks[w].clone();
        let pos = watch.timers.iter().position(|a| a.job == job).expect("found by index");
        let armed = watch.timers[pos].clone();
        // The job is consumed by this event: it is not withdrawn again below.
        self.inst.forks[w].timers.remove(pos);
        self.log(Some(watch.fork.clone()), None, HistoryEvent::TimerFired { job: job.to_string() });
        let b = p.node(&watch.fork).and_then(|(_, n)| n.kind.boundary().get(usize::from(armed.index)));
        let Some((b, BoundaryTrigger::Timer { interrupting, every, times, .. })) = b.map(|b| (b, &b.trigger)) else {
            // Versions never change, so this is a damaged instance: the timer is dropped.
            tracing::error!(instance = self.inst.id, fork = %watch.fork, job, "fork timer without its boundary; dropped");
            return;
        };
        let to = p.nodes[b.next].id.clone();
        if *interrupting {
            self.log(Some(watch.fork.clone()), None, HistoryEvent::Interrupted { to });
            self.cancel_activation(watch.activation);
            let token = self.new_token(&watch.fork, watch.scope);
            return self.go(token, b.next);
        }
        if let Some(again) = self.repeat(watch.activation, &watch.fork, &armed, *every, *times) {
            self.inst.forks[w].timers.insert(pos, again);
        }
        let side = self.new_token(&watch.fork, watch.scope);
        self.go(side, b.next);
    }

    /// Take a parked token out of waiting: its task closed as cancelled, its job,
    /// timers and subscriptions withdrawn. The caller moves it on.
    pub(super) fn withdrawn(&mut self, token: Token) -> Moving {
        self.release_wait(&token);
        let mut token = Moving::from(token);
        self.disarm_quietly(&mut token);
        token
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
            Wait::Call { job, child: None } => self.out.commands.push(Command::CancelJob { job: job.clone() }),
            Wait::Call { child: Some(child), .. } => self.out.commands.push(Command::CancelChild { child: *child }),
            Wait::Scope { activation } => self.end_items(*activation),
        }
        for (name, key) in t.messages() {
            self.out.commands.push(Command::Unsubscribe { token: t.id, name: name.into(), key: key.into() });
        }
        for a in &t.timers {
            self.out.commands.push(Command::CancelJob { job: a.job.clone() });
        }
    }

    /// A message for a message boundary (index `b`) of parked token `tokens[tok]`:
    /// an interrupting one withdraws the task (or job) and its other boundaries and
    /// moves the token on; another starts a side token, and the task keeps listening.
    pub(super) fn boundary_message(&mut self, tok: usize, b: u16, key: &str, payload: Value) {
        let node = self.inst.tokens[tok].node.clone();
        let boundary = self.p.node(&node).and_then(|(_, n)| n.kind.boundary().get(usize::from(b)));
        let token = match boundary.map(|b| &b.trigger) {
            Some(BoundaryTrigger::Message { interrupting: true, .. }) => {
                let token = self.inst.tokens.remove(tok);
                self.withdrawn(token)
            }
            Some(BoundaryTrigger::Message { interrupting: false, .. }) => {
                let scope = self.inst.tokens[tok].scope.clone();
                self.new_token(&node, scope)
            }
            _ => {
                let token = self.inst.tokens.remove(tok);
                let token = self.withdrawn(token);
                return self.incident(token, format!("boundary {b} of `{node}` is not a message"), None);
            }
        };
        self.apply_boundary_message(token, b, key, payload);
    }

    /// A message for a message boundary (index `b`) of fork activation `forks[w]`:
    /// an interrupting one ends every branch; either way a token goes on outside
    /// the fork.
    pub(super) fn fork_message(&mut self, w: usize, b: u16, key: &str, payload: Value) {
        let watch = self.inst.forks[w].clone();
        let boundary = self.p.node(&watch.fork).and_then(|(_, n)| n.kind.boundary().get(usize::from(b)));
        if boundary.is_some_and(|b| !b.is_side()) {
            self.cancel_activation(watch.activation);
        }
        let token = self.new_token(&watch.fork, watch.scope);
        self.apply_boundary_message(token, b, key, payload);
    }

    /// `token`, at the node that owns message boundary `b`, received its message:
    /// map the payload, then follow the boundary. A mapping that fails stops the
    /// token with an incident that keeps the payload (a retry maps it again).
    pub(super) fn apply_boundary_message(&mut self, token: Moving, b: u16, key: &str, payload: Value) {
        let p = self.p;
        let Some((_, node)) = p.node(&token.node) else {
            return self.incident(token, "node vanished".into(), None);
        };
        let Some((boundary, BoundaryTrigger::Message { message, interrupting })) =
            node.kind.boundary().get(usize::from(b)).map(|x| (x, &x.trigger))
        else {
            return self.incident(token, format!("boundary {b} of `{}` is not a message", node.id), None);
        };
        match map_payload(p, &message.set, Some(self.inst), &payload, "payload", self.now) {
            Ok(values) => {
                let names = values.keys().cloned().collect();
                self.enter(&token.scope);
                self.set_vars(values);
                let here = Some(node.id.clone());
                let name = message.name.clone();
                self.log(here.clone(), None, HistoryEvent::MessageReceived { name, key: key.into(), set: names });
                if *interrupting {
                    self.log(here, None, HistoryEvent::Interrupted { to: p.nodes[boundary.next].id.clone() });
                }
                self.go(token, boundary.next);
            }
            Err(msg) => {
                self.incident_with(token, format!("message `{}`: {msg}", message.name), Some(payload), Some(b));
            }
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

    /// Drop armed timers and subscriptions already withdrawn ([`Run::release_wait`]).
    pub(super) fn disarm_quietly(&mut self, token: &mut Moving) {
        token.timers.clear();
        token.listens.clear();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::CompileOptions;
    use chrono::TimeZone;

    fn load(yaml: &str) -> Process {
        crate::load::load_str("p.yaml", yaml, &CompileOptions::default()).unwrap_or_else(|d| panic!("{d}")).process
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
    }

    fn vars(k: &str) -> Vars {
        [("k".to_string(), Value::String(k.into()))].into_iter().collect()
    }

    const HEAD: &str =
        "id: p\nlanes: { staff: {} }\nvariables:\n  k: { type: string }\nstart: { next: split }\nnodes:\n";

    /// A fork whose branches all join in the step that forked arms and withdraws its
    /// boundaries in that one step: nothing stays armed.
    #[test]
    fn a_fork_that_joins_at_once_keeps_nothing_armed() {
        let p = load(&format!(
            "{HEAD}  split:\n    parallel: [a, b]\n    boundary:\n      - {{ message: stop, key: k, next: done }}\n      - {{ timer: 1d, next: done }}\n  a: {{ script: '1;', next: merge }}\n  b: {{ script: '2;', next: merge }}\n  merge: {{ join: split, next: done }}\n  done: {{ end: }}\n"
        ));
        let (inst, tr) = start(&p, 1, vars("K"), None, None, now()).unwrap();
        assert_eq!(inst.status, Status::Completed);
        assert!(inst.forks.is_empty());
        let subscribed = tr.commands.iter().filter(|c| matches!(c, Command::Subscribe { .. })).count();
        let unsubscribed = tr.commands.iter().filter(|c| matches!(c, Command::Unsubscribe { .. })).count();
        let scheduled = tr.commands.iter().filter(|c| matches!(c, Command::ScheduleJob(_))).count();
        let cancelled = tr.commands.iter().filter(|c| matches!(c, Command::CancelJob { .. })).count();
        assert_eq!((subscribed, unsubscribed, scheduled, cancelled), (1, 1, 1, 1), "{:?}", tr.commands);
    }

    /// Cancelling an instance drops every boundary subscription: a task's and a fork's.
    #[test]
    fn cancel_withdraws_task_and_fork_subscriptions() {
        let p = load(&format!(
            "{HEAD}  split:\n    parallel: [a, b]\n    boundary: [ {{ message: stop, key: k, next: done }} ]\n  a:\n    user_task: A\n    lane: staff\n    next: merge\n    boundary: [ {{ message: ask, key: k, interrupting: false, next: asked }} ]\n  asked: {{ end: }}\n  b: {{ user_task: B, lane: staff, next: merge }}\n  merge: {{ join: split, next: done }}\n  done: {{ end: }}\n"
        ));
        let (mut inst, _) = start(&p, 1, vars("K"), None, None, now()).unwrap();
        let subs: Vec<(u32, String, String)> =
            inst.subscriptions().map(|(t, n, k)| (t, n.to_string(), k.to_string())).collect();
        assert_eq!(subs.len(), 2, "{subs:?}");
        inst.check_invariants(&p).unwrap();
        let tr = step(&p, &mut inst, Event::Cancel { by: "admin".into(), reason: "test".into() }, now()).unwrap();
        for (token, name, key) in subs {
            assert!(
                tr.commands.iter().any(|c| *c == Command::Unsubscribe { token, name: name.clone(), key: key.clone() }),
                "{name} of {token} not withdrawn: {:?}",
                tr.commands
            );
        }
        assert!(inst.forks.is_empty() && inst.tokens.is_empty());
    }

    /// A correlation key that cannot be evaluated stops the token before the task
    /// opens: no task, no timer, no subscription.
    #[test]
    fn a_bad_boundary_key_opens_nothing() {
        let p = load(&format!(
            "{HEAD}  split:\n    user_task: A\n    lane: staff\n    next: done\n    boundary:\n      - {{ timer: 1d, next: done }}\n      - {{ message: stop, key: k, next: done }}\n  done: {{ end: }}\n"
        ));
        let (inst, tr) = start(&p, 1, Vars::new(), None, None, now()).unwrap();
        assert_eq!(inst.status, Status::Incident);
        assert!(inst.incidents[0].message.contains("message boundary `stop`"), "{}", inst.incidents[0].message);
        assert!(tr.commands.is_empty(), "{:?}", tr.commands);
        inst.check_invariants(&p).unwrap();
    }

    /// A message to a fork's boundary is found by the activation number it
    /// subscribed with; a message for a name it does not listen for is refused.
    #[test]
    fn a_fork_message_is_found_by_its_activation() {
        let p = load(&format!(
            "{HEAD}  split:\n    parallel: [a]\n    boundary: [ {{ message: stop, key: k, interrupting: false, next: side }} ]\n  a: {{ user_task: A, lane: staff, next: merge }}\n  merge: {{ join: split, next: done }}\n  side: {{ end: }}\n  done: {{ end: }}\n"
        ));
        let (mut inst, _) = start(&p, 1, vars("K"), None, None, now()).unwrap();
        let activation = inst.forks[0].activation;
        let wrong = Event::Message { token: activation, name: "other".into(), key: "K".into(), payload: Value::Null };
        assert!(matches!(step(&p, &mut inst, wrong, now()), Err(Rejection::NotWaiting { .. })));
        let ok = Event::Message { token: activation, name: "stop".into(), key: "K".into(), payload: Value::Null };
        step(&p, &mut inst, ok.clone(), now()).unwrap();
        step(&p, &mut inst, ok, now()).unwrap();
        inst.check_invariants(&p).unwrap();
        assert_eq!(inst.forks.len(), 1, "a non-interrupting boundary keeps listening");
        assert_eq!(inst.tokens.len(), 1, "the side paths ended; the task waits");
    }
}
