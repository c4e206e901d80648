//! The incoming call policy, as pure decisions over the configuration and
//! the caller's [`Identity`]: refuse with a code and a reason, or ring and
//! maybe answer by itself.

use std::time::Duration;

use doorphone_interfaces::config::Document;
use doorphone_interfaces::config::document::MediaMode;
use doorphone_interfaces::sip::EndReason;

use crate::identity::{Identity, Via, Whitelist};

/// The policy's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Refuse with this final status, for this reason.
    Refuse { code: u16, reason: EndReason },
    /// 180 Ringing; answer by itself after the delay when `auto_answer` is set.
    Ring {
        auto_answer: Option<Duration>,
        video: bool,
    },
}

/// What the policy needs to know of the door phone's own state.
#[derive(Debug, Clone, Copy, Default)]
pub struct State {
    /// A call holds the door phone.
    pub busy: bool,
    /// The caller entered five wrong door codes lately.
    pub locked: bool,
}

/// Whether calls that came this way are for whitelisted callers only. An
/// account's `prevent_sip_hacking` guards direct calls too: otherwise a
/// stranger refused through the server could call the door's address instead.
pub fn guarded(doc: &Document, via: Via) -> bool {
    match via {
        Via::Account(id) => doc
            .accounts
            .iter()
            .any(|a| a.id == id && a.prevent_sip_hacking),
        Via::Ip => {
            doc.device.ip_call.prevent_sip_hacking
                || doc
                    .accounts
                    .iter()
                    .any(|a| a.enabled && a.prevent_sip_hacking)
        }
    }
}

