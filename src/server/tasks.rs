//! `/api/v1/tasks`: the inbox and the work on one task.
//!
//! A task is visible to members of its groups (a lane's `groups:`, or the lane's
//! own name when it has none), to the user it is assigned to, to whoever completed
//! it, and to administrators. Any other caller gets 404 for it, the same answer as
//! for an id that does not exist, so task ids cannot be probed.

use super::auth::{Auth, Caller};
use super::error::{echo, ApiError, ApiResult, ErrorBody};
use super::extract::{is_multipart, limited_json, ApiJson, ApiPath, ApiQuery};
use super::instances::{check_text, open_tasks, page_size};
use super::views::{CompletionView, InstanceSummary, TaskDetail, TaskPage, TaskView, VarsJson};
use super::{blocking, AppState};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use nagare_engine::runtime::{Outcome, Rejection, Task};
use nagare_engine::store::{TaskCursor, TaskQuery, TaskSort};
use nagare_engine::{Engine, EngineError};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Longest send-back comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 4_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// Only tasks of this group (one of the caller's, unless administrator).
    pub group: Option<String>,
    /// Only tasks of this lane.
    pub lane: Option<String>,
    /// Only tasks claimed by (or assigned to) this user. Your own name and no
    /// `group` lists everything assigned to you.
    pub assignee: Option<String>,
    /// Only tasks of this process.
    pub process: Option<String>,
    /// Only tasks due before this time (RFC 3339); undated tasks are left out.
    pub due_before: Option<DateTime<Utc>>,
    /// Only tasks past their due date (`true`), or not (`false`).
    pub overdue: Option<bool>,
    /// Only tasks of at least this priority (0–100).
    #[param(minimum = 0, maximum = 100)]
    pub min_priority: Option<u8>,
    /// `due` (default: due date, undated last) or `priority` (highest first, then
    /// due date).
    pub sort: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// `<due in ms, or ->~<task id>`: where a page ended; sorted by priority,
/// `p<priority>~` before it.
fn encode_cursor(t: &Task, sort: TaskSort) -> String {
    let at = match t.due {
        Some(d) => format!("{}~{}", d.timestamp_millis(), t.id),
        None => format!("-~{}", t.id),
    };
    match sort {
        TaskSort::Due => at,
        TaskSort::Priority => format!("p{}~{at}", t.priority),
    }
}

fn decode_cursor(s: &str, sort: TaskSort) -> ApiResult<TaskCursor> {
    let bad = || ApiError::bad_request("bad-query", "`after` must be the `next` value of the previous page");
    let (priority, s) = match (sort, s.strip_prefix('p')) {
        (TaskSort::Priority, Some(rest)) => {
            let (p, rest) = rest.split_once('~').ok_or_else(bad)?;
            (Some(p.parse::<u8>().map_err(|_| bad())?), rest)
        }
        (TaskSort::Due, None) => (None, s),
        _ => return Err(bad()),
    };
    let (due, id) = s.split_once('~').ok_or_else(bad)?;
    let due = match due {
        "-" => None,
        ms => Some(DateTime::from_timestamp_millis(ms.parse().map_err(|_| bad())?).ok_or_else(bad)?),
    };
    Ok(TaskCursor { due, id: id.to_string(), priority })
}

/// The caller's open tasks, sorted by due date (undated last), paged.
#[utoipa::path(get, path = "/api/v1/tasks", operation_id = "inbox", tag = "tasks",
    params(InboxQuery),
    responses(
        (status = 200, description = "One page of open tasks, earliest due first", body = TaskPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "`group` is not one of the caller's groups", body = ErrorBody),
    ))]
