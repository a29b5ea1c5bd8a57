//! Typed variables: an app's own serde types in and out of an instance's variables.
//!
//! Variables are a JSON map ([`Vars`]); an app usually has a struct for them.
//! [`VarsFromSerde::from_serde`] turns one into variables (its fields become
//! variable names), and [`VarsAs::vars_as`] reads an instance's variables back into
//! one, with an error that names the field that did not fit.
//!
//! ```
//! use nagare_engine::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Order { customer: String, amount: u32 }
//!
//! let vars = Vars::from_serde(&Order { customer: "ながれ".into(), amount: 480 }).unwrap();
//! assert_eq!(vars["amount"], serde_json::json!(480));
//! let back: Order = vars.vars_as().unwrap();
//! assert_eq!(back.amount, 480);
//! ```

use crate::expr::Vars;
use crate::runtime::Instance;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Why typed variables could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypedVarsError {
    /// Variables are named: only a struct or a map can be variables.
    #[error("variables must be a struct or a map of names to values, not {0}")]
    NotAMap(&'static str),
    /// The value could not be turned into JSON (a map with non-text keys, a failing
    /// `Serialize`).
    #[error("cannot turn the value into variables: {0}")]
    Serialize(String),
    /// Variable (or a part of one) `field` does not fit the type: `message` says how
    /// (`field` is `.` when the problem is the whole map, e.g. a missing field).
    #[error("variable `{field}`: {message}")]
    Field {
        /// The variable's path (`.` for the whole map).
        field: String,
        /// What does not fit.
        message: String,
    },
}

/// Variables from a serde type ([`Vars::from_serde`]).
pub trait VarsFromSerde: Sized {
    /// The fields of `value` as variables.
    fn from_serde<T: Serialize + ?Sized>(value: &T) -> Result<Self, TypedVarsError>;
}

impl VarsFromSerde for Vars {
    fn from_serde<T: Serialize + ?Sized>(value: &T) -> Result<Self, TypedVarsError> {
        match serde_json::to_value(value).map_err(|e| TypedVarsError::Serialize(e.to_string()))? {
            Value::Object(map) => Ok(map.into_iter().collect()),
            Value::Null => Err(TypedVarsError::NotAMap("null")),
            Value::Bool(_) => Err(TypedVarsError::NotAMap("a bool")),
            Value::Number(_) => Err(TypedVarsError::NotAMap("a number")),
            Value::String(_) => Err(TypedVarsError::NotAMap("a string")),
            Value::Array(_) => Err(TypedVarsError::NotAMap("a list")),
        }
    }
}

/// Variables read into a serde type.
pub trait VarsAs {
    /// The variables as a `T`; variables `T` does not name are ignored unless `T`
    /// says `#[serde(deny_unknown_fields)]`.
    fn vars_as<T: DeserializeOwned>(&self) -> Result<T, TypedVarsError>;
}

impl VarsAs for Vars {
    fn vars_as<T: DeserializeOwned>(&self) -> Result<T, TypedVarsError> {
        let map: serde_json::Map<String, Value> = self.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        serde_path_to_error::deserialize(Value::Object(map))
            .map_err(|e| TypedVarsError::Field { field: e.path().to_string(), message: e.into_inner().to_string() })
    }
}

impl VarsAs for Instance {
    fn vars_as<T: DeserializeOwned>(&self) -> Result<T, TypedVarsError> {
        self.vars.vars_as()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Order {
        顧客: String,
        金額: u32,
        items: Vec<Item>,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Item {
        qty: u32,
    }

    #[test]
    fn typed_vars_round_trip_and_name_the_field_that_does_not_fit() {
        let order = Order { 顧客: "ながれ".into(), 金額: 480, items: vec![Item { qty: 2 }] };
        let vars = Vars::from_serde(&order).unwrap();
        assert_eq!(vars["金額"], json!(480));
        assert_eq!(vars.vars_as::<Order>().unwrap(), order);

        let mut bad = vars.clone();
        bad.insert("items".into(), json!([{ "qty": "two" }]));
        let err = bad.vars_as::<Order>().unwrap_err();
        assert!(matches!(&err, TypedVarsError::Field { field, .. } if field == "items[0].qty"), "{err}");
        assert!(err.to_string().starts_with("variable `items[0].qty`: invalid type: string \"two\""), "{err}");

        let mut missing = vars.clone();
        missing.remove("金額");
        let err = missing.vars_as::<Order>().unwrap_err();
        assert!(err.to_string().contains("missing field `金額`"), "{err}");

        assert_eq!(Vars::from_serde(&[1, 2]), Err(TypedVarsError::NotAMap("a list")));
    }
}
