//! An incoming call while it rings: answered by itself after the auto-answer
//! delay, or refused with 480 at the max dial-in time.

use std::time::Duration;

use doorphone_interfaces::sip::EndReason;
use tokio::time::Instant;

/// What the time asks of a ringing call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Answer now (auto-answer).
    Answer,
    /// Refuse with this code, for this reason (nobody answered).
    Refuse(u16, EndReason),
}

/// A ringing incoming call.
#[derive(Debug, Clone)]
pub struct Ringing {
    dial_in: Instant,
    auto_at: Option<Instant>,
}

impl Ringing {
    /// Ringing from `now`, ended after `max_dial_in`, answered by itself after
    /// `auto_answer` when set.
    pub fn new(now: Instant, max_dial_in: Duration, auto_answer: Option<Duration>) -> Ringing {
        Ringing {
            dial_in: now + max_dial_in,
            auto_at: auto_answer.map(|d| now + d),
        }
    }

    /// Answered without any wait: a zero delay needs no timer (even a zero
    /// sleep waits for the next timer tick).
    pub fn answers_at_once(&self, now: Instant) -> bool {
        self.auto_at.is_some_and(|at| at <= now)
    }

    /// When [`Ringing::due`] has something to say.
    pub fn deadline(&self) -> Instant {
        self.auto_at.map_or(self.dial_in, |at| at.min(self.dial_in))
    }

    /// What is due at `now`, if anything.
    pub fn due(&mut self, now: Instant) -> Option<Due> {
        if self.auto_at.is_some_and(|at| at <= now) {
            self.auto_at = None;
            return Some(Due::Answer);
        }
        (self.dial_in <= now).then_some(Due::Refuse(480, EndReason::NoAnswer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn auto_answer_comes_after_its_delay() {
        let t0 = Instant::now();
        let mut r = Ringing::new(t0, Duration::from_secs(60), Some(Duration::from_secs(3)));
        assert!(!r.answers_at_once(t0));
        assert_eq!(r.deadline(), t0 + Duration::from_secs(3));
        assert_eq!(r.due(t0 + Duration::from_millis(2999)), None);
        assert_eq!(r.due(t0 + Duration::from_secs(3)), Some(Due::Answer));
        // Once answered, only the dial-in time is left.
        assert_eq!(r.deadline(), t0 + Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_delay_answers_at_once() {
        let t0 = Instant::now();
        let r = Ringing::new(t0, Duration::from_secs(60), Some(Duration::ZERO));
        assert!(r.answers_at_once(t0));
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_answering_is_refused_480_at_the_dial_in_time() {
        let t0 = Instant::now();
        let mut r = Ringing::new(t0, Duration::from_secs(5), None);
        assert_eq!(r.deadline(), t0 + Duration::from_secs(5));
        assert_eq!(r.due(t0 + Duration::from_millis(4999)), None);
        assert_eq!(
            r.due(t0 + Duration::from_secs(5)),
            Some(Due::Refuse(480, EndReason::NoAnswer))
        );
        // An auto-answer later than the dial-in time never comes.
        let mut r = Ringing::new(t0, Duration::from_secs(5), Some(Duration::from_secs(30)));
        assert_eq!(r.deadline(), t0 + Duration::from_secs(5));
        assert_eq!(
            r.due(t0 + Duration::from_secs(5)),
            Some(Due::Refuse(480, EndReason::NoAnswer))
        );
    }
}
