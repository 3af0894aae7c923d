//! The typed resources weft understands, one [`Resource`] variant per kind,
//! and the table of API groups, kinds and versions that maps a document's
//! `apiVersion`/`kind` to its type.

use crate::diag::ResourceRef;
use crate::types::{common::ObjectMeta, core, gateway_api as gw, istio, linkerd};

pub use crate::envelope::Object;

/// A Pod as the mesh sees it: labels, service account, ports, IP.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct PodInfo {
    pub spec: core::PodSpec,
    pub status: core::PodStatus,
}

macro_rules! resources {
    ($( $variant:ident ( $spec:ty ) = $group:literal, $kind:literal, [$($ver:literal),*], $scope:ident, $how:ident; )*) => {
        /// Every resource kind weft reads.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Resource { $( $variant(Object<$spec>) ),* }

        /// One supported kind: its API group, kind name and versions.
        #[derive(Debug, Clone, Copy)]
        pub struct KindInfo {
            pub group: &'static str,
            pub kind: &'static str,
            pub versions: &'static [&'static str],
            pub namespaced: bool,
            /// The structural schema of `spec`, for kinds weft defines CRDs for
            /// (not Kubernetes' own kinds).
            pub spec_schema: Option<fn() -> serde_json::Value>,
        }

        /// The supported kinds, by API group.
        pub const KINDS: &[KindInfo] = &[
            $( KindInfo { group: $group, kind: $kind, versions: &[$($ver),*], namespaced: resources!(@ns $scope), spec_schema: resources!(@schema $how $spec) } ),*
        ];

        impl Resource {
            pub fn kind(&self) -> &'static str {
                match self { $( Resource::$variant(_) => $kind ),* }
            }
            pub fn group(&self) -> &'static str {
                match self { $( Resource::$variant(_) => $group ),* }
            }
            pub fn metadata(&self) -> &ObjectMeta {
                match self { $( Resource::$variant(o) => &o.metadata ),* }
            }
            pub fn api_version(&self) -> &str {
                match self { $( Resource::$variant(o) => &o.api_version ),* }
            }
            fn namespaced(&self) -> bool {
                match self { $( Resource::$variant(_) => resources!(@ns $scope) ),* }
            }
        }

        /// Deserializes a document of a known kind. `group`/`kind` must come from [`KINDS`].
        pub(crate) fn decode(
            group: &str,
            kind: &str,
            api_version: &str,
            doc: serde_json::Value,
        ) -> Result<Resource, serde_path_to_error::Error<serde_json::Error>> {
            match (group, kind) {
                $( ($group, $kind) => crate::envelope::decode_object::<$spec>(crate::envelope::Envelope::$how, api_version, doc).map(Resource::$variant), )*
                _ => unreachable!("decode called with a kind not in KINDS"),
            }
        }
    };
    (@ns Namespaced) => { true };
    (@ns Cluster) => { false };
    (@schema Strict $spec:ty) => { Some(crate::schema::structural::<$spec>) };
    (@schema $other:ident $spec:ty) => { None };
}

