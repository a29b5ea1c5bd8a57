//! The process file as a designer writes it: plain serde types, no behaviour.
//!
//! Everything here mirrors the YAML one to one. Meaning (graph, types, compiled
//! expressions) is added by [`crate::compile`]; positions come from
//! [`crate::load::tree`]. Keep the field lists in sync with [`crate::load::schema`].

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};

/// A whole process definition file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessDef {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The designer's own version label; the engine numbers deployments itself.
    #[serde(default)]
    pub version: Option<serde_json::Value>,
    #[serde(default)]
    pub description: Option<String>,
    /// IANA time zone of the process's timers (cron, dates without a time); Asia/Tokyo
    /// when absent.
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub lanes: IndexMap<String, LaneDef>,
    #[serde(default)]
    pub variables: IndexMap<String, VarDef>,
    /// Settings of the process: declared like variables, the same for every
    /// instance, readable (not writable) in expressions, and changed by
    /// administrators at run time (API, CLI) without a redeploy.
    #[serde(default)]
    pub settings: IndexMap<String, VarDef>,
    /// The lane a user task opens in when its org expression (`assignee:`,
    /// `candidates:`) finds nobody; absent: an incident.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Executor priority of the process's timers and service calls (0–100,
    /// default 50); a service task's own `priority:` overrides it.
    #[serde(default)]
    pub priority: Option<serde_json::Value>,
    /// How long a completed instance stays in the live store before `nagare
    /// archive` moves it out (`90d`); absent: for ever.
    #[serde(default)]
    pub retention: Option<String>,
    pub start: StartDef,
    pub nodes: IndexMap<String, NodeDef>,
}

/// A swimlane: a role whose members (the groups) may work its user tasks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LaneDef {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Mail (or another notification) about this lane's user tasks.
    #[serde(default)]
    pub notify: Option<NotifyDef>,
}

/// `notify:` of a lane: which task events are announced, and through what.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyDef {
    /// `open`, `overdue`, `send_back`.
    pub on: Vec<String>,
    /// The connector instance that delivers (`mail`: its `mail.send`); default `mail`.
    #[serde(default)]
    pub via: Option<String>,
}

/// A declared process variable with its type.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VarDef {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub label: Option<String>,
    /// Must be given when an instance starts.
    #[serde(default)]
    pub required: bool,
    /// Allowed values of a `choice`.
    #[serde(default)]
    pub options: Option<Vec<String>>,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Longest string accepted (characters); the engine caps every string anyway.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Largest file accepted, bytes (`type: file`).
    #[serde(default)]
    pub max_size: Option<u64>,
    /// Accepted content types (`type: file`), e.g. `[application/pdf]`.
    #[serde(default)]
    pub content_types: Option<Vec<String>>,
    /// A secret of the business (an initial password): masked in the history,
    /// logs, instance views and task forms except for the lanes whose forms show it.
    #[serde(default)]
    pub sensitive: bool,
}

/// The start event: where every new instance begins. Instances can always be started
/// by hand; `timer` also starts them on a schedule, `message` when a message arrives.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StartDef {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub timer: Option<TimerDef>,
    #[serde(default)]
    pub message: Option<String>,
    /// Message payload → variables (expressions reading `payload`).
    #[serde(default)]
    pub set: Option<IndexMap<String, String>>,
    /// Start an instance per item an outside system reports (a record-change start).
    #[serde(default)]
    pub watch: Option<WatchDef>,
    /// Checks on the start form beyond each field's type: all are reported at once.
    #[serde(default)]
    pub rules: Vec<RuleDef>,
    /// Groups whose members may start the process by hand (API, CLI); empty: anyone.
    #[serde(default)]
    pub groups: Vec<String>,
    pub next: String,
}

/// A form rule: when `when` is true, the start or completion is refused with
/// `message` on `field`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub when: String,
    #[serde(default)]
    pub field: Option<String>,
    pub message: String,
}

/// When a timer fires: `timer: 3d` (a duration), or a map with one of `duration`,
/// `date`, `at` (an expression), and for start events `cron` or `cycle`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TimerDef {
    Short(String),
    Full(TimerMap),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimerMap {
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub cycle: Option<String>,
    #[serde(default)]
    pub catch_up: Option<CatchUp>,
}

