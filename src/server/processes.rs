//! `/api/v1/processes`: list, read and deploy process definitions.

use super::auth::Auth;
use super::error::{echo, ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::views::effective_max_length;
use super::{blocking, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nagare_engine::diag::Diagnostic;
use nagare_engine::process::{NodeKind, Process, VarSpec};
use nagare_engine::types::VarType;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// One deployed version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub version: u32,
    /// Digest of the source text: equal digests, equal files.
    pub digest: String,
}

/// A process and its versions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProcessSummary {
    pub id: String,
    pub name: String,
    pub latest_version: u32,
    /// Every deployed version, oldest first.
    pub versions: Vec<VersionView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LaneView {
    pub id: String,
    pub name: String,
    /// Groups whose members work this lane's tasks.
    pub groups: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VariableView {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Must be given when an instance starts.
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Largest file accepted, bytes (`file` variables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Accepted content types (`file` variables; absent: any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_types: Option<Vec<String>>,
}

/// How a declared variable (or setting) is shown to clients.
pub fn variable_view(name: &str, v: &VarSpec) -> VariableView {
    let file = match &v.ty {
        VarType::File(rules) => Some(rules),
        _ => None,
    };
    VariableView {
        name: name.to_string(),
        ty: v.ty.name().to_string(),
        label: v.label.clone(),
        required: v.required,
        options: match &v.ty {
            VarType::Choice { options } => Some(options.clone()),
            _ => None,
        },
        default: v.default.clone(),
        max_length: effective_max_length(v),
        max_size: file.map(|r| r.max_size),
        content_types: file.filter(|r| !r.content_types.is_empty()).map(|r| r.content_types.clone()),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub id: String,
    /// start, end, user_task, service, script, exclusive, parallel, join...
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    /// The task title of a user task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The connector of a service task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// Nodes a token may go to from here.
    pub next: Vec<String>,
}

/// One version of a process: its YAML and what it declares.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProcessDetail {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub versions: Vec<VersionView>,
    /// The process file as deployed.
    pub source: String,
    pub lanes: Vec<LaneView>,
    pub variables: Vec<VariableView>,
    pub nodes: Vec<NodeView>,
}

fn versions(all: &[Arc<Process>]) -> Vec<VersionView> {
    all.iter().map(|p| VersionView { version: p.version, digest: p.digest.clone() }).collect()
}

fn detail(p: &Process, all: &[Arc<Process>]) -> ProcessDetail {
    ProcessDetail {
        id: p.id.clone(),
        name: p.name.clone(),
        version: p.version,
        versions: versions(all),
        source: p.source.clone(),
        lanes: p
            .lanes
            .iter()
            .map(|(id, l)| LaneView { id: id.clone(), name: l.name.clone(), groups: l.groups.clone() })
            .collect(),
        variables: p.vars.iter().map(|(name, v)| variable_view(name, v)).collect(),
        nodes: p
            .nodes
            .iter()
            .map(|n| NodeView {
                id: n.id.clone(),
                kind: n.kind.name().to_string(),
                name: n.name.clone(),
                lane: n.lane.clone(),
                title: match &n.kind {
                    NodeKind::UserTask(u) => Some(u.title.clone()),
                    _ => None,
                },
                connector: match &n.kind {
                    NodeKind::Service(s) => Some(s.connector.clone()),
                    _ => None,
                },
                next: n.kind.successors().into_iter().map(|ix| p.nodes[ix].id.clone()).collect(),
            })
            .collect(),
    }
}

/// Every deployed process with its versions.
#[utoipa::path(get, path = "/api/v1/processes", operation_id = "list_processes", tag = "processes",
    responses(
        (status = 200, description = "Deployed processes, by id", body = Vec<ProcessSummary>),
        (status = 401, description = "No valid token", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, Auth(_): Auth) -> Json<Vec<ProcessSummary>> {
    let list = state
        .engine
        .processes()
        .into_iter()
        .filter_map(|all| {
            let latest = all.last()?.clone();
            Some(ProcessSummary {
                id: latest.id.clone(),
                name: latest.name.clone(),
                latest_version: latest.version,
                versions: versions(&all),
            })
        })
        .collect();
    Json(list)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    /// A version number; the latest when absent.
    pub version: Option<u32>,
}

/// One version of a process: source YAML and a parsed summary.
#[utoipa::path(get, path = "/api/v1/processes/{id}", operation_id = "get_process", tag = "processes",
    params(("id" = String, Path, description = "Process id"), VersionQuery),
    responses(
        (status = 200, description = "The process", body = ProcessDetail),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such process or version", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Auth(_): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult<Json<ProcessDetail>> {
    let all = state.engine.processes().into_iter().find(|v| v.first().is_some_and(|p| p.id == id));
    let Some(all) = all else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-process",
            format!("no process `{}` is deployed", echo(&id)),
        ));
    };
    let p = match q.version {
        None => all.last().cloned(),
        Some(v) => all.iter().find(|p| p.version == v).cloned(),
    };
    let p = p.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-version",
            format!("process `{}` has no version {}; it has 1 to {}", echo(&id), q.version.unwrap_or(0), all.len()),
        )
    })?;
    Ok(Json(detail(&p, &all)))
}

