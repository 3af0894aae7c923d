//! RFC 6902 JSON Patch between two documents: what the admission webhook
//! answers with, computed from the pod before and after [`inject_template`],
//! so the webhook's pod is exactly `weft inject`'s.
//!
//! [`inject_template`]: crate::sidecar::inject_template

use serde_json::{json, Value};

/// The operations that turn `from` into `to`: objects are compared key by key,
/// arrays of the same length element by element, anything else replaced whole.
pub fn diff(from: &Value, to: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    walk(from, to, &mut String::new(), &mut ops);
    ops
}

fn walk(from: &Value, to: &Value, path: &mut String, ops: &mut Vec<Value>) {
    if from == to {
        return;
    }
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                ops.push(json!({ "op": "remove", "path": format!("{path}/{}", escape(k)) }));
            }
            for (k, v) in b {
                let len = path.len();
                path.push('/');
                path.push_str(&escape(k));
                match a.get(k) {
                    Some(old) => walk(old, v, path, ops),
                    None => ops.push(json!({ "op": "add", "path": path.clone(), "value": v })),
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                walk(x, y, path, ops);
                path.truncate(len);
            }
        }
        _ => ops.push(json!({ "op": "replace", "path": path.clone(), "value": to })),
    }
}

/// A key as a JSON Pointer segment (RFC 6901).
fn escape(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_minimal_and_escaped() {
        let a = json!({ "metadata": { "annotations": { "x": "1" } }, "spec": { "containers": [ { "name": "a" } ], "gone": true } });
        let b = json!({ "metadata": { "annotations": { "x": "1", "weft.dev/status": "{}" } }, "spec": { "containers": [ { "name": "p" }, { "name": "a" } ] } });
        let ops = diff(&a, &b);
        assert_eq!(ops, vec![
            json!({ "op": "add", "path": "/metadata/annotations/weft.dev~1status", "value": "{}" }),
            json!({ "op": "remove", "path": "/spec/gone" }),
            json!({ "op": "replace", "path": "/spec/containers", "value": [ { "name": "p" }, { "name": "a" } ] }),
        ]);
        assert!(diff(&a, &a).is_empty());
    }
}
