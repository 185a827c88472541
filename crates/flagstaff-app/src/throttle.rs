//! Sign-in throttling: password guessing gets slower the more it fails, per account and per
//! client address, and password checks never take more CPU than a fixed share of the machine.
//!
//! Each key (an account, an address) may fail [`FREE_FAILURES`] times in a row; after that it
//! must wait 1 s, then 2 s, 4 s, … up to [`MAX_WAIT_MS`] before its next attempt, which is
//! refused (without checking the password) until then. A success clears the account's and the
//! address's count. The table is bounded: past [`MAX_KEYS`] keys, entries that no longer block
//! anything are dropped first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failures allowed before waiting is required.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait between attempts (15 minutes).
pub const MAX_WAIT_MS: i64 = 15 * 60 * 1000;
/// The most keys remembered at once.
pub const MAX_KEYS: usize = 100_000;
/// How long a run of failures is remembered after its last failure.
const FORGET_AFTER_MS: i64 = MAX_WAIT_MS;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last_at: i64,
    blocked_until: i64,
}

/// Failed sign-ins per account and per address.
#[derive(Debug, Default)]
pub(crate) struct SignInThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

fn keys(email: &str, from: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![format!("account:{email}")];
    if let Some(address) = from {
        keys.push(format!("address:{address}"));
    }
    keys
}

impl SignInThrottle {
    /// `Err(milliseconds to wait)` when an attempt for `email` from `from` must wait.
    pub(crate) fn check(&self, email: &str, from: Option<IpAddr>, now: i64) -> Result<(), i64> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let wait = keys(email, from)
            .iter()
            .filter_map(|key| failures.get(key))
            .map(|f| f.blocked_until - now)
            .max()
            .unwrap_or(0);
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    /// Records a failed attempt.
    pub(crate) fn failed(&self, email: &str, from: Option<IpAddr>, now: i64) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, f| f.blocked_until > now || now - f.last_at < FORGET_AFTER_MS);
            if failures.len() >= MAX_KEYS {
                // Still full of live entries (an attack from very many addresses): forget the
                // oldest tenth rather than grow without bound.
                let mut by_age: Vec<(i64, String)> = failures
                    .iter()
                    .map(|(k, f)| (f.last_at, k.clone()))
                    .collect();
                by_age.sort_unstable();
                for (_, key) in by_age.into_iter().take(MAX_KEYS / 10) {
                    failures.remove(&key);
                }
            }
        }
        for key in keys(email, from) {
            let entry = failures.entry(key).or_insert(Failures {
                count: 0,
                last_at: now,
                blocked_until: 0,
            });
            if now - entry.last_at >= FORGET_AFTER_MS {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last_at = now;
            if entry.count > FREE_FAILURES {
                let doublings = (entry.count - FREE_FAILURES - 1).min(20);
                entry.blocked_until = now + (1_000_i64 << doublings).min(MAX_WAIT_MS);
            }
        }
    }

    /// Records a success: the account and the address start afresh.
    pub(crate) fn succeeded(&self, email: &str, from: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys(email, from) {
            failures.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADA: &str = "ada@example.com";

    fn address(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn waits_double_after_the_free_failures_and_a_success_clears_them() {
        let throttle = SignInThrottle::default();
        let mut now = 1_000_000;
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.check(ADA, address(1), now), Ok(()));
            throttle.failed(ADA, address(1), now);
        }
        assert_eq!(throttle.check(ADA, address(1), now), Ok(()));
        throttle.failed(ADA, address(1), now); // the sixth failure: wait 1 s
        assert_eq!(throttle.check(ADA, address(1), now), Err(1_000));
        now += 1_000;
        assert_eq!(throttle.check(ADA, address(1), now), Ok(()));
        throttle.failed(ADA, address(1), now); // the seventh: 2 s
        assert_eq!(throttle.check(ADA, address(1), now + 1_999), Err(1));
        now += 2_000;
        throttle.succeeded(ADA, address(1));
        assert_eq!(throttle.check(ADA, address(1), now), Ok(()));
    }

    #[test]
    fn the_account_is_throttled_from_every_address_and_the_address_for_every_account() {
        let throttle = SignInThrottle::default();
        let now = 5_000_000;
        for i in 0..=FREE_FAILURES {
            throttle.failed(ADA, address(i as u8), now);
        }
        assert!(
            throttle.check(ADA, address(200), now).is_err(),
            "the account"
        );
        assert!(throttle.check("bob@example.com", address(200), now).is_ok());
        let throttle = SignInThrottle::default();
        for i in 0..=FREE_FAILURES {
            throttle.failed(&format!("user{i}@example.com"), address(9), now);
        }
        assert!(
            throttle.check("new@example.com", address(9), now).is_err(),
            "the address"
        );
    }

    #[test]
    fn waits_stop_growing_at_the_maximum_and_old_failures_are_forgotten() {
        let throttle = SignInThrottle::default();
        let mut now = 0;
        for _ in 0..100 {
            throttle.failed(ADA, None, now);
            now += 1;
        }
        let wait = throttle.check(ADA, None, now).unwrap_err();
        assert!(wait <= MAX_WAIT_MS && wait > MAX_WAIT_MS - 1_000, "{wait}");
        now += MAX_WAIT_MS + FORGET_AFTER_MS;
        throttle.failed(ADA, None, now);
        assert_eq!(
            throttle.check(ADA, None, now),
            Ok(()),
            "a fresh run after a long pause"
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let throttle = SignInThrottle::default();
        for i in 0..(MAX_KEYS + 10) {
            throttle.failed(&format!("u{i}"), None, 0);
        }
        let size = throttle
            .failures
            .lock()
            .map(|f| f.len())
            .unwrap_or_default();
        assert!(size <= MAX_KEYS, "{size}");
    }
}