/// What a timer start does about starts missed while the engine was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Start one instance for the missed times, then carry on with the schedule.
    #[default]
    Once,
    /// Start nothing for missed times.
    Skip,
}

/// An event attached to a task or a fork (`boundary:`): a timer, a message or an
/// error that leads elsewhere.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BoundaryDef {
    #[serde(default)]
    pub timer: Option<TimerDef>,
    /// An error code to catch, or `any`.
    #[serde(default)]
    pub error: Option<String>,
    /// A message name to listen for while the task (or fork) runs.
    #[serde(default)]
    pub message: Option<String>,
    /// Messages: the correlation key expression.
    #[serde(default)]
    pub key: Option<String>,
    /// Timers and messages: `false` leaves the task running (a reminder, a side path).
    #[serde(default)]
    pub interrupting: Option<bool>,
    /// Non-interrupting timers: fire again after this long.
    #[serde(default)]
    pub every: Option<String>,
    /// With `every`: how many times in all.
    #[serde(default)]
    pub times: Option<u32>,
    /// Errors: variables from `error` (`error.code`, `error.message`); messages:
    /// variables from `payload`.
    #[serde(default)]
    pub set: Option<IndexMap<String, String>>,
    pub next: String,
}

/// One way out of an event-based gateway: a message or a timer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventBranchDef {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub set: Option<IndexMap<String, String>>,
    #[serde(default)]
    pub timer: Option<TimerDef>,
    pub next: String,
}

/// `start: watch:` — who watches, how often, and the start variables per item.
/// The engine only validates and keeps it; the watcher named by `source` (e.g. the
/// kintone connector instance `kintone`) polls and calls `Engine::start`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WatchDef {
    /// A connector instance name: `kintone` for the `kintone.*` connectors.
    pub source: String,
    /// Settings for the watcher, literal (e.g. `query: 'k_ステータス in ("対応要")'`).
    #[serde(default)]
    pub settings: IndexMap<String, serde_json::Value>,
    /// Polling interval (`30s`, `5m`); default 1m.
    #[serde(default)]
    pub every: Option<String>,
    /// Start variables: expressions over `record`, the item that was found.
    #[serde(default)]
    pub set: IndexMap<String, String>,
    /// A record that matches again after its instance ended: start a `new`
    /// instance (the default) or `ignore` it.
    #[serde(default)]
    pub on_retrigger: OnRetrigger,
}

/// What a watch does with a record that matches again after its instance ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRetrigger {
    /// Start the record's next generation (business key `<key>#<n>`).
    #[default]
    New,
    /// The record keeps its one instance forever.
    Ignore,
}

