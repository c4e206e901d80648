//! Door codes entered during a call: DTMF digits collected until they are a
//! relay's `dtmf_code`, or can no longer become one (a wrong code), with an
//! inter-digit time after which unfinished digits are a wrong code.

use std::time::Duration;

use doorphone_interfaces::config::document::Relay;
use tokio::time::Instant;

/// Time between two digits of one door code.
pub const INTER_DIGIT: Duration = Duration::from_secs(3);

/// What a digit made of the code being entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entered {
    /// The digits are this relay's code.
    Opens(String),
    /// The digits can no longer become a code.
    Wrong,
    /// The digits may still become a code.
    More,
}

/// The digits of a door code being entered in a call.
#[derive(Debug, Default)]
pub struct DoorCodes {
    digits: String,
    /// When the digits entered so far count as a wrong code.
    deadline: Option<Instant>,
}

impl DoorCodes {
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Adds a digit entered at `now`.
    pub fn digit(&mut self, digit: char, relays: &[Relay], now: Instant) -> Entered {
        self.digits.push(digit);
        let mut codes = relays.iter().filter(|r| !r.dtmf_code.is_empty());
        if let Some(r) = codes.clone().find(|r| r.dtmf_code == self.digits) {
            self.digits.clear();
            self.deadline = None;
            return Entered::Opens(r.id.clone());
        }
        if codes.any(|r| r.dtmf_code.starts_with(&self.digits)) {
            self.deadline = Some(now + INTER_DIGIT);
            return Entered::More;
        }
        self.digits.clear();
        self.deadline = None;
        Entered::Wrong
    }

    /// The inter-digit time ran out: whether unfinished digits were a wrong
    /// code.
    pub fn timed_out(&mut self) -> bool {
        self.deadline = None;
        let wrong = !self.digits.is_empty();
        self.digits.clear();
        wrong
    }
}

/// The digit of a SIP INFO: `application/dtmf-relay` (`Signal=5`) or
/// `application/dtmf` (the digit alone).
pub fn info_digit(content_type: &str, body: &str) -> Option<char> {
    let kind = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let value = match kind.as_str() {
        "application/dtmf-relay" => body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?,
        "application/dtmf" => body.trim(),
        _ => return None,
    };
    let mut chars = value.chars();
    let digit = chars.next()?.to_ascii_uppercase();
    (chars.next().is_none() && "0123456789*#ABCD".contains(digit)).then_some(digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relays() -> Vec<Relay> {
        [("A", "#"), ("B", "1234"), ("C", "")]
            .iter()
            .map(|(id, code)| Relay {
                id: (*id).into(),
                dtmf_code: (*code).into(),
                ..Relay::default()
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn codes_open_their_relay_and_others_are_wrong() {
        let r = relays();
        let now = Instant::now();
        let mut c = DoorCodes::default();
        assert_eq!(c.digit('#', &r, now), Entered::Opens("A".into()));
        for d in "123".chars() {
            assert_eq!(c.digit(d, &r, now), Entered::More);
        }
        assert_eq!(c.deadline(), Some(now + INTER_DIGIT));
        assert_eq!(c.digit('4', &r, now), Entered::Opens("B".into()));
        assert_eq!(c.deadline(), None);
        assert_eq!(c.digit('9', &r, now), Entered::Wrong);
        assert_eq!(c.digit('1', &r, now), Entered::More);
        assert_eq!(c.digit('3', &r, now), Entered::Wrong);
    }

    #[tokio::test(start_paused = true)]
    async fn unfinished_digits_are_wrong_after_the_inter_digit_time() {
        let r = relays();
        let mut c = DoorCodes::default();
        let t0 = Instant::now();
        c.digit('1', &r, t0);
        tokio::time::advance(Duration::from_millis(2999)).await;
        // A digit within the time moves the deadline on.
        assert_eq!(c.digit('2', &r, Instant::now()), Entered::More);
        assert_eq!(c.deadline(), Some(Instant::now() + INTER_DIGIT));
        assert!(c.timed_out());
        assert!(!c.timed_out(), "nothing left to time out");
    }

    #[test]
    fn info_bodies_give_their_digit() {
        assert_eq!(
            info_digit("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            info_digit("Application/DTMF-Relay", "signal= #\nDuration=100"),
            Some('#')
        );
        assert_eq!(info_digit("application/dtmf", "9"), Some('9'));
        assert_eq!(info_digit("application/dtmf-relay", "Signal=55"), None);
        assert_eq!(info_digit("text/plain", "Signal=5"), None);
        assert_eq!(info_digit("application/dtmf-relay", "Duration=160"), None);
    }
}
