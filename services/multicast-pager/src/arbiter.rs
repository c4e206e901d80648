//! Which page plays: a pure state machine fed with what the listeners hear, the
//! SIP agent's active call and the configuration, answering with what to do.
//!
//! Priorities are positions in `multicast.listen` (1 highest). With paging
//! priority on, the highest-priority page that may play plays, pre-empting a
//! lower one; off, a page that plays keeps playing until it ends. During a call
//! only pages of priority 1..=barge may play, and while one does the call is
//! held.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use doorphone_interfaces::pager::{end_reason, listen_state};

use crate::rtp::Codec;

/// A listened group: its address and port.
pub type Group = (Ipv4Addr, u16);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// In priority order.
    pub groups: Vec<Group>,
    pub priority: bool,
    pub barge: u32,
}

/// What the pager must do, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop the page of `group`; `reason` is one of [`end_reason`].
    Stop { group: Group, reason: &'static str },
    /// Hold the call (an object path of the SIP agent).
    Hold(String),
    /// Resume the call held before.
    Resume(String),
    Play {
        group: Group,
        codec: Codec,
        priority: u32,
    },
}

#[derive(Debug, Default)]
pub struct Arbiter {
    settings: Settings,
    /// Pages arriving now, with the codec of their first packet.
    arriving: HashMap<Group, Codec>,
    playing: Option<Group>,
    /// The SIP agent's answered call.
    call: Option<String>,
    /// The call this pager holds for the page playing.
    held: Option<String>,
}

impl Arbiter {
    /// 1 for the first group of the configuration; `None` when not listened to.
    pub fn priority(&self, group: Group) -> Option<u32> {
        let position = self.settings.groups.iter().position(|g| *g == group)?;
        Some(position as u32 + 1)
    }

    /// The page playing, with its codec and priority.
    pub fn playing_page(&self) -> Option<(Group, Codec, u32)> {
        let group = self.playing?;
        Some((group, self.arriving[&group], self.priority(group)?))
    }

