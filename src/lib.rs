//! nagare as a library: the task-list HTTP [`server`], for the `nagare` binary, for
//! integration tests and benchmarks that start the real server in-process, and for
//! apps that embed the engine and want its API too.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use nagare::server::{auth::Users, Server};
//! let engine = nagare_engine::Engine::in_memory();
//! let users = Users::load(std::path::Path::new("config/users.yaml")).expect("users file");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = Server::start(listener, engine, users, std::future::pending())?;
//! println!("listening on {}", server.url());
//! server.shutdown().await
//! # }
//! ```

pub mod server;
pub mod web;