resources! {
    VirtualService(istio::VirtualServiceSpec) = "networking.istio.io", "VirtualService", ["v1", "v1beta1", "v1alpha3"], Namespaced, Strict;
    DestinationRule(istio::DestinationRuleSpec) = "networking.istio.io", "DestinationRule", ["v1", "v1beta1", "v1alpha3"], Namespaced, Strict;
    IstioGateway(istio::GatewaySpec) = "networking.istio.io", "Gateway", ["v1", "v1beta1", "v1alpha3"], Namespaced, Strict;
    ServiceEntry(istio::ServiceEntrySpec) = "networking.istio.io", "ServiceEntry", ["v1", "v1beta1", "v1alpha3"], Namespaced, Strict;
    WorkloadEntry(istio::WorkloadEntrySpec) = "networking.istio.io", "WorkloadEntry", ["v1", "v1beta1", "v1alpha3"], Namespaced, Strict;
    Sidecar(istio::SidecarSpec) = "networking.istio.io", "Sidecar", ["v1", "v1beta1", "v1alpha3"], Namespaced, Strict;
    PeerAuthentication(istio::PeerAuthenticationSpec) = "security.istio.io", "PeerAuthentication", ["v1", "v1beta1"], Namespaced, Strict;
    AuthorizationPolicy(istio::AuthorizationPolicySpec) = "security.istio.io", "AuthorizationPolicy", ["v1", "v1beta1"], Namespaced, Strict;
    RequestAuthentication(istio::RequestAuthenticationSpec) = "security.istio.io", "RequestAuthentication", ["v1", "v1beta1"], Namespaced, Strict;
    Telemetry(istio::TelemetrySpec) = "telemetry.istio.io", "Telemetry", ["v1", "v1alpha1"], Namespaced, Strict;
    Gateway(gw::GatewaySpec) = "gateway.networking.k8s.io", "Gateway", ["v1", "v1beta1"], Namespaced, Strict;
    HttpRoute(gw::HttpRouteSpec) = "gateway.networking.k8s.io", "HTTPRoute", ["v1", "v1beta1"], Namespaced, Strict;
    GrpcRoute(gw::GrpcRouteSpec) = "gateway.networking.k8s.io", "GRPCRoute", ["v1", "v1alpha2"], Namespaced, Strict;
    TrafficSplit(linkerd::TrafficSplitSpec) = "split.smi-spec.io", "TrafficSplit", ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"], Namespaced, Strict;
    ServiceProfile(linkerd::ServiceProfileSpec) = "linkerd.io", "ServiceProfile", ["v1alpha2"], Namespaced, Strict;
    Server(linkerd::ServerSpec) = "policy.linkerd.io", "Server", ["v1beta1", "v1beta2", "v1beta3", "v1alpha1"], Namespaced, Strict;
    ServerAuthorization(linkerd::ServerAuthorizationSpec) = "policy.linkerd.io", "ServerAuthorization", ["v1beta1", "v1alpha1"], Namespaced, Strict;
    LinkerdAuthorizationPolicy(linkerd::LinkerdAuthorizationPolicySpec) = "policy.linkerd.io", "AuthorizationPolicy", ["v1alpha1"], Namespaced, Strict;
    MeshTlsAuthentication(linkerd::MeshTlsAuthenticationSpec) = "policy.linkerd.io", "MeshTLSAuthentication", ["v1alpha1"], Namespaced, Strict;
    NetworkAuthentication(linkerd::NetworkAuthenticationSpec) = "policy.linkerd.io", "NetworkAuthentication", ["v1alpha1"], Namespaced, Strict;
    LinkerdHttpRoute(gw::HttpRouteSpec) = "policy.linkerd.io", "HTTPRoute", ["v1beta3", "v1beta2", "v1beta1"], Namespaced, Strict;
    Namespace(core::Empty) = "", "Namespace", ["v1"], Cluster, Loose;
    Service(core::ServiceSpec) = "", "Service", ["v1"], Namespaced, Loose;
    Deployment(core::DeploymentSpec) = "apps", "Deployment", ["v1"], Namespaced, Loose;
    Pod(PodInfo) = "", "Pod", ["v1"], Namespaced, Whole;
    ServiceAccount(core::Empty) = "", "ServiceAccount", ["v1"], Namespaced, Loose;
    Secret(core::SecretMeta) = "", "Secret", ["v1"], Namespaced, Whole;
}

impl Resource {
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// The namespace, defaulting to `default` as `kubectl apply` does;
    /// `None` for cluster-scoped kinds.
    pub fn namespace(&self) -> Option<&str> {
        if self.namespaced() {
            Some(self.metadata().namespace.as_deref().unwrap_or("default"))
        } else {
            None
        }
    }

    pub fn reference(&self) -> ResourceRef {
        ResourceRef {
            kind: self.kind().to_string(),
            namespace: self.namespace().map(str::to_string),
            name: self.name().to_string(),
        }
    }
}

/// Splits `apiVersion` into (group, version); the core group is "".
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Looks up a kind by group and name.
pub fn kind_info(group: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}
