//! `weft tls-check`: for each endpoint a proxy may call, the client's TLS
//! mode against the destination's PeerAuthentication mode, and CONFLICT
//! where the destination will refuse the connection.

use super::inbound::inbound_policy;
use super::Endpoint;
use weft_model::mesh::Mesh;
use weft_proto::config::{MtlsMode, ProxyConfig, UpstreamTls};

/// One line of `weft tls-check`: how a proxy reaches one endpoint, and
/// whether the destination will accept it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TlsCheck {
    pub cluster: String,
    pub endpoint: String,
    /// The client side's mode: AUTO (auto-mTLS), ISTIO_MUTUAL or DISABLE.
    pub client: &'static str,
    /// The destination's PeerAuthentication mode for the port; `-` without a proxy.
    pub server: String,
    /// What the client proxy will do: mTLS or plaintext.
    pub transport: &'static str,
    /// OK, or CONFLICT with the reason.
    pub status: String,
    /// The SPIFFE ID the client will require of the server.
    pub identity: Option<String>,
    /// The PeerAuthentication that set the server mode.
    pub server_policy: Option<String>,
}

/// The TLS view of a proxy's clusters: for each endpoint, client mode against server mode.
pub fn tls_report(mesh: &Mesh, endpoints: &[Endpoint], cfg: &ProxyConfig) -> Vec<TlsCheck> {
    let mut rows = Vec::new();
    for c in &cfg.clusters {
        let client = match c.tls {
            UpstreamTls::Auto => "AUTO",
            UpstreamTls::Mutual => "ISTIO_MUTUAL",
            UpstreamTls::Disable => "DISABLE",
        };
        if c.endpoints.is_empty() {
            rows.push(TlsCheck {
                cluster: c.name.clone(),
                endpoint: "-".into(),
                client,
                server: "-".into(),
                transport: "-",
                status: "no endpoints".into(),
                identity: None,
                server_policy: None,
            });
        }
        for e in &c.endpoints {
            let live = endpoints.iter().find(|l| l.address == e.address.ip());
            let server = live.filter(|l| l.identity.is_some()).map(|l| inbound_policy(mesh, &l.namespace, &l.labels));
            let mode = server.as_ref().map(|p| p.mode_for(e.address.port()));
            let mtls = e.identity.is_some() && c.tls != UpstreamTls::Disable;
            let status = match (mtls, c.tls, mode) {
                (false, UpstreamTls::Mutual, _) => "CONFLICT: ISTIO_MUTUAL, but the workload has no proxy that accepts mTLS".to_string(),
                (false, _, Some(MtlsMode::Strict)) => "CONFLICT: plaintext to a STRICT workload is refused".to_string(),
                _ => "OK".to_string(),
            };
            rows.push(TlsCheck {
                cluster: c.name.clone(),
                endpoint: e.address.to_string(),
                client,
                server: mode.map(|m| m.as_str().to_string()).unwrap_or_else(|| "-".into()),
                transport: if mtls { "mTLS" } else { "plaintext" },
                status,
                identity: e.identity.clone().filter(|_| mtls),
                server_policy: server.and_then(|p| p.source),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::super::tests::mesh;
    use super::super::{compile, Endpoint};
    use super::*;

    #[test]
    fn tls_check_finds_plaintext_to_strict() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod}\nspec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}\n---\n\
            apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: prod}\nspec: {mtls: {mode: STRICT}}\n";
        let web = Endpoint {
            namespace: "prod".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            address: "10.0.0.7".parse().unwrap(),
            identity: Some("spiffe://cluster.local/ns/prod/sa/web".into()),
            weight: 1,
            verified: true,
            workload: None,
        };
        let m = mesh(yaml);
        let cfg = compile(&m, std::slice::from_ref(&web), "prod", None);
        let rows = tls_report(&m, std::slice::from_ref(&web), &cfg);
        assert_eq!((rows[0].transport, rows[0].server.as_str(), rows[0].status.as_str()), ("mTLS", "STRICT", "OK"));
        assert_eq!(rows[0].identity.as_deref(), Some("spiffe://cluster.local/ns/prod/sa/web"));
        let off = mesh(&format!("{yaml}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: prod}}\nspec: {{host: web, trafficPolicy: {{tls: {{mode: DISABLE}}}}}}\n"));
        let cfg = compile(&off, std::slice::from_ref(&web), "prod", None);
        let rows = tls_report(&off, &[web], &cfg);
        assert_eq!((rows[0].client, rows[0].transport), ("DISABLE", "plaintext"));
        assert!(rows[0].status.starts_with("CONFLICT: plaintext to a STRICT"), "{}", rows[0].status);
    }
}
