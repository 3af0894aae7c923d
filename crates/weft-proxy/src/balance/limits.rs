//! Circuit breaking: a cluster's limits on requests in flight, requests
//! waiting for a slot, and retries in progress. Over a limit a request is
//! answered 503 (UO) at once rather than queued, as Envoy does.

use crate::local_reply::{Flag, LocalReply};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use weft_proto::config::ConnectionPool;

/// A cluster's limits on concurrent requests and retries.
pub struct Limits {
    requests: Option<Arc<Semaphore>>,
    max_requests: u32,
    max_pending: Option<u32>,
    pending: AtomicU32,
    retries: Option<(u32, AtomicU32)>,
}

/// Held while a request is admitted.
pub struct Admitted(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Limits {
    pub fn new(pool: &ConnectionPool, http2: bool) -> Limits {
        let max = if http2 { pool.max_requests } else { pool.max_connections };
        Limits {
            requests: max.map(|m| Arc::new(Semaphore::new(m as usize))),
            max_requests: max.unwrap_or(0),
            max_pending: if http2 { Some(0) } else { pool.max_pending_requests },
            pending: AtomicU32::new(0),
            retries: pool.max_retries.map(|m| (m, AtomicU32::new(0))),
        }
    }

    /// Admits a request: at once while under the limit, after waiting while
    /// the pending queue has room, else refused with UO.
    pub async fn admit(&self, cluster: &str) -> Result<Admitted, LocalReply> {
        let Some(sem) = &self.requests else { return Ok(Admitted(None)) };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(Admitted(Some(p)));
        }
        let max_pending = self.max_pending.unwrap_or(u32::MAX);
        if self.pending.fetch_add(1, Ordering::AcqRel) >= max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(LocalReply::new(
                503,
                Flag::UpstreamOverflow,
                format!("cluster {cluster} is at its limit of {} requests in flight and {max_pending} pending", self.max_requests),
            ));
        }
        let permit = sem.clone().acquire_owned().await;
        self.pending.fetch_sub(1, Ordering::AcqRel);
        permit.map(|p| Admitted(Some(p))).map_err(|_| LocalReply::new(503, Flag::UpstreamOverflow, "cluster closed"))
    }

    /// Admits a request only if it can go at once (mirrors never wait).
    pub fn try_admit(&self) -> Option<Admitted> {
        match &self.requests {
            None => Some(Admitted(None)),
            Some(sem) => sem.clone().try_acquire_owned().ok().map(|p| Admitted(Some(p))),
        }
    }

    /// Takes a retry slot if the cluster's `max_retries` allows; release with [`Limits::retry_done`].
    pub fn try_retry(&self) -> bool {
        match &self.retries {
            None => true,
            Some((max, n)) if n.fetch_add(1, Ordering::AcqRel) >= *max => {
                n.fetch_sub(1, Ordering::AcqRel);
                false
            }
            Some(_) => true,
        }
    }

    pub fn retry_done(&self) {
        if let Some((_, n)) = &self.retries {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

