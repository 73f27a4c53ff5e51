//! Slows down password guessing: after [`FREE_FAILURES`] failed logins from one address, each
//! further login from it waits twice as long as the last (up to [`MAX_DELAY`]) before it is
//! looked at. A successful login clears the address's record. Failures are logged with the
//! user and address, never the password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins from an address before it is slowed down.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait before a login is looked at.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// An address's record is forgotten this long after its last failure.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Failed logins per client address.
#[derive(Default)]
pub struct AuthBackoff {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthBackoff {
    /// How long a login from `addr` waits before it is looked at.
    pub fn delay(&self, addr: IpAddr) -> Duration {
        let Ok(mut f) = self.failures.lock() else {
            return Duration::ZERO;
        };
        f.retain(|_, (_, last)| last.elapsed() < FORGET_AFTER);
        match f.get(&addr) {
            Some((n, _)) if *n >= FREE_FAILURES => {
                let doublings = (*n - FREE_FAILURES).min(16);
                Duration::from_millis(500u64 << doublings).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    pub fn failed(&self, addr: IpAddr) {
        if let Ok(mut f) = self.failures.lock() {
            let e = f.entry(addr).or_insert((0, Instant::now()));
            e.0 = e.0.saturating_add(1);
            e.1 = Instant::now();
        }
    }

    pub fn succeeded(&self, addr: IpAddr) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_after_the_free_failures_and_clear_on_success() {
        let b = AuthBackoff::default();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..FREE_FAILURES {
            assert_eq!(b.delay(a), Duration::ZERO);
            b.failed(a);
        }
        assert_eq!(b.delay(a), Duration::from_millis(500));
        b.failed(a);
        assert_eq!(b.delay(a), Duration::from_secs(1));
        for _ in 0..20 {
            b.failed(a);
        }
        assert_eq!(b.delay(a), MAX_DELAY);
        assert_eq!(b.delay(other), Duration::ZERO, "per address");
        b.succeeded(a);
        assert_eq!(b.delay(a), Duration::ZERO);
    }
}
