//! The task-list API end to end: the real server on 127.0.0.1 (a random port),
//! driven over HTTP with reqwest.
//!
//! Every test ends with [`common::Api::finish`], which checks that each response the
//! server gave (method, route, status, from its own request metrics) is documented
//! in its OpenAPI document, then shuts the server down gracefully.

mod approvals;
mod archive;
mod bpmn;
mod calls;
mod cloudsign;
mod common;
mod config;
mod events;
mod files;
mod flow;
mod hostile;
mod hostile_values;
mod jobs;
mod loader;
mod migrations;
mod multi;
#[cfg(feature = "postgres")]
mod nodes;
#[cfg(feature = "postgres")]
mod nodes_kill;
mod openapi;
mod priority;
mod proxies;
mod race;
mod rules;
mod serve;
mod served;
mod sse;
