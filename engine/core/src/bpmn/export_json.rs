//! The `nagare:` extension payloads of the BPMN export: the process's and each
//! node's definition as compact JSON, in the order the YAML wrote its maps.
//!
//! Why JSON and not the YAML text: JSON has one spelling per value and no
//! indentation, so it survives a modeler re-saving the file (re-indenting, turning
//! CDATA into escapes). Why through `serde_yaml::Value`: its mappings keep their
//! order (`serde_json::Value` sorts keys here, which would reorder `variables:`).

use crate::model::{NodeDef, ProcessDef};
use serde::Serialize;
use serde_yaml::Value;

/// Keys whose values are the designer's data (connector inputs, default values,
/// version labels, watch settings): kept whole, `null`s included.
const DATA_KEYS: &[&str] = &["with", "default", "version", "settings"];

/// `def` without its start and nodes (the start event and the flow node elements
/// carry those), as JSON.
pub fn process_json(def: &ProcessDef) -> String {
    let mut v = serde_yaml::to_value(def).expect("a process definition is plain data");
    if let Value::Mapping(m) = &mut v {
        m.remove("nodes");
        m.remove("start");
    }
    strip_nulls(&mut v, false);
    serde_json::to_string(&v).expect("YAML values of a definition are JSON values")
}

/// Any part of a definition (a start, a boundary, a branch) as JSON, absent
/// optional keys left out.
pub fn json<T: Serialize>(part: &T) -> String {
    let mut v = serde_yaml::to_value(part).expect("a definition is plain data");
    strip_nulls(&mut v, false);
    serde_json::to_string(&v).expect("YAML values of a definition are JSON values")
}

/// One node's definition as JSON; a sub-process without its `start` and `nodes`
/// (they are the elements inside the `bpmn:subProcess`).
pub fn node_json(node: &NodeDef) -> String {
    let mut v = serde_yaml::to_value(node).expect("a node definition is plain data");
    if let Some(Value::Mapping(sub)) = v.get_mut("sub_process") {
        sub.remove("nodes");
        sub.remove("start");
    }
    strip_nulls(&mut v, false);
    // `end:` with no value is present-and-null: a null that means something.
    if matches!(node.end, Some(None)) {
        if let Value::Mapping(m) = &mut v {
            m.insert(Value::from("end"), Value::Null);
        }
    }
    // No `name:`: said outright, because the element shows the key as its name
    // (a modeler draws nothing otherwise) and the payload wins over the element.
    if node.name.is_none() {
        if let Value::Mapping(m) = &mut v {
            let mut named = serde_yaml::Mapping::new();
            named.insert(Value::from("name"), Value::Null);
            named.extend(std::mem::take(m));
            *m = named;
        }
    }
    serde_json::to_string(&v).expect("YAML values of a definition are JSON values")
}

/// Drop `key: null` entries (an absent optional field) from every mapping of the
/// definition's own structure; the values under [`DATA_KEYS`] are not entered.
/// `watch` settings are data, process `settings` are declarations: `in_watch` tells.
fn strip_nulls(v: &mut Value, in_watch: bool) {
    match v {
        Value::Mapping(m) => {
            m.retain(|_, x| !x.is_null());
            for (k, x) in m.iter_mut() {
                let key = k.as_str().unwrap_or("");
                let data = DATA_KEYS.contains(&key) && (key != "settings" || in_watch);
                if !data {
                    strip_nulls(x, key == "watch");
                }
            }
        }
        Value::Sequence(s) => {
            for x in s {
                strip_nulls(x, false);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_json_keeps_map_order_nulls_in_inputs_and_a_bare_end() {
        let node: NodeDef =
            serde_yaml::from_str("service: x\nwith: { z: 1, a: null }\nset: { b: '1', a: '2' }\nnext: n\n").unwrap();
        let j = node_json(&node);
        assert_eq!(j, r#"{"name":null,"next":"n","service":"x","with":{"z":1,"a":null},"set":{"b":"1","a":"2"}}"#);
        let back: NodeDef = serde_json::from_str(&j).unwrap();
        assert!(back.end.is_none(), "an absent end stays absent");
        let end: NodeDef = serde_yaml::from_str("end:\n").unwrap();
        let j = node_json(&end);
        assert_eq!(j, r#"{"name":null,"end":null}"#);
        assert!(matches!(serde_json::from_str::<NodeDef>(&j).unwrap().end, Some(None)));
    }

    #[test]
    fn process_json_has_no_nodes_and_keeps_variable_order() {
        let def: ProcessDef = serde_yaml::from_str(
            "id: p\nvariables: { z: { type: text }, a: { type: int, default: null } }\nstart: { next: e }\nnodes: { e: { end: } }\n",
        )
        .unwrap();
        let j = process_json(&def);
        assert!(!j.contains("nodes") && !j.contains("start"), "{j}");
        let z = j.find("\"z\"").unwrap();
        let a = j.find("\"a\"").unwrap();
        assert!(z < a, "declaration order kept: {j}");
    }
}
