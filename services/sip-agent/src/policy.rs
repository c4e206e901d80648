//! The incoming call policy, as pure decisions over the configuration: which way
//! a call came in, whether its caller is whitelisted, and what the door phone does
//! with it (refuse with a code, or ring and maybe answer by itself).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use doorphone_interfaces::config::Document;
use doorphone_interfaces::config::document::{Account, Contact, MediaMode};

/// How a call reached the door phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Through account 1 or 2 (its server sent it, to its user).
    Account(u32),
    /// Directly to this device's address.
    Ip,
}

impl Via {
    /// `1`, `2` or `ip`, as the call's `Account` property says it.
    pub fn label(self) -> String {
        match self {
            Via::Account(id) => id.to_string(),
            Via::Ip => "ip".to_owned(),
        }
    }
}

/// What the policy needs to know of an incoming INVITE.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The From URI (`sip:200@pbx`), without parameters.
    pub uri: String,
    /// The From user (`200`).
    pub user: String,
    /// The address the INVITE came from.
    pub source: Option<SocketAddr>,
    /// The Request-URI user: whom the caller asks for.
    pub called_user: String,
}

/// The policy's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Refuse with this final status; `reason` goes to the log and the signal.
    Refuse { code: u16, reason: &'static str },
    /// 180 Ringing; answer by itself after the delay when `auto_answer` is set.
    Ring {
        auto_answer: Option<Duration>,
        video: bool,
    },
}

/// Addresses each account's server resolves to, to tell which account a call
/// came through.
pub type ServerAddrs = HashMap<u32, Vec<IpAddr>>;

/// The account a call came through: an enabled account whose user is the called
/// user, when the INVITE comes from that account's server. Anything else is a
/// direct IP call.
pub fn classify(doc: &Document, servers: &ServerAddrs, caller: &Caller) -> Via {
    let source = caller.source.map(|s| s.ip());
    doc.accounts
        .iter()
        .filter(|a| a.enabled && !a.user.is_empty() && a.user == caller.called_user)
        .find(|a| {
            source.is_some_and(|ip| servers.get(&a.id).is_some_and(|addrs| addrs.contains(&ip)))
        })
        .map_or(Via::Ip, |a| Via::Account(a.id))
}

/// Whether `contact`'s number names this caller: a SIP user matches the From
/// user, a SIP URI the From URI, an IP address (with or without port) the
/// address the INVITE came from.
pub fn matches(contact: &Contact, caller: &Caller) -> bool {
    let number = contact.number.trim();
    if number.is_empty() {
        return false;
    }
    if let Ok(ip) = number.parse::<IpAddr>() {
        return caller.source.is_some_and(|s| s.ip() == ip);
    }
    if let Ok(addr) = number.parse::<SocketAddr>() {
        return caller.source == Some(addr);
    }
    if number.len() > 4 && number[..4].eq_ignore_ascii_case("sip:") {
        return same_uri(number, &caller.uri);
    }
    !caller.user.is_empty() && number == caller.user
}

/// `sip:user@host[:port]` equality: the scheme and host are case-insensitive,
/// the user is not; a missing port is 5060.
fn same_uri(a: &str, b: &str) -> bool {
    fn parts(uri: &str) -> Option<(String, String, u16)> {
        let rest = uri.get(4..)?;
        let (user, host) = rest.split_once('@').unwrap_or(("", rest));
        let (host, port) = match host.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (host, 5060),
        };
        Some((user.to_owned(), host.to_ascii_lowercase(), port))
    }
    b.len() > 4 && b[..4].eq_ignore_ascii_case("sip:") && parts(a).is_some() && parts(a) == parts(b)
}

/// Whether a whitelisted contact names this caller.
pub fn whitelisted(doc: &Document, caller: &Caller) -> bool {
    doc.contacts
        .iter()
        .filter(|c| c.whitelist)
        .any(|c| matches(c, caller))
}

fn account(doc: &Document, id: u32) -> Option<&Account> {
    doc.accounts.iter().find(|a| a.id == id)
}

