//! How a document's envelope (`apiVersion`, `kind`, `metadata`, `spec`,
//! `status`) maps onto a typed [`Object`]: strictly for mesh resources,
//! loosely for the core objects weft only reads a part of.

use crate::types::common::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A Kubernetes-style object with a typed spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Object<S> {
    pub api_version: String,
    pub metadata: ObjectMeta,
    pub spec: S,
}

/// How a kind's document maps onto its typed spec.
#[derive(Debug, Clone, Copy)]
pub enum Envelope {
    /// Mesh resources: `apiVersion`, `kind`, `metadata`, `spec`, `status`; nothing else.
    Strict,
    /// Core objects: `metadata` and `spec`; all other fields ignored.
    Loose,
    /// Core objects whose interesting fields sit beside `spec` (Pod status, Secret type).
    Whole,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StrictEnvelope<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
    #[allow(dead_code)]
    status: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct LooseEnvelope<S> {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
}

#[derive(Deserialize)]
struct MetaOnly {
    #[serde(default)]
    metadata: ObjectMeta,
}

/// Decodes a document into an object with spec `S`, as `how` says.
pub fn decode_object<S: DeserializeOwned + Default>(
    how: Envelope,
    api_version: &str,
    doc: serde_json::Value,
) -> Result<Object<S>, serde_path_to_error::Error<serde_json::Error>> {
    let (metadata, spec) = match how {
        Envelope::Strict => {
            let e: StrictEnvelope<S> = serde_path_to_error::deserialize(doc)?;
            (e.metadata, e.spec)
        }
        Envelope::Loose => {
            let e: LooseEnvelope<S> = serde_path_to_error::deserialize(doc)?;
            (e.metadata, e.spec)
        }
        Envelope::Whole => {
            let m: MetaOnly = serde_path_to_error::deserialize(&doc)?;
            let spec: S = serde_path_to_error::deserialize(doc)?;
            (m.metadata, spec)
        }
    };
    Ok(Object {
        api_version: api_version.to_string(),
        metadata,
        spec,
    })
}

