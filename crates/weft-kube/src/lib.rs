//! weft on Kubernetes, without a Kubernetes client: the rules for which pods
//! are meshed and the sidecar they get ([`rules`], [`sidecar`], [`probes`]),
//! shared by `weft inject` ([`manifests`]), the controller's admission webhook
//! ([`admission`], [`patch`]) and `weft dev`; and the manifests `weft install`
//! prints ([`install`], with CRDs generated from weft-model's types in [`crd`]).

pub mod admission;
pub mod crd;
pub mod install;
pub mod manifests;
pub mod patch;
pub mod probes;
pub mod rules;
pub mod sidecar;