/// One flow node. Exactly one of the kind keys (the table [`crate::kinds::KINDS`])
/// must be present; compile checks that. A field added here is added to the table
/// too (a test compares them).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDef {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub lane: Option<String>,
    #[serde(default)]
    pub next: Option<String>,

    // kinds
    #[serde(default)]
    pub user_task: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub exclusive: Option<Vec<BranchDef>>,
    #[serde(default)]
    pub inclusive: Option<Vec<BranchDef>>,
    #[serde(default)]
    pub parallel: Option<Vec<String>>,
    #[serde(default)]
    pub event_based: Option<Vec<EventBranchDef>>,
    #[serde(default)]
    pub join: Option<String>,
    #[serde(default)]
    pub timer: Option<TimerDef>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub end: Option<Option<EndDef>>,
    /// A call activity: the id of the deployed process it starts.
    #[serde(default)]
    pub call: Option<String>,
    /// An embedded sub-process: its own start, nodes and ends, local variables,
    /// and boundary events on the whole of it.
    #[serde(default)]
    pub sub_process: Option<SubProcessDef>,
    /// A circulation (回覧): the title of the read-only tasks it hands out; the
    /// token does not wait for them.
    #[serde(default)]
    pub circulate: Option<String>,

    // call activity
    /// The called process's version, pinned; absent: the latest when the call starts.
    #[serde(default)]
    pub version: Option<u32>,
    /// Called instance's variable := expression over this instance's variables.
    #[serde(default, rename = "in")]
    pub call_in: Option<IndexMap<String, String>>,
    /// This instance's variable := expression over the called instance's final variables.
    #[serde(default)]
    pub out: Option<IndexMap<String, String>>,

    // message catch
    /// Correlation key expression.
    #[serde(default)]
    pub key: Option<String>,

    // tasks and forks
    #[serde(default)]
    pub boundary: Option<Vec<BoundaryDef>>,
    /// Run the node once per item of a list (tasks, sub-processes, calls).
    #[serde(default)]
    pub multi_instance: Option<MultiDef>,

    // user task
    #[serde(default)]
    pub form: Option<IndexMap<String, FieldMode>>,
    #[serde(default)]
    pub due: Option<String>,
    /// The user the task is given to when it opens (an expression, e.g.
    /// `started_by`); unset or `()`: the lane's groups share it.
    #[serde(default)]
    pub assignee: Option<String>,
    /// Users offered the task (an expression giving a list of ids, e.g.
    /// `users_in("法務部")`); they share it instead of the lane's groups.
    #[serde(default)]
    pub candidates: Option<String>,
    /// Skip the step when the resolved approver is the applicant or already
    /// approved an earlier step of this instance.
    #[serde(default)]
    pub skip: Option<Vec<SkipWhen>>,
    #[serde(default)]
    pub send_back: Option<String>,
    #[serde(default)]
    pub outcomes: Option<IndexMap<String, String>>,
    /// Checks on the completed form beyond each field's type.
    #[serde(default)]
    pub rules: Option<Vec<RuleDef>>,
    /// A consensus (合議): one task per approver, decided by a rule
    /// ([`crate::model::ApproversDef`]).
    #[serde(default)]
    pub approvers: Option<ApproversDef>,

    // circulation
    /// Who a circulation goes to: an expression giving user ids, or a list of them.
    #[serde(default)]
    pub to: Option<UsersDef>,

    // service task
    #[serde(default, rename = "with")]
    pub with: Option<IndexMap<String, serde_json::Value>>,
    #[serde(default)]
    pub set: Option<IndexMap<String, String>>,
    #[serde(default)]
    pub retry: Option<RetryDef>,
    #[serde(default)]
    pub timeout: Option<String>,

    // user and service task
    /// 0–100, higher first (an expression on user and service tasks).
    #[serde(default)]
    pub priority: Option<serde_json::Value>,

    // exclusive gateway
    #[serde(default)]
    pub default: Option<String>,
}

impl NodeDef {
    /// Whether the key `key` is written on this node, for the keys besides the kind
    /// keys and `name`/`description` (which [`crate::kinds`] reads itself); `None`
    /// for any other key.
    pub fn has(&self, key: &str) -> Option<bool> {
        Some(match key {
            "lane" => self.lane.is_some(),
            "next" => self.next.is_some(),
            "key" => self.key.is_some(),
            "boundary" => self.boundary.is_some(),
            "multi_instance" => self.multi_instance.is_some(),
            "form" => self.form.is_some(),
            "due" => self.due.is_some(),
            "assignee" => self.assignee.is_some(),
            "candidates" => self.candidates.is_some(),
            "skip" => self.skip.is_some(),
            "send_back" => self.send_back.is_some(),
            "outcomes" => self.outcomes.is_some(),
            "rules" => self.rules.is_some(),
            "with" => self.with.is_some(),
            "set" => self.set.is_some(),
            "retry" => self.retry.is_some(),
            "timeout" => self.timeout.is_some(),
            "priority" => self.priority.is_some(),
            "default" => self.default.is_some(),
            "version" => self.version.is_some(),
            "in" => self.call_in.is_some(),
            "out" => self.out.is_some(),
            "approvers" => self.approvers.is_some(),
            "to" => self.to.is_some(),
            _ => return None,
        })
    }
}

/// `sub_process:` — a scope inside the process. Its nodes are written inside it and
/// lead only to each other; a token leaves it when every path inside has ended.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubProcessDef {
    /// Variables local to one run of the sub-process (one per item when it is
    /// multi-instance), declared like the process's own; names unique in the file.
    #[serde(default)]
    pub variables: IndexMap<String, VarDef>,
    /// Local variable := expression over the variables outside, when it starts.
    #[serde(default, rename = "in")]
    pub ins: IndexMap<String, String>,
    /// Process variable := expression over the variables inside, when it ends.
    #[serde(default)]
    pub out: IndexMap<String, String>,
    #[serde(default)]
    pub start: Option<SubStartDef>,
    #[serde(default)]
    pub nodes: IndexMap<String, NodeDef>,
}

