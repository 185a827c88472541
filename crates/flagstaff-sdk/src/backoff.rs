//! The reconnection policy of LaunchDarkly's SDKs (`ld-protocol.md` §4.2 "Connection
//! lifecycle"; `real-sdk-observations.md` "Reliability behaviour"): the delay starts at the
//! configured initial delay (1 s by default), doubles with every consecutive failure up to 30 s,
//! loses a random jitter of up to half of itself, and starts over once a connection has stayed
//! healthy for 60 s. The first connection is retried indefinitely.
//!
//! Pure: the caller passes the clock reading and the random fraction, so tests can pin both.

use std::time::{Duration, Instant};

/// The longest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// How long a connection must stay up before the failure count starts over.
pub const RESET_AFTER: Duration = Duration::from_secs(60);

/// Reconnection delays for one data source.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    failures: u32,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// A policy starting at `initial`.
    pub fn new(initial: Duration) -> Backoff {
        Backoff {
            initial,
            failures: 0,
            connected_at: None,
        }
    }

    /// The server asked for a different base delay (SSE `retry:` field).
    pub fn set_initial(&mut self, initial: Duration) {
        self.initial = initial;
    }

    /// A connection was established at `now`.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The connection was lost (or an attempt failed) at `now`; returns how long to wait before
    /// the next attempt. `random` in `[0, 1)` picks the jitter.
    pub fn next_delay(&mut self, now: Instant, random: f64) -> Duration {
        if let Some(since) = self.connected_at.take()
            && now.saturating_duration_since(since) >= RESET_AFTER
        {
            self.failures = 0;
        }
        let doubled = self
            .initial
            .saturating_mul(1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX));
        let base = doubled.min(MAX_DELAY);
        self.failures = self.failures.saturating_add(1);
        let jitter = base.mul_f64(random.clamp(0.0, 1.0) / 2.0);
        base - jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn delays_double_up_to_thirty_seconds() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let now = Instant::now();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay(now, 0.0)).collect();
        assert_eq!(
            delays,
            [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0].map(secs)
        );
    }

    #[test]
    fn jitter_takes_off_at_most_half() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(backoff.next_delay(now, 0.999_999), secs(0.500_000_5));
        assert_eq!(backoff.next_delay(now, 0.5), secs(1.5));
    }

    #[test]
    fn sixty_healthy_seconds_start_the_count_over() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..4 {
            backoff.next_delay(start, 0.0);
        }
        // Up for 59 s: the next delay keeps doubling.
        backoff.connected(start);
        assert_eq!(backoff.next_delay(start + secs(59.0), 0.0), secs(16.0));
        // Up for 60 s: back to the initial delay.
        backoff.connected(start);
        assert_eq!(backoff.next_delay(start + secs(60.0), 0.0), secs(1.0));
        assert_eq!(backoff.next_delay(start + secs(61.0), 0.0), secs(2.0));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let now = Instant::now();
        for _ in 0..100 {
            assert!(backoff.next_delay(now, 0.0) <= MAX_DELAY);
        }
    }
}
