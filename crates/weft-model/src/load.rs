//! Reading user files: multi-document YAML and JSON, files and directories,
//! into typed [`Resource`]s. A document that fails to parse becomes a
//! [`Message`] naming file, document, resource and field; it never stops the
//! other documents from loading and never panics.

use crate::diag::{Code, Message, Origin, ResourceRef};
use crate::resource::{self, Resource};
use crate::validate;
use crate::values::closest;
use std::path::{Path, PathBuf};

/// Files larger than this are refused rather than parsed: mesh configuration
/// is small, and a huge file is more likely a mistake or an attack.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// A resource and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub origin: Origin,
    pub resource: Resource,
}

/// The result of loading some input: the resources that parsed and validated,
/// and every message about the input (including the documents that did not).
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    pub resources: Vec<Loaded>,
    pub messages: Vec<Message>,
}

impl Bundle {
    pub fn extend(&mut self, other: Bundle) {
        self.resources.extend(other.resources);
        self.messages.extend(other.messages);
    }

    /// True when any message is an error: such input must not be applied.
    pub fn has_errors(&self) -> bool {
        self.messages
            .iter()
            .any(|m| m.severity == crate::diag::Severity::Error)
    }
}

/// Loads files and directories (recursively; `.yaml`, `.yml`, `.json`, in
/// sorted order so results are stable). `-` reads standard input.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Bundle {
    let mut bundle = Bundle::default();
    for p in paths {
        let p = p.as_ref();
        if p == Path::new("-") {
            let mut text = String::new();
            match std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                Ok(_) => bundle.extend(parse_str("-", &text)),
                Err(e) => bundle.messages.push(unreadable("-", e)),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect_files(p, &mut files, true) {
            bundle.messages.push(unreadable(&p.display().to_string(), e));
        }
        for f in files {
            bundle.extend(load_file(&f));
        }
    }
    bundle
}

fn unreadable(file: &str, e: impl std::fmt::Display) -> Message {
    Message::new(Code::YamlSyntax, format!("cannot read: {e}")).origin(Some(Origin {
        file: file.to_string(),
        document: 0,
    }))
}

/// The configuration files under `p`: `p` itself if it is a file, else every
/// `*.yaml`, `*.yml` and `*.json` below it (hidden entries skipped), sorted.
pub fn find_files(p: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect_files(p, &mut out, true)?;
    Ok(out)
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>, explicit: bool) -> std::io::Result<()> {
    let meta = std::fs::metadata(p)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            // Hidden files and folders (.git, editor backups) are not configuration.
            if e.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            collect_files(&e, out, false)?;
        }
    } else if explicit
        || matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
    {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Loads one file.
pub fn load_file(path: &Path) -> Bundle {
    let name = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            let mut b = Bundle::default();
            b.messages.push(unreadable(
                &name,
                format!("file is {} bytes, larger than the {MAX_FILE_BYTES}-byte limit", m.len()),
            ));
            return b;
        }
        _ => {}
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse_str(&name, &text),
            Err(_) => {
                let mut b = Bundle::default();
                b.messages.push(unreadable(&name, "file is not UTF-8 text"));
                b
            }
        },
        Err(e) => {
            let mut b = Bundle::default();
            b.messages.push(unreadable(&name, e));
            b
        }
    }
}

/// Parses text holding one or more YAML documents (JSON is YAML too) named
/// `file` in messages.
pub fn parse_str(file: &str, text: &str) -> Bundle {
    let (docs, messages) = split_documents(file, text);
    let mut bundle = Bundle { resources: Vec::new(), messages };
    for (origin, value) in docs {
        parse_value(origin, value, &mut bundle);
    }
    bundle
}

/// Splits text into its documents, one JSON value per object: empty
/// documents are dropped and `kind: List` is expanded into its items (which
/// share the List's origin). A syntax error ends the stream, as YAML cannot
/// resynchronise after one.
pub fn split_documents(file: &str, text: &str) -> (Vec<(Origin, serde_json::Value)>, Vec<Message>) {
    let mut docs = Vec::new();
    let mut messages = Vec::new();
    // One budget for the whole text: aliases cannot make it expand past a multiple of its size.
    let budget = std::cell::Cell::new(crate::bounded::budget_for(text.len()));
    for (index, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let origin = Origin { file: file.to_string(), document: index };
        match serde::de::DeserializeSeed::deserialize(crate::bounded::Bounded { budget: &budget }, doc) {
            Ok(serde_json::Value::Null) => {}
            Ok(mut value) => {
                let is_list = value.get("kind").and_then(|k| k.as_str()) == Some("List")
                    && value.get("apiVersion").and_then(|k| k.as_str()) == Some("v1");
                match value.get_mut("items").map(std::mem::take) {
                    Some(serde_json::Value::Array(items)) if is_list => {
                        docs.extend(items.into_iter().map(|item| (origin.clone(), item)));
                    }
                    _ if is_list => {}
                    _ => docs.push((origin, value)),
                }
            }
            Err(e) => {
                messages.push(Message::new(Code::YamlSyntax, e.to_string()).origin(Some(origin)));
                break;
            }
        }
    }
    (docs, messages)
}