/// The start of a sub-process: where its token begins.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubStartDef {
    #[serde(default)]
    pub name: Option<String>,
    pub next: String,
}

/// Users written in a process: an expression giving a list of user ids, or the
/// user ids themselves as a YAML list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum UsersDef {
    List(Vec<String>),
    Expr(String),
}

/// How many approvers must approve: `all`, `any`, or a number (at least that many).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RuleValue {
    Count(i64),
    Word(String),
}

/// `approvers:` of a user task: a consensus (合議) of several approvers, each with
/// their own task, decided by `rule`. Compiled onto the multi-instance machinery.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApproversDef {
    /// Who approves, in order (the order of a sequential consensus).
    pub users: Option<UsersDef>,
    /// `all` (the default), `any`, or how many must approve.
    #[serde(default)]
    pub rule: Option<RuleValue>,
    /// `parallel` (the default) or `sequential`.
    #[serde(default)]
    pub order: Option<String>,
    /// The form field (a declared bool or choice variable) each approver decides with.
    #[serde(default)]
    pub decision: Option<String>,
    /// For a choice `decision`: the option that approves (a bool approves with `true`).
    #[serde(default)]
    pub approve: Option<String>,
    /// An optional form field (a declared variable) for each approver's comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// A declared list variable receiving `{user, decision, comment, at}` per approver.
    #[serde(default)]
    pub into: Option<String>,
    /// The node the token goes to when the rule can no longer be met.
    #[serde(default)]
    pub rejected: Option<String>,
    /// The name the approver's user id is read by inside the task (default `approver`).
    #[serde(default, rename = "as")]
    pub item: Option<String>,
}

/// `multi_instance:` of a task: the node runs once per item of `for_each`, all at
/// once or one after another, and the items' `output`s are collected into `into`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MultiDef {
    /// An expression giving the list of items.
    pub for_each: String,
    /// The name each item is read by inside the node (its own value per item).
    #[serde(rename = "as")]
    pub item: String,
    /// The name of the item's position (0, 1, 2 ...), if wanted.
    #[serde(default)]
    pub index: Option<String>,
    /// One item after another (default: all at once).
    #[serde(default)]
    pub sequential: bool,
    /// What each finished item contributes to `into` (an expression read right
    /// after that item finished; a service task's `result` is readable).
    #[serde(default)]
    pub output: Option<String>,
    /// A declared list variable that receives the outputs, in item order.
    #[serde(default)]
    pub into: Option<String>,
    /// Stop early when this holds (checked after each item): the unfinished items
    /// are withdrawn. Reads `results` (outputs so far, `()` where unfinished),
    /// `done` and `total`.
    #[serde(default)]
    pub complete_when: Option<String>,
    /// Most items accepted (default and ceiling: 10,000); more is an incident.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `end:`, `end: terminate` or `end: { error: CODE, message: text }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EndDef {
    Kind(EndKind),
    Error(ErrorEndDef),
}

/// An error end event: throws `error` to the nearest boundary that catches it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorEndDef {
    pub error: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// `end:` with no value, or `end: terminate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndKind {
    /// Consume this token only.
    Normal,
    /// End the whole instance: cancel every other token, task and job.
    Terminate,
}

/// One conditional flow of an exclusive or inclusive gateway.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BranchDef {
    pub when: String,
    pub next: String,
}

/// How a user task's form shows a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldMode {
    Required,
    Optional,
    Readonly,
}

/// Retry policy of a service task: `attempts` in all, waiting `backoff` (`2s..5m`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub backoff: Option<String>,
}

/// Distinguishes `end:` (present, null) from an absent key.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// When a user task with an org-resolved approver is skipped (`skip:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipWhen {
    /// The approver is the one who started the instance (self-approval).
    Applicant,
    /// The approver already completed an earlier task of this instance.
    Approved,
}