    /// One of [`listen_state`] but `failed`, which the listener knows.
    pub fn state(&self, group: Group) -> &'static str {
        if self.playing == Some(group) {
            listen_state::PLAYING
        } else if self.arriving.contains_key(&group) {
            listen_state::WAITING
        } else {
            listen_state::IDLE
        }
    }

    pub fn configure(&mut self, settings: Settings) -> Vec<Action> {
        self.arriving.retain(|g, _| settings.groups.contains(g));
        self.settings = settings;
        self.decide()
    }

    /// The first packet of a page arrived.
    pub fn arrived(&mut self, group: Group, codec: Codec) -> Vec<Action> {
        if self.priority(group).is_some() {
            self.arriving.insert(group, codec);
        }
        self.decide()
    }

    /// A page stopped arriving (silence or RTCP BYE).
    pub fn ended(&mut self, group: Group) -> Vec<Action> {
        self.arriving.remove(&group);
        self.decide()
    }

    /// The pager stops: no page plays any more, and the call is given back.
    pub fn shut_down(&mut self) -> Vec<Action> {
        self.arriving.clear();
        self.decide()
    }

    /// The SIP agent's answered call changed (`None`: no call).
    pub fn call(&mut self, call: Option<String>) -> Vec<Action> {
        if call.is_none() || call != self.held {
            // A call that ended cannot be resumed; a new one is not held yet.
            self.held = None;
        }
        self.call = call;
        self.decide()
    }

    fn may_play(&self, group: Group) -> bool {
        let Some(priority) = self.priority(group) else {
            return false;
        };
        self.arriving.contains_key(&group)
            && (self.call.is_none() || priority <= self.settings.barge)
    }

    fn decide(&mut self) -> Vec<Action> {
        let best = self
            .arriving
            .keys()
            .copied()
            .filter(|g| self.may_play(*g))
            .min_by_key(|g| self.priority(*g));
        let keep = !self.settings.priority && self.playing.is_some_and(|g| self.may_play(g));
        let wanted = if keep { self.playing } else { best };

        let mut actions = Vec::new();
        if self.playing != wanted
            && let Some(old) = self.playing.take()
        {
            let reason = if !self.arriving.contains_key(&old) || self.priority(old).is_none() {
                end_reason::ENDED
            } else if !self.may_play(old) {
                end_reason::CALL
            } else {
                end_reason::PREEMPTED
            };
            actions.push(Action::Stop { group: old, reason });
        }
        match (&wanted, &self.call) {
            (Some(_), Some(call)) if self.held.as_ref() != Some(call) => {
                actions.push(Action::Hold(call.clone()));
                self.held = Some(call.clone());
            }
            (None, _) => {
                if let Some(held) = self.held.take() {
                    actions.push(Action::Resume(held));
                }
            }
            _ => {}
        }
        if let Some(group) = wanted
            && self.playing != wanted
        {
            actions.push(Action::Play {
                group,
                codec: self.arriving[&group],
                priority: self.priority(group).expect("only listened groups play"),
            });
            self.playing = wanted;
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: u8) -> Group {
        (Ipv4Addr::new(239, 0, 0, n), 5000 + u16::from(n))
    }

    fn arbiter(priority: bool, barge: u32) -> Arbiter {
        let mut a = Arbiter::default();
        let actions = a.configure(Settings {
            groups: (1..=4).map(group).collect(),
            priority,
            barge,
        });
        assert!(actions.is_empty());
        a
    }

    fn play(n: u8) -> Action {
        Action::Play {
            group: group(n),
            codec: Codec::Pcmu,
            priority: u32::from(n),
        }
    }

    fn stop(n: u8, reason: &'static str) -> Action {
        Action::Stop {
            group: group(n),
            reason,
        }
    }

    #[test]
    fn an_idle_page_plays_until_it_ends() {
        let mut a = arbiter(true, 0);
        assert_eq!(a.arrived(group(2), Codec::Pcmu), [play(2)]);
        assert_eq!(a.state(group(2)), listen_state::PLAYING);
        assert_eq!(a.ended(group(2)), [stop(2, end_reason::ENDED)]);
        assert_eq!(a.state(group(2)), listen_state::IDLE);
    }

    #[test]
    fn with_priority_a_higher_page_preempts_and_the_lower_resumes() {
        let mut a = arbiter(true, 0);
        assert_eq!(a.arrived(group(3), Codec::Pcmu), [play(3)]);
        assert_eq!(
            a.arrived(group(1), Codec::Pcmu),
            [stop(3, end_reason::PREEMPTED), play(1)]
        );
        // A lower one waits.
        assert_eq!(a.arrived(group(4), Codec::Pcmu), []);
        assert_eq!(a.state(group(4)), listen_state::WAITING);
        assert_eq!(a.ended(group(1)), [stop(1, end_reason::ENDED), play(3)]);
    }

    #[test]
    fn without_priority_the_page_playing_keeps_the_speaker() {
        let mut a = arbiter(false, 0);
        assert_eq!(a.arrived(group(3), Codec::Pcmu), [play(3)]);
        assert_eq!(a.arrived(group(2), Codec::Pcmu), []);
        assert_eq!(a.arrived(group(1), Codec::Pcmu), []);
        assert_eq!(a.ended(group(3)), [stop(3, end_reason::ENDED), play(1)]);
        // A page that stopped arriving while it waited never plays.
        assert_eq!(a.ended(group(2)), []);
    }

    #[test]
    fn a_barging_page_holds_the_call_and_resumes_it() {
        let mut a = arbiter(true, 2);
        let call = "/org/doorphone/Sip1/call/1".to_owned();
        assert_eq!(a.call(Some(call.clone())), []);
        assert_eq!(a.arrived(group(3), Codec::Pcmu), []);
        assert_eq!(
            a.arrived(group(1), Codec::Pcmu),
            [Action::Hold(call.clone()), play(1)]
        );
        // The call stays held from one barging page to the next.
        assert_eq!(a.arrived(group(2), Codec::Pcmu), []);
        assert_eq!(a.ended(group(1)), [stop(1, end_reason::ENDED), play(2)]);
        assert_eq!(
            a.ended(group(2)),
            [stop(2, end_reason::ENDED), Action::Resume(call)]
        );
        // Group 3 may not barge: it plays once the call has ended.
        assert_eq!(a.call(None), [play(3)]);
    }

    #[test]
    fn stopping_ends_the_page_and_resumes_the_call() {
        let mut a = arbiter(true, 1);
        let call = "/org/doorphone/Sip1/call/3".to_owned();
        a.call(Some(call.clone()));
        assert_eq!(
            a.arrived(group(1), Codec::Pcmu),
            [Action::Hold(call.clone()), play(1)]
        );
        assert_eq!(
            a.shut_down(),
            [stop(1, end_reason::ENDED), Action::Resume(call)]
        );
    }

    #[test]
    fn without_barge_an_answered_call_stops_the_page() {
        let mut a = arbiter(true, 0);
        assert_eq!(a.arrived(group(1), Codec::Pcmu), [play(1)]);
        let call = "/org/doorphone/Sip1/call/7".to_owned();
        assert_eq!(a.call(Some(call)), [stop(1, end_reason::CALL)]);
        assert_eq!(a.call(None), [play(1)]);
    }

    #[test]
    fn a_call_answered_during_a_barging_page_is_held_and_one_that_ends_is_not_resumed() {
        let mut a = arbiter(true, 1);
        assert_eq!(a.arrived(group(1), Codec::Pcmu), [play(1)]);
        let call = "/org/doorphone/Sip1/call/2".to_owned();
        assert_eq!(a.call(Some(call.clone())), [Action::Hold(call)]);
        assert_eq!(a.call(None), []);
        assert_eq!(a.ended(group(1)), [stop(1, end_reason::ENDED)]);
    }

    #[test]
    fn a_group_no_longer_listened_to_ends_its_page() {
        let mut a = arbiter(true, 0);
        assert_eq!(
            a.arrived(group(2), Codec::Pcma),
            [Action::Play {
                group: group(2),
                codec: Codec::Pcma,
                priority: 2,
            }]
        );
        let actions = a.configure(Settings {
            groups: vec![group(1)],
            priority: true,
            barge: 0,
        });
        assert_eq!(actions, [stop(2, end_reason::ENDED)]);
        assert_eq!(a.arrived(group(2), Codec::Pcmu), []);
    }
}
