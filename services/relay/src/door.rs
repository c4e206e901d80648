//! The timing of one door relay: a pure state machine driven by requests and a
//! clock. It never sleeps; its owner asks for the next deadline, waits until
//! then and steps it.

use std::time::Duration;

use tokio::time::Instant;

/// What a step did to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Energise the relay; the door opened because of this source.
    Energise(String),
    /// Release the relay.
    Release,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Closed,
    /// The trigger delay runs; the relay energises at `at`.
    Pending {
        at: Instant,
        until: Instant,
        source: String,
    },
    /// Energised until `until`.
    Open {
        until: Instant,
    },
}

/// One relay's timing: `delay` between a request and energising, `hold` while
/// energised.
#[derive(Debug, Clone)]
pub struct Door {
    delay: Duration,
    hold: Duration,
    phase: Phase,
}

impl Door {
    pub fn new(delay: Duration, hold: Duration) -> Door {
        Door {
            delay,
            hold,
            phase: Phase::Closed,
        }
    }

    /// A request to open at `now`. It asks for the relay to be energised from
    /// `now + delay` to `now + delay + hold`; a request while the relay is open or
    /// about to open extends the hold to cover it, it never stacks a second
    /// opening.
    pub fn open(&mut self, now: Instant, source: &str) {
        let until = now + self.delay + self.hold;
        self.phase = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Closed => Phase::Pending {
                at: now + self.delay,
                until,
                source: source.to_owned(),
            },
            Phase::Pending {
                at,
                until: old,
                source,
            } => Phase::Pending {
                at,
                until: old.max(until),
                source,
            },
            Phase::Open { until: old } => Phase::Open {
                until: old.max(until),
            },
        };
    }

    /// New timings for later requests; a running opening keeps its own.
    pub fn retime(&mut self, delay: Duration, hold: Duration) {
        self.delay = delay;
        self.hold = hold;
    }

    /// When the next transition is due, if one is.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Closed => None,
            Phase::Pending { at, .. } => Some(*at),
            Phase::Open { until } => Some(*until),
        }
    }

    /// Takes the transition due at `now`, if any. Call it again until it returns
    /// `None`: a zero hold could make two transitions due at once.
    pub fn step(&mut self, now: Instant) -> Option<Transition> {
        match &self.phase {
            Phase::Pending { at, until, source } if *at <= now => {
                let transition = Transition::Energise(source.clone());
                self.phase = Phase::Open { until: *until };
                Some(transition)
            }
            Phase::Open { until } if *until <= now => {
                self.phase = Phase::Closed;
                Some(Transition::Release)
            }
            _ => None,
        }
    }

    /// Whether the relay is energised.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn opens_after_the_delay_and_closes_after_the_hold() {
        let t0 = Instant::now();
        let mut door = Door::new(secs(1.0), secs(3.0));
        assert_eq!(door.deadline(), None);
        door.open(t0, "api");
        assert_eq!(door.step(t0), None);
        assert!(!door.is_open());
        assert_eq!(door.deadline(), Some(t0 + secs(1.0)));
        assert_eq!(
            door.step(t0 + secs(1.0)),
            Some(Transition::Energise("api".into()))
        );
        assert!(door.is_open());
        assert_eq!(door.deadline(), Some(t0 + secs(4.0)));
        assert_eq!(door.step(t0 + secs(3.9)), None);
        assert_eq!(door.step(t0 + secs(4.0)), Some(Transition::Release));
        assert!(!door.is_open());
        assert_eq!(door.deadline(), None);
    }

    #[test]
    fn a_request_while_open_extends_the_hold() {
        let t0 = Instant::now();
        let mut door = Door::new(secs(0.0), secs(3.0));
        door.open(t0, "api");
        assert_eq!(door.step(t0), Some(Transition::Energise("api".into())));
        door.open(t0 + secs(2.0), "dtmf");
        assert_eq!(door.deadline(), Some(t0 + secs(5.0)));
        assert_eq!(door.step(t0 + secs(3.0)), None);
        assert_eq!(door.step(t0 + secs(5.0)), Some(Transition::Release));
    }

    #[test]
    fn a_request_during_the_delay_keeps_the_first_opening_and_source() {
        let t0 = Instant::now();
        let mut door = Door::new(secs(2.0), secs(3.0));
        door.open(t0, "no_answer");
        door.open(t0 + secs(1.0), "api");
        assert_eq!(door.deadline(), Some(t0 + secs(2.0)));
        assert_eq!(
            door.step(t0 + secs(2.0)),
            Some(Transition::Energise("no_answer".into()))
        );
        assert_eq!(door.deadline(), Some(t0 + secs(6.0)));
    }

    #[test]
    fn an_earlier_close_never_shortens_the_hold() {
        let t0 = Instant::now();
        let mut door = Door::new(secs(0.0), secs(5.0));
        door.open(t0, "api");
        door.step(t0);
        let mut shorter = door.clone();
        shorter.hold = secs(1.0);
        shorter.open(t0 + secs(1.0), "api");
        assert_eq!(shorter.deadline(), Some(t0 + secs(5.0)));
    }
}
