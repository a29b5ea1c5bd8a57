//! `/api/v1/org`: the org chart in force (departments, positions, posts,
//! company days off), read by administrators and replaced by them without a
//! restart. The server also reads it from the org file at start and on SIGHUP
//! ([`load_file`]); a replacement through the API is written back to that file
//! (temp file, fsync, rename) so that a restart keeps it.
//!
//! A replaced org applies to tasks that open afterwards; open tasks keep their
//! assignee. Members must be users of the users file.

use super::auth::{Auth, Users};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::ApiJson;
use super::{blocking, AppState};
use axum::extract::State;
use axum::Json;
use nagare_engine::load::input::READ_LIMIT;
use nagare_engine::org::Org;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::PoisonError;
use utoipa::ToSchema;

/// Read and check the org file at `path` against `users`.
pub fn load_file(path: &Path, users: &Users) -> Result<Org, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(READ_LIMIT).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read the org file {}: {e}", path.display()))?;
    let name = path.display().to_string();
    let text = nagare_engine::load::input::decode(&bytes).map_err(|d| d.finish(&name).to_string())?;
    parse(&name, text, users).map_err(|d| d.to_string())
}

fn parse(name: &str, text: &str, users: &Users) -> Result<Org, nagare_engine::Diagnostics> {
    Org::parse(name, text, Some(&|u: &str| users.get(u).is_some()))
}

/// Wire the org file and the proxies file of a serving server: the admin API
/// writes the org file, SIGHUP reads it again (a file with errors is refused
/// whole and the org in force stays), proxies persist in `proxies`.
pub fn serve_file(state: &AppState, org: &Path, proxies: &Path) -> Result<(), String> {
    state.users.proxies.open(proxies)?;
    *state.users.org_file.lock().unwrap_or_else(PoisonError::into_inner) = Some(org.to_path_buf());
    #[cfg(unix)]
    {
        let (path, directory, engine) = (org.to_path_buf(), state.users.clone(), state.engine.clone());
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                return tracing::warn!("cannot listen for SIGHUP; the org file is read at start only");
            };
            while hup.recv().await.is_some() {
                if !path.exists() {
                    continue;
                }
                match load_file(&path, &directory.current()) {
                    Ok(org) => {
                        let (d, _, u) = org.sizes();
                        engine.set_org(org);
                        tracing::info!(file = %path.display(), departments = d, users = u, "org file reloaded");
                    }
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e, "org file not reloaded; the org read before stays in force")
                    }
                }
            }
        });
    }
    Ok(())
}

/// What the org in force holds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrgSummary {
    pub departments: usize,
    pub positions: usize,
    pub users: usize,
    /// The org file the server reads and writes, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

fn summary(state: &AppState) -> OrgSummary {
    let (departments, positions, users) = state.engine.org().sizes();
    let file =
        state.users.org_file.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|p| p.display().to_string());
    OrgSummary { departments, positions, users, file }
}

/// A new org file.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutOrg {
    /// The org file's YAML text (README § Organisation).
    pub source: String,
}

/// The org chart in force (administrators).
#[utoipa::path(get, path = "/api/v1/org", operation_id = "get_org", tag = "org",
    responses(
        (status = 200, description = "Sizes of the org in force", body = OrgSummary),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Json<OrgSummary>> {
    caller.require_admin("read the org chart")?;
    Ok(Json(summary(&state)))
}

/// Replace the org chart (administrators): checked like the file at start; on
/// errors nothing changes and `details.diagnostics` lists each with line and col.
#[utoipa::path(put, path = "/api/v1/org", operation_id = "put_org", tag = "org",
    request_body = PutOrg,
    responses(
        (status = 200, description = "In force for tasks that open from now on", body = OrgSummary),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "The org has errors: `details.diagnostics`", body = ErrorBody),
    ))]
pub async fn put(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<PutOrg>,
) -> ApiResult<Json<OrgSummary>> {
    caller.require_admin("replace the org chart")?;
    let org = parse("org.yaml", &req.source, &state.users.current()).map_err(|d| {
        let diagnostics: Vec<serde_json::Value> =
            d.0.iter().map(|x| serde_json::to_value(x).unwrap_or_default()).collect();
        ApiError::unprocessable("invalid-org", d.to_string().trim().to_string())
            .with_details(serde_json::json!({ "diagnostics": diagnostics }))
    })?;
    let path = state.users.org_file.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(path) = path {
        let text = req.source.clone();
        blocking(move || {
            write_atomically(&path, &text).map_err(|e| ApiError::internal(format!("cannot write the org file: {e}")))
        })
        .await?;
    }
    state.engine.set_org(org);
    tracing::info!(by = %caller.id, "org chart replaced");
    Ok(Json(summary(&state)))
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("yaml.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