/// The policy, in its order: a source the door phone takes calls from
/// (untrusted: a direct call with direct calls off); the whitelist where it
/// guards (the same 403 whatever user was asked for); door codes locked for
/// this caller; DND (the account's return code); busy (486); otherwise ring.
pub fn decide(
    doc: &Document,
    whitelist: &Whitelist,
    via: Via,
    caller: &Identity,
    state: State,
) -> Decision {
    let refuse = |code, reason| Decision::Refuse { code, reason };
    if via == Via::Ip && !doc.device.ip_call.enabled {
        return refuse(403, EndReason::UntrustedSource);
    }
    if guarded(doc, via) && !whitelist.contains(caller) {
        return refuse(403, EndReason::NotWhitelisted);
    }
    if state.locked {
        return refuse(403, EndReason::DoorCodesLocked);
    }
    if let Via::Account(id) = via
        && let Some(a) = doc.accounts.iter().find(|a| a.id == id)
        && a.dnd.enabled
    {
        return refuse(
            u16::try_from(a.dnd.return_code).unwrap_or(486),
            EndReason::Dnd,
        );
    }
    if state.busy {
        return refuse(486, EndReason::Busy);
    }
    let auto = &doc.calls.auto_answer;
    let enabled = match via {
        Via::Ip => auto.ip,
        Via::Account(_) => auto.sip,
    };
    Decision::Ring {
        auto_answer: enabled.then(|| Duration::from_secs(u64::from(auto.delay))),
        video: auto.mode == MediaMode::Video,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorphone_interfaces::config::document::{Account, Contact};

    fn doc() -> Document {
        Document {
            accounts: vec![
                Account {
                    id: 1,
                    enabled: true,
                    user: "1001".into(),
                    ..Account::default()
                },
                Account {
                    id: 2,
                    enabled: true,
                    user: "2002".into(),
                    ..Account::default()
                },
            ],
            contacts: vec![
                Contact {
                    number: "200".into(),
                    whitelist: true,
                    ..Contact::default()
                },
                Contact {
                    number: "192.0.2.7".into(),
                    whitelist: true,
                    ..Contact::default()
                },
            ],
            ..Document::default()
        }
    }

    fn user(name: &str) -> Identity {
        Identity::User {
            account: 1,
            uri: format!("sip:{name}@pbx"),
            user: name.into(),
        }
    }

    fn addr(a: &str) -> Identity {
        Identity::Address(a.parse().unwrap())
    }

    const IDLE: State = State {
        busy: false,
        locked: false,
    };
    const BUSY: State = State {
        busy: true,
        locked: false,
    };

    fn refuse(code: u16, reason: EndReason) -> Decision {
        Decision::Refuse { code, reason }
    }

    #[test]
    fn the_policy_refuses_in_its_order_with_its_reasons() {
        let mut doc = doc();
        doc.accounts[0].prevent_sip_hacking = true;
        doc.accounts[0].dnd.enabled = true;
        doc.accounts[0].dnd.return_code = 603;
        let via = Via::Account(1);
        assert_eq!(
            decide(&doc, &Whitelist::new(&doc), via, &user("666"), BUSY),
            refuse(403, EndReason::NotWhitelisted)
        );
        let locked = State {
            busy: true,
            locked: true,
        };
        assert_eq!(
            decide(&doc, &Whitelist::new(&doc), via, &user("200"), locked),
            refuse(403, EndReason::DoorCodesLocked)
        );
        assert_eq!(
            decide(&doc, &Whitelist::new(&doc), via, &user("200"), BUSY),
            refuse(603, EndReason::Dnd)
        );
        // DND on account 1 leaves account 2 alone; busy comes last.
        assert_eq!(
            decide(
                &doc,
                &Whitelist::new(&doc),
                Via::Account(2),
                &user("666"),
                BUSY
            ),
            refuse(486, EndReason::Busy)
        );
        // A direct call is guarded when any account prevents SIP hacking,
        // and by its address only.
        assert_eq!(
            decide(
                &doc,
                &Whitelist::new(&doc),
                Via::Ip,
                &addr("192.0.2.1:5060"),
                IDLE
            ),
            refuse(403, EndReason::NotWhitelisted)
        );
        assert!(matches!(
            decide(
                &doc,
                &Whitelist::new(&doc),
                Via::Ip,
                &addr("192.0.2.7:5060"),
                IDLE
            ),
            Decision::Ring { .. }
        ));
        doc.device.ip_call.enabled = false;
        assert_eq!(
            decide(
                &doc,
                &Whitelist::new(&doc),
                Via::Ip,
                &addr("192.0.2.7:5060"),
                IDLE
            ),
            refuse(403, EndReason::UntrustedSource)
        );
    }

    #[test]
    fn direct_calls_have_their_own_prevent_sip_hacking() {
        let mut doc = doc();
        assert!(matches!(
            decide(
                &doc,
                &Whitelist::new(&doc),
                Via::Ip,
                &addr("192.0.2.1:5060"),
                IDLE
            ),
            Decision::Ring { .. }
        ));
        doc.device.ip_call.prevent_sip_hacking = true;
        assert_eq!(
            decide(
                &doc,
                &Whitelist::new(&doc),
                Via::Ip,
                &addr("192.0.2.1:5060"),
                IDLE
            ),
            refuse(403, EndReason::NotWhitelisted)
        );
        assert!(matches!(
            decide(
                &doc,
                &Whitelist::new(&doc),
                Via::Ip,
                &addr("192.0.2.7:5999"),
                IDLE
            ),
            Decision::Ring { .. }
        ));
        // It does not guard the accounts.
        assert!(matches!(
            decide(
                &doc,
                &Whitelist::new(&doc),
                Via::Account(1),
                &user("666"),
                IDLE
            ),
            Decision::Ring { .. }
        ));
    }

    #[test]
    fn auto_answer_follows_the_kind_of_call() {
        let mut doc = doc();
        doc.calls.auto_answer.ip = true;
        doc.calls.auto_answer.sip = false;
        doc.calls.auto_answer.delay = 3;
        doc.calls.auto_answer.mode = MediaMode::Audio;
        assert_eq!(
            decide(
                &doc,
                &Whitelist::new(&doc),
                Via::Ip,
                &addr("192.0.2.1:5060"),
                IDLE
            ),
            Decision::Ring {
                auto_answer: Some(Duration::from_secs(3)),
                video: false
            }
        );
        assert_eq!(
            decide(
                &doc,
                &Whitelist::new(&doc),
                Via::Account(1),
                &user("200"),
                IDLE
            ),
            Decision::Ring {
                auto_answer: None,
                video: false
            }
        );
    }
}
