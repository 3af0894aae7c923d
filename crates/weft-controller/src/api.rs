//! The controller's HTTP API, used by `weft apply/get/delete/analyze`.
//!
//! - `POST /api/v1/apply` `{files: [{name, text}], dry_run}`: every document is
//!   validated; one invalid document rejects the whole apply (422) and the
//!   store is untouched. Valid input is written in one transaction; analysis
//!   of the resulting state comes back as advice, it does not block.
//!   `metadata.resourceVersion` in a document makes the write conditional (409
//!   when someone else changed the object since).
//! - `GET /api/v1/resources?kind=&namespace=&name=`: stored objects.
//! - `POST /api/v1/delete` `{keys: [...]}`: all or nothing.
//! - `GET /api/v1/analyze`: analysis of the stored state.
//! - `POST /api/v1/tokens`: a join token for a workload identity;
//!   `POST /api/v1/api-tokens`: a token for the API itself;
//!   `POST /api/v1/operator-certs`: a client certificate for the API.
//!
//! Every route but `/healthz` needs a caller ([`crate::auth`]): reads need
//! the `read` role, everything that changes the mesh or mints credentials
//! `admin`. Without credentials the answer is 401, with too few rights 403.
//! Every change is logged with the caller's name.

use crate::auth::{Caller, Role};
use crate::listener::Peer;
use crate::state::Controller;
use crate::store::{Change, ObjectKey, Outcome, StoreError, StoredObject};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use weft_model::analyze;
use weft_model::{Message, Severity};

pub fn router(controller: Arc<Controller>) -> Router {
    let read = Router::new()
        .route("/api/v1/resources", get(list))
        .route("/api/v1/analyze", get(analyze_live))
        .route("/api/v1/proxies", get(proxies))
        .route("/api/v1/proxies/{id}/config", get(proxy_config))
        .route("/api/v1/proxies/{id}/secret", get(proxy_secret))
        .route("/api/v1/proxies/{id}/tls", get(proxy_tls))
        .route("/api/v1/status", get(status))
        .route_layer(axum::middleware::from_fn_with_state(controller.clone(), require_read));
    let admin = Router::new()
        .route("/api/v1/apply", post(apply))
        .route("/api/v1/delete", post(delete))
        .route("/api/v1/tokens", post(create_token))
        .route("/api/v1/api-tokens", post(create_api_token))
        .route("/api/v1/operator-certs", post(create_operator_cert))
        .route_layer(axum::middleware::from_fn_with_state(controller.clone(), require_admin));
    Router::new().route("/healthz", get(|| async { "ok\n" })).merge(read).merge(admin).with_state(controller)
}

/// The caller of a request: its client certificate (TLS), else its bearer token.
fn caller(c: &Controller, req: &axum::extract::Request) -> Result<Caller, Box<Response>> {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<Peer>>().map(|ci| &ci.0);
    if let Some(id) = peer.and_then(|p| p.identity.as_ref()) {
        if let Some(caller) = c.auth.from_certificate(id) {
            return Ok(caller);
        }
    }
    let bearer = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer else {
        let mut r = error(StatusCode::UNAUTHORIZED, "credentials needed: run weft on the controller's machine (it reads DATA_DIR/api/admin.token), or pass --token (WEFT_API_TOKEN)");
        r.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        return Err(Box::new(r));
    };
    c.auth.verify(token.trim()).map_err(|e| Box::new(error(StatusCode::UNAUTHORIZED, &format!("the API token was refused: {e}"))))
}

async fn gate(role: Role, c: Arc<Controller>, mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match caller(&c, &req) {
        Ok(who) if who.role >= role => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Ok(who) => error(StatusCode::FORBIDDEN, &format!("{} has the {} role; this needs {role}", who.name, who.role)),
        Err(r) => *r,
    }
}

async fn require_read(State(c): State<Arc<Controller>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    gate(Role::Read, c, req, next).await
}

async fn require_admin(State(c): State<Arc<Controller>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    gate(Role::Admin, c, req, next).await
}

fn error(status: StatusCode, text: &str) -> Response {
    (status, Json(serde_json::json!({"error": text}))).into_response()
}

#[derive(Debug, Deserialize, Serialize)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct ApplyRequest {
    pub files: Vec<SourceFile>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ObjectResult {
    pub key: ObjectKey,
    pub outcome: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub applied: bool,
    pub revision: u64,
    pub results: Vec<ObjectResult>,
    /// Validation errors (when `applied` is false) and analysis advice.
    pub messages: Vec<serde_json::Value>,
    pub error: Option<String>,
}

