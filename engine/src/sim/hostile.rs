//! Values a hostile (or careless) user sends in forms, messages and connector
//! answers: extremes of every JSON type, wrong types, long and strange text.

use super::rng::Rng;
use serde_json::{json, Value};

/// A value that is sometimes ordinary, often not.
pub fn value(rng: &mut Rng) -> Value {
    match rng.below(18) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(i64::MAX),
        3 => json!(i64::MIN),
        4 => json!(u64::MAX),
        5 => json!(1e308),
        6 => json!(-1.5e300),
        7 => json!(100_000_000),
        8 => json!(0.1),
        9 => Value::String("x".repeat(rng.range(1, 70_000) as usize)),
        10 => json!("日本語の値🎌\u{202e}rtl\u{0}nul\u{feff}"),
        11 => json!(""),
        12 => json!("12"),
        13 => json!(true),
        14 => Value::Null,
        15 => json!([1, "two", null]),
        16 => json!({ "nested": { "deep": [ { "x": 1 } ] } }),
        _ => nested(rng.range(10, 200) as usize),
    }
}

/// Arrays nested `depth` deep (serde_json refuses to read more than 128 levels).
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

/// An ordinary value for variable `name` of the generated processes.
pub fn ordinary(rng: &mut Rng, name: &str) -> Value {
    match name {
        "s0" | "e0" => json!(format!("text {}", rng.below(100))),
        _ => json!(rng.below(12)),
    }
}
