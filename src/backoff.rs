//! Exponential backoff with jitter, reset on success.
//!
//! One small type so that every retry in the controller (MAAS operations, polls,
//! provisioning attempts) grows and resets the same way.

#![warn(missing_docs)]

use std::time::{Duration, Instant};

use rand::Rng;

/// The retry state of one thing that fails: how many attempts since the last success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Waits start near `base` and double per failure up to `cap` (at least `base`).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The ceiling for the next wait: `base * 2^attempt`, capped.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next wait, drawn from [ceiling/2, ceiling] so that many machines failing
    /// together do not retry together.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_millis() as u64;
        half + Duration::from_millis(if spread == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=spread)
        })
    }

    /// After a success: the next failure waits about `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// `now + d` that cannot panic: a delay that overflows the clock (a `Retry-After` of
/// 2^64 seconds) becomes one day, still bounded and still later than now.
pub fn instant_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let waits: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        for (i, w) in waits.iter().enumerate() {
            let ceiling = Duration::from_secs(1 << i.min(4)).min(Duration::from_secs(10));
            assert!(
                *w >= ceiling / 2 && *w <= ceiling,
                "attempt {i}: {w:?} vs {ceiling:?}"
            );
        }
        assert_eq!(b.attempts(), 8);
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn instant_after_never_panics() {
        let t = instant_after(Duration::from_secs(u64::MAX));
        assert!(t > Instant::now());
        assert!(instant_after(Duration::from_secs(1)) <= Instant::now() + Duration::from_secs(1));
    }
}