fn messages_json(msgs: &[Message]) -> Vec<serde_json::Value> {
    msgs.iter()
        .map(|m| {
            let mut v = serde_json::to_value(m).unwrap_or_default();
            v["display"] = serde_json::Value::String(m.to_string());
            v
        })
        .collect()
}

fn store_error(e: StoreError) -> Response {
    let status = match e {
        StoreError::Conflict { .. } => StatusCode::CONFLICT,
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = ApplyResponse { applied: false, revision: 0, results: vec![], messages: vec![], error: Some(e.to_string()) };
    (status, Json(body)).into_response()
}

/// The store key of a document, with the namespace defaulted as `kubectl` does.
pub fn key_of(value: &serde_json::Value) -> Option<ObjectKey> {
    let api_version = value.get("apiVersion")?.as_str()?;
    let kind = value.get("kind")?.as_str()?.to_string();
    let (group, _) = weft_model::resource::split_api_version(api_version);
    let namespaced = weft_model::resource::kind_info(group, &kind).is_none_or(|k| k.namespaced);
    let name = value.pointer("/metadata/name")?.as_str()?.to_string();
    let namespace = if namespaced {
        value.pointer("/metadata/namespace").and_then(|n| n.as_str()).unwrap_or("default").to_string()
    } else {
        String::new()
    };
    Some(ObjectKey { group: group.to_string(), kind, namespace, name })
}

async fn apply(State(c): State<Arc<Controller>>, Extension(who): Extension<Caller>, Json(req): Json<ApplyRequest>) -> Response {
    let _guard = c.write_lock().await;
    let mut bundle = weft_model::Bundle::default();
    let mut changes = Vec::new();
    for f in &req.files {
        let (docs, syntax) = weft_model::load::split_documents(&f.name, &f.text);
        bundle.messages.extend(syntax);
        for (origin, mut value) in docs {
            // Validate each document on its own so each maps to exactly one change.
            let mut one = weft_model::Bundle::default();
            weft_model::load::parse_value(origin, value.clone(), &mut one);
            let accepted = one.resources.len() == 1;
            bundle.extend(one);
            if !accepted {
                continue;
            }
            let Some(key) = key_of(&value) else { continue };
            let expected = value
                .pointer("/metadata/resourceVersion")
                .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()));
            // The store owns versions and namespaces: keep neither as the user sent it.
            if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                meta.remove("resourceVersion");
                if !key.namespace.is_empty() {
                    meta.insert("namespace".into(), serde_json::Value::String(key.namespace.clone()));
                }
            }
            changes.push(Change::Put { key, body: value, expected_version: expected });
        }
    }
    let errors: Vec<Message> = bundle.messages.iter().filter(|m| m.severity == Severity::Error).cloned().collect();
    if !errors.is_empty() {
        let body = ApplyResponse {
            applied: false,
            revision: c.store.revision().unwrap_or(0),
            results: vec![],
            messages: messages_json(&errors),
            error: Some(format!("{} invalid document(s); nothing was applied", errors.len())),
        };
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    }
    // Advice: analysis of the state this apply would produce.
    let mut state = match c.loaded() {
        Ok(s) => s,
        Err(e) => return store_error(e),
    };
    let new_refs: std::collections::HashSet<_> = bundle.resources.iter().map(|l| l.resource.reference()).collect();
    state.retain(|l| !new_refs.contains(&l.resource.reference()));
    state.extend(bundle.resources.iter().cloned());
    let mut advice = bundle.messages.clone();
    advice.extend(analyze::analyze(&state, &c.analysis).into_iter().filter(|m| m.severity >= Severity::Warning));
    weft_model::diag::sort_messages(&mut advice);
    if req.dry_run {
        let results = changes
            .iter()
            .filter_map(|ch| match ch {
                Change::Put { key, .. } => Some(ObjectResult { key: key.clone(), outcome: "validated (dry run)".into() }),
                Change::Delete { .. } => None,
            })
            .collect();
        let body = ApplyResponse { applied: false, revision: c.store.revision().unwrap_or(0), results, messages: messages_json(&advice), error: None };
        return Json(body).into_response();
    }
    match c.store.commit(&changes) {
        Ok((revision, outcomes)) => {
            let results = changes
                .iter()
                .zip(outcomes)
                .filter_map(|(ch, o)| match ch {
                    Change::Put { key, .. } => Some(ObjectResult { key: key.clone(), outcome: outcome_word(o).into() }),
                    Change::Delete { .. } => None,
                })
                .collect();
            let keys: Vec<String> = changes.iter().map(|c| c.key().to_string()).collect();
            tracing::info!(revision, caller = %who.name, objects = %keys.join(","), "applied");
            c.registry.metrics.applied();
            c.changed.notify_one();
            Json(ApplyResponse { applied: true, revision, results, messages: messages_json(&advice), error: None }).into_response()
        }
        Err(e) => store_error(e),
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Created => "created",
        Outcome::Configured => "configured",
        Outcome::Unchanged => "unchanged",
        Outcome::Deleted => "deleted",
    }
}

