//! Who is calling, decided from what the network proves: the address a
//! request came from. A request is an account's call only when it comes from
//! that account's server (the addresses its `server` resolves to) or one of its
//! `trusted_proxies`; only then do its From user and `P-Asserted-Identity`
//! (RFC 3325) name the caller. Every other request is a direct IP call, and its
//! caller is its address: its From header is shown, never trusted.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use doorphone_interfaces::config::Document;
use doorphone_interfaces::config::document::trusted_net;
use ipnet::IpNet;

/// How a call reached the door phone (or left it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// Through account 1 or 2.
    Account(u32),
    /// Directly between this device's address and the peer's.
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

/// What a request says of itself, and the address it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub source: SocketAddr,
    /// The From URI (`sip:200@pbx`), without parameters.
    pub from_uri: String,
    pub from_user: String,
    /// The Request-URI user: whom the caller asks for.
    pub request_user: String,
    pub to_user: String,
    /// The first URI of `P-Asserted-Identity`, if any.
    pub asserted: Option<String>,
}

/// Who the door phone takes the other party to be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A caller its account's server vouches for (or a callee the door phone
    /// reached through that server).
    User {
        account: u32,
        /// The URI the server asserts, or its From (`sip:200@pbx`).
        uri: String,
        /// The user part of `uri` (`200`).
        user: String,
    },
    /// A direct peer: the address it called from (or the door phone called).
    Address(SocketAddr),
}

impl Identity {
    /// The identity as a URI, for the call's `Identity`, signals and logs.
    pub fn uri(&self) -> String {
        match self {
            Identity::User { uri, .. } => uri.clone(),
            Identity::Address(addr) => format!("sip:{addr}"),
        }
    }

    /// What wrong door codes count against: a user of an account, or the IP
    /// of a direct peer (its port is its own to choose).
    pub fn lock_key(&self) -> String {
        match self {
            Identity::User { account, user, .. } => format!("account {account}: {user}"),
            Identity::Address(addr) => addr.ip().to_string(),
        }
    }
}

/// `sip:200@pbx:5060` → `200`.
fn user_of(uri: &str) -> String {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    match rest.split_once('@') {
        Some((user, _)) => user.to_owned(),
        // `tel:+4144...` has no host: the number is the user.
        None if uri.to_ascii_lowercase().starts_with("tel:") => rest.to_owned(),
        None => String::new(),
    }
}

/// The sources each account trusts, and its user.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    accounts: Vec<Trusted>,
}

#[derive(Debug, Clone)]
struct Trusted {
    id: u32,
    user: String,
    /// What the server resolved to (re-resolved with each registration).
    server: Vec<IpAddr>,
    proxies: Vec<IpNet>,
}

impl Trusted {
    fn covers(&self, ip: IpAddr) -> bool {
        self.server.contains(&ip) || self.proxies.iter().any(|n| n.contains(&ip))
    }
}

impl Trust {
    /// The enabled accounts of `doc`, with what their servers resolve to.
    pub fn new(doc: &Document, servers: &HashMap<u32, Vec<IpAddr>>) -> Trust {
        let accounts = doc
            .accounts
            .iter()
            .filter(|a| a.enabled && !a.user.is_empty())
            .map(|a| Trusted {
                id: a.id,
                user: a.user.clone(),
                server: servers.get(&a.id).cloned().unwrap_or_default(),
                proxies: a
                    .trusted_proxies
                    .iter()
                    .filter_map(|p| trusted_net(p))
                    .collect(),
            })
            .collect();
        Trust { accounts }
    }

    /// Account `id`'s server now resolves to `ips`.
    pub fn set_server(&mut self, id: u32, ips: Vec<IpAddr>) {
        if let Some(a) = self.accounts.iter_mut().find(|a| a.id == id) {
            a.server = ips;
        }
    }

    /// Whether `ip` is account `id`'s server or one of its proxies.
    pub fn trusts(&self, id: u32, ip: IpAddr) -> bool {
        self.accounts.iter().any(|a| a.id == id && a.covers(ip))
    }

