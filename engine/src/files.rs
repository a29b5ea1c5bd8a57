//! `file` variables at the engine's edge: storing uploads, checking references,
//! reading content back, and collecting content nothing references any more.
//!
//! The core only knows a file as a [`FileRef`] value (name, type, size, SHA-256);
//! whether the content exists, has that size and, for PDF-only variables, really is
//! a PDF is checked here, against the blob store, before any event that writes a
//! file variable from outside (start, task completion). So a reference in a
//! committed instance always names stored content of the size it says.

use crate::blobs::{BlobError, BlobWriter, Blobs, Shape, WriteLimits};
use crate::engine::{Engine, EngineError};
use crate::expr::{format_datetime, Vars};
use crate::process::Process;
use crate::runtime::{FieldError, Rejection};
use crate::types::{FileRef, FileRules, VarType};
use serde_json::Value;
use std::collections::HashSet;
use std::io::Read;
use std::time::Duration;

/// How long content nothing references is kept: an upload waits this long for the
/// start or completion that uses it.
pub const UPLOAD_GRACE: Duration = Duration::from_secs(24 * 3600);

impl Engine {
    /// The blob store behind `file` variables.
    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// The rules of the latest `process`'s variable `var` if it is a file, else a 422.
    pub fn file_rules(&self, process: &str, var: &str) -> Result<FileRules, EngineError> {
        let p = self.latest(process).ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        Self::file_rules_in(&p, var)
    }

    /// The rules of `p`'s variable `var` if it is a file, else a 422.
    pub fn file_rules_in(p: &Process, var: &str) -> Result<FileRules, EngineError> {
        match p.vars.get(var).map(|v| &v.ty) {
            Some(VarType::File(rules)) => Ok(rules.clone()),
            Some(other) => Err(field_error(var, format!("`{var}` is a {} variable, not a file", other.name()))),
            None => Err(field_error(var, format!("process `{}` declares no variable `{var}`", p.id))),
        }
    }

    /// Start storing an upload for a variable with `rules`; the writer refuses
    /// content over the size limit (and non-PDFs where only PDFs are accepted)
    /// while it streams.
    pub fn file_writer(&self, rules: &FileRules) -> Result<BlobWriter, EngineError> {
        Ok(self.inner.blobs.writer(WriteLimits { max_size: rules.max_size, pdf: rules.wants_pdf() })?)
    }

    /// The reference to content just stored, as the value of a file variable.
    pub fn file_ref(&self, stored: crate::blobs::Stored, name: &str, content_type: &str, by: &str) -> FileRef {
        FileRef {
            name: name.to_string(),
            content_type: content_type.to_string(),
            size: stored.size,
            sha256: stored.sha256,
            created_by: by.to_string(),
            created_at: format_datetime(self.now()),
        }
    }

    /// Read a file's content.
    pub fn open_file(&self, file: &FileRef) -> Result<Box<dyn Read + Send>, EngineError> {
        Ok(self.inner.blobs.open(&file.sha256)?)
    }

    /// Refuse file values in `vars` that name missing content, content of another
    /// size, or (for PDF-only variables) content that is not a PDF.
    pub(crate) fn check_files(&self, p: &Process, vars: &Vars) -> Result<(), EngineError> {
        let mut errors = Vec::new();
        for (name, value) in vars {
            let Some(VarType::File(rules)) = p.vars.get(name).map(|v| &v.ty) else { continue };
            if value.is_null() {
                continue;
            }
            if let Err(problem) = self.check_file(rules, value) {
                errors.push(FieldError { field: name.clone(), problem });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Rejected(Rejection::InvalidData(errors)))
        }
    }

    fn check_file(&self, rules: &FileRules, value: &Value) -> Result<(), String> {
        let f = FileRef::from_value(value)?;
        rules.check(&f)?;
        let mut content = match self.inner.blobs.open(&f.sha256) {
            Ok(r) => r,
            Err(BlobError::Missing(_)) => {
                return Err(format!("no uploaded file has SHA-256 {}; upload it first (POST /api/v1/files)", f.sha256))
            }
            Err(e) => return Err(e.to_string()),
        };
        // Size and PDF shape are facts of the stored content, not of what the
        // reference claims.
        let mut shape = Shape::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = content.read(&mut buf).map_err(|e| format!("reading the file: {e}"))?;
            if n == 0 {
                break;
            }
            shape.feed(&buf[..n]);
        }
        if shape.size != f.size {
            return Err(format!("the reference says {} bytes, the stored file has {}", f.size, shape.size));
        }
        if let Some(problem) = rules.wants_pdf().then(|| shape.pdf_problem()).flatten() {
            return Err(format!("the file is not a PDF: {problem}"));
        }
        Ok(())
    }

    /// [`Engine::check_files`] for the process of an open task.
    pub(crate) fn check_task_files(&self, task: &str, data: &Vars) -> Result<(), EngineError> {
        if !data.values().any(Value::is_object) {
            return Ok(());
        }
        let t = self.task(task)?;
        let p = self.process(&t.process, t.version).ok_or_else(|| EngineError::UnknownProcess(t.process.clone()))?;
        self.check_files(&p, data)
    }

    /// Remove stored content that no instance references and that is older than
    /// `grace`. Reads every instance: run it rarely (`nagare serve` does once a day).
    pub fn collect_files(&self, grace: Duration) -> Result<usize, EngineError> {
        let mut keep = HashSet::new();
        let mut after = None;
        loop {
            let filter = crate::store::InstanceFilter { after, limit: Some(500), ..Default::default() };
            let page = self.instances(&filter)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for inst in &page {
                for value in inst.vars.values() {
                    collect_refs(value, &mut keep);
                }
            }
        }
        Ok(self.inner.blobs.collect(&keep, grace)?)
    }
}

/// Every SHA-256 a value (or anything nested in it) references as a file.
fn collect_refs(v: &Value, out: &mut HashSet<String>) {
    match v {
        Value::Object(o) => {
            if let Ok(f) = FileRef::from_value(v) {
                out.insert(f.sha256);
                return;
            }
            o.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn field_error(field: &str, problem: String) -> EngineError {
    EngineError::Rejected(Rejection::InvalidData(vec![FieldError { field: field.to_string(), problem }]))
}
