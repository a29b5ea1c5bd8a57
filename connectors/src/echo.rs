//! `echo`: returns its input as its result. For trying processes out and for tests,
//! where a service step is wanted without any outside system.

use nagare_engine::connector::BoxFuture;
use nagare_engine::{Call, Connector, ConnectorError};
use serde_json::Value;

pub struct Echo;

impl Connector for Echo {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(async move { Ok(call.input.clone()) })
    }
}
