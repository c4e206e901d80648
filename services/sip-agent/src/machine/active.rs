//! An answered call: the max call time, the hang-up after a door opened, and
//! door codes entered by DTMF (RFC 4733 or SIP INFO, as the account's
//! `dtmf_mode` says).

use std::time::Duration;

use doorphone_interfaces::config::document::{DtmfMode, HangUpAfterOpen, HangUpType, Relay};
use doorphone_interfaces::relay::source;
use doorphone_interfaces::sip::EndReason;
use tokio::time::Instant;

use super::earliest;
use crate::codes::{DoorCodes, Entered};

/// How a digit arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitFrom {
    /// RFC 4733 telephone-event in the media.
    Rtp,
    /// SIP INFO in the dialog.
    Info,
}

/// The ways digits are taken from a call's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPaths {
    pub rtp: bool,
    pub info: bool,
}

impl DtmfPaths {
    /// An account's `dtmf_mode`; direct calls take both.
    pub fn of(mode: Option<DtmfMode>) -> DtmfPaths {
        match mode {
            Some(DtmfMode::Rfc4733) => DtmfPaths {
                rtp: true,
                info: false,
            },
            Some(DtmfMode::Info) => DtmfPaths {
                rtp: false,
                info: true,
            },
            Some(DtmfMode::Both) | None => DtmfPaths {
                rtp: true,
                info: true,
            },
        }
    }

    fn takes(self, from: DigitFrom) -> bool {
        match from {
            DigitFrom::Rtp => self.rtp,
            DigitFrom::Info => self.info,
        }
    }
}

/// What the call does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// End the call with BYE, for this reason.
    Bye(EndReason),
    /// Open this relay (a door code was entered).
    Open(String),
    /// A wrong door code was entered (or left unfinished).
    Wrong,
    /// A digit was taken, nothing happens yet.
    Nothing,
    /// A digit came another way than the call takes digits, or from a peer
    /// that may not open doors: it is ignored.
    Ignored,
}

/// An answered call.
#[derive(Debug)]
pub struct Active {
    max_until: Option<Instant>,
    hang_up_at: Option<Instant>,
    codes: DoorCodes,
    paths: DtmfPaths,
}

impl Active {
    /// Answered at `now`; `max_call_time` 0 is no limit.
    pub fn new(now: Instant, max_call_time: u32, paths: DtmfPaths) -> Active {
        Active {
            max_until: (max_call_time > 0)
                .then(|| now + Duration::from_secs(u64::from(max_call_time))),
            hang_up_at: None,
            codes: DoorCodes::default(),
            paths,
        }
    }

    /// When [`Active::due`] has something to say.
    pub fn deadline(&self) -> Option<Instant> {
        earliest([self.max_until, self.hang_up_at, self.codes.deadline()])
    }

    /// What is due at `now`.
    pub fn due(&mut self, now: Instant) -> Act {
        if self.max_until.is_some_and(|t| t <= now) {
            return Act::Bye(EndReason::MaxCallTime);
        }
        if self.hang_up_at.is_some_and(|t| t <= now) {
            return Act::Bye(EndReason::DoorOpened);
        }
        if self.codes.deadline().is_some_and(|t| t <= now) && self.codes.timed_out() {
            return Act::Wrong;
        }
        Act::Nothing
    }

    /// A digit from the peer at `now`; `may_open` is the DTMF authority's
    /// word on this peer.
    pub fn digit(
        &mut self,
        digit: char,
        from: DigitFrom,
        may_open: bool,
        relays: &[Relay],
        now: Instant,
    ) -> Act {
        if !self.paths.takes(from) || !may_open {
            return Act::Ignored;
        }
        match self.codes.digit(digit, relays, now) {
            Entered::Opens(relay) => Act::Open(relay),
            Entered::Wrong => Act::Wrong,
            Entered::More => Act::Nothing,
        }
    }

