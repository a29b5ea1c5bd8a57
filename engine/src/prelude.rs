//! The everyday types of an app that embeds the engine, in one import:
//! `use nagare_engine::prelude::*;`.

pub use crate::asynchronous::AsyncEngine;
pub use crate::connector::{AsyncFnConnector, Call, Connector, ConnectorError, FnConnector, Registry};
pub use crate::engine::{Engine, EngineBuilder, EngineError, StartOptions};
pub use crate::events::{EngineEvent, EventKind};
pub use crate::executor::Executor;
pub use crate::expr::Vars;
pub use crate::messages::{Correlation, MessageOptions};
pub use crate::permissions::may_work;
pub use crate::runtime::{Instance, InstanceId, Outcome, Status, Task, TaskStatus};
pub use crate::store::{InstanceFilter, TaskQuery};
pub use crate::typed::{TypedVarsError, VarsAs, VarsFromSerde};