/// The policy, in its order: direct IP calls allowed at all; prevent SIP hacking
/// (403 to anyone not whitelisted, the same whatever user was asked for); DND
/// (the account's return code); busy (486); otherwise ring.
pub fn decide(doc: &Document, via: Via, caller: &Caller, busy: bool) -> Decision {
    if via == Via::Ip && !doc.device.ip_call.enabled {
        return Decision::Refuse {
            code: 403,
            reason: "direct IP calls are off",
        };
    }
    let guarded = match via {
        Via::Account(id) => account(doc, id).is_some_and(|a| a.prevent_sip_hacking),
        Via::Ip => doc
            .accounts
            .iter()
            .any(|a| a.enabled && a.prevent_sip_hacking),
    };
    if guarded && !whitelisted(doc, caller) {
        return Decision::Refuse {
            code: 403,
            reason: "caller not in the whitelist",
        };
    }
    if let Via::Account(id) = via
        && let Some(a) = account(doc, id)
        && a.dnd.enabled
    {
        return Decision::Refuse {
            code: u16::try_from(a.dnd.return_code).unwrap_or(486),
            reason: "do not disturb",
        };
    }
    if busy {
        return Decision::Refuse {
            code: 486,
            reason: "busy: a call is in progress",
        };
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
    use doorphone_interfaces::config::document::AccountChoice;

    fn doc() -> Document {
        Document {
            accounts: vec![
                Account {
                    id: 1,
                    enabled: true,
                    user: "1001".into(),
                    server: "127.0.0.1:5070".into(),
                    ..Account::default()
                },
                Account {
                    id: 2,
                    enabled: true,
                    user: "2002".into(),
                    server: "127.0.0.1:5080".into(),
                    ..Account::default()
                },
            ],
            contacts: vec![
                contact("200", true),
                contact("sip:300@PBX.example.com", true),
                contact("192.0.2.7", true),
                contact("192.0.2.8:5062", true),
                contact("400", false),
            ],
            ..Document::default()
        }
    }

    fn contact(number: &str, whitelist: bool) -> Contact {
        Contact {
            id: 0,
            name: String::new(),
            number: number.into(),
            account: AccountChoice::Auto,
            whitelist,
        }
    }

    fn caller(uri: &str, source: &str, called: &str) -> Caller {
        let user = uri
            .trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap()
            .to_owned();
        Caller {
            uri: uri.into(),
            user,
            source: Some(source.parse().unwrap()),
            called_user: called.into(),
        }
    }

    fn servers() -> ServerAddrs {
        [
            (1, vec!["127.0.0.1".parse().unwrap()]),
            (2, vec!["127.0.0.1".parse().unwrap()]),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn a_call_comes_through_the_account_whose_server_sends_it_to_its_user() {
        let doc = doc();
        let c = caller("sip:200@x", "127.0.0.1:5999", "1001");
        assert_eq!(classify(&doc, &servers(), &c), Via::Account(1));
        let c = caller("sip:200@x", "127.0.0.1:5999", "2002");
        assert_eq!(classify(&doc, &servers(), &c), Via::Account(2));
        // The right user from another address is a direct call.
        let c = caller("sip:200@x", "192.0.2.1:5060", "1001");
        assert_eq!(classify(&doc, &servers(), &c), Via::Ip);
        let c = caller("sip:200@x", "127.0.0.1:5999", "9999");
        assert_eq!(classify(&doc, &servers(), &c), Via::Ip);
    }

    #[test]
    fn whitelist_matches_users_uris_and_source_addresses() {
        let doc = doc();
        assert!(whitelisted(
            &doc,
            &caller("sip:200@any", "192.0.2.99:5060", "")
        ));
        assert!(whitelisted(
            &doc,
            &caller("sip:300@pbx.example.com", "192.0.2.99:1", "")
        ));
        assert!(whitelisted(
            &doc,
            &caller("sip:300@pbx.example.com:5060", "192.0.2.99:1", "")
        ));
        assert!(!whitelisted(
            &doc,
            &caller("sip:300@other.example.com", "192.0.2.99:1", "")
        ));
        assert!(!whitelisted(
            &doc,
            &caller("sip:301@pbx.example.com", "192.0.2.99:1", "")
        ));
        assert!(whitelisted(
            &doc,
            &caller("sip:anyone@x", "192.0.2.7:40000", "")
        ));
        assert!(whitelisted(
            &doc,
            &caller("sip:anyone@x", "192.0.2.8:5062", "")
        ));
        assert!(!whitelisted(
            &doc,
            &caller("sip:anyone@x", "192.0.2.8:5060", "")
        ));
        // In the phone book but not whitelisted.
        assert!(!whitelisted(
            &doc,
            &caller("sip:400@x", "192.0.2.99:5060", "")
        ));
    }

    #[test]
    fn the_policy_refuses_in_its_order() {
        let mut doc = doc();
        doc.accounts[0].prevent_sip_hacking = true;
        doc.accounts[0].dnd.enabled = true;
        doc.accounts[0].dnd.return_code = 603;
        let stranger = caller("sip:666@x", "127.0.0.1:5999", "1001");
        let friend = caller("sip:200@x", "127.0.0.1:5999", "1001");
        let refuse = |code, reason| Decision::Refuse { code, reason };
        assert_eq!(
            decide(&doc, Via::Account(1), &stranger, true),
            refuse(403, "caller not in the whitelist")
        );
        assert_eq!(
            decide(&doc, Via::Account(1), &friend, true),
            refuse(603, "do not disturb")
        );
        // DND on account 1 leaves account 2 alone; busy comes last.
        assert_eq!(
            decide(&doc, Via::Account(2), &stranger, true),
            refuse(486, "busy: a call is in progress")
        );
        // A direct call is guarded when any account prevents SIP hacking.
        assert_eq!(
            decide(&doc, Via::Ip, &stranger, false),
            refuse(403, "caller not in the whitelist")
        );
        doc.device.ip_call.enabled = false;
        assert_eq!(
            decide(&doc, Via::Ip, &friend, false),
            refuse(403, "direct IP calls are off")
        );
    }

    #[test]
    fn auto_answer_follows_the_kind_of_call() {
        let mut doc = doc();
        doc.calls.auto_answer.ip = true;
        doc.calls.auto_answer.sip = false;
        doc.calls.auto_answer.delay = 3;
        doc.calls.auto_answer.mode = MediaMode::Audio;
        let c = caller("sip:200@x", "127.0.0.1:5999", "1001");
        assert_eq!(
            decide(&doc, Via::Ip, &c, false),
            Decision::Ring {
                auto_answer: Some(Duration::from_secs(3)),
                video: false
            }
        );
        assert_eq!(
            decide(&doc, Via::Account(1), &c, false),
            Decision::Ring {
                auto_answer: None,
                video: false
            }
        );
    }
}