    /// A door opened (its `Relay1` source) at `now`: the call ends the rule's
    /// time-out later when the rule names that source. Whether it does.
    pub fn door_opened(&mut self, opened_by: &str, rule: &HangUpAfterOpen, now: Instant) -> bool {
        let covered = rule.types.iter().any(|t| match t {
            HangUpType::Dtmf => opened_by == source::DTMF,
            HangUpType::Api => opened_by == source::API,
            HangUpType::Input => opened_by == source::INPUT,
        });
        if covered && self.hang_up_at.is_none() {
            self.hang_up_at = Some(now + Duration::from_secs(u64::from(rule.timeout)));
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::INTER_DIGIT;

    const BOTH: DtmfPaths = DtmfPaths {
        rtp: true,
        info: true,
    };

    fn relays() -> Vec<Relay> {
        vec![
            Relay {
                id: "A".into(),
                dtmf_code: "#".into(),
                ..Relay::default()
            },
            Relay {
                id: "B".into(),
                dtmf_code: "1234".into(),
                ..Relay::default()
            },
        ]
    }

    fn rule(types: Vec<HangUpType>, timeout: u32) -> HangUpAfterOpen {
        HangUpAfterOpen { types, timeout }
    }

    #[tokio::test(start_paused = true)]
    async fn the_max_call_time_ends_the_call() {
        let t0 = Instant::now();
        let mut a = Active::new(t0, 300, BOTH);
        assert_eq!(a.deadline(), Some(t0 + Duration::from_secs(300)));
        assert_eq!(a.due(t0 + Duration::from_millis(299_999)), Act::Nothing);
        assert_eq!(
            a.due(t0 + Duration::from_secs(300)),
            Act::Bye(EndReason::MaxCallTime)
        );
        // 0 is no limit.
        assert_eq!(Active::new(t0, 0, BOTH).deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_door_opened_by_a_listed_source_ends_the_call_after_the_timeout() {
        let t0 = Instant::now();
        let mut a = Active::new(t0, 0, BOTH);
        let r = rule(vec![HangUpType::Dtmf], 5);
        assert!(!a.door_opened(source::API, &r, t0), "api is not listed");
        assert_eq!(a.deadline(), None);
        let opened = t0 + Duration::from_secs(10);
        assert!(a.door_opened(source::DTMF, &r, opened));
        assert_eq!(a.deadline(), Some(opened + Duration::from_secs(5)));
        // A second opening does not move the hang-up.
        assert!(!a.door_opened(source::DTMF, &r, opened + Duration::from_secs(2)));
        assert_eq!(a.due(opened + Duration::from_millis(4999)), Act::Nothing);
        assert_eq!(
            a.due(opened + Duration::from_secs(5)),
            Act::Bye(EndReason::DoorOpened)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn digits_open_doors_only_by_the_paths_and_peers_allowed() {
        let t0 = Instant::now();
        let r = relays();
        let mut rtp_only = Active::new(t0, 0, DtmfPaths::of(Some(DtmfMode::Rfc4733)));
        assert_eq!(
            rtp_only.digit('#', DigitFrom::Info, true, &r, t0),
            Act::Ignored
        );
        assert_eq!(
            rtp_only.digit('#', DigitFrom::Rtp, true, &r, t0),
            Act::Open("A".into())
        );
        assert_eq!(
            rtp_only.digit('#', DigitFrom::Rtp, false, &r, t0),
            Act::Ignored,
            "a peer the authority does not allow"
        );
        let mut info_only = Active::new(t0, 0, DtmfPaths::of(Some(DtmfMode::Info)));
        assert_eq!(
            info_only.digit('#', DigitFrom::Rtp, true, &r, t0),
            Act::Ignored
        );
        assert_eq!(
            info_only.digit('#', DigitFrom::Info, true, &r, t0),
            Act::Open("A".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfinished_code_is_wrong_after_the_inter_digit_time() {
        let t0 = Instant::now();
        let r = relays();
        let mut a = Active::new(t0, 0, BOTH);
        assert_eq!(a.digit('1', DigitFrom::Rtp, true, &r, t0), Act::Nothing);
        assert_eq!(a.digit('2', DigitFrom::Rtp, true, &r, t0), Act::Nothing);
        assert_eq!(a.deadline(), Some(t0 + INTER_DIGIT));
        assert_eq!(
            a.due(t0 + INTER_DIGIT - Duration::from_millis(1)),
            Act::Nothing
        );
        assert_eq!(a.due(t0 + INTER_DIGIT), Act::Wrong);
        assert_eq!(a.deadline(), None);
        assert_eq!(a.digit('9', DigitFrom::Rtp, true, &r, t0), Act::Wrong);
    }
}