/// A process file to deploy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The YAML text, or BPMN 2.0 XML (recognised by `<?xml` or `<definitions`).
    #[schema(min_length = 1)]
    pub source: String,
    /// File name used in diagnostics (default `api.yaml`).
    #[serde(default)]
    pub file: Option<String>,
}

/// What a deploy did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeployResult {
    pub id: String,
    pub version: u32,
    /// False when the same text was deployed already (nothing changed).
    pub created: bool,
    /// Warnings (the file deployed anyway), each with line and column.
    #[schema(value_type = Vec<Object>)]
    pub warnings: Vec<Value>,
}

/// Deploy a process file (administrators). A changed file becomes a new version;
/// running instances keep theirs. Errors come back as a list with line and column.
/// A BPMN 2.0 file is imported first: send it as `source`, or as the body itself
/// with `Content-Type: application/xml`.
#[utoipa::path(post, path = "/api/v1/processes", operation_id = "deploy_process", tag = "processes",
    request_body(
        content(
            (DeployRequest = "application/json"),
            (String = "application/xml"),
        ),
        description = "A process file (YAML or BPMN) as JSON, or a BPMN 2.0 file as the body"
    ),
    responses(
        (status = 201, description = "Deployed as a new version", body = DeployResult),
        (status = 200, description = "The same text was deployed already", body = DeployResult),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "The file has errors: `details.diagnostics` lists each with `line` and `col`", body = ErrorBody),
    ))]
pub async fn deploy(
    State(state): State<AppState>,
    Auth(caller): Auth,
    body: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<DeployResult>)> {
    caller.require_admin("deploy processes")?;
    let req = deploy_request(body, &state).await?;
    deploy_file(State(state), Auth(caller), ApiJson(req)).await
}

/// Deploy a parsed request (the API route and the web console's upload).
pub async fn deploy_file(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<DeployRequest>,
) -> ApiResult<(StatusCode, Json<DeployResult>)> {
    caller.require_admin("deploy processes")?;
    let file = req.file.unwrap_or_else(|| "api.yaml".to_string());
    if file.chars().count() > 200 || file.contains(['\n', '\r']) {
        return Err(ApiError::unprocessable("bad-file-name", "`file` must be one line of at most 200 characters"));
    }
    let engine = state.engine.clone();
    let d = blocking(move || engine.deploy(&file, &req.source).map_err(ApiError::from)).await?;
    tracing::info!(process = %d.id, version = d.version, created = d.created, by = %caller.id, "deploy");
    let warnings = d.warnings.0.iter().map(diag_json).collect();
    let status = if d.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(DeployResult { id: d.id, version: d.version, created: d.created, warnings })))
}

/// The deploy body: JSON `{source, file}`, or a BPMN file as the body itself
/// (`Content-Type: application/xml`, `text/xml` or `application/bpmn+xml`).
async fn deploy_request(req: axum::extract::Request, state: &AppState) -> ApiResult<DeployRequest> {
    use axum::extract::FromRequest;
    let ct = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence.ends_with("/xml") || essence.ends_with("+xml") {
        let super::extract::ApiBytes(bytes) = super::extract::ApiBytes::from_request(req, state).await?;
        let source = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::unprocessable("invalid-utf8", "the BPMN file is not UTF-8; save it as UTF-8"))?;
        return Ok(DeployRequest { source, file: Some("api.bpmn".to_string()) });
    }
    ApiJson::<DeployRequest>::from_request(req, state).await.map(|j| j.0)
}

fn diag_json(d: &Diagnostic) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}
