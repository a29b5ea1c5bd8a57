//! The JSON shapes the API sends and receives (the wire types).
//!
//! The engine's records are not sent as they are: these types fix the wire format
//! (so an engine refactor does not change the API by accident) and carry the
//! OpenAPI schemas. History details and wait states are passed through as JSON
//! objects, so new engine event kinds show up without an API change.

use nagare_engine::process::{Process, VarSpec};
use nagare_engine::runtime::{HistoryEntry, Instance, Task};
use nagare_engine::types::{VarType, MAX_STRING_CHARS, MAX_TEXT_CHARS};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Variables by name: any JSON value, checked against the declared types.
pub type VarsJson = Map<String, Value>;

/// Longest string a variable of this type accepts, if it is a string type.
pub fn effective_max_length(spec: &VarSpec) -> Option<usize> {
    match spec.ty {
        VarType::String => Some(spec.max_length.unwrap_or(MAX_STRING_CHARS)),
        VarType::Text => Some(spec.max_length.unwrap_or(MAX_TEXT_CHARS)),
        _ => None,
    }
}

/// A user task as an inbox shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// `<instance>-<sequence>`, e.g. `12-3`.
    pub id: String,
    pub instance: u64,
    pub process: String,
    pub version: u32,
    /// The user task's node id in the process.
    pub node: String,
    pub title: String,
    pub lane: String,
    /// Groups whose members may work the task.
    pub groups: Vec<String>,
    /// `open`, `completed` or `cancelled`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<chrono::DateTime<chrono::Utc>>,
    /// Open and past its due date (by the engine's clock).
    pub overdue: bool,
    /// 0–100, higher first (the task's `priority:`; 50 when it sets none).
    pub priority: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// How it was completed: `next`, `send_back` or a named outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The item of a multi-instance task (e.g. the approver or the file it is for).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub item: Option<Value>,
    /// A circulation's read task (回覧): nothing to fill in; completing it (no
    /// variables) records that the assignee read it. The flow did not wait for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

impl From<Task> for TaskView {
    fn from(t: Task) -> Self {
        let status = t.status.as_str();
        TaskView {
            id: t.id,
            instance: t.instance,
            process: t.process,
            version: t.version,
            node: t.node,
            title: t.title,
            lane: t.lane,
            groups: t.groups,
            status: status.to_string(),
            assignee: t.assignee,
            created_at: t.created_at,
            due: t.due,
            overdue: t.overdue,
            priority: t.priority,
            completed_by: t.completed_by,
            completed_at: t.completed_at,
            outcome: t.outcome,
            item: t.item,
            read_only: t.read_only,
        }
    }
}

/// One page of tasks. Pass `next` as `after` to get the following page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskView>,
    /// Cursor of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One field of a task's form.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FormField {
    /// The variable's name; send it under this name in `variables`.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// string, text, number, bool, date, datetime, choice, list or object.
    #[serde(rename = "type")]
    pub ty: String,
    /// `required`, `optional` or `readonly`.
    pub mode: String,
    /// The allowed values of a `choice`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// Longest accepted string, in characters (string and text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// The current value (`null` when unset).
    pub value: Value,
}

/// A task with its form and the ways to finish it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: TaskView,
    pub form: Vec<FormField>,
    /// Outcomes `complete` accepts: `next` and the named ones.
    pub outcomes: Vec<String>,
    /// Node `send-back` returns the work to, if the designer allows sending back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_back_to: Option<String>,
    /// Present when this task was opened by someone sending the work back: who,
    /// when and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_back: Option<SentBackView>,
}

/// The send-back that opened a task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SentBackView {
    /// Who sent the work back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
    pub comment: String,
    /// The node of the task that was sent back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_node: Option<String>,
}

impl From<nagare_engine::SendBackNote> for SentBackView {
    fn from(n: nagare_engine::SendBackNote) -> Self {
        SentBackView { by: n.by, at: n.at, comment: n.comment, from_node: n.from_node }
    }
}

