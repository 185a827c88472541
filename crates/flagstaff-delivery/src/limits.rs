//! Connection limits: how many connections the server holds at once, in all and per client
//! address, so that nobody can use up the file descriptors that SDKs and people need.
//!
//! A connection over a limit is answered at once with `503` and `Retry-After` (which SDKs retry
//! with backoff, `ld-protocol.md` §4.5) and closed, without reading its request. Refusals are
//! counted in `/metrics` and logged at most every 10 seconds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Open connections, in all and per address.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    max_total: usize,
    max_per_address: usize,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    last_logged: AtomicI64,
}

/// A held place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct ConnectionPlace {
    limits: Arc<ConnectionLimits>,
    address: IpAddr,
}

/// Why a connection was refused (the `reason` label in `/metrics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The server holds `max_connections`.
    Total,
    /// This address holds `max_connections_per_address`.
    PerAddress,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerAddress => "per_address",
        }
    }
}

impl ConnectionLimits {
    pub(crate) fn new(max_total: usize, max_per_address: usize) -> Arc<ConnectionLimits> {
        metrics::gauge!("flagstaff_connections_limit", "limit" => "total").set(max_total as f64);
        metrics::gauge!("flagstaff_connections_limit", "limit" => "per_address")
            .set(max_per_address as f64);
        Arc::new(ConnectionLimits {
            max_total,
            max_per_address,
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            last_logged: AtomicI64::new(0),
        })
    }

    /// Takes a place for a connection from `address`, or says which limit refuses it.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Result<ConnectionPlace, Refused> {
        let mut per_address = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let refused = if self.open.load(Ordering::SeqCst) >= self.max_total {
            Some(Refused::Total)
        } else if per_address.get(&address).copied().unwrap_or(0) >= self.max_per_address {
            Some(Refused::PerAddress)
        } else {
            None
        };
        if let Some(reason) = refused {
            drop(per_address);
            self.refused(reason, address);
            return Err(reason);
        }
        *per_address.entry(address).or_insert(0) += 1;
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!("flagstaff_connections_open").set(open as f64);
        Ok(ConnectionPlace {
            limits: Arc::clone(self),
            address,
        })
    }

    fn refused(&self, reason: Refused, address: IpAddr) {
        metrics::counter!("flagstaff_connections_refused_total", "reason" => reason.label())
            .increment(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let last = self.last_logged.load(Ordering::Relaxed);
        if now - last >= 10
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                reason = reason.label(),
                %address,
                "refusing connections over the limit (logged at most every 10 s)"
            );
        }
    }

    /// Connections held now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for ConnectionPlace {
    fn drop(&mut self) {
        let mut per_address = self
            .limits
            .per_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                per_address.remove(&self.address);
            }
        }
        let open = self.limits.open.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!("flagstaff_connections_open").set(open as f64);
    }
}

/// Event payloads per second per environment from browsers and phones: a token bucket per
/// environment that holds up to two seconds' worth. The browser paths need only the public
/// client-side ID (and a mobile key ships inside every app), so without it anyone could keep
/// the two parsing slots busy and crowd out the events of server SDKs. Only environments that
/// exist get a bucket: the credential is checked first.
#[derive(Debug)]
pub(crate) struct PayloadRate {
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, std::time::Instant)>>,
}

impl PayloadRate {
    pub(crate) fn new(per_second: u32) -> PayloadRate {
        metrics::gauge!("flagstaff_client_event_payloads_per_second_limit").set(per_second);
        PayloadRate {
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one payload's place for `environment` at `now`; `false` when its bucket is empty.
    pub(crate) fn take(&self, environment: &str, now: std::time::Instant) -> bool {
        let burst = self.per_second * 2.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = buckets
            .entry(environment.to_owned())
            .or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            metrics::counter!("flagstaff_client_event_payloads_limited_total").increment(1);
            false
        }
    }
}

/// The answer to a connection over a limit: `503`, `Retry-After`, and the connection closes.
pub(crate) const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
x-content-type-options: nosniff\r\n\
retry-after: 5\r\n\
connection: close\r\n\
content-length: 82\r\n\r\n\
{\"code\":\"unavailable\",\"message\":\"too many connections; retry after a few seconds\"}";

#[cfg(test)]
mod tests {
    use super::*;

    fn address(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn places_are_counted_per_address_and_in_all_and_freed_on_drop() {
        let limits = ConnectionLimits::new(3, 2);
        let a1 = limits.admit(address(1)).unwrap();
        let _a2 = limits.admit(address(1)).unwrap();
        assert_eq!(limits.admit(address(1)).unwrap_err(), Refused::PerAddress);
        let _b1 = limits.admit(address(2)).unwrap();
        assert_eq!(limits.admit(address(3)).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(limits.open(), 2);
        assert!(
            limits.admit(address(1)).is_ok(),
            "a freed place is free again"
        );
    }

    #[test]
    fn client_event_payloads_are_limited_per_environment_with_a_two_second_burst() {
        let rate = PayloadRate::new(10);
        let start = std::time::Instant::now();
        let taken = (0..25).filter(|_| rate.take("p/e", start)).count();
        assert_eq!(taken, 20, "a full bucket holds two seconds' worth");
        assert!(
            rate.take("p/other", start),
            "environments have their own buckets"
        );
        let later = start + std::time::Duration::from_millis(500);
        let refilled = (0..25).filter(|_| rate.take("p/e", later)).count();
        assert_eq!(refilled, 5, "half a second refills half the rate");
    }

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}