pub async fn inbox(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<InboxQuery>,
) -> ApiResult<Json<TaskPage>> {
    let limit = page_size(q.limit)?;
    let sort = match q.sort.as_deref() {
        None | Some("due") => TaskSort::Due,
        Some("priority") => TaskSort::Priority,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad-query",
                format!("`sort` must be `due` or `priority`, not `{}`", echo(other)),
            ))
        }
    };
    if q.min_priority.is_some_and(|p| p > nagare_engine::priority::MAX) {
        return Err(ApiError::bad_request("bad-query", "`min_priority` must be from 0 to 100"));
    }
    let after = q.after.as_deref().map(|a| decode_cursor(a, sort)).transpose()?;
    let groups = match (&q.group, caller.admin) {
        (Some(g), true) => Some(vec![g.clone()]),
        (Some(g), false) if caller.in_group(g) => Some(vec![g.clone()]),
        (Some(g), false) => {
            return Err(ApiError::forbidden(format!("`{}` is not in group `{}`", caller.id, echo(g))));
        }
        // Everything: the union of every lane's groups (each open task is in the
        // index of its groups), so that no query scans all tasks ever made.
        (None, true) if q.assignee.is_none() => Some(all_lane_groups(&state.engine)),
        (None, true) => None,
        // Your own assignments may lie outside your groups (an administrator gave them).
        (None, false) if q.assignee.as_deref() == Some(&caller.id) => None,
        (None, false) => Some(caller.inbox_groups()),
    };
    // A proxy also sees the tasks assigned to whom they act for.
    let principals = if q.group.is_none() && q.assignee.is_none() { caller.acting_for.clone() } else { Vec::new() };
    let query = TaskQuery {
        groups,
        assignee: q.assignee,
        lane: q.lane,
        process: q.process,
        instance: None,
        due_before: q.due_before,
        overdue: q.overdue,
        after,
        limit: Some(limit),
        min_priority: q.min_priority,
        sort,
    };
    let engine = state.engine.clone();
    let tasks = blocking(move || {
        let mut tasks = engine.tasks(&query)?;
        for p in principals {
            let theirs = TaskQuery { groups: None, assignee: Some(p), ..query.clone() };
            tasks.extend(engine.tasks(&theirs)?);
        }
        // Each query is in (due, id) order from the same cursor: merged, the first
        // `limit` are the page.
        // (In the page's sort order: priority first when sorted by priority.)
        let by_priority = sort == TaskSort::Priority;
        tasks.sort_by(|a, b| {
            let rank = |t: &Task| std::cmp::Reverse(if by_priority { t.priority } else { 0 });
            (rank(a), a.due.is_none(), a.due, &a.id).cmp(&(rank(b), b.due.is_none(), b.due, &b.id))
        });
        tasks.dedup_by(|a, b| a.id == b.id);
        tasks.truncate(limit);
        Ok(tasks)
    })
    .await?;
    let next = if tasks.len() == limit { tasks.last().map(|t| encode_cursor(t, sort)) } else { None };
    Ok(Json(TaskPage { items: tasks.into_iter().map(TaskView::from).collect(), next }))
}

/// An engine error on a task action. A task of a finished instance is simply no
/// longer open: say so, rather than talk about the instance.
fn task_error(e: nagare_engine::EngineError, id: &str, process: Option<&nagare_engine::process::Process>) -> ApiError {
    match e {
        nagare_engine::EngineError::Conflict(Rejection::Finished(status)) => {
            ApiError::engine(nagare_engine::EngineError::Conflict(Rejection::TaskNotOpen(id.to_string())), None)
                .with_details(serde_json::json!({ "instance_status": status }))
        }
        other => ApiError::engine(other, process),
    }
}

