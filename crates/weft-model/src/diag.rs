//! Diagnostics: every problem weft finds in user configuration, from a YAML
//! syntax error to a cross-resource conflict, is one [`Message`] with a stable
//! [`Code`], a severity, the resource and field it concerns, and a reason a
//! user can act on.

use serde::Serialize;
use std::fmt;

/// How bad a message is. Ordered so thresholds can compare (`Info < Warning < Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Some(Severity::Info),
            "warning" | "warn" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "Info",
            Severity::Warning => "Warning",
            Severity::Error => "Error",
        })
    }
}

macro_rules! codes {
    ($( $variant:ident = $id:literal, $sev:ident, $istio:expr, $title:literal; )*) => {
        /// Stable message codes. Numbers are never reused or renumbered: scripts and
        /// suppressions depend on them. `WEFT00xx` are per-document parse and
        /// validation problems, `WEFT01xx` cross-resource analysis.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant),* }

        impl Code {
            /// All codes, in numeric order (used by docs and tests).
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable identifier, e.g. `WEFT0101`.
            pub fn id(self) -> &'static str {
                match self { $(Code::$variant => concat!("WEFT", $id)),* }
            }
            /// Default severity of a message with this code.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev),* }
            }
            /// The equivalent `istioctl analyze` code, where Istio has one.
            pub fn istio_code(self) -> Option<&'static str> {
                match self { $(Code::$variant => $istio),* }
            }
            /// A short name for the problem.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title),* }
            }
        }
    };
}

codes! {
    YamlSyntax = "0001", Error, None, "document is not valid YAML or JSON";
    NotMeshResource = "0002", Info, None, "not a mesh resource, ignored";
    UnknownField = "0003", Error, Some("IST0106"), "unknown field";
    InvalidValue = "0004", Error, Some("IST0106"), "invalid value";
    MissingField = "0005", Error, Some("IST0106"), "required field missing";
    InvalidRegex = "0006", Error, Some("IST0122"), "invalid regular expression";
    UnsupportedVersion = "0007", Error, None, "unsupported API version";
    DuplicateResource = "0008", Warning, None, "resource defined more than once";
    Unsupported = "0009", Error, None, "not supported by weft";
    ConflictingVirtualServices = "0101", Error, Some("IST0109"), "conflicting VirtualServices for one host";
    DestinationHostNotFound = "0102", Error, Some("IST0101"), "destination host not found";
    SubsetNotDefined = "0103", Error, Some("IST0101"), "subset not defined";
    SubsetMatchesNoWorkload = "0104", Warning, Some("IST0127"), "subset selects no workload";
    WeightsNotHundred = "0105", Error, Some("IST0106"), "route weights do not sum to 100";
    DuplicateSubsetName = "0106", Error, Some("IST0106"), "duplicate subset name";
    GatewayNotFound = "0107", Error, Some("IST0101"), "referenced gateway not found";
    PortWithoutProtocol = "0108", Info, Some("IST0118"), "service port has no protocol";
    SelectorMatchesNoWorkload = "0109", Warning, Some("IST0127"), "selector matches no workload";
    ConflictingPeerAuthentications = "0110", Error, Some("IST0113"), "conflicting PeerAuthentications at one scope";
    MtlsModeConflict = "0111", Error, Some("IST0113"), "STRICT mTLS server with a plaintext client policy";
    GatewayCredentialMissing = "0112", Error, Some("IST0161"), "gateway TLS credential secret not found";
    TrafficSplitServiceMissing = "0114", Error, None, "TrafficSplit service not found";
    RetryNonIdempotent = "0115", Warning, None, "retries on a non-idempotent method";
    DenyAllNamespace = "0116", Warning, None, "authorization denies every request";
    RouteSourceOverlap = "0117", Info, None, "several route resources for one host";
    UnreachableRoute = "0118", Warning, Some("IST0130"), "route can never match";
    ContextMissing = "0119", Info, None, "check skipped: no context objects in input";
    SubsetWithoutDestinationRule = "0120", Error, Some("IST0101"), "subset referenced but no DestinationRule for the host";
    ConflictingDestinationRules = "0121", Warning, None, "several DestinationRules for one host";
    NotAppliedYet = "0122", Warning, None, "valid, but not applied by weft's proxy yet";
    SplitBackendsOverlap = "0123", Warning, None, "split backends select the same pods";
    PrincipalForm = "0124", Warning, None, "principal written in another mesh's form";
    ForeignTrustDomain = "0125", Warning, None, "principal of a trust domain the mesh does not have";
    HttpFieldsOnTcp = "0126", Warning, None, "HTTP-only fields in a policy for a TCP port";
    UnreachableAuthzRule = "0127", Warning, None, "authorization rule can never take effect";
    InexactPolicy = "0128", Warning, None, "policy part that cannot be enforced exactly";
    PolicyTargetNotFound = "0129", Warning, None, "policy target not found";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// Where a document came from: a file (or `-` for stdin) and the document's
/// 0-based index within that file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Origin {
    pub file: String,
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.file, self.document)
    }
}

/// Identifies one resource: `VirtualService default/reviews`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ResourceRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One finding about user configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub code: Code,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istio_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Field path inside the resource, e.g. `spec.http[0].route[1].weight`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub text: String,
}

impl Message {
    pub fn new(code: Code, text: impl Into<String>) -> Message {
        Message {
            code,
            severity: code.severity(),
            istio_code: code.istio_code(),
            resource: None,
            origin: None,
            field: None,
            text: text.into(),
        }
    }

    pub fn resource(mut self, r: ResourceRef) -> Message {
        self.resource = Some(r);
        self
    }

    pub fn origin(mut self, o: Option<Origin>) -> Message {
        self.origin = o;
        self
    }

    pub fn field(mut self, f: impl Into<String>) -> Message {
        let f = f.into();
        self.field = if f.is_empty() { None } else { Some(f) };
        self
    }
}

impl fmt::Display for Message {
    /// `Error [WEFT0105] (VirtualService default/reviews, mesh.yaml#2) spec.http[0].route: weights sum to 90, not 100`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.severity, self.code)?;
        match (&self.resource, &self.origin) {
            (Some(r), Some(o)) => write!(f, " ({r}, {o})")?,
            (Some(r), None) => write!(f, " ({r})")?,
            (None, Some(o)) => write!(f, " ({o})")?,
            (None, None) => {}
        }
        if let Some(field) = &self.field {
            write!(f, " {field}:")?;
        }
        write!(f, " {}", self.text)
    }
}

/// Orders messages for output: by file, document, then code, so output is stable.
pub fn sort_messages(msgs: &mut [Message]) {
    msgs.sort_by(|a, b| {
        (&a.origin, &a.resource, a.code, &a.field, &a.text).cmp(&(
            &b.origin,
            &b.resource,
            b.code,
            &b.field,
            &b.text,
        ))
    });
}