    /// Which way a request came, and who sent it: an account's call when it
    /// names the account's user (Request-URI, else To) and comes from the
    /// account's server or proxies; a direct call otherwise.
    pub fn classify(&self, claims: &Claims) -> (Via, Identity) {
        let ip = claims.source.ip();
        let named = |user: &str| {
            self.accounts
                .iter()
                .find(|a| !user.is_empty() && a.user == user && a.covers(ip))
        };
        let account = named(&claims.request_user).or_else(|| named(&claims.to_user));
        match account {
            Some(a) => {
                let uri = claims
                    .asserted
                    .clone()
                    .unwrap_or_else(|| claims.from_uri.clone());
                let user = user_of(&uri);
                (
                    Via::Account(a.id),
                    Identity::User {
                        account: a.id,
                        uri,
                        user,
                    },
                )
            }
            None => (Via::Ip, Identity::Address(claims.source)),
        }
    }
}

/// The whitelisted contacts, indexed once per configuration so a call's
/// decision costs a look-up, not a scan of up to 1000 numbers. A contact's
/// number that is an IP address (with or without port) names a direct peer
/// at that address; a SIP user or SIP URI names a user an account's server
/// vouches for.
#[derive(Debug, Clone, Default)]
pub struct Whitelist {
    addresses: HashSet<IpAddr>,
    sockets: HashSet<SocketAddr>,
    users: HashSet<String>,
    uris: HashSet<(String, String, u16)>,
}

/// A number as an address: `Ok(Err(ip))` without port, `Ok(Ok(addr))` with.
fn address(number: &str) -> Result<Result<SocketAddr, IpAddr>, ()> {
    if let Ok(ip) = number.parse::<IpAddr>() {
        return Ok(Err(ip));
    }
    number.parse::<SocketAddr>().map(Ok).map_err(|_| ())
}

/// `sip:user@host[:port]` as (user, host in lower case, port): the scheme and
/// host are case-insensitive, the user is not; a missing port is 5060.
fn uri_parts(uri: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") {
        return None;
    }
    let (user, host) = rest.split_once('@').unwrap_or(("", rest));
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h, p.parse().ok()?),
        _ => (host, 5060),
    };
    Some((user.to_owned(), host.to_ascii_lowercase(), port))
}

impl Whitelist {
    pub fn new(doc: &Document) -> Whitelist {
        let mut w = Whitelist::default();
        for number in doc
            .contacts
            .iter()
            .filter(|c| c.whitelist)
            .map(|c| c.number.trim())
            .filter(|n| !n.is_empty())
        {
            match address(number) {
                Ok(Err(ip)) => {
                    w.addresses.insert(ip);
                }
                Ok(Ok(addr)) => {
                    w.sockets.insert(addr);
                }
                Err(()) if number.len() > 4 && number[..4].eq_ignore_ascii_case("sip:") => {
                    if let Some(parts) = uri_parts(number) {
                        w.uris.insert(parts);
                    }
                }
                Err(()) => {
                    w.users.insert(number.to_owned());
                }
            }
        }
        w
    }

