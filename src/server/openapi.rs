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
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

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
                    "Deploy and start processes, work user tasks (inbox, claim, complete, send back), inspect \
                     instances. Every route but /health and /ready needs `Authorization: Bearer <token>`. Errors \
                     are JSON `{code, message, details}`.",
                ))
                .build(),
        )
        .tags(Some(vec![
            tag("processes", "Deployed process definitions"),
            tag("instances", "Running and finished process instances"),
            tag("tasks", "User tasks: the inbox and the work on one task"),
            tag("health", "Health, readiness, metrics and this document"),
        ]))
        .build()
}

/// Add the bearer scheme and make it the default requirement.
pub fn finish(doc: &mut OpenApi) {
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

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses(
        (status = 200, description = "The OpenAPI 3 document of this server", content_type = "application/json"),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
    ))]
pub async fn document(Extension(doc): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0.as_str().to_owned()).into_response()
}
