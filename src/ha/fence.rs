//! The fencing gate: how long this replica may still act as the leader.
//!
//! MAAS has no compare-and-set, so two leaders acting at once cannot be undone: safety
//! rests on the old leader stopping before anyone else can start. The election thread
//! moves the deadline forward after each successful lease renewal to
//! `when the renewal was sent + lease_ttl / 2`, always earlier than the moment etcd can
//! expire the lease and let another replica win. Every MAAS request and every
//! provisioning start asks [`Fence::check`] immediately before it goes out; once the
//! deadline has passed (etcd unreachable, the process paused, a partition) the answer
//! is no, whatever the rest of the process has not noticed yet.
//!
//! With `ha.backend = "none"` the fence is [`Fence::unfenced`] and always open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the fence refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    /// This replica has not won the election (or lost it).
    #[error("not the leader (standby)")]
    NotLeader,
    /// It was the leader, but its lease has not been renewed in time.
    #[error("leadership lapsed {0:?} ago: the lease was not renewed in time")]
    Lapsed(Duration),
}

/// A shared, cheap-to-clone deadline. `None` inside means "no election: always open".
#[derive(Clone, Debug, Default)]
pub struct Fence(Option<Arc<Gate>>);

#[derive(Debug)]
struct Gate {
    /// The clock's zero: deadlines are stored as nanoseconds after it.
    origin: Instant,
    /// Nanoseconds after `origin` until which we may act; 0 when we may not act at all.
    until_ns: AtomicU64,
}

impl Fence {
    /// No election (`ha.backend = "none"`): every check passes.
    pub fn unfenced() -> Self {
        Fence(None)
    }

    /// An election-backed fence, closed until the first [`Fence::open_until`].
    pub fn closed() -> Self {
        Fence(Some(Arc::new(Gate {
            origin: Instant::now(),
            until_ns: AtomicU64::new(0),
        })))
    }

    /// Whether this fence belongs to an election.
    pub fn is_fenced(&self) -> bool {
        self.0.is_some()
    }

    /// May this replica act now? Called immediately before every MAAS request and
    /// every provisioning start.
    pub fn check(&self) -> Result<(), FenceError> {
        let Some(g) = &self.0 else { return Ok(()) };
        let until = g.until_ns.load(Ordering::Acquire);
        if until == 0 {
            return Err(FenceError::NotLeader);
        }
        let now = g.origin.elapsed().as_nanos() as u64;
        if now < until {
            Ok(())
        } else {
            Err(FenceError::Lapsed(Duration::from_nanos(now - until)))
        }
    }

    /// Allow acting until `t` (never moves an open deadline backwards).
    pub fn open_until(&self, t: Instant) {
        if let Some(g) = &self.0 {
            let ns = (t.saturating_duration_since(g.origin).as_nanos() as u64).max(1);
            g.until_ns.fetch_max(ns, Ordering::AcqRel);
        }
    }

    /// Stop acting now (leadership lost or given up).
    pub fn close(&self) {
        if let Some(g) = &self.0 {
            g.until_ns.store(0, Ordering::Release);
        }
    }

    /// When the current permission ends; `None` when closed or unfenced.
    pub fn deadline(&self) -> Option<Instant> {
        let g = self.0.as_ref()?;
        match g.until_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(g.origin + Duration::from_nanos(ns)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfenced_always_passes() {
        assert!(Fence::unfenced().check().is_ok());
        assert!(Fence::default().check().is_ok());
    }

    #[test]
    fn closed_until_opened_then_lapses() {
        let f = Fence::closed();
        assert_eq!(f.check(), Err(FenceError::NotLeader));
        f.open_until(Instant::now() + Duration::from_secs(60));
        assert!(f.check().is_ok());
        // An older renewal never shortens a newer one.
        f.open_until(Instant::now());
        assert!(f.check().is_ok());
        f.close();
        assert_eq!(f.check(), Err(FenceError::NotLeader));
        f.open_until(Instant::now());
        assert!(matches!(f.check(), Err(FenceError::Lapsed(_))));
        assert!(f.clone().deadline().is_some());
    }
}