    /// Whether a whitelisted contact names this identity.
    pub fn contains(&self, identity: &Identity) -> bool {
        match identity {
            Identity::Address(source) => {
                self.addresses.contains(&source.ip()) || self.sockets.contains(source)
            }
            Identity::User { uri, user, .. } => {
                (!user.is_empty() && self.users.contains(user))
                    || uri_parts(uri).is_some_and(|p| self.uris.contains(&p))
            }
        }
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
                    server: "127.0.0.1:5070".into(),
                    trusted_proxies: vec!["198.51.100.0/24".into()],
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
            contacts: [
                "200",
                "sip:300@PBX.example.com",
                "192.0.2.7",
                "192.0.2.8:5062",
            ]
            .iter()
            .map(|n| Contact {
                number: (*n).into(),
                whitelist: true,
                ..Contact::default()
            })
            .chain([Contact {
                number: "400".into(),
                whitelist: false,
                ..Contact::default()
            }])
            .collect(),
            ..Document::default()
        }
    }

    fn trust() -> Trust {
        let servers = [
            (1, vec!["127.0.0.1".parse().unwrap()]),
            (2, vec!["127.0.0.1".parse().unwrap()]),
        ]
        .into_iter()
        .collect();
        Trust::new(&doc(), &servers)
    }

    fn claims(from: &str, source: &str, called: &str) -> Claims {
        Claims {
            source: source.parse().unwrap(),
            from_uri: from.into(),
            from_user: user_of(from),
            request_user: called.into(),
            to_user: called.into(),
            asserted: None,
        }
    }

    #[test]
    fn a_call_is_an_accounts_only_from_its_server_or_proxies() {
        let t = trust();
        let (via, who) = t.classify(&claims("sip:200@pbx", "127.0.0.1:5999", "1001"));
        assert_eq!(via, Via::Account(1));
        assert_eq!(
            who,
            Identity::User {
                account: 1,
                uri: "sip:200@pbx".into(),
                user: "200".into()
            }
        );
        let (via, _) = t.classify(&claims("sip:200@pbx", "127.0.0.1:5999", "2002"));
        assert_eq!(via, Via::Account(2));
        // A trusted proxy of account 1 speaks for it, not for account 2.
        let (via, _) = t.classify(&claims("sip:200@pbx", "198.51.100.9:5060", "1001"));
        assert_eq!(via, Via::Account(1));
        let (via, _) = t.classify(&claims("sip:200@pbx", "198.51.100.9:5060", "2002"));
        assert_eq!(via, Via::Ip);
        // From the server, naming no account: a direct call from the server.
        let (via, _) = t.classify(&claims("sip:200@pbx", "127.0.0.1:5999", "door"));
        assert_eq!(via, Via::Ip);
        // The right user, the right From, from anywhere else: a direct call
        // whose caller is its address.
        let (via, who) = t.classify(&claims("sip:200@pbx", "192.0.2.1:5060", "1001"));
        assert_eq!(via, Via::Ip);
        assert_eq!(who, Identity::Address("192.0.2.1:5060".parse().unwrap()));
    }

    #[test]
    fn the_server_asserts_the_identity_a_stranger_cannot() {
        let t = trust();
        let mut c = claims("sip:666@x", "127.0.0.1:5999", "1001");
        c.asserted = Some("sip:200@pbx".into());
        let (_, who) = t.classify(&c);
        assert_eq!(who.uri(), "sip:200@pbx");
        assert!(Whitelist::new(&doc()).contains(&who));
        let mut c = claims("sip:666@x", "192.0.2.1:5060", "1001");
        c.asserted = Some("sip:200@pbx".into());
        let (_, who) = t.classify(&c);
        assert!(
            !Whitelist::new(&doc()).contains(&who),
            "PAI from a stranger is ignored"
        );
    }

    #[test]
    fn contacts_name_users_through_accounts_and_addresses_directly() {
        let w = Whitelist::new(&doc());
        let user = |uri: &str| Identity::User {
            account: 1,
            uri: uri.into(),
            user: user_of(uri),
        };
        let addr = |a: &str| Identity::Address(a.parse().unwrap());
        assert!(w.contains(&user("sip:200@any")));
        assert!(w.contains(&user("sip:300@pbx.example.com")));
        assert!(w.contains(&user("sip:300@pbx.example.com:5060")));
        assert!(!w.contains(&user("sip:300@other.example.com")));
        assert!(!w.contains(&user("sip:301@pbx.example.com")));
        assert!(!w.contains(&user("sip:400@x")), "not whitelisted");
        assert!(w.contains(&addr("192.0.2.7:40000")));
        assert!(w.contains(&addr("192.0.2.8:5062")));
        assert!(!w.contains(&addr("192.0.2.8:5060")));
        // A user's number never names an address, an address never a user.
        assert!(!w.contains(&addr("192.0.2.99:5060")));
        let only = |number: &str| {
            Whitelist::new(&Document {
                contacts: vec![Contact {
                    number: number.into(),
                    whitelist: true,
                    ..Contact::default()
                }],
                ..Document::default()
            })
        };
        assert!(!only("200").contains(&addr("192.0.2.7:5060")));
        assert!(!only("192.0.2.7").contains(&user("sip:192.0.2.7@x")));
        assert!(only("2001:db8::7").contains(&addr("[2001:db8::7]:5060")));
        assert!(only("sip:200@PBX").contains(&user("sip:200@pbx:5060")));
    }

    #[test]
    fn wrong_codes_count_per_user_or_per_ip() {
        let a = Identity::Address("192.0.2.1:5060".parse().unwrap());
        let b = Identity::Address("192.0.2.1:6000".parse().unwrap());
        assert_eq!(a.lock_key(), b.lock_key());
        assert_eq!(user_of("tel:+41441234567"), "+41441234567");
    }
}