impl TaskDetail {
    pub fn new(task: Task, process: &Process, inst: &Instance) -> Self {
        let mut form = Vec::new();
        let mut outcomes = vec!["next".to_string()];
        let mut send_back_to = None;
        // A task inside a sub-process shows its locals too.
        let vars = inst.task_vars(&task.id);
        use nagare_engine::process::NodeKind;
        let fields = match process.node(&task.node).map(|(_, n)| &n.kind) {
            Some(NodeKind::UserTask(spec)) => {
                outcomes.extend(spec.outcomes.iter().map(|(n, _)| n.clone()));
                send_back_to = spec.send_back.map(|ix| process.nodes[ix].id.clone());
                spec.form.as_slice()
            }
            // A circulation's read task shows its fields (all read-only).
            Some(NodeKind::Circulate(spec)) => spec.form.as_slice(),
            _ => &[],
        };
        for f in fields {
            let Some(var) = process.var(&f.var) else { continue };
            form.push(FormField {
                name: f.var.clone(),
                label: var.label.clone(),
                ty: var.ty.name().to_string(),
                mode: serde_json::to_value(f.mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
                options: match &var.ty {
                    VarType::Choice { options } => Some(options.clone()),
                    _ => None,
                },
                max_length: effective_max_length(var),
                value: vars.get(&f.var).cloned().unwrap_or(Value::Null),
            });
        }
        TaskDetail { task: task.into(), form, outcomes, send_back_to, sent_back: None }
    }

    /// With the sensitive values a member of `groups` may not read masked.
    pub fn masked(mut self, p: &Process, groups: &[String]) -> Self {
        for f in &mut self.form {
            if !f.value.is_null() && !p.may_read(&f.name, groups) {
                f.value = Value::String(nagare_engine::sensitive::MASK.to_string());
            }
        }
        self
    }
}

/// An instance in a list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstanceSummary {
    pub id: u64,
    pub process: String,
    pub version: u32,
    /// `running`, `incident`, `completed` or `cancelled`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<&Instance> for InstanceSummary {
    fn from(i: &Instance) -> Self {
        InstanceSummary {
            id: i.id,
            process: i.process.clone(),
            version: i.version,
            status: i.status.as_str().to_string(),
            business_key: i.business_key.clone(),
            started_at: i.started_at,
            started_by: i.started_by.clone(),
            ended_at: i.ended_at,
        }
    }
}

/// One page of instances, in id order. Pass `next` as `after` for the next page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstancePage {
    pub items: Vec<InstanceSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A stopped token, waiting for someone to retry it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncidentView {
    pub id: u32,
    pub node: String,
    pub message: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Where a token waits: the node, and on what (`{"on": "task", "task": "1-3"}`, a
/// job, an incident...).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WaitView {
    pub node: String,
    #[schema(value_type = Object)]
    pub wait: Value,
}

/// An instance with its state, variables and open tasks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    #[serde(flatten)]
    pub summary: InstanceSummary,
    #[schema(value_type = Object)]
    pub variables: VarsJson,
    /// Open tasks of this instance (all of them, also those of other groups).
    pub open_tasks: Vec<TaskView>,
    pub waiting: Vec<WaitView>,
    pub incidents: Vec<IncidentView>,
    /// Users who started or acted on the instance.
    pub participants: Vec<String>,
    /// The instance whose call activity started this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<CallLinkView>,
    /// The called instances this one waits for now (ended ones are in the history:
    /// `call_started`, `call_completed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<CallLinkView>,
}

/// A calling or called instance, as the other one shows it: enough to see an
/// incident below a waiting call, and to follow the link.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CallLinkView {
    pub id: u64,
    pub process: String,
    pub version: u32,
    /// `running`, `incident`, `completed` or `cancelled`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    /// The call node (in the calling instance).
    pub node: String,
    /// Open incidents of the linked instance.
    pub incidents: usize,
}

