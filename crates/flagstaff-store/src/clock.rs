//! The one source of "now" for the server: the store's audit timestamps, the app's expiries
//! (sessions, rotated keys), delivery's credential checks and the events pipeline's buckets all
//! read it. Production uses the system clock; tests use a manual clock and move it, so that
//! anything that depends on time (expiry today; scheduled changes and experiment windows later)
//! is tested without sleeping.
//!
//! It lives in the lowest crate that every time-dependent part shares; crates above the app
//! reach it as `flagstaff_app::Clock`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where "now" comes from. Cloning shares the clock: moving a manual clock moves every clone.
#[derive(Clone, Debug, Default)]
pub struct Clock(Source);

#[derive(Clone, Debug, Default)]
enum Source {
    #[default]
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that stands still at `now` (Unix milliseconds) until moved.
    pub fn manual(now: i64) -> Clock {
        Clock(Source::Manual(Arc::new(AtomicI64::new(now))))
    }

    /// Now, in Unix milliseconds.
    pub fn now_millis(&self) -> i64 {
        match &self.0 {
            Source::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Source::Manual(now) => now.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward by `millis` (backward when negative). Returns whether the
    /// clock is manual: the system clock cannot be moved, and moving it is not an error worth a
    /// panic in a server, so it is refused quietly and reported.
    pub fn advance(&self, millis: i64) -> bool {
        match &self.0 {
            Source::System => false,
            Source::Manual(now) => {
                now.fetch_add(millis, Ordering::SeqCst);
                true
            }
        }
    }

    /// Sets a manual clock to `now`; see [`Clock::advance`] for the system clock.
    pub fn set(&self, now: i64) -> bool {
        match &self.0 {
            Source::System => false,
            Source::Manual(at) => {
                at.store(now, Ordering::SeqCst);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = Clock::manual(1_000);
        let clone = clock.clone();
        assert_eq!(clock.now_millis(), 1_000);
        assert!(clock.advance(500));
        assert_eq!(clone.now_millis(), 1_500);
        assert!(clone.set(10));
        assert_eq!(clock.now_millis(), 10);
    }

    #[test]
    fn the_system_clock_is_near_the_wall_clock_and_cannot_be_moved() {
        let clock = Clock::system();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        assert!((clock.now_millis() - wall).abs() < 60_000);
        assert!(!clock.advance(1));
        assert!(!clock.set(1));
    }
}
