//! Graceful shutdown: a signal every accept loop and connection watches,
//! and a count of open connections the process waits on before it exits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Cheap to clone; every clone is the same drain.
#[derive(Clone)]
pub struct Drain(Arc<State>);

struct State {
    signal: watch::Sender<bool>,
    active: AtomicUsize,
    idle: Notify,
}

impl Default for Drain {
    fn default() -> Self {
        Drain(Arc::new(State { signal: watch::channel(false).0, active: AtomicUsize::new(0), idle: Notify::new() }))
    }
}

impl Drain {
    /// Tells every listener to stop accepting and every connection to finish.
    pub fn start(&self) {
        self.0.signal.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.0.signal.borrow()
    }

    /// Resolves once draining has started.
    pub async fn signaled(&self) {
        let mut rx = self.0.signal.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Counts a connection as open until the guard drops.
    pub fn enter(&self) -> Open {
        self.0.active.fetch_add(1, Ordering::SeqCst);
        Open(self.0.clone())
    }

    /// Waits until no connection is open.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            if self.0.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub fn active(&self) -> usize {
        self.0.active.load(Ordering::SeqCst)
    }
}

/// One open connection; dropping it may make the drain idle.
pub struct Open(Arc<State>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_the_last_open_connection() {
        let drain = Drain::default();
        let a = drain.enter();
        let b = drain.enter();
        drain.start();
        assert!(drain.is_draining());
        drain.signaled().await;
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.idle().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one connection is still open");
        drop(b);
        waiter.await.unwrap();
        assert_eq!(drain.active(), 0);
    }
}