/// Every group of every lane of every deployed process version.
fn all_lane_groups(engine: &Engine) -> Vec<String> {
    let mut groups: Vec<String> = engine
        .processes()
        .iter()
        .flatten()
        .flat_map(|p| p.lanes.values().flat_map(|l| l.groups.iter().cloned()))
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// The task if the caller may see it; 404 otherwise.
fn visible_task(engine: &Engine, caller: &Caller, id: &str) -> ApiResult<Task> {
    let task = engine.task(id)?;
    if !caller.may_see_task(&task) {
        return Err(ApiError::unknown_task(id));
    }
    Ok(task)
}

/// The task if the caller may work it: 404 if they may not see it, 403 if they may
/// see but not work it.
fn workable_task(engine: &Engine, caller: &Caller, id: &str) -> ApiResult<Task> {
    let task = visible_task(engine, caller, id)?;
    if !caller.may_work(&task) {
        return Err(ApiError::forbidden(format!("`{}` may not work task {}", caller.id, echo(id))));
    }
    Ok(task)
}

/// A task with its form: fields with type, mode, options and current values.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", operation_id = "get_task", tag = "tasks",
    params(("id" = String, Path, description = "Task id, e.g. `12-3`")),
    responses(
        (status = 200, description = "The task and its form", body = TaskDetail),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such task, or not one the caller may see", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TaskDetail>> {
    let engine = state.engine.clone();
    blocking(move || {
        let task = visible_task(&engine, &caller, &id)?;
        let process = engine.process(&task.process, task.version).ok_or_else(|| {
            ApiError::internal(format!("process {} version {} is not loaded", task.process, task.version))
        })?;
        let inst = engine.instance(task.instance)?;
        let sent_back = engine.send_back_of(&task)?.map(Into::into);
        let detail = TaskDetail::new(task, &process, &inst).masked(&process, &caller.groups);
        Ok(Json(TaskDetail { sent_back, ..detail }))
    })
    .await
}

/// Claim an open task: from now on only the caller may complete it.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/claim", operation_id = "claim_task", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "Claimed (also when the caller held it already)", body = TaskView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The caller may see but not work this task", body = ErrorBody),
        (status = 404, description = "No such task, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "Claimed by someone else, or no longer open", body = ErrorBody),
    ))]
pub async fn claim(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TaskView>> {
    let engine = state.engine.clone();
    blocking(move || {
        let task = workable_task(&engine, &caller, &id)?;
        // A proxy claims a task offered to the principal in the principal's name.
        match caller.principal_for(&task) {
            Some(principal) => engine.claim_for(&id, principal, &caller.id),
            None => engine.claim(&id, &caller.id),
        }
        .map_err(|e| task_error(e, &id, None))?;
        Ok(Json(engine.task(&id)?.into()))
    })
    .await
}

/// Give a claimed task back to its groups. Administrators may unclaim anyone's.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/unclaim", operation_id = "unclaim_task", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "Unclaimed", body = TaskView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The caller may see but not work this task", body = ErrorBody),
        (status = 404, description = "No such task, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "Claimed by someone else, or no longer open", body = ErrorBody),
    ))]
