//! A future bounded by an optional time limit, as one future whatever the
//! case: `tokio::time::timeout` in one branch and the bare future in the
//! other would make the caller's future hold both, and the request's future
//! is moved on every await of its callers (its size is CPU per request).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The limit passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

pin_project_lite::pin_project! {
    /// `fut`, bounded by the limit [`within`] was given, if any.
    pub struct Within<F> {
        #[pin]
        fut: F,
        // Boxed: only requests with a limit pay for a timer.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

/// `fut`, failing with [`TimedOut`] once `limit` (when there is one) has passed.
pub fn within<F: Future>(limit: Option<Duration>, fut: F) -> Within<F> {
    Within { fut, sleep: limit.map(|l| Box::pin(tokio::time::sleep(l))) }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.sleep {
            Some(s) => s.as_mut().poll(cx).map(|()| Err(TimedOut)),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_limit_ends_a_slow_future_and_no_limit_waits_for_it() {
        let slow = || tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(within(Some(Duration::from_secs(1)), slow()).await, Err(TimedOut));
        assert_eq!(within(None, slow()).await, Ok(()));
        assert_eq!(within(Some(Duration::from_secs(10)), async { 7 }).await, Ok(7));
    }
}
