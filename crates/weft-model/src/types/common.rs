//! Types shared by every API group: object metadata, label selectors, and the
//! validated scalar newtypes (durations, ports, percentages, regexes) whose
//! deserializers reject bad values with a reason, so the parse error carries
//! the exact field path.

use crate::values;
use serde::{de, Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;

/// Declares a user-facing spec struct: camelCase fields, unknown fields rejected.
macro_rules! spec {
    ($(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name { $($body)* }
    };
}
pub(crate) use spec;

/// Declares an enum of upper-case constants as Istio writes them (`STRICT`, `ROUND_ROBIN`).
macro_rules! constants {
    ($(#[$m:meta])* pub enum $name:ident { $($variant:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
        pub enum $name { $(#[serde(rename = $s)] $variant),* }
        impl $name {
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $s),* } }
        }
    };
}
pub(crate) use constants;

/// `metadata` of every Kubernetes object. Only name, namespace, labels and
/// annotations are used; the server-populated fields are accepted so that
/// `kubectl get -o yaml` output parses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub generation: Option<i64>,
    pub creation_timestamp: Option<serde_json::Value>,
    pub deletion_timestamp: Option<serde_json::Value>,
    pub deletion_grace_period_seconds: Option<i64>,
    pub self_link: Option<String>,
    pub owner_references: Option<serde_json::Value>,
    pub finalizers: Option<Vec<String>>,
    pub managed_fields: Option<serde_json::Value>,
}

/// A label map whose keys and values are checked against Kubernetes syntax.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(pub BTreeMap<String, String>);

impl Labels {
    /// True when every label of `self` is present with the same value in `other`
    /// (selector semantics: an empty selector matches everything).
    pub fn is_subset_of(&self, other: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, v)| other.get(k) == Some(v))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, LabelValue>::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            values::check_label_key(&k).map_err(de::Error::custom)?;
            values::check_label_value(&v.0).map_err(de::Error::custom)?;
            out.insert(k, v.0);
        }
        Ok(Labels(out))
    }
}

/// A label value; YAML users often write `version: 1` or `canary: true`,
/// which Kubernetes rejects but whose intent is clear, so scalars are accepted.
struct LabelValue(String);

impl<'de> Deserialize<'de> for LabelValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(LabelValue(s)),
            serde_json::Value::Number(n) => Ok(LabelValue(n.to_string())),
            serde_json::Value::Bool(b) => Ok(LabelValue(b.to_string())),
            other => Err(de::Error::custom(format!(
                "label value must be a string, found {}",
                json_type(&other)
            ))),
        }
    }
}

pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

spec! {
    /// Istio `WorkloadSelector` (`selector:` / `workloadSelector:`).
    pub struct WorkloadSelector {
        #[serde(default)]
        pub match_labels: Labels,
    }
}

spec! {
    /// The networking API's `WorkloadSelector` (Sidecar, ServiceEntry): `labels:`,
    /// unlike the security and DestinationRule selector's `matchLabels:`.
    pub struct NetworkingWorkloadSelector {
        #[serde(default)]
        pub labels: Labels,
    }
}

spec! {
    /// Kubernetes `LabelSelector` (Linkerd `podSelector`, Deployment `selector`).
    pub struct LabelSelector {
        #[serde(default)]
        pub match_labels: Labels,
        #[serde(default)]
        pub match_expressions: Vec<LabelSelectorRequirement>,
    }
}

spec! {
    pub struct LabelSelectorRequirement {
        pub key: String,
        pub operator: SelectorOperator,
        #[serde(default)]
        pub values: Vec<String>,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum SelectorOperator {
    #[default]
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.is_subset_of(labels)
            && self.match_expressions.iter().all(|e| {
                let v = labels.get(&e.key);
                match e.operator {
                    SelectorOperator::In => v.is_some_and(|v| e.values.contains(v)),
                    SelectorOperator::NotIn => !v.is_some_and(|v| e.values.contains(v)),
                    SelectorOperator::Exists => v.is_some(),
                    SelectorOperator::DoesNotExist => v.is_none(),
                }
            })
    }
}

/// A duration written as a string (`10s`, `1.5s`, `300ms`, `1h`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub std::time::Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => values::parse_duration(&s).map(Dur).map_err(de::Error::custom),
            other => Err(de::Error::custom(format!(
                "duration must be a string like \"10s\", found {}",
                json_type(&other)
            ))),
        }
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&values::format_duration(self.0))
    }
}

/// A port number, 1-65535.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let n = match &v {
            serde_json::Value::Number(n) => n.as_i64(),
            // Map keys (Istio `portLevelMtls`) arrive as strings.
            serde_json::Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        match n {
            Some(n) => values::check_port(n).map(Port).map_err(de::Error::custom),
            None => Err(de::Error::custom(format!("port must be a number 1-65535, found {v}"))),
        }
    }
}

/// A Kubernetes `IntOrString` port: a number, or the name of a container port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl Default for PortRef {
    fn default() -> Self {
        PortRef::Name(String::new())
    }
}

impl<'de> Deserialize<'de> for PortRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => {
                let n = n.as_i64().ok_or_else(|| de::Error::custom("port must be an integer"))?;
                values::check_port(n).map(PortRef::Number).map_err(de::Error::custom)
            }
            serde_json::Value::String(s) => match s.parse::<i64>() {
                Ok(n) => values::check_port(n).map(PortRef::Number).map_err(de::Error::custom),
                Err(_) if s.is_empty() => Err(de::Error::custom("port name is empty")),
                Err(_) => Ok(PortRef::Name(s)),
            },
            other => Err(de::Error::custom(format!(
                "port must be a number or a port name, found {}",
                json_type(&other)
            ))),
        }
    }
}

/// A regular expression (RE2 syntax), checked when parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Regex(pub String);

impl<'de> Deserialize<'de> for Regex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        values::check_regex(&s).map_err(de::Error::custom)?;
        Ok(Regex(s))
    }
}

/// A percentage `0..=100` written as a plain number.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Pct(pub f64);

impl<'de> Deserialize<'de> for Pct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        values::check_percent(v).map(Pct).map_err(de::Error::custom)
    }
}

/// A host name as used in routes and entries (`reviews`, `*.example.com`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Host(pub String);

impl<'de> Deserialize<'de> for Host {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        values::check_host(&s).map_err(de::Error::custom)?;
        Ok(Host(s))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
