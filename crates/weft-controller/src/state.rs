//! The controller's shared state: the store, the analysis options, the
//! registry of connected proxies, the mesh CA, and the signal that wakes the
//! push loop. The HTTP API writes through it; the push loop reads it.

use crate::store::{Store, StoreError};
use std::sync::Arc;
use weft_model::analyze::Options;
use weft_model::Origin;

pub struct Controller {
    pub store: Box<dyn Store>,
    pub analysis: Options,
    /// Connected proxies and what they were sent.
    pub registry: Arc<crate::registry::Registry>,
    /// The mesh CA: join tokens and workload certificates.
    pub ca: Arc<crate::identity::MeshCa>,
    /// Who may use the HTTP API.
    pub auth: crate::auth::ApiAuth,
    /// Token-less proxies are taken at their word (`--insecure-dev`).
    pub insecure_dev: bool,
    /// Mesh-wide authorization settings.
    pub policy: crate::compile::authz::MeshPolicy,
    /// Mesh-wide telemetry settings (metric vocabularies, the access log), sent to every proxy.
    pub telemetry: crate::compile::telemetry::MeshTelemetry,
    /// JWT issuers' key sets, fetched for the proxies.
    pub jwks: crate::jwks::JwksCache,
    /// Wakes the push loop after the store changed.
    pub changed: tokio::sync::Notify,
    /// Serialises apply and delete so validation and commit see one state.
    write_lock: tokio::sync::Mutex<()>,
}

/// How the mesh as a whole is run, from the controller's flags.
#[derive(Debug, Clone, Default)]
pub struct MeshSettings {
    /// Take token-less proxies at their word (`--insecure-dev`).
    pub insecure_dev: bool,
    pub policy: crate::compile::authz::MeshPolicy,
    pub telemetry: crate::compile::telemetry::MeshTelemetry,
}

impl Controller {
    /// `grace`: how long a disconnected proxy's workload stays an endpoint.
    pub fn new(store: Box<dyn Store>, analysis: Options, grace: std::time::Duration, ca: crate::identity::MeshCa, auth: crate::auth::ApiAuth, mesh: MeshSettings) -> Arc<Controller> {
        let MeshSettings { insecure_dev, policy, telemetry } = mesh;
        Arc::new(Controller {
            store,
            analysis,
            auth,
            insecure_dev,
            policy,
            telemetry,
            jwks: crate::jwks::JwksCache::default(),
            ca: Arc::new(ca),
            registry: crate::registry::Registry::new(grace),
            changed: tokio::sync::Notify::new(),
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Held while an apply or delete validates and commits.
    pub async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().await
    }

    /// The stored state, parsed back into resources (origin `store`).
    pub fn loaded(&self) -> Result<Vec<weft_model::Loaded>, StoreError> {
        let mut bundle = weft_model::Bundle::default();
        for (i, obj) in self.store.list()?.into_iter().enumerate() {
            weft_model::load::parse_value(Origin { file: "store".into(), document: i }, obj.body, &mut bundle);
        }
        Ok(bundle.resources)
    }
}

