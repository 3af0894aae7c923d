//! JSON schemas of the resource types, in the structural OpenAPI v3 form that
//! a Kubernetes CustomResourceDefinition requires. They are generated from the
//! same Rust types the parser deserializes into, so the schema the API server
//! enforces and the parser weft runs cannot drift apart.
//!
//! schemars writes what serde reads; [`structural`] then rewrites that into the
//! subset the API server accepts: no `$ref`, a `type` on every node (or one of
//! the `x-kubernetes-*` escapes), no `additionalProperties: false` (the server
//! prunes unknown fields instead), and `anyOf`/`oneOf` only as value checks.

use crate::types::common::{Dur, Host, Labels, Pct, Port, PortRef, Regex};
use crate::types::linkerd::SplitWeight;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value};
use std::borrow::Cow;

macro_rules! inline_schema {
    ($ty:ty, $name:literal, $schema:tt) => {
        impl JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

inline_schema!(Dur, "Duration", { "type": "string", "description": "A duration: 10s, 1.5s, 300ms, 1h." });
inline_schema!(Host, "Host", { "type": "string" });
inline_schema!(Regex, "Regex", { "type": "string", "description": "An RE2 regular expression." });
inline_schema!(Port, "Port", { "type": "integer", "minimum": 1, "maximum": 65535 });
inline_schema!(Pct, "Percent", { "type": "number", "minimum": 0, "maximum": 100 });
inline_schema!(PortRef, "PortRef", { "x-kubernetes-int-or-string": true });
inline_schema!(SplitWeight, "SplitWeight", { "x-kubernetes-int-or-string": true });
inline_schema!(Labels, "Labels", { "type": "object", "additionalProperties": { "type": "string" } });

/// The structural schema of `T`, every definition inlined.
pub fn structural<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let root = generator.into_root_schema_for::<T>();
    let mut root = root.to_value();
    let defs = root
        .get_mut("components")
        .and_then(|c| c.get_mut("schemas"))
        .map(Value::take)
        .and_then(|d| match d {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    let mut out = inline(root, &defs, &mut Vec::new());
    tidy(&mut out);
    out
}

/// Replaces every `$ref` by its definition. A type inside itself (a
/// ServiceProfile condition's `all`/`any`/`not`) becomes an open object at
/// its first repetition, as Linkerd's own CRD writes it: structural schemas
/// cannot recurse, and the parser still checks every level.
fn inline(v: Value, defs: &Map<String, Value>, open: &mut Vec<String>) -> Value {
    match v {
        Value::Object(mut m) => {
            if let Some(Value::String(r)) = m.remove("$ref") {
                let name = r.rsplit('/').next().unwrap_or_default().to_string();
                let def = match defs.get(&name) {
                    Some(d) if !open.contains(&name) => {
                        open.push(name);
                        let d = inline(d.clone(), defs, open);
                        open.pop();
                        d
                    }
                    _ => serde_json::json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
                };
                // Siblings of a $ref (a field's description, nullable) stay.
                let mut merged = match def {
                    Value::Object(d) => d,
                    _ => Map::new(),
                };
                for (k, v) in m {
                    let v = inline(v, defs, open);
                    merged.insert(k, v);
                }
                Value::Object(merged)
            } else {
                Value::Object(m.into_iter().map(|(k, v)| (k, inline(v, defs, open))).collect())
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|v| inline(v, defs, open)).collect()),
        other => other,
    }
}

/// Rewrites one node (and its children) into what a structural schema allows.
fn tidy(v: &mut Value) {
    let Value::Object(m) = v else { return };
    for key in ["$schema", "title", "components", "default", "examples", "example"] {
        m.remove(key);
    }
    // `type: [T, "null"]` (an Option): T, nullable.
    if let Some(Value::Array(types)) = m.get("type") {
        let named: Vec<Value> = types.iter().filter(|t| t.as_str() != Some("null")).cloned().collect();
        let nullable = named.len() < types.len();
        match named.as_slice() {
            [one] => {
                m.insert("type".into(), one.clone());
            }
            _ => {
                m.remove("type");
                m.insert("x-kubernetes-preserve-unknown-fields".into(), Value::Bool(true));
            }
        }
        if nullable {
            m.insert("nullable".into(), Value::Bool(true));
        }
    }
    if m.get("additionalProperties") == Some(&Value::Bool(false)) {
        m.remove("additionalProperties");
    }
    // Integer formats the API server does not know: the bounds say the same.
    if let Some(Value::String(f)) = m.get("format") {
        if !matches!(f.as_str(), "int32" | "int64" | "float" | "double") {
            m.remove("format");
        }
    }
    // schemars wraps a referenced type with siblings (nullable) in `allOf`.
    if let Some(Value::Array(parts)) = m.remove("allOf") {
        for part in parts {
            if let Value::Object(p) = part {
                for (k, v) in p {
                    m.entry(k).or_insert(v);
                }
            }
        }
    }
    // `anyOf`/`oneOf` with types inside (enums of structs, untagged choices) is
    // not structural: merge the alternatives' properties into one object.
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = m.remove(key) {
            // `Option<T>` arrives as `anyOf: [T, null]`, the null spelled as a type or an enum.
            let is_null = |a: &Value| a.get("type").and_then(Value::as_str) == Some("null") || a.get("enum") == Some(&Value::Array(vec![Value::Null]));
            let (nulls, mut alts): (Vec<Value>, Vec<Value>) = alts.into_iter().partition(is_null);
            if !nulls.is_empty() {
                m.insert("nullable".into(), Value::Bool(true));
            }
            alts.iter_mut().for_each(tidy);
            if let [Value::Object(only)] = alts.as_slice() {
                // `Option<Struct>`: the struct itself.
                for (k, v) in only {
                    m.entry(k.clone()).or_insert_with(|| v.clone());
                }
                continue;
            }
            let mut merged_props = Map::new();
            let mut types = Vec::new();
            let mut enums = Vec::new();
            for alt in &alts {
                if let Some(t) = alt.get("type").and_then(Value::as_str) {
                    if !types.contains(&t.to_string()) {
                        types.push(t.to_string());
                    }
                }
                if let Some(Value::Array(e)) = alt.get("enum") {
                    enums.extend(e.iter().cloned());
                }
                if let Some(Value::Object(p)) = alt.get("properties") {
                    for (k, s) in p {
                        merged_props.insert(k.clone(), s.clone());
                    }
                }
            }
            match types.as_slice() {
                [t] => {
                    m.insert("type".into(), Value::String(t.clone()));
                    if !merged_props.is_empty() {
                        m.insert("properties".into(), Value::Object(merged_props));
                    }
                    if !enums.is_empty() {
                        m.insert("enum".into(), Value::Array(enums));
                    }
                }
                _ => {
                    m.insert("x-kubernetes-preserve-unknown-fields".into(), Value::Bool(true));
                }
            }
        }
    }
    // A `true` schema (serde_json::Value fields): anything goes.
    if m.is_empty() {
        m.insert("x-kubernetes-preserve-unknown-fields".into(), Value::Bool(true));
    }
    for key in ["properties"] {
        if let Some(Value::Object(props)) = m.get_mut(key) {
            for s in props.values_mut() {
                if let Value::Bool(true) = s {
                    *s = serde_json::json!({ "x-kubernetes-preserve-unknown-fields": true });
                }
                tidy(s);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(s) = m.get_mut(key) {
            if let Value::Bool(true) = s {
                *s = serde_json::json!({ "x-kubernetes-preserve-unknown-fields": true });
            }
            tidy(s);
        }
    }
    if m.contains_key("properties") && !m.contains_key("type") {
        m.insert("type".into(), Value::String("object".into()));
    }
}

/// Where a schema breaks Kubernetes' structural rules, as JSON pointers with
/// the rule; empty when the API server would accept it.
pub fn structural_violations(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, "", &mut out);
    out
}

fn check(v: &Value, at: &str, out: &mut Vec<String>) {
    let Value::Object(m) = v else {
        out.push(format!("{at}: a schema must be an object"));
        return;
    };
    let escaped = m.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !m.contains_key("type") && !escaped {
        out.push(format!("{at}: no type"));
    }
    for bad in ["$ref", "definitions", "$defs", "anyOf", "oneOf", "allOf", "not"] {
        if m.contains_key(bad) {
            out.push(format!("{at}: {bad} is not allowed here"));
        }
    }
    if m.contains_key("properties") && m.contains_key("additionalProperties") {
        out.push(format!("{at}: properties and additionalProperties together"));
    }
    if let Some(Value::Bool(_)) = m.get("additionalProperties") {
        out.push(format!("{at}: additionalProperties must be a schema"));
    }
    if m.get("type").and_then(Value::as_str) == Some("array") && !m.contains_key("items") {
        out.push(format!("{at}: an array needs items"));
    }
    if let Some(Value::Object(props)) = m.get("properties") {
        for (k, s) in props {
            check(s, &format!("{at}/properties/{k}"), out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(s @ Value::Object(_)) = m.get(key) {
            check(s, &format!("{at}/{key}"), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_and_enums_are_as_users_write_them() {
        let s = structural::<crate::types::istio::VirtualServiceSpec>();
        let http = &s["properties"]["http"]["items"]["properties"];
        assert_eq!(http["match"]["type"], "array", "serde's rename is followed");
        assert_eq!(http["timeout"]["type"], "string");
        let dr = structural::<crate::types::istio::DestinationRuleSpec>();
        let lb = &dr["properties"]["trafficPolicy"]["properties"]["loadBalancer"];
        let lb = &lb["properties"]["simple"];
        assert!(lb["enum"].as_array().is_some_and(|e| e.contains(&Value::String("ROUND_ROBIN".into()))), "{lb}");
    }

    #[test]
    fn optional_structs_are_the_struct_nullable() {
        let s = structural::<crate::types::istio::PeerAuthenticationSpec>();
        let mtls = &s["properties"]["mtls"];
        assert_eq!(mtls["type"], "object", "{mtls}");
        assert_eq!(mtls["nullable"], true);
        assert!(mtls.get("enum").is_none(), "{mtls}");
        assert!(mtls["properties"]["mode"]["enum"].as_array().is_some_and(|e| e.contains(&Value::String("STRICT".into()))), "{mtls}");
    }

    #[test]
    fn the_checker_finds_what_the_api_server_refuses() {
        let bad = serde_json::json!({"type": "object", "properties": {"a": {"$ref": "#/x"}, "b": {"type": "array"}}, "additionalProperties": {"type": "string"}});
        let v = structural_violations(&bad);
        assert_eq!(v.len(), 4, "{v:#?}");
    }
}