#[derive(Debug, Deserialize, Serialize)]
pub struct DeleteRequest {
    pub keys: Vec<ObjectKey>,
}

async fn delete(State(c): State<Arc<Controller>>, Extension(who): Extension<Caller>, Json(req): Json<DeleteRequest>) -> Response {
    let _guard = c.write_lock().await;
    let changes: Vec<Change> = req.keys.iter().map(|k| Change::Delete { key: k.clone(), expected_version: None }).collect();
    match c.store.commit(&changes) {
        Ok((revision, _)) => {
            let keys: Vec<String> = req.keys.iter().map(|k| k.to_string()).collect();
            tracing::info!(revision, caller = %who.name, objects = %keys.join(","), "deleted");
            c.registry.metrics.applied();
            c.changed.notify_one();
            let results = req.keys.into_iter().map(|key| ObjectResult { key, outcome: "deleted".into() }).collect();
            Json(ApplyResponse { applied: true, revision, results, messages: vec![], error: None }).into_response()
        }
        Err(e) => store_error(e),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

/// Does a user's kind word (`vs`, `virtualservices`, `VirtualService`,
/// `gateways.gateway.networking.k8s.io`) name this stored kind?
pub fn kind_matches(word: &str, key: &ObjectKey) -> bool {
    let w = word.to_ascii_lowercase();
    let (w, group) = match w.split_once('.') {
        Some((k, g)) => (k.to_string(), Some(g.to_string())),
        None => (w, None),
    };
    if group.is_some_and(|g| g != key.group) {
        return false;
    }
    let kind = key.kind.to_ascii_lowercase();
    let short: &[&str] = match key.kind.as_str() {
        "VirtualService" => &["vs"],
        "DestinationRule" => &["dr"],
        "Gateway" if key.group == "networking.istio.io" => &["gw"],
        "ServiceEntry" => &["se"],
        "WorkloadEntry" => &["we"],
        "PeerAuthentication" => &["pa"],
        "AuthorizationPolicy" => &["ap"],
        "RequestAuthentication" => &["ra"],
        "TrafficSplit" => &["ts"],
        "ServiceProfile" => &["sp"],
        "Service" => &["svc"],
        "Namespace" => &["ns"],
        "Deployment" => &["deploy"],
        "ServiceAccount" => &["sa"],
        _ => &[],
    };
    w == kind || w == format!("{kind}s") || short.contains(&w.as_str()) || w == "all"
}

async fn list(State(c): State<Arc<Controller>>, Query(q): Query<ListQuery>) -> Response {
    match c.store.list() {
        Ok(objects) => {
            let out: Vec<StoredObject> = objects
                .into_iter()
                .filter(|o| q.kind.as_deref().is_none_or(|k| kind_matches(k, &o.key)))
                .filter(|o| q.namespace.as_deref().is_none_or(|n| o.key.namespace == n || o.key.namespace.is_empty()))
                .filter(|o| q.name.as_deref().is_none_or(|n| o.key.name == n))
                .map(|mut o| {
                    if let Some(meta) = o.body.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                        meta.insert("resourceVersion".into(), serde_json::Value::String(o.resource_version.to_string()));
                    }
                    o
                })
                .collect();
            Json(out).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn analyze_live(State(c): State<Arc<Controller>>) -> Response {
    match c.loaded() {
        Ok(state) => {
            let mut msgs = analyze::analyze(&state, &c.analysis);
            weft_model::diag::sort_messages(&mut msgs);
            Json(serde_json::json!({"resources": state.len(), "messages": messages_json(&msgs)})).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn proxies(State(c): State<Arc<Controller>>) -> Response {
    Json(c.registry.statuses()).into_response()
}

async fn proxy_config(State(c): State<Arc<Controller>>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    match c.registry.config_of(&id) {
        Some(cfg) => Json(&*cfg).into_response(),
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": format!("no proxy {id:?} (see weft proxy-status)")}))).into_response(),
    }
}

/// `weft tls-check`: the proxy's clusters, client mode against each endpoint's server mode.
async fn proxy_tls(State(c): State<Arc<Controller>>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    let Some(cfg) = c.registry.sent_config_of(&id) else {
        return (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": format!("no proxy {id:?} with a config (see weft proxy-status)")}))).into_response();
    };
    match c.loaded() {
        Ok(resources) => {
            let mesh = weft_model::mesh::Mesh::build(&resources, &c.analysis.root_namespace);
            let mut endpoints = crate::compile::declared_endpoints(&mesh);
            endpoints.extend(c.registry.endpoints(c.ca.trust_domain()));
            Json(crate::compile::tls_report(&mesh, &endpoints, &cfg)).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn proxy_secret(State(c): State<Arc<Controller>>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    match c.ca.issued_to(&id) {
        Some(info) => Json(info).into_response(),
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": format!("no certificate was issued to proxy {id:?}")}))).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    namespace: String,
    service_account: String,
    ttl_seconds: u64,
}

async fn create_token(State(c): State<Arc<Controller>>, Extension(who): Extension<Caller>, Json(req): Json<TokenRequest>) -> Response {
    match c.ca.create_token(&req.namespace, &req.service_account, std::time::Duration::from_secs(req.ttl_seconds)) {
        Ok((token, id, expires)) => {
            tracing::info!(caller = %who.name, identity = %id, expires, "join token created");
            Json(serde_json::json!({"token": token, "spiffe_id": id.to_string(), "expires_unix": expires})).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct ApiTokenRequest {
    name: String,
    role: Role,
    ttl_seconds: u64,
}

async fn create_api_token(State(c): State<Arc<Controller>>, Extension(who): Extension<Caller>, Json(req): Json<ApiTokenRequest>) -> Response {
    match c.auth.mint(&req.name, req.role, std::time::Duration::from_secs(req.ttl_seconds)) {
        Ok((token, expires)) => {
            tracing::info!(caller = %who.name, name = %req.name, role = %req.role, expires, "API token created");
            Json(serde_json::json!({"token": token, "name": req.name, "role": req.role, "expires_unix": expires})).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

#[derive(Debug, Deserialize)]
struct OperatorCertRequest {
    role: Role,
    csr_pem: String,
    ttl_seconds: u64,
}

async fn create_operator_cert(State(c): State<Arc<Controller>>, Extension(who): Extension<Caller>, Json(req): Json<OperatorCertRequest>) -> Response {
    match c.ca.certify_operator(req.role.operator_account(), &req.csr_pem, std::time::Duration::from_secs(req.ttl_seconds)) {
        Ok((issued, roots_pem)) => {
            tracing::info!(caller = %who.name, role = %req.role, serial = %issued.serial, "operator certificate issued");
            Json(serde_json::json!({"chain_pem": issued.chain_pem, "roots_pem": roots_pem, "serial": issued.serial})).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

/// What `weft check` reads: how the controller runs.
async fn status(State(c): State<Arc<Controller>>) -> Response {
    Json(serde_json::json!({
        "insecure_dev": c.insecure_dev,
        "trust_domain": c.ca.trust_domain(),
        "root_expires_unix": c.ca.root_expiry_unix(),
        "certificates": c.ca.issued(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, kind: &str) -> ObjectKey {
        ObjectKey { group: group.into(), kind: kind.into(), namespace: "default".into(), name: "x".into() }
    }

    #[test]
    fn kind_words() {
        let vs = key("networking.istio.io", "VirtualService");
        assert!(kind_matches("vs", &vs));
        assert!(kind_matches("virtualservices", &vs));
        assert!(kind_matches("VirtualService", &vs));
        assert!(kind_matches("virtualservice.networking.istio.io", &vs));
        assert!(!kind_matches("dr", &vs));
        let k8s_gw = key("gateway.networking.k8s.io", "Gateway");
        assert!(kind_matches("gateway", &k8s_gw));
        assert!(!kind_matches("gw", &k8s_gw), "gw is Istio's Gateway, as in istioctl");
        assert!(!kind_matches("gateway.networking.istio.io", &k8s_gw));
    }

    #[test]
    fn keys_default_the_namespace() {
        let v = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r"}});
        assert_eq!(key_of(&v).unwrap().namespace, "default");
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}});
        assert_eq!(key_of(&ns).unwrap().namespace, "");
    }
}
