//! What the simulator has seen, counted as it goes; the demo and the tests read it to show how
//! many requests reached "Partner Center".

use std::sync::atomic::{AtomicU64, Ordering};

/// What the simulator has seen; read by the demo and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Every request received.
    pub requests: AtomicU64,
    /// `GET` of one order.
    pub order_gets: AtomicU64,
    /// `GET` of one subscription.
    pub subscription_gets: AtomicU64,
    /// `GET` of one customer.
    pub customer_gets: AtomicU64,
    /// Answered 429 for the budget.
    pub throttled: AtomicU64,
    /// Answered 503 by the failure rate.
    pub failed: AtomicU64,
}

impl Counters {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        Self::get(&self.requests)
    }

    /// Order-by-ID GETs received so far.
    pub fn order_gets(&self) -> u64 {
        Self::get(&self.order_gets)
    }

    /// Subscription-by-ID GETs received so far.
    pub fn subscription_gets(&self) -> u64 {
        Self::get(&self.subscription_gets)
    }

    /// Customer-by-ID GETs received so far.
    pub fn customer_gets(&self) -> u64 {
        Self::get(&self.customer_gets)
    }

    /// 429s sent so far.
    pub fn throttled(&self) -> u64 {
        Self::get(&self.throttled)
    }
}