pub async fn unclaim(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TaskView>> {
    let engine = state.engine.clone();
    blocking(move || {
        workable_task(&engine, &caller, &id)?;
        engine.unclaim(&id, &caller.id, caller.admin).map_err(|e| task_error(e, &id, None))?;
        Ok(Json(engine.task(&id)?.into()))
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// The user to give the task to (a name from the users file); `null` unassigns.
    pub user: Option<String>,
}

/// Give a task to a user (administrators), whoever holds it now. The history
/// records who assigned it.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/assign", operation_id = "assign_task", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    request_body = AssignRequest,
    responses(
        (status = 200, description = "Assigned", body = TaskView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is no longer open", body = ErrorBody),
        (status = 422, description = "No such user", body = ErrorBody),
    ))]
pub async fn assign(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AssignRequest>,
) -> ApiResult<Json<TaskView>> {
    caller.require_admin("assign tasks")?;
    if let Some(u) = &req.user {
        if state.users.current().get(u).is_none() {
            return Err(ApiError::unprocessable("unknown-user", format!("no user `{}` in the users file", echo(u))));
        }
    }
    let engine = state.engine.clone();
    blocking(move || {
        engine.assign(&id, req.user.as_deref(), &caller.id).map_err(|e| task_error(e, &id, None))?;
        tracing::info!(task = %id, to = ?req.user, by = %caller.id, "assigned");
        Ok(Json(engine.task(&id)?.into()))
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// Form values by field name. Required fields already set need not be sent again.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: VarsJson,
    /// `next` (default) or a named outcome of the task, e.g. `reject`.
    #[serde(default)]
    pub outcome: Option<String>,
}

/// A completion with files, as `multipart/form-data`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CompleteForm {
    /// Form values as a JSON object (text part), without the files.
    variables: Option<String>,
    /// `next` (default) or a named outcome.
    outcome: Option<String>,
    /// One part per file variable, named like the variable, with a file name.
    #[schema(value_type = Option<Vec<u8>>, format = Binary)]
    files: Option<Vec<u8>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBackRequest {
    /// Why the work goes back; kept in the history. 1 to 4,000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    pub comment: String,
    /// Form values to save with it (optional fields only need be valid).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: VarsJson,
}

/// Complete (or send back) as the caller and report what follows.
fn finish(engine: &Engine, caller: &Caller, id: &str, vars: VarsJson, outcome: Outcome) -> ApiResult<CompletionView> {
    let task = workable_task(engine, caller, id)?;
    let process = engine.process(&task.process, task.version);
    let what = match &outcome {
        Outcome::Next => "next".to_string(),
        Outcome::SendBack { .. } => "send_back".to_string(),
        Outcome::Named(n) => n.clone(),
    };
    let vars = vars.into_iter().collect();
    let inst = match caller.principal_for(&task) {
        // A proxy works the task in the principal's name; the history names both.
        Some(principal) => engine.complete_for(id, principal, &caller.id, vars, outcome),
        None => engine.complete(id, &caller.id, vars, outcome),
    }
    .map_err(|e| task_error(e, id, process.as_deref()))?;
    tracing::info!(task = %id, instance = inst.id, outcome = %what, by = %caller.id, "task completed");
    let next_tasks =
        open_tasks(engine, &inst)?.into_iter().filter(|t| caller.may_work(t)).map(TaskView::from).collect();
    Ok(CompletionView { task: engine.task(id)?.into(), instance: InstanceSummary::from(&inst), next_tasks })
}

/// Complete a task with its form data. Every field error comes back at once (422)
/// and nothing is saved; a task completed already, or claimed by someone else, is 409.
/// With files, send `multipart/form-data`: text parts `variables` (the JSON object)
/// and `outcome`, and one part per file, named like its variable, with a file name.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/complete", operation_id = "complete_task", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    request_body(content(
        (CompleteRequest = "application/json"),
        (CompleteForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "Completed; the instance moved on", body = CompletionView),
        (status = 400, description = "Malformed JSON (the parse error says where)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The caller may see but not work this task", body = ErrorBody),
        (status = 404, description = "No such task, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "Completed already, or claimed by someone else", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Form errors (`details.errors`: field, problem, expected) or an unknown outcome; nothing saved", body = ErrorBody),
    ))]
pub async fn complete(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    request: axum::extract::Request,
) -> ApiResult<Json<CompletionView>> {
    let req: CompleteRequest = if is_multipart(&request) {
        // The files are checked against the rules of the task's own process version,
        // and only once the caller is known to be allowed to work the task.
        let (engine, who, task_id) = (state.engine.clone(), caller.clone(), id.clone());
        let process = blocking(move || {
            let task = workable_task(&engine, &who, &task_id)?;
            engine
                .process(&task.process, task.version)
                .ok_or_else(|| ApiError::engine(EngineError::UnknownProcess(task.process), None))
        })
        .await?;
        let rules = |_: &std::collections::BTreeMap<String, String>, var: &str| super::files::rules_in(&process, var);
        let form = super::files::read_form(&state, request, &["variables", "outcome"], rules, &caller.id).await?;
        CompleteRequest { variables: form.variables()?, outcome: form.text.get("outcome").cloned() }
    } else {
        limited_json(request, &state).await?
    };
    complete_with(state, caller, id, req).await
}

/// A completion already read from its body (JSON or multipart; the web inbox's form).
pub(crate) async fn complete_with(
    state: AppState,
    caller: Arc<Caller>,
    id: String,
    req: CompleteRequest,
) -> ApiResult<Json<CompletionView>> {
    let outcome = match req.outcome.as_deref() {
        None | Some("next") => Outcome::Next,
        Some("send_back") => {
            return Err(ApiError::unprocessable(
                "use-send-back",
                "to send a task back, POST /api/v1/tasks/{id}/send-back with a comment",
            ))
        }
        Some(name) => Outcome::Named(name.to_string()),
    };
    let engine = state.engine.clone();
    blocking(move || finish(&engine, &caller, &id, req.variables, outcome).map(Json)).await
}

/// Send the work back to the step the process designer allows (`send_back:`),
/// with a comment that goes into the history.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/send-back", operation_id = "send_back_task", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    request_body = SendBackRequest,
    responses(
        (status = 200, description = "Sent back; the earlier step is open again", body = CompletionView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The caller may see but not work this task", body = ErrorBody),
        (status = 404, description = "No such task, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "Completed already, or claimed by someone else", body = ErrorBody),
        (status = 422, description = "No comment, or this task cannot be sent back (`unknown-outcome`)", body = ErrorBody),
    ))]
pub async fn send_back(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SendBackRequest>,
) -> ApiResult<Json<CompletionView>> {
    check_text("comment", &req.comment, MAX_COMMENT_CHARS, true)?;
    let engine = state.engine.clone();
    let outcome = Outcome::SendBack { comment: req.comment };
    blocking(move || finish(&engine, &caller, &id, req.variables, outcome).map(Json)).await
}

/// Longest business error code, in characters.
pub const MAX_ERROR_CODE_CHARS: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskErrorRequest {
    /// The business error's code, as a boundary of the task names it (`error: 書類不備`).
    #[schema(min_length = 1, max_length = 100)]
    pub code: String,
    /// Why, for the people who see it next (a boundary may copy it with `error.message`).
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub message: String,
}

/// End a task with a business error instead of completing it ("the documents are
/// incomplete"): an error boundary of the task with this code takes the token on.
/// Who may complete the task may do this. Nothing catching the code is 422
/// (`uncaught-error`) and the task stays open.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/error", operation_id = "task_error", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    request_body = TaskErrorRequest,
    responses(
        (status = 200, description = "The task ended with the error; the boundary's path runs", body = CompletionView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The caller may see but not work this task", body = ErrorBody),
        (status = 404, description = "No such task, or not one the caller may see", body = ErrorBody),
        (status = 409, description = "Completed already, or claimed by someone else", body = ErrorBody),
        (status = 422, description = "No boundary of the task catches this code (`uncaught-error`), or an empty or too long code or message; nothing saved", body = ErrorBody),
    ))]
pub async fn fail(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<TaskErrorRequest>,
) -> ApiResult<Json<CompletionView>> {
    check_text("code", &req.code, MAX_ERROR_CODE_CHARS, true)?;
    check_text("message", &req.message, MAX_COMMENT_CHARS, false)?;
    let engine = state.engine.clone();
    blocking(move || {
        workable_task(&engine, &caller, &id)?;
        let inst = engine.fail_task(&id, &caller.id, &req.code, &req.message).map_err(|e| task_error(e, &id, None))?;
        tracing::info!(task = %id, instance = inst.id, code = %req.code, by = %caller.id, "task ended with a business error");
        let next_tasks =
            open_tasks(&engine, &inst)?.into_iter().filter(|t| caller.may_work(t)).map(TaskView::from).collect();
        Ok(Json(CompletionView { task: engine.task(&id)?.into(), instance: InstanceSummary::from(&inst), next_tasks }))
    })
    .await
}
