//! A compiled, runnable process: nodes by index, expressions compiled, types resolved.

use crate::expr::Expr;
use crate::model::{CatchUp, FieldMode};
use crate::schedule::{Schedule, Span};
use crate::types::VarType;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Index of a node in [`Process::nodes`].
pub type NodeIx = usize;

#[derive(Debug, Clone, Serialize)]
pub struct Lane {
    pub name: String,
    pub groups: Vec<String>,
    /// Task events announced for this lane's tasks (`notify:`), none by default.
    pub notify: Option<Notify>,
}

/// A task event a lane may announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    Open,
    Overdue,
    SendBack,
}

impl NotifyOn {
    pub const ALL: &[(&str, NotifyOn)] =
        &[("open", NotifyOn::Open), ("overdue", NotifyOn::Overdue), ("send_back", NotifyOn::SendBack)];

    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, n)| *n == self).map(|(s, _)| *s).expect("every event is listed")
    }
}

/// A lane's `notify:`, compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notify {
    pub on: Vec<NotifyOn>,
    /// The delivering connector instance (`mail`).
    pub via: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VarSpec {
    #[serde(flatten)]
    pub ty: VarType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Masked for everyone but the lanes whose forms show it ([`crate::sensitive`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

impl VarSpec {
    pub fn check(&self, v: &Value) -> Result<(), String> {
        self.ty.check(v, self.max_length).map_err(|e| match v {
            // A refused sensitive value is not quoted back (into an incident, say).
            Value::String(s) if self.sensitive && !s.is_empty() => e.replace(s.as_str(), crate::sensitive::MASK),
            _ => e,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FormField {
    pub var: String,
    pub mode: FieldMode,
}

#[derive(Debug, Clone)]
pub struct UserTaskSpec {
    pub title: String,
    pub form: Vec<FormField>,
    pub due: Option<Expr>,
    /// Who the task is given to when it opens (a user id); `None`: the lane's groups.
    pub assignee: Option<Expr>,
    pub send_back: Option<NodeIx>,
    /// Named outcomes besides the default `next`, e.g. `reject: rejected`.
    pub outcomes: Vec<(String, NodeIx)>,
    pub next: NodeIx,
    pub boundary: Vec<Boundary>,
    /// Checks on the completed form (besides `send_back`).
    pub rules: Vec<Rule>,
    /// `candidates:` and `skip:` (org-based routing, [`crate::kinds::route`]).
    pub route: crate::kinds::route::Route,
    /// The task's priority in the inbox; `None`: [`crate::priority::DEFAULT`].
    pub priority: Option<crate::priority::Priority>,
    /// `approvers:`: a consensus over the node's items (one task per approver).
    pub consensus: Option<Box<ConsensusSpec>>,
}

/// A compiled `approvers:` (合議): the node is multi-instance over the approvers
/// (its [`MultiSpec`] is generated), each item's output is `{user, decision,
/// comment, at}`, and [`ConsensusSpec::verdict`] ends it as soon as it is decided.
#[derive(Debug, Clone)]
pub struct ConsensusSpec {
    pub rule: ConsensusRule,
    /// The declared variable each approver decides with (local to their task).
    pub decision: String,
    /// The value of `decision` that approves.
    pub approve: serde_json::Value,
    /// The declared variable of each approver's comment (local to their task).
    pub comment: Option<String>,
    /// Where the token goes when the rule can no longer be met.
    pub rejected: NodeIx,
}

/// How many of the approvers must approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsensusRule {
    All,
    Any,
    AtLeast(u32),
}

/// How a consensus ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approved,
    Rejected,
}

impl ConsensusRule {
    /// Approvals needed out of `total` approvers.
    pub fn needed(self, total: u32) -> u32 {
        match self {
            ConsensusRule::All => total,
            ConsensusRule::Any => 1,
            ConsensusRule::AtLeast(n) => n,
        }
    }

    /// `all`, `any` or the number, as written.
    pub fn label(self) -> String {
        match self {
            ConsensusRule::All => "all".into(),
            ConsensusRule::Any => "any".into(),
            ConsensusRule::AtLeast(n) => n.to_string(),
        }
    }
}

/// What the approvers said so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub approvals: u32,
    pub rejections: u32,
    /// Done without a decision (`decision` left `null`: their task was skipped,
    /// e.g. an approver who is the applicant): out of the count.
    pub abstentions: u32,
}

impl ConsensusSpec {
    /// The tally of the outputs so far (`null`: that approver has not finished).
    pub fn count(&self, results: &[serde_json::Value]) -> Tally {
        let mut t = Tally::default();
        for r in results.iter().filter(|r| !r.is_null()) {
            match r.get("decision") {
                None | Some(serde_json::Value::Null) => t.abstentions += 1,
                Some(d) if *d == self.approve => t.approvals += 1,
                Some(_) => t.rejections += 1,
            }
        }
        t
    }

    /// Approvals needed of `total` approvers, given the abstentions so far: the
    /// rule applies to those who decide.
    pub fn needed(&self, tally: Tally, total: u32) -> u32 {
        self.rule.needed(total.saturating_sub(tally.abstentions))
    }

    /// The verdict once it is certain: approved as soon as enough approved,
    /// rejected as soon as too many rejected for the rule ever to be met. When
    /// every approver abstained, the step passes (as a skipped step would).
    pub fn verdict(&self, results: &[serde_json::Value], total: u32) -> Option<Verdict> {
        let t = self.count(results);
        let deciding = total.saturating_sub(t.abstentions);
        let needed = self.needed(t, total);
        let open = deciding.saturating_sub(t.approvals + t.rejections);
        if deciding == 0 || t.approvals >= needed {
            Some(Verdict::Approved)
        } else if t.approvals + open < needed {
            Some(Verdict::Rejected)
        } else {
            None
        }
    }
}

/// A compiled `circulate:` (回覧): read-only tasks for `to`, the token moves on at once.
#[derive(Debug, Clone)]
pub struct CirculateSpec {
    /// The title of the read tasks.
    pub title: String,
    /// The readers: an expression giving a list of user ids.
    pub to: Expr,
    /// Variables the readers see (all read-only).
    pub form: Vec<FormField>,
    pub next: NodeIx,
}

/// A form rule: refuse the start or completion with `message` when `when` holds.
#[derive(Debug, Clone)]
pub struct Rule {
    pub when: Expr,
    pub field: Option<String>,
    pub message: String,
}

/// When a timer fires, relative to the moment a token arms it.
#[derive(Debug, Clone)]
pub enum TimerWhen {
    /// After a fixed length of time.
    After(Span),
    /// At a fixed instant.
    Date(DateTime<Utc>),
    /// At the instant (or date, midnight in the process zone) an expression gives.
    At(Expr),
    /// At the due date of the user task it is attached to.
    Due,
}

/// An event attached to a task or a fork.
#[derive(Debug, Clone)]
pub struct Boundary {
    pub trigger: BoundaryTrigger,
    pub next: NodeIx,
    /// Errors: variables set from `error` before moving on.
    pub set: Vec<(String, Expr)>,
}

#[derive(Debug, Clone)]
pub enum BoundaryTrigger {
    Timer {
        when: TimerWhen,
        /// Interrupting timers end the task; others start a side path beside it.
        interrupting: bool,
        /// Repeat after this long (non-interrupting only).
        every: Option<Span>,
        /// How many times in all, with `every`; `None` is unbounded.
        times: Option<u32>,
    },
    /// `code` None catches every error (`error: any`).
    Error { code: Option<String> },
    /// A message the task (or fork) listens for while it runs.
    Message {
        message: MessageSpec,
        /// Interrupting messages end the task; others start a side path beside it.
        interrupting: bool,
    },
}

impl Boundary {
    /// Whether firing leaves the task (or fork) running: a non-interrupting timer or
    /// message, whose path runs beside it and ends on its own.
    pub fn is_side(&self) -> bool {
        matches!(
            self.trigger,
            BoundaryTrigger::Timer { interrupting: false, .. } | BoundaryTrigger::Message { interrupting: false, .. }
        )
    }

    /// The message this boundary listens for, if it is a message boundary.
    pub fn message(&self) -> Option<&MessageSpec> {
        match &self.trigger {
            BoundaryTrigger::Message { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether this boundary catches an error with `code` (`None`: a technical failure).
    pub fn catches(&self, code: Option<&str>) -> bool {
        match &self.trigger {
            BoundaryTrigger::Error { code: None } => true,
            BoundaryTrigger::Error { code: Some(c) } => code == Some(c.as_str()),
            BoundaryTrigger::Timer { .. } | BoundaryTrigger::Message { .. } => false,
        }
    }
}

/// A message a token waits for: its name, the correlation key expression and how the
/// payload becomes variables.
#[derive(Debug, Clone)]
pub struct MessageSpec {
    pub name: String,
    pub key: Option<Expr>,
    /// Explicit mapping with `payload`; empty: payload fields named like declared
    /// variables are copied.
    pub set: Vec<(String, Expr)>,
}

/// One way out of an event-based gateway.
#[derive(Debug, Clone)]
pub enum EventTrigger {
    Message(MessageSpec),
    Timer(TimerWhen),
}

/// How instances of a process start besides by hand.
#[derive(Debug, Clone)]
pub enum StartTrigger {
    None,
    Timer { schedule: Schedule, catch_up: CatchUp },
    Message { name: String, set: Vec<(String, Expr)> },
}

/// A connector input: an expression, or a literal written in YAML.
#[derive(Debug, Clone)]
pub enum Input {
    Expr(Expr),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 3, min_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// Wait before attempt `attempt + 1`: exponential, capped, with jitter from `salt`
    /// (deterministic, so the same history replays the same way).
    pub fn backoff(&self, attempt: u32, salt: u64) -> Duration {
        let base = self.min_backoff.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
        let cap = (self.max_backoff.as_millis() as u64).max(base);
        let d = exp.min(cap);
        // +-20% jitter, kept inside the bounds the designer wrote (`2s..5m` never
        // waits less than 2s or more than 5m).
        let spread = d / 5;
        let jitter = if spread == 0 { 0 } else { splitmix(salt) % (2 * spread + 1) };
        Duration::from_millis((d - spread + jitter).clamp(base, cap))
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub connector: String,
    pub with: Vec<(String, Input)>,
    pub set: Vec<(String, Expr)>,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub next: NodeIx,
    pub boundary: Vec<Boundary>,
    /// The call's executor priority; `None`: the process's.
    pub priority: Option<crate::priority::Priority>,
}

/// A call activity: start an instance of another deployed process and wait for it.
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// The called process's id.
    pub process: String,
    /// Pinned version; `None`: the latest when the call starts.
    pub version: Option<u32>,
    /// The called instance's business key (`key:`); `None`: the caller's.
    pub key: Option<Expr>,
    /// Called instance's variable := expression over this instance's variables.
    pub inputs: Vec<(String, Expr)>,
    /// This instance's variable := expression over the called instance's final
    /// variables.
    pub outputs: Vec<CallOut>,
    pub next: NodeIx,
    /// Error boundaries catch the called instance's uncaught error ends; timers too.
    pub boundary: Vec<Boundary>,
}

/// One `out:` entry: the expression and the called instance's variables it may read.
#[derive(Debug, Clone)]
pub struct CallOut {
    pub var: String,
    pub expr: Expr,
    pub reads: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Start {
        next: NodeIx,
        trigger: StartTrigger,
    },
    End {
        terminate: bool,
    },
    /// An error end event: throws `code` to the nearest boundary that catches it.
    ErrorEnd {
        code: String,
        message: Option<String>,
    },
    UserTask(UserTaskSpec),
    Service(ServiceSpec),
    Script {
        script: Expr,
        next: NodeIx,
    },
    Exclusive {
        branches: Vec<(Expr, NodeIx)>,
        default: Option<NodeIx>,
    },
    /// Every branch whose condition holds (the default when none does); its join
    /// waits for exactly the branches taken.
    Inclusive {
        branches: Vec<(Expr, NodeIx)>,
        default: Option<NodeIx>,
        boundary: Vec<Boundary>,
    },
    /// `boundary`: an error thrown inside the fork and not caught closer, or an
    /// interrupting timer or message, ends all its branches and continues there; a
    /// non-interrupting timer or message starts a side path beside the branches.
    Parallel {
        branches: Vec<NodeIx>,
        boundary: Vec<Boundary>,
    },
    /// The first trigger to happen wins; the others are withdrawn.
    EventBased {
        branches: Vec<(EventTrigger, NodeIx)>,
    },
    Join {
        fork: NodeIx,
        next: NodeIx,
    },
    TimerCatch {
        when: TimerWhen,
        next: NodeIx,
    },
    MessageCatch {
        message: MessageSpec,
        next: NodeIx,
    },
    Call(CallSpec),
    /// An embedded sub-process: a scope whose own start is `start`.
    SubProcess(SubProcessSpec),
    /// A circulation: read tasks handed out, the token goes on at once.
    Circulate(CirculateSpec),
}

/// A compiled `sub_process:`.
#[derive(Debug, Clone)]
pub struct SubProcessSpec {
    /// Its own start node (`<id>/start`), inside it.
    pub start: NodeIx,
    pub next: NodeIx,
    pub boundary: Vec<Boundary>,
    /// The local variables declared on it (their specs are in [`Process::local_vars`]).
    pub locals: Vec<String>,
    /// Local := expression over the outside, when a run starts.
    pub ins: Vec<(String, Expr)>,
    /// Outside variable := expression over the inside, when a run ends.
    pub outs: Vec<(String, Expr)>,
}

impl NodeKind {
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::Start { .. } => "start",
            NodeKind::End { .. } | NodeKind::ErrorEnd { .. } => "end",
            NodeKind::UserTask(_) => "user_task",
            NodeKind::Service(_) => "service",
            NodeKind::Script { .. } => "script",
            NodeKind::Exclusive { .. } => "exclusive",
            NodeKind::Inclusive { .. } => "inclusive",
            NodeKind::Parallel { .. } => "parallel",
            NodeKind::EventBased { .. } => "event_based",
            NodeKind::Join { .. } => "join",
            NodeKind::TimerCatch { .. } => "timer",
            NodeKind::MessageCatch { .. } => "message",
            NodeKind::Call(_) => "call",
            NodeKind::SubProcess(_) => "sub_process",
            NodeKind::Circulate(_) => "circulate",
        }
    }

    /// Nodes where a token waits for something outside the engine.
    pub fn is_wait_state(&self) -> bool {
        matches!(
            self,
            NodeKind::UserTask(_)
                | NodeKind::Service(_)
                | NodeKind::TimerCatch { .. }
                | NodeKind::MessageCatch { .. }
                | NodeKind::EventBased { .. }
                | NodeKind::Call(_)
                // Its body waits for the runs inside, whatever they hold.
                | NodeKind::SubProcess(_)
        )
    }

    /// Forks: nodes whose branches a `join` closes.
    pub fn is_fork(&self) -> bool {
        matches!(self, NodeKind::Parallel { .. } | NodeKind::Inclusive { .. })
    }

    /// Boundary events attached to this node.
    pub fn boundary(&self) -> &[Boundary] {
        match self {
            NodeKind::UserTask(u) => &u.boundary,
            NodeKind::Service(s) => &s.boundary,
            NodeKind::Call(c) => &c.boundary,
            NodeKind::Parallel { boundary, .. } | NodeKind::Inclusive { boundary, .. } => boundary,
            NodeKind::SubProcess(s) => &s.boundary,
            _ => &[],
        }
    }

    /// Every node this one can pass a token to along its normal flow (boundary
    /// events not included; see [`NodeKind::boundary`]).
    pub fn flow_successors(&self) -> Vec<NodeIx> {
        match self {
            NodeKind::Start { next, .. }
            | NodeKind::Script { next, .. }
            | NodeKind::Join { next, .. }
            | NodeKind::TimerCatch { next, .. }
            | NodeKind::MessageCatch { next, .. } => vec![*next],
            NodeKind::End { .. } | NodeKind::ErrorEnd { .. } => vec![],
            NodeKind::UserTask(u) => {
                let mut v = vec![u.next];
                v.extend(u.send_back);
                v.extend(u.outcomes.iter().map(|(_, n)| *n));
                v.extend(u.consensus.as_ref().map(|c| c.rejected));
                v
            }
            NodeKind::Circulate(c) => vec![c.next],
            NodeKind::Service(s) => vec![s.next],
            NodeKind::Call(c) => vec![c.next],
            NodeKind::Exclusive { branches, default } | NodeKind::Inclusive { branches, default, .. } => {
                let mut v: Vec<_> = branches.iter().map(|(_, n)| *n).collect();
                v.extend(*default);
                v
            }
            NodeKind::Parallel { branches, .. } => branches.clone(),
            NodeKind::EventBased { branches } => branches.iter().map(|(_, n)| *n).collect(),
            // Into its own start, and on once it is done.
            NodeKind::SubProcess(s) => vec![s.start, s.next],
        }
    }

    /// Where a token goes when the node is done the normal way (`next`).
    pub fn next(&self) -> Option<NodeIx> {
        match self {
            NodeKind::Start { next, .. }
            | NodeKind::Script { next, .. }
            | NodeKind::Join { next, .. }
            | NodeKind::TimerCatch { next, .. }
            | NodeKind::MessageCatch { next, .. } => Some(*next),
            NodeKind::UserTask(u) => Some(u.next),
            NodeKind::Service(s) => Some(s.next),
            NodeKind::SubProcess(s) => Some(s.next),
            NodeKind::Call(c) => Some(c.next),
            NodeKind::Circulate(c) => Some(c.next),
            _ => None,
        }
    }

    /// Every node this one can pass a token to, boundary events included.
    pub fn successors(&self) -> Vec<NodeIx> {
        let mut v = self.flow_successors();
        v.extend(self.boundary().iter().map(|b| b.next));
        v
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub name: Option<String>,
    pub lane: Option<String>,
    pub kind: NodeKind,
    /// `multi_instance:`: the node runs once per item ([`MultiSpec`]).
    pub multi: Option<MultiSpec>,
}

/// Most items a multi-instance node accepts, and the default of its `limit`: each
/// item is a token (and maybe a task) in the instance's state, which is written
/// whole on every commit.
pub const MAX_ITEMS: u32 = 10_000;

/// A compiled `multi_instance:` ([`crate::model::MultiDef`]).
#[derive(Debug, Clone)]
pub struct MultiSpec {
    pub for_each: Expr,
    /// The item's name inside the node.
    pub item: String,
    /// The name of the item's position, if any.
    pub index: Option<String>,
    pub sequential: bool,
    pub output: Option<Expr>,
    /// The declared list variable the outputs go to, in item order.
    pub into: Option<String>,
    pub complete_when: Option<Expr>,
    /// Most items; more is an incident.
    pub limit: u32,
}

impl Node {
    /// The consensus of a user task with `approvers:`.
    pub fn consensus(&self) -> Option<&ConsensusSpec> {
        match &self.kind {
            NodeKind::UserTask(u) => u.consensus.as_deref(),
            _ => None,
        }
    }

    /// Human label: the display name, else the id.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// A validated process, ready to run. Immutable once deployed.
#[derive(Debug, Clone)]
pub struct Process {
    pub id: String,
    pub name: String,
    /// Deployment number, 1-based; 0 until deployed.
    pub version: u32,
    /// Digest of the source text; a changed file makes a new version.
    pub digest: String,
    pub source: String,
    pub lanes: IndexMap<String, Lane>,
    pub vars: IndexMap<String, VarSpec>,
    /// Declared variable names in order, as expressions see them.
    pub var_names: Vec<String>,
    /// The local variables of every sub-process (names are unique in a process).
    pub local_vars: IndexMap<String, VarSpec>,
    pub nodes: Vec<Node>,
    pub index: HashMap<String, NodeIx>,
    pub start: NodeIx,
    /// Zone of cron schedules and of dates without a time.
    pub time_zone: Tz,
    /// The record-change start, if the process has one (`start: watch:`).
    pub watch: Option<WatchSpec>,
    /// Declared settings (`settings:`), and their values now: the declared default
    /// until an administrator changes one ([`Process::with_settings`]).
    pub settings: IndexMap<String, VarSpec>,
    pub setting_values: Vec<(String, Value)>,
    /// Checks on the start form.
    pub start_rules: Vec<Rule>,
    /// Groups that may start the process by hand; empty: anyone.
    pub start_groups: Vec<String>,
    /// The timer start is paused by an administrator: it fires and reschedules
    /// but starts nothing. Set by the engine from its stored configuration.
    pub start_paused: bool,
    /// The lane a user task opens in when its org expression finds nobody.
    pub fallback: Option<String>,
    /// Executor priority of its timers and of service calls without their own (0–100).
    pub priority: u8,
    /// How long a completed instance stays in the live store (`retention:`);
    /// `None`: for ever.
    pub retention: Option<chrono::Duration>,
}

/// A compiled `start: watch:`. Run by the watcher registered for `source`, not by
/// the engine: the engine has no network.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub source: String,
    pub settings: serde_json::Map<String, Value>,
    pub every: Duration,
    /// Start variables, each an expression over `record`.
    pub set: Vec<(String, Expr)>,
    pub on_retrigger: crate::model::OnRetrigger,
    /// The variable `set` fills with the record's id (`record["$id"]`): a start by
    /// hand that gives it takes the same business key as the watch would.
    pub record_var: Option<String>,
}

impl Process {
    /// This process with setting values changed: every value type-checked against
    /// its declaration, unknown names refused; `null` restores the default. All
    /// problems at once, nothing changed on any.
    pub fn with_settings(&self, changes: &crate::expr::Vars) -> Result<Process, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut p = self.clone();
        for (name, value) in changes {
            let Some(spec) = self.settings.get(name) else {
                errors.push((name.clone(), "not a setting of this process".to_string()));
                continue;
            };
            let value = if value.is_null() { spec.default.clone().unwrap_or(Value::Null) } else { value.clone() };
            if let Err(e) = spec.check(&value) {
                errors.push((name.clone(), e));
                continue;
            }
            if let Some(slot) = p.setting_values.iter_mut().find(|(n, _)| n == name) {
                slot.1 = value;
            }
        }
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(errors)
        }
    }

    /// The settings as expressions see them (read-only names).
    pub fn setting_env(&self) -> Vec<(&str, &Value)> {
        self.setting_values.iter().map(|(n, v)| (n.as_str(), v)).collect()
    }

    /// The process ids this process's call activities call.
    pub fn calls(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Call(c) => Some(c.process.as_str()),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The declaration of variable `name`: the process's, or a sub-process's local.
    pub fn var(&self, name: &str) -> Option<&VarSpec> {
        self.vars.get(name).or_else(|| self.local_vars.get(name))
    }

    pub fn node(&self, id: &str) -> Option<(NodeIx, &Node)> {
        self.index.get(id).map(|&ix| (ix, &self.nodes[ix]))
    }

    /// How instances start besides by hand.
    pub fn start_trigger(&self) -> &StartTrigger {
        match &self.nodes[self.start].kind {
            NodeKind::Start { trigger, .. } => trigger,
            _ => &StartTrigger::None,
        }
    }

    /// Groups allowed to work tasks in `lane`.
    pub fn lane_groups(&self, lane: &str) -> &[String] {
        self.lanes.get(lane).map(|l| l.groups.as_slice()).unwrap_or(&[])
    }
}

/// FNV-1a, hex: a stable digest for change detection (not for security).
pub fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