/// Parses one document already read into a JSON value.
pub fn parse_value(origin: Origin, mut value: serde_json::Value, bundle: &mut Bundle) {
    strip_nulls(&mut value);
    let map = match &value {
        serde_json::Value::Null => return, // an empty document, e.g. a trailing `---`
        serde_json::Value::Object(m) => m,
        other => {
            bundle.messages.push(
                Message::new(
                    Code::InvalidValue,
                    format!(
                        "document must be a mapping with apiVersion and kind, found {}",
                        crate::types::common::json_type(other)
                    ),
                )
                .origin(Some(origin)),
            );
            return;
        }
    };
    let api_version = map.get("apiVersion").and_then(|v| v.as_str()).map(str::to_string);
    let kind = map.get("kind").and_then(|v| v.as_str()).map(str::to_string);
    let (api_version, kind) = match (api_version, kind) {
        (Some(a), Some(k)) => (a, k),
        (a, _) => {
            let missing = if a.is_none() { "apiVersion" } else { "kind" };
            bundle.messages.push(
                Message::new(Code::MissingField, format!("document has no {missing} string"))
                    .origin(Some(origin))
                    .field(missing),
            );
            return;
        }
    };
    // A `kind: List` (what `kubectl get -o yaml` prints) holds its objects in `items`.
    if kind == "List" && api_version == "v1" {
        if let Some(serde_json::Value::Array(items)) = value.get_mut("items").map(std::mem::take) {
            for item in items {
                parse_value(origin.clone(), item, bundle);
            }
        }
        return;
    }
    let (group, version) = resource::split_api_version(&api_version);
    let name = value
        .pointer("/metadata/name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let namespaced = resource::kind_info(group, &kind).is_none_or(|k| k.namespaced);
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| namespaced.then(|| "default".to_string()));
    let reference = ResourceRef {
        kind: kind.clone(),
        namespace,
        name,
    };
    let Some(info) = resource::kind_info(group, &kind) else {
        let known_group = resource::KINDS.iter().any(|k| k.group == group) && !matches!(group, "" | "apps");
        let mut text = format!("{api_version} {kind} is not a mesh resource, ignored");
        if known_group {
            text = format!("{api_version} {kind} is not supported by weft, ignored");
            let kinds = resource::KINDS.iter().filter(|k| k.group == group).map(|k| k.kind);
            if let Some(s) = closest(&kind, kinds) {
                text = format!("{api_version} {kind} is not a kind weft knows (did you mean {s:?}?), ignored");
            }
        }
        bundle
            .messages
            .push(Message::new(Code::NotMeshResource, text).origin(Some(origin)).resource(reference));
        return;
    };
    if !info.versions.contains(&version) {
        bundle.messages.push(
            Message::new(
                Code::UnsupportedVersion,
                format!(
                    "{kind} version {version:?} is not supported; use {}",
                    info.versions
                        .iter()
                        .map(|v| format!("{group}/{v}").trim_start_matches('/').to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .origin(Some(origin))
            .resource(reference)
            .field("apiVersion"),
        );
        return;
    }
    match resource::decode(group, &kind, &api_version, value) {
        Ok(resource) => {
            let errors = validate::validate(&resource);
            let reference = resource.reference();
            let ok = errors.is_empty();
            bundle.messages.extend(
                errors
                    .into_iter()
                    .map(|m| m.resource(reference.clone()).origin(Some(origin.clone()))),
            );
            if ok {
                bundle.resources.push(Loaded { origin, resource });
            }
        }
        Err(e) => {
            let mut m = decode_error(e);
            if m.code == Code::UnknownField {
                if let Some(field) = m.field.clone() {
                    if let Some(hint) = placement_hint(&kind, &field) {
                        let name = field.rsplit('.').next().unwrap_or(&field).to_string();
                        m.text = format!("unknown field {name:?} here: {hint}");
                    }
                }
            }
            bundle.messages.push(m.resource(reference).origin(Some(origin)))
        }
    }
}

/// Where a field that is unknown at `path` belongs, for the mistakes users
/// make moving between Istio's, Linkerd's and the Gateway API's shapes.
fn placement_hint(kind: &str, path: &str) -> Option<String> {
    // `spec.http[0].route[1].timeout` -> (["spec", "http[]", "route[]"], "timeout")
    let mut parts: Vec<String> = path.split('.').map(|p| p.split('[').next().unwrap_or(p).to_string() + if p.contains('[') { "[]" } else { "" }).collect();
    let field = parts.pop()?;
    let parent = parts.join(".");
    let hint = match (kind, parent.as_str(), field.as_str()) {
        ("ServiceProfile", "spec.routes[]", "retryBudget") => "retryBudget belongs at spec.retryBudget: one budget covers every route of the ServiceProfile",
        ("Telemetry", "spec.metrics[]", "dimensions") => "Istio's Telemetry sets metric labels under spec.metrics[].overrides[].tagOverrides (dimensions is the older EnvoyFilter way)",
        ("VirtualService", "spec.http[].route[]", "timeout") => "timeout belongs at spec.http[].timeout: it covers the whole rule, all tries included",
        ("VirtualService", "spec.http[].route[]", "retries") => "retries belong at spec.http[].retries, beside route",
        ("VirtualService", "spec.http[].route[]", "subset" | "host" | "port") => "host, subset and port belong under spec.http[].route[].destination",
        ("DestinationRule", "spec", "loadBalancer" | "connectionPool" | "outlierDetection" | "tls") => "this belongs under spec.trafficPolicy (or a subset's trafficPolicy)",
        ("HTTPRoute", "spec.rules[]", "timeout") => "the Gateway API writes it as spec.rules[].timeouts.request (and timeouts.backendRequest per try)",
        ("HTTPRoute", "spec.rules[].backendRefs[]", "subset") => "the Gateway API has no subsets: point backendRefs at a Service that selects the version",
        ("AuthorizationPolicy", "spec.rules[]", "source" | "operation") => "source belongs under spec.rules[].from[] and operation under spec.rules[].to[]",
        _ => return None,
    };
    Some(hint.to_string())
}

/// Kubernetes treats `field: null` as an absent field; so do we.
fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Turns serde's error into a message with a code, a field path and, for a
/// misspelt field or constant, a suggestion.
fn decode_error(e: serde_path_to_error::Error<serde_json::Error>) -> Message {
    let mut path = e.path().to_string();
    if path == "." {
        path.clear();
    }
    let inner = e.into_inner().to_string();
    let ticks: Vec<&str> = inner.split('`').skip(1).step_by(2).collect();
    let join = |p: &str, f: &str| if p.is_empty() { f.to_string() } else { format!("{p}.{f}") };
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        let expected = &ticks[1.min(ticks.len())..];
        // serde_path_to_error already ends the path with the unknown key.
        let path = if path.ends_with(field) { path.clone() } else { join(&path, field) };
        let text = match closest(field, expected.iter().copied()) {
            Some(s) => format!("unknown field {field:?} (did you mean {s:?}?)"),
            None if expected.is_empty() => format!("unknown field {field:?}: this object has no fields"),
            None => format!("unknown field {field:?}; known fields: {}", expected.join(", ")),
        };
        return Message::new(Code::UnknownField, text).field(path);
    }
    if let Some(rest) = inner.strip_prefix("unknown variant `") {
        let value = rest.split('`').next().unwrap_or("");
        let expected = &ticks[1.min(ticks.len())..];
        let text = match closest(value, expected.iter().copied()) {
            Some(s) => format!("invalid value {value:?} (did you mean {s:?}?)"),
            None => format!("invalid value {value:?}; allowed: {}", expected.join(", ")),
        };
        return Message::new(Code::InvalidValue, text).field(path);
    }
    if let Some(rest) = inner.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        return Message::new(Code::MissingField, format!("required field {field:?} is missing"))
            .field(join(&path, field));
    }
    let code = if inner.starts_with("invalid regex") {
        Code::InvalidRegex
    } else {
        Code::InvalidValue
    };
    Message::new(code, inner).field(path)
}