impl CallLinkView {
    fn of(i: &Instance, node: &str) -> Self {
        CallLinkView {
            id: i.id,
            process: i.process.clone(),
            version: i.version,
            status: i.status.as_str().to_string(),
            business_key: i.business_key.clone(),
            node: node.to_string(),
            incidents: i.incidents.len(),
        }
    }
}

impl InstanceView {
    /// With its parent and the children it waits for (read from the engine).
    pub fn linked(mut self, i: &Instance, engine: &nagare_engine::Engine) -> Self {
        if let Some(link) = &i.parent {
            if let Ok(parent) = engine.instance(link.instance) {
                self.parent = Some(CallLinkView::of(&parent, &link.node));
            }
        }
        for t in &i.tokens {
            if let nagare_engine::runtime::Wait::Call { child: Some(c), .. } = &t.wait {
                if let Ok(child) = engine.instance(*c) {
                    self.children.push(CallLinkView::of(&child, &t.node));
                }
            }
        }
        self
    }

    pub fn new(i: &Instance, open_tasks: Vec<Task>) -> Self {
        InstanceView {
            summary: i.into(),
            variables: i.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            open_tasks: open_tasks.into_iter().map(TaskView::from).collect(),
            waiting: i
                .tokens
                .iter()
                .map(|t| WaitView { node: t.node.clone(), wait: serde_json::to_value(&t.wait).unwrap_or(Value::Null) })
                .collect(),
            incidents: i
                .incidents
                .iter()
                .map(|x| IncidentView { id: x.id, node: x.node.clone(), message: x.message.clone(), at: x.at })
                .collect(),
            participants: i.participants.clone(),
            parent: None,
            children: Vec::new(),
        }
    }
}

impl InstanceView {
    /// With the sensitive values a member of `groups` may not read masked.
    pub fn masked(mut self, p: Option<&Process>, groups: &[String]) -> Self {
        mask_vars(&mut self.variables, p, groups);
        self
    }
}

/// Mask in `vars` the sensitive values of `p` a member of `groups` may not read
/// (see `nagare_engine::sensitive`). Without the process, every value that could
/// be sensitive is unknown, so nothing is left out: callers always have it.
pub fn mask_vars(vars: &mut VarsJson, p: Option<&Process>, groups: &[String]) {
    if let Some(p) = p.filter(|p| p.has_sensitive()) {
        p.mask(vars.iter_mut(), groups);
    }
}

/// One line of an instance's audit trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    pub seq: u32,
    pub at: chrono::DateTime<chrono::Utc>,
    /// `started`, `task_claimed`, `task_completed`, `sent_back`, `task_assigned`,
    /// `cancelled`, `job_failed`...
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Who did it (absent for the engine's own steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The proxy (代理人) who acted in `user`'s name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The event's own fields: `task`, `outcome`, `vars`, `comment`, `reason`...
    #[schema(value_type = Object)]
    pub details: VarsJson,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(h: HistoryEntry) -> Self {
        let mut details = match serde_json::to_value(&h.event) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        details.remove("event");
        HistoryItem {
            seq: h.seq,
            at: h.at,
            event: h.event.name().to_string(),
            node: h.node,
            user: h.user,
            proxy: h.proxy,
            details,
        }
    }
}

impl HistoryItem {
    /// With the sensitive values (in `details.vars`) a member of `groups` may not
    /// read masked.
    pub fn masked(mut self, p: Option<&Process>, groups: &[String]) -> Self {
        if let Some(Value::Object(vars)) = self.details.get_mut("vars") {
            mask_vars(vars, p, groups);
        }
        self
    }
}

/// The result of completing or sending back a task: the instance's new state and
/// the open tasks the caller may work next.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompletionView {
    pub task: TaskView,
    pub instance: InstanceSummary,
    /// Open tasks of this instance the caller may work (e.g. the next step).
    pub next_tasks: Vec<TaskView>,
}
