//! nagare's connector plugins.
//!
//! Each module implements [`nagare_engine::Connector`] for one service. [`builtin`]
//! returns the registry the `nagare` binary starts with; embedding apps start from it
//! (or from an empty one) and add their own.

pub mod echo;

use nagare_engine::Registry;

/// The connectors every nagare binary has.
pub fn builtin() -> Registry {
    let mut r = Registry::default();
    r.register("echo", echo::Echo);
    r
}
