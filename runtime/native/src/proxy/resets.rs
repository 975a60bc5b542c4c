//! Requests a client cancels in flight (HTTP/2 `RST_STREAM` after the stream was accepted).
//!
//! h2 closes a connection whose streams are reset before they are accepted (rapid reset), but
//! a client that waits until each request is in flight, then resets it, makes the proxy start
//! upstream requests at the client's pace while never reading an answer. As Envoy does with
//! premature resets, a connection that has started at least [`MIN_REQUESTS`] requests, more
//! than half of which were cancelled before their response, is closed
//! (`AMBIT_ERR_H2_RESET_FLOOD` in its connection record).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// Requests a connection starts before its share of cancelled ones is judged.
pub const MIN_REQUESTS: u64 = 200;

#[derive(Default)]
pub struct Resets {
    started: AtomicU64,
    cancelled: AtomicU64,
    flooded: AtomicBool,
    close: Notify,
}

impl Resets {
    /// A request starts; the guard counts it as cancelled if it is dropped before `answered`.
    pub fn started(&self) -> Pending<'_> {
        self.started.fetch_add(1, Ordering::Relaxed);
        Pending { resets: self, answered: false }
    }

    /// Resolves once the connection is to be closed for its cancelled requests.
    pub async fn flooded(&self) -> String {
        self.close.notified().await;
        format!(
            "AMBIT_ERR_H2_RESET_FLOOD: the client cancelled {} of {} requests before their response; the connection is closed (at least {} requests, more than half cancelled)",
            self.cancelled.load(Ordering::Relaxed),
            self.started.load(Ordering::Relaxed),
            MIN_REQUESTS
        )
    }

    fn cancel(&self) {
        let cancelled = self.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        let started = self.started.load(Ordering::Relaxed);
        if started >= MIN_REQUESTS && cancelled * 2 > started && !self.flooded.swap(true, Ordering::Relaxed) {
            // A permit is kept if nobody waits yet.
            self.close.notify_one();
        }
    }
}

pub struct Pending<'a> {
    resets: &'a Resets,
    answered: bool,
}

impl Pending<'_> {
    pub fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.resets.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_only_past_the_minimum_and_half() {
        let r = Resets::default();
        for _ in 0..MIN_REQUESTS - 1 {
            drop(r.started());
        }
        assert!(!r.flooded.load(Ordering::Relaxed), "fewer than the minimum started");
        for _ in 0..MIN_REQUESTS {
            r.started().answered();
        }
        drop(r.started());
        assert!(!r.flooded.load(Ordering::Relaxed), "half cancelled is not more than half");
        for _ in 0..3 {
            drop(r.started());
        }
        assert!(r.flooded.load(Ordering::Relaxed));
    }
}
