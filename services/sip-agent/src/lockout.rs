//! Wrong door codes, counted per caller identity across calls: five within
//! ten minutes lock DTMF door opening for that caller for ten minutes. A
//! brute force of codes then has to get past the lock, not just call again.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// Wrong codes within [`WINDOW`] that lock a caller.
pub const MAX_WRONG_CODES: usize = 5;
/// How far back wrong codes count.
pub const WINDOW: Duration = Duration::from_secs(600);
/// How long a lock lasts.
pub const LOCK: Duration = Duration::from_secs(600);
/// Callers remembered at most: a flood of identities cannot grow the table
/// without bound (the oldest entries go first).
const MAX_CALLERS: usize = 1024;

#[derive(Debug, Default)]
struct Record {
    wrong: VecDeque<Instant>,
    locked_until: Option<Instant>,
    last: Option<Instant>,
}

/// Every caller's wrong codes and lock.
#[derive(Debug, Default)]
pub struct Lockouts {
    callers: HashMap<String, Record>,
}

impl Lockouts {
    /// Until when `caller` is locked, if it is at `now`.
    pub fn locked(&self, caller: &str, now: Instant) -> Option<Instant> {
        self.callers
            .get(caller)
            .and_then(|r| r.locked_until)
            .filter(|until| *until > now)
    }

    /// Counts a wrong code of `caller` at `now`; the lock's end when this one
    /// locks it.
    pub fn wrong(&mut self, caller: &str, now: Instant) -> Option<Instant> {
        if !self.callers.contains_key(caller) && self.callers.len() >= MAX_CALLERS {
            self.forget_oldest(now);
        }
        let record = self.callers.entry(caller.to_owned()).or_default();
        record.last = Some(now);
        while record
            .wrong
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            record.wrong.pop_front();
        }
        record.wrong.push_back(now);
        if record.wrong.len() >= MAX_WRONG_CODES {
            record.wrong.clear();
            let until = now + LOCK;
            record.locked_until = Some(until);
            return Some(until);
        }
        None
    }

    /// Wrong codes of `caller` that still count at `now`.
    pub fn count(&self, caller: &str, now: Instant) -> usize {
        self.callers.get(caller).map_or(0, |r| {
            r.wrong
                .iter()
                .filter(|t| now.saturating_duration_since(**t) < WINDOW)
                .count()
        })
    }

    fn forget_oldest(&mut self, now: Instant) {
        self.callers.retain(|_, r| {
            r.locked_until.is_some_and(|u| u > now)
                || r.last
                    .is_some_and(|t| now.saturating_duration_since(t) < WINDOW)
        });
        while self.callers.len() >= MAX_CALLERS {
            // A lock is never forgotten to make room.
            let oldest = self
                .callers
                .iter()
                .filter(|(_, r)| r.locked_until.is_none_or(|u| u <= now))
                .min_by_key(|(_, r)| r.last)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.callers.remove(&k),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn five_wrong_codes_in_ten_minutes_lock_for_ten_minutes() {
        let mut l = Lockouts::default();
        let t0 = Instant::now();
        for n in 0..4 {
            assert_eq!(l.wrong("a", t0 + Duration::from_secs(n * 60)), None);
        }
        assert_eq!(l.locked("a", t0), None);
        let fifth = t0 + Duration::from_secs(240);
        assert_eq!(l.wrong("a", fifth), Some(fifth + LOCK));
        assert_eq!(
            l.locked("a", fifth + LOCK - Duration::from_millis(1)),
            Some(fifth + LOCK)
        );
        assert_eq!(
            l.locked("a", fifth + LOCK),
            None,
            "the lock ends after ten minutes"
        );
        // Others are not touched.
        assert_eq!(l.locked("b", fifth), None);
    }

    #[tokio::test(start_paused = true)]
    async fn codes_older_than_the_window_no_longer_count() {
        let mut l = Lockouts::default();
        let t0 = Instant::now();
        for n in 0..4 {
            l.wrong("a", t0 + Duration::from_secs(n));
        }
        // Ten minutes after the first, the first four have aged out.
        let later = t0 + WINDOW + Duration::from_secs(4);
        assert_eq!(l.count("a", later), 0);
        assert_eq!(l.wrong("a", later), None);
        assert_eq!(l.count("a", later), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_callers_keeps_the_table_bounded_and_locks_kept() {
        let mut l = Lockouts::default();
        let t0 = Instant::now();
        for _ in 0..MAX_WRONG_CODES {
            l.wrong("locked", t0);
        }
        for n in 0..(MAX_CALLERS * 3) {
            l.wrong(&format!("caller {n}"), t0 + Duration::from_millis(n as u64));
        }
        assert!(l.callers.len() <= MAX_CALLERS);
        assert!(l.locked("locked", t0 + Duration::from_secs(5)).is_some());
    }
}
