//! Expressions in BPMN files (FEEL, Python, JavaScript) → rhai.
