//! The OpenAPI 3 document at `/api/v1/openapi.json`.
//!
//! Paths and schemas come from the `#[utoipa::path]` attributes of the handlers that
//! [`super::app`] registers, so the document lists exactly the routes the router
//! serves. Here: the document's frame (info, tags, the bearer scheme).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, ResponseBuilder};

/// The rendered document, shared by the handler.
#[derive(Clone)]
pub struct Document(pub Arc<String>);

/// Name of the security scheme every route but health uses.
pub const BEARER: &str = "bearer";

pub fn base() -> OpenApi {
    let tag = |name: &str, description: &str| TagBuilder::new().name(name).description(Some(description)).build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("nagare task-list API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Deploy and start processes, work user tasks (inbox, claim, complete, send back, end with a \
                     business error), inspect instances, send messages, fix incidents, serve external connectors' jobs. Every route but /health, \
                     /ready and the webhooks under /hooks needs `Authorization: Bearer <token>` (a webhook carries \
                     its own `?secret=`). Errors are JSON `{code, message, details}`. Without a valid token every \
                     path but those answers 401 before any 404 or 405. Any request may also be answered 408 \
                     (`header-timeout`: the request head came too slowly), 414 (`uri-too-long`), 431 \
                     (`headers-too-large`) or 503 (`busy`: too many connections; retry), all as JSON.",
                ))
                .build(),
        )
        .tags(Some(vec![
            tag("processes", "Deployed process definitions"),
            tag("instances", "Running and finished process instances"),
            tag("tasks", "User tasks: the inbox and the work on one task"),
            tag("files", "Content of file variables: upload before start or completion, download"),
            tag("messages", "Messages to waiting processes (how outside systems report back)"),
            tag("proxies", "Proxies (代理人): who acts for whom and when; requests filed on someone's behalf"),
            tag("org", "The org chart used by dynamic assignment (administrators)"),
            tag("incidents", "Stopped tokens waiting for an operator: list, retry, resolve"),
            tag("jobs", "External workers: activate jobs of external connectors, report their results"),
            tag("events", "What happens, as server-sent events (instead of polling)"),
            tag("hooks", "Webhooks from outside systems (no bearer token; a shared secret)"),
            tag("health", "Health, readiness, metrics and this document"),
        ]))
        .build()
}

/// Add the bearer scheme and make it the default requirement, and the error
/// responses every operation of a kind can give, so that no operation forgets one:
/// 401 and 500 on every protected route, 400 where there are parameters to get
/// wrong, 408 where there is a body, 400/413/415/422 where it is JSON.
pub fn finish(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            let public = op.security.as_ref().is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
            let mut add = |code: &str, description: &str| {
                op.responses.responses.entry(code.to_string()).or_insert_with(|| error_response(description));
            };
            if public {
                continue;
            }
            add("401", "No valid token (`unauthorized`)");
            add(
                "500",
                "The store failed (`store-failed`) or an internal error stopped the request (`internal`): the \
                 outcome is unknown, look before retrying",
            );
            if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                add("400", "A bad path or query parameter (`bad-path`, `bad-query`)");
            }
            if op.request_body.is_some() {
                add(
                    "408",
                    "The body did not arrive within the body timeout (`body-timeout`); the connection is closed",
                );
            }
            let json_body = op.request_body.as_ref().is_some_and(|b| b.content.contains_key("application/json"));
            if json_body {
                add("400", "Malformed JSON or a body of the wrong shape (`malformed-json`, `invalid-body`), with line and column");
                add("413", "The body is larger than the limit (`body-too-large`)");
                add("415", "The body is not JSON (`unsupported-media-type`)");
                add("422", DUPLICATE_KEY);
                // An operation with its own 422 refuses duplicate keys all the same.
                if let Some(RefOr::T(r)) = op.responses.responses.get_mut("422") {
                    if !r.description.contains("duplicate-key") {
                        r.description = format!("{}. {DUPLICATE_KEY}", r.description.trim_end_matches('.'));
                    }
                }
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A token from the users file (`nagare token` makes one)"))
                .build(),
        ),
    );
    doc.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
}

const DUPLICATE_KEY: &str = "A key sent twice in one JSON object (`duplicate-key`, naming the key).";

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    RefOr::T(ResponseBuilder::new().description(description).content("application/json", content).build())
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "openapi", tag = "health",
    responses(
        (status = 200, description = "The OpenAPI 3 document of this server", content_type = "application/json"),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
    ))]
pub async fn document(Extension(doc): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0.as_str().to_owned()).into_response()
}
