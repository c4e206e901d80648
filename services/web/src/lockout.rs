//! Failed logins by source address: the fifth within five minutes locks the
//! address out for five minutes. A successful login clears its count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins that lock an address out.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are counted, and how long a lockout lasts.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Addresses tracked at most: beyond it, the expired ones are forgotten first,
/// then the oldest, so a flood of addresses cannot exhaust memory.
const MAX_ADDRESSES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Lockout {
    entries: HashMap<IpAddr, Entry>,
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Counted(u32),
    /// This failure locked the address out.
    LockedOut,
}

impl Lockout {
    /// How long `ip` stays locked out, if it is.
    pub fn locked(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(&ip)?;
        match entry.locked_until {
            Some(until) if until > now => Some(until - now),
            Some(_) => {
                self.entries.remove(&ip);
                None
            }
            None => None,
        }
    }

    pub fn fail(&mut self, ip: IpAddr, now: Instant) -> Failure {
        if self.entries.len() >= MAX_ADDRESSES && !self.entries.contains_key(&ip) {
            self.forget_old(now);
        }
        let entry = self.entries.entry(ip).or_insert(Entry {
            failures: 0,
            first: now,
            locked_until: None,
        });
        if now.duration_since(entry.first) > WINDOW {
            *entry = Entry {
                failures: 0,
                first: now,
                locked_until: None,
            };
        }
        entry.failures += 1;
        if entry.failures >= MAX_FAILURES {
            entry.locked_until = Some(now + WINDOW);
            Failure::LockedOut
        } else {
            Failure::Counted(entry.failures)
        }
    }

    pub fn succeed(&mut self, ip: IpAddr) {
        self.entries.remove(&ip);
    }

    fn forget_old(&mut self, now: Instant) {
        self.entries.retain(|_, e| {
            e.locked_until.is_some_and(|u| u > now) || now.duration_since(e.first) <= WINDOW
        });
        while self.entries.len() >= MAX_ADDRESSES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.first)
                .map(|(ip, _)| *ip);
            match oldest {
                Some(ip) => self.entries.remove(&ip),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifth_failure_locks_the_address_for_five_minutes_and_only_it() {
        let mut lockout = Lockout::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for n in 1..MAX_FAILURES {
            assert_eq!(lockout.fail(a, t0), Failure::Counted(n));
            assert_eq!(lockout.locked(a, t0), None);
        }
        assert_eq!(lockout.fail(a, t0), Failure::LockedOut);
        assert_eq!(lockout.locked(a, t0), Some(WINDOW));
        assert_eq!(lockout.locked(b, t0), None);
        let later = t0 + WINDOW - Duration::from_secs(1);
        assert_eq!(lockout.locked(a, later), Some(Duration::from_secs(1)));
        assert_eq!(lockout.locked(a, t0 + WINDOW), None);
        assert_eq!(lockout.fail(a, t0 + WINDOW), Failure::Counted(1));
    }

    #[test]
    fn failures_further_apart_than_the_window_do_not_add_up_and_a_login_clears_them() {
        let mut lockout = Lockout::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        for _ in 1..MAX_FAILURES {
            lockout.fail(ip, t0);
        }
        assert_eq!(
            lockout.fail(ip, t0 + WINDOW + Duration::from_secs(1)),
            Failure::Counted(1)
        );
        lockout.succeed(ip);
        assert_eq!(lockout.fail(ip, t0 + WINDOW * 2), Failure::Counted(1));
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let mut lockout = Lockout::default();
        let t0 = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 100) {
            lockout.fail(IpAddr::from(n.to_be_bytes()), t0);
        }
        assert!(lockout.entries.len() <= MAX_ADDRESSES);
    }
}
