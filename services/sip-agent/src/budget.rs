//! A budget per source address: how many answers (stateless error responses,
//! refusals) one address gets in a window before the door phone falls silent
//! towards it. A flood from one address then costs a counter, not a response
//! on the wire, a signal on the bus and a row in the history.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources remembered at most; past it, sources whose window is over are
/// forgotten first, and if none is, the table starts afresh (a flood of
/// spoofed addresses then gets at most one window's budget each).
const MAX_SOURCES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    used: u32,
    /// Answers withheld in this window, for the summary.
    withheld: u32,
}

/// What the budget says of one more answer to a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Answer.
    Answer,
    /// Stay silent: the source used its budget in this window.
    Silence,
}

/// At most `per_window` answers per source per `window`.
#[derive(Debug)]
pub struct Budget {
    per_window: u32,
    window: Duration,
    sources: HashMap<IpAddr, Window>,
}

/// One source's window that ended: the answers given and withheld, for a
/// summary line in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub source: IpAddr,
    pub answered: u32,
    pub withheld: u32,
}

impl Budget {
    pub fn new(per_window: u32, window: Duration) -> Budget {
        Budget {
            per_window,
            window,
            sources: HashMap::new(),
        }
    }

    /// Spends one answer for `source` at `now`. When a window of the source
    /// ends, its summary comes back so the caller can log it.
    pub fn spend(&mut self, source: IpAddr, now: Instant) -> (Spend, Option<Summary>) {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&source) {
            let window = self.window;
            self.sources
                .retain(|_, w| now.saturating_duration_since(w.start) < window);
            if self.sources.len() >= MAX_SOURCES {
                self.sources.clear();
            }
        }
        let mut ended = None;
        let w = self.sources.entry(source).or_insert(Window {
            start: now,
            used: 0,
            withheld: 0,
        });
        if now.saturating_duration_since(w.start) >= self.window {
            if w.withheld > 0 {
                ended = Some(Summary {
                    source,
                    answered: w.used,
                    withheld: w.withheld,
                });
            }
            *w = Window {
                start: now,
                used: 0,
                withheld: 0,
            };
        }
        if w.used < self.per_window {
            w.used += 1;
            (Spend::Answer, ended)
        } else {
            w.withheld += 1;
            (Spend::Silence, ended)
        }
    }

    /// Whether `source` was silenced in its current window (the first
    /// withheld answer is the moment to log that it was).
    pub fn withheld(&self, source: IpAddr) -> u32 {
        self.sources.get(&source).map_or(0, |w| w.withheld)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_budget_per_window_then_silence_and_a_summary() {
        let mut b = Budget::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(b.spend(a, t0).0, Spend::Answer);
        }
        assert_eq!(b.spend(a, t0).0, Spend::Silence);
        assert_eq!(b.spend(a, t0 + Duration::from_secs(9)).0, Spend::Silence);
        assert_eq!(b.withheld(a), 2);
        // Another source is not touched by the first one's flood.
        assert_eq!(b.spend(other, t0).0, Spend::Answer);
        // The next window answers again and reports the last one.
        let (spend, summary) = b.spend(a, t0 + Duration::from_secs(10));
        assert_eq!(spend, Spend::Answer);
        assert_eq!(
            summary,
            Some(Summary {
                source: a,
                answered: 3,
                withheld: 2
            })
        );
    }

    #[test]
    fn a_flood_of_sources_keeps_the_table_bounded() {
        let mut b = Budget::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        for n in 0..(MAX_SOURCES as u32 * 3) {
            let ip = IpAddr::from(n.to_be_bytes());
            b.spend(ip, t0);
        }
        assert!(b.sources.len() <= MAX_SOURCES);
    }
}
