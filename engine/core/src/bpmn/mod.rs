//! BPMN 2.0 XML: export (this branch). The import's modules join here.

pub mod export;
mod export_json;
mod export_layout;

pub use export::export;
