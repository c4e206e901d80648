//! The configuration document: the JSON that `Export` prints and `Import` takes.
//!
//! Field names are the public contract (`design/config.md`); fields may be added,
//! never renamed. Every section has its defaults here, so a document that leaves a
//! section or field out gets the default for it.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Version of the document format (the `schema` field).
pub const DOCUMENT_SCHEMA: u32 = 1;

/// What export prints instead of a stored password; importing it keeps the stored one.
pub const PASSWORD_MASK: &str = "********";

/// The top-level sections, in document order. `Changed` names these.
pub const SECTIONS: [&str; 13] = [
    "device",
    "accounts",
    "calls",
    "contacts",
    "buttons",
    "dial_plan",
    "multicast",
    "relays",
    "dtmf_authority",
    "actions",
    "media",
    "inputs",
    "web",
];

/// The realm of the web service's HTTP Digest authentication (RFC 7616);
/// `web.users[].digest_ha1` is hashed with it.
pub const WEB_DIGEST_REALM: &str = "doorphone";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Document {
    pub schema: u32,
    pub device: Device,
    pub accounts: Vec<Account>,
    pub calls: Calls,
    pub contacts: Vec<Contact>,
    pub buttons: Vec<Button>,
    pub dial_plan: Vec<DialRule>,
    pub multicast: Multicast,
    pub relays: Vec<Relay>,
    pub dtmf_authority: DtmfAuthority,
    pub actions: Actions,
    pub media: Media,
    /// GPIO inputs: exit buttons that open a relay, physical call buttons.
    pub inputs: Vec<Input>,
    /// Who may use the web pages and the HTTP API.
    pub web: Web,
}

impl Default for Document {
    fn default() -> Self {
        Document {
            schema: DOCUMENT_SCHEMA,
            device: Device::default(),
            accounts: Vec::new(),
            calls: Calls::default(),
            contacts: Vec::new(),
            buttons: Vec::new(),
            dial_plan: Vec::new(),
            multicast: Multicast::default(),
            relays: vec![Relay::default()],
            dtmf_authority: DtmfAuthority::All,
            actions: Actions::default(),
            media: Media::default(),
            inputs: Vec::new(),
            web: Web::default(),
        }
    }
}

impl Document {
    /// Fills the values whose default depends on another field.
    pub fn normalize(&mut self) {
        for button in &mut self.buttons {
            if button.when_refused.is_none() {
                button.when_refused = Some(match button.call_type {
                    CallType::Group => WhenRefused::EndThisCall,
                    CallType::Sequence => WhenRefused::CallNext,
                });
            }
        }
    }

    /// Every password replaced by [`PASSWORD_MASK`] (empty ones stay empty).
    pub fn masked(&self) -> Document {
        let mut doc = self.clone();
        doc.for_each_password(|p| {
            if !p.is_empty() {
                *p = PASSWORD_MASK.to_owned();
            }
        });
        doc
    }

    /// Replaces each masked password by the one stored in `stored` for the same
    /// account (by id) or action. A mask with nothing stored becomes empty.
    pub fn unmask_from(&mut self, stored: &Document) {
        for account in &mut self.accounts {
            if account.password == PASSWORD_MASK {
                account.password = stored
                    .accounts
                    .iter()
                    .find(|a| a.id == account.id)
                    .map(|a| a.password.clone())
                    .unwrap_or_default();
            }
        }
        if self.actions.ftp.password == PASSWORD_MASK {
            self.actions.ftp.password = stored.actions.ftp.password.clone();
        }
        if self.actions.email.password == PASSWORD_MASK {
            self.actions.email.password = stored.actions.email.password.clone();
        }
        for user in &mut self.web.users {
            let stored = stored.web.users.iter().find(|u| u.name == user.name);
            if user.password_hash == PASSWORD_MASK {
                user.password_hash = stored.map(|u| u.password_hash.clone()).unwrap_or_default();
            }
            if user.digest_ha1 == PASSWORD_MASK {
                user.digest_ha1 = stored.map(|u| u.digest_ha1.clone()).unwrap_or_default();
            }
        }
    }

    fn for_each_password(&mut self, mut f: impl FnMut(&mut String)) {
        for account in &mut self.accounts {
            f(&mut account.password);
        }
        f(&mut self.actions.ftp.password);
        f(&mut self.actions.email.password);
        for user in &mut self.web.users {
            f(&mut user.password_hash);
            f(&mut user.digest_ha1);
        }
    }

    /// The section named `name` as JSON, or `None` for an unknown name.
    pub fn section_json(&self, name: &str) -> Option<serde_json::Value> {
        let value = match name {
            "device" => serde_json::to_value(&self.device),
            "accounts" => serde_json::to_value(&self.accounts),
            "calls" => serde_json::to_value(&self.calls),
            "contacts" => serde_json::to_value(&self.contacts),
            "buttons" => serde_json::to_value(&self.buttons),
            "dial_plan" => serde_json::to_value(&self.dial_plan),
            "multicast" => serde_json::to_value(&self.multicast),
            "relays" => serde_json::to_value(&self.relays),
            "dtmf_authority" => serde_json::to_value(self.dtmf_authority),
            "actions" => serde_json::to_value(&self.actions),
            "media" => serde_json::to_value(&self.media),
            "inputs" => serde_json::to_value(&self.inputs),
            "web" => serde_json::to_value(&self.web),
            _ => return None,
        };
        value.ok()
    }

    /// The names of the sections that differ between `self` and `other`.
    pub fn changed_sections(&self, other: &Document) -> Vec<&'static str> {
        SECTIONS
            .iter()
            .copied()
            .filter(|s| self.section_json(s) != other.section_json(s))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Device {
    pub name: String,
    pub ip_call: IpCall,
}

impl Default for Device {
    fn default() -> Self {
        Device {
            name: "Door phone".to_owned(),
            ip_call: IpCall::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpCall {
    pub enabled: bool,
    pub port: u32,
    /// Direct IP calls only from whitelisted contacts, matched by the
    /// address the call comes from.
    pub prevent_sip_hacking: bool,
    /// SRTP for direct IP calls.
    pub media_encryption: MediaEncryption,
}

impl Default for IpCall {
    fn default() -> Self {
        IpCall {
            enabled: true,
            port: 5060,
            prevent_sip_hacking: false,
            media_encryption: MediaEncryption::Off,
        }
    }
}

/// A `trusted_proxies` entry as a prefix: `192.0.2.10` (one address) or
/// `192.0.2.0/24`; `None` when it is neither.
pub fn trusted_net(entry: &str) -> Option<ipnet::IpNet> {
    let entry = entry.trim();
    entry.parse::<ipnet::IpNet>().ok().or_else(|| {
        entry
            .parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// SRTP with SDES keys (RFC 4568) for a kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MediaEncryption {
    /// Plain RTP only.
    #[default]
    Off,
    /// SRTP offered beside plain RTP; either is accepted.
    Optional,
    /// SRTP only (RTP/SAVP): a plain offer or answer is refused.
    Mandatory,
}

impl MediaEncryption {
    /// `off`, `optional` or `mandatory`, as the document and media's
    /// `encryption` option spell it.
    pub fn name(self) -> &'static str {
        match self {
            MediaEncryption::Off => "off",
            MediaEncryption::Optional => "optional",
            MediaEncryption::Mandatory => "mandatory",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Account {
    pub id: u32,
    pub enabled: bool,
    pub label: String,
    pub display_name: String,
    pub user: String,
    pub auth_user: String,
    pub password: String,
    /// `host` or `host:port` of the registrar and proxy.
    pub server: String,
    pub transport: Transport,
    pub register_expires: u32,
    pub dtmf_mode: DtmfMode,
    pub prevent_sip_hacking: bool,
    pub dnd: Dnd,
    /// Sent as `User-Agent`/`Server` when not empty; nothing is sent otherwise.
    pub user_agent: String,
    /// Addresses (IPs or CIDR prefixes) besides the resolved `server` whose
    /// requests are this account's calls: a proxy or SBC in front of it.
    pub trusted_proxies: Vec<String>,
    /// SRTP for this account's calls.
    pub media_encryption: MediaEncryption,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            id: 1,
            enabled: false,
            label: String::new(),
            display_name: String::new(),
            user: String::new(),
            auth_user: String::new(),
            password: String::new(),
            server: String::new(),
            transport: Transport::Udp,
            register_expires: 1800,
            dtmf_mode: DtmfMode::Rfc4733,
            prevent_sip_hacking: false,
            dnd: Dnd::default(),
            user_agent: String::new(),
            trusted_proxies: Vec::new(),
            media_encryption: MediaEncryption::Off,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtmfMode {
    Rfc4733,
    Info,
    Both,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dnd {
    pub enabled: bool,
    pub return_code: u32,
    pub on_code: String,
    pub off_code: String,
}

impl Default for Dnd {
    fn default() -> Self {
        Dnd {
            enabled: false,
            return_code: 486,
            on_code: "78".to_owned(),
            off_code: "79".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Calls {
    pub max_call_time: u32,
    pub max_dial_in_time: u32,
    pub max_dial_out_time: u32,
    pub auto_answer: AutoAnswer,
    pub hang_up_after_open: HangUpAfterOpen,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            max_call_time: 300,
            max_dial_in_time: 60,
            max_dial_out_time: 60,
            auto_answer: AutoAnswer::default(),
            hang_up_after_open: HangUpAfterOpen::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoAnswer {
    pub ip: bool,
    pub sip: bool,
    pub delay: u32,
    pub mode: MediaMode,
}

impl Default for AutoAnswer {
    fn default() -> Self {
        AutoAnswer {
            ip: true,
            sip: false,
            delay: 0,
            mode: MediaMode::Video,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaMode {
    Audio,
    Video,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HangUpAfterOpen {
    pub types: Vec<HangUpType>,
    pub timeout: u32,
}

impl Default for HangUpAfterOpen {
    fn default() -> Self {
        HangUpAfterOpen {
            types: Vec::new(),
            timeout: 5,
        }
    }
}

/// Door-open sources that may end the current call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HangUpType {
    Dtmf,
    Api,
    Input,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Contact {
    pub id: u32,
    pub name: String,
    /// A SIP user (`200`), a SIP URI (`sip:200@host`) or an IP address (`192.168.1.20[:5062]`).
    pub number: String,
    pub account: AccountChoice,
    pub whitelist: bool,
}

impl Default for Contact {
    fn default() -> Self {
        Contact {
            id: 0,
            name: String::new(),
            number: String::new(),
            account: AccountChoice::Auto,
            whitelist: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Button {
    pub button: u32,
    pub call_type: CallType,
    pub numbers: Vec<String>,
    pub group_number: String,
    /// `None` only until [`Document::normalize`] fills the call type's default.
    pub when_refused: Option<WhenRefused>,
    pub timeout: u32,
    pub no_answer: NoAnswer,
}

impl Default for Button {
    fn default() -> Self {
        Button {
            button: 0,
            call_type: CallType::Group,
            numbers: Vec::new(),
            group_number: String::new(),
            when_refused: None,
            timeout: 30,
            no_answer: NoAnswer::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallType {
    Group,
    Sequence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenRefused {
    EndThisCall,
    EndAllCalls,
    CallNext,
    DoNotCallNext,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoAnswer {
    pub relays: Vec<String>,
    pub actions: Vec<ActionKind>,
    pub http_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Ftp,
    Email,
    Http,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialRule {
    pub id: u32,
    pub name: String,
    pub prefix: String,
    pub account: AccountChoice,
    pub replace: Vec<String>,
}

impl Default for DialRule {
    fn default() -> Self {
        DialRule {
            id: 0,
            name: String::new(),
            prefix: String::new(),
            account: AccountChoice::Auto,
            replace: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Multicast {
    pub paging_barge: u32,
    pub paging_priority: bool,
    /// Position 1 is the highest priority.
    pub listen: Vec<Listen>,
}

impl Default for Multicast {
    fn default() -> Self {
        Multicast {
            paging_barge: 0,
            paging_priority: true,
            listen: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    pub address: String,
    pub port: u32,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Relay {
    pub id: String,
    pub name: String,
    pub gpio: u32,
    pub active_low: bool,
    pub trigger_delay: u32,
    pub hold: u32,
    pub dtmf_code: String,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            id: "A".to_owned(),
            name: "Door".to_owned(),
            gpio: 17,
            active_low: false,
            trigger_delay: 0,
            hold: 3,
            dtmf_code: "#".to_owned(),
        }
    }
}

/// A GPIO input: a push button wired to a line the relay service watches. It
/// does exactly one thing: `opens` a relay (an exit button, source `input`) or
/// `presses` a call button (a physical call button).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Input {
    pub gpio: u32,
    /// The button is pressed when the line is low.
    pub active_low: bool,
    /// How long a level must be stable before it counts, in milliseconds.
    pub debounce_ms: u32,
    /// The relay this input opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens: Option<String>,
    /// The call button this input presses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presses: Option<u32>,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            gpio: 0,
            active_low: false,
            debounce_ms: 50,
            opens: None,
            presses: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtmfAuthority {
    #[default]
    All,
    Contacts,
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Actions {
    pub ftp: Ftp,
    pub email: Email,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ftp {
    /// `ftp://host[:port]/directory/`
    pub url: String,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Email {
    /// `host:port` of the SMTP server.
    pub smtp: String,
    pub tls: EmailTls,
    pub user: String,
    pub password: String,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    #[default]
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Media {
    /// In order of preference.
    pub audio_codecs: Vec<AudioCodec>,
    pub video_codecs: Vec<VideoCodec>,
    /// First and last UDP port for RTP and RTCP.
    pub rtp_ports: [u32; 2],
    /// For peers behind NAT: take RTP and RTCP from the source of the peer's first
    /// packet with a negotiated payload type, not only from its SDP's address.
    pub rtp_latching: bool,
}

impl Default for Media {
    fn default() -> Self {
        Media {
            audio_codecs: vec![
                AudioCodec::Pcmu,
                AudioCodec::Pcma,
                AudioCodec::G722,
                AudioCodec::Opus,
            ],
            video_codecs: vec![VideoCodec::H264],
            rtp_ports: [10000, 20000],
            rtp_latching: false,
        }
    }
}

/// The web pages' and HTTP API's users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Web {
    pub users: Vec<WebUser>,
    /// Seconds of inactivity after which a web session ends.
    pub session_timeout: u32,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            users: Vec::new(),
            session_timeout: 900,
        }
    }
}

/// One user of the web pages and the HTTP API. Both hashes are secrets:
/// export masks them like passwords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WebUser {
    pub name: String,
    pub role: WebRole,
    /// The password as an Argon2id PHC string (`$argon2id$v=19$m=...`).
    pub password_hash: String,
    /// Lowercase hex SHA-256 of `name:doorphone:password` (RFC 7616's HA1,
    /// realm [`WEB_DIGEST_REALM`]), for HTTP Digest; empty turns Digest off
    /// for this user.
    pub digest_ha1: String,
}

/// What a web user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebRole {
    /// Everything.
    Admin,
    /// Status, call history, doors and the snapshot.
    #[default]
    User,
}

impl WebRole {
    /// `admin` or `user`, as the document spells it.
    pub fn name(self) -> &'static str {
        match self {
            WebRole::Admin => "admin",
            WebRole::User => "user",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AudioCodec {
    #[serde(rename = "PCMU")]
    Pcmu,
    #[serde(rename = "PCMA")]
    Pcma,
    #[serde(rename = "G722")]
    G722,
    #[serde(rename = "opus")]
    Opus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VideoCodec {
    #[serde(rename = "H264")]
    H264,
}

/// Which account places a call: `auto` (account 1 when registered, else 2, else
/// direct IP) or one account. Written `"auto"`, `1` or `2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountChoice {
    #[default]
    Auto,
    Account(u32),
}

impl fmt::Display for AccountChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountChoice::Auto => f.write_str("auto"),
            AccountChoice::Account(id) => write!(f, "{id}"),
        }
    }
}

impl std::str::FromStr for AccountChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(AccountChoice::Auto),
            "1" => Ok(AccountChoice::Account(1)),
            "2" => Ok(AccountChoice::Account(2)),
            other => Err(format!("{other:?} is not an account (auto, 1 or 2)")),
        }
    }
}

impl Serialize for AccountChoice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AccountChoice::Auto => serializer.serialize_str("auto"),
            AccountChoice::Account(id) => serializer.serialize_u32(*id),
        }
    }
}

impl<'de> Deserialize<'de> for AccountChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoiceVisitor;

        impl Visitor<'_> for ChoiceVisitor {
            type Value = AccountChoice;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"auto\", 1 or 2")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AccountChoice, E> {
                match v {
                    1 | 2 => Ok(AccountChoice::Account(v as u32)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AccountChoice, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<AccountChoice, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        deserializer.deserialize_any(ChoiceVisitor)
    }
}

/// The dial plan as a lookup table: a dialled number equal to a rule's prefix is
/// replaced by every target of that rule; any other number is dialled as it is.
#[derive(Debug, Clone, Default)]
pub struct DialPlan {
    by_prefix: HashMap<String, (AccountChoice, Vec<String>)>,
}

impl DialPlan {
    pub fn new(rules: &[DialRule]) -> DialPlan {
        DialPlan {
            by_prefix: rules
                .iter()
                .map(|r| (r.prefix.clone(), (r.account, r.replace.clone())))
                .collect(),
        }
    }

    /// The account choice and the numbers to ring for a dialled `number`.
    pub fn resolve(&self, number: &str) -> (AccountChoice, Vec<String>) {
        match self.by_prefix.get(number) {
            Some((account, targets)) => (*account, targets.clone()),
            None => (AccountChoice::Auto, vec![number.to_owned()]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_json() {
        let mut doc = Document::default();
        doc.normalize();
        let text = serde_json::to_string(&doc).unwrap();
        let back: Document = serde_json::from_str(&text).unwrap();
        assert_eq!(doc, back);
    }

    #[test]
    fn an_input_shows_only_what_it_does() {
        let doc: Document = serde_json::from_str(
            r#"{"inputs": [{"gpio": 23, "active_low": true, "opens": "A"},
                           {"gpio": 24, "presses": 1, "debounce_ms": 80}]}"#,
        )
        .unwrap();
        assert_eq!(doc.inputs[0].debounce_ms, 50);
        assert_eq!(doc.inputs[1].presses, Some(1));
        let json = serde_json::to_value(&doc.inputs).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"gpio": 23, "active_low": true, "debounce_ms": 50, "opens": "A"},
                {"gpio": 24, "active_low": false, "debounce_ms": 80, "presses": 1}
            ])
        );
        assert!(Document::default().inputs.is_empty());
    }

    #[test]
    fn account_choice_reads_auto_and_ids() {
        let read = |s: &str| serde_json::from_str::<AccountChoice>(s);
        assert_eq!(read("\"auto\"").unwrap(), AccountChoice::Auto);
        assert_eq!(read("2").unwrap(), AccountChoice::Account(2));
        assert_eq!(read("\"1\"").unwrap(), AccountChoice::Account(1));
        assert!(read("3").is_err());
        assert!(read("\"x\"").is_err());
        assert_eq!(
            serde_json::to_string(&AccountChoice::Account(1)).unwrap(),
            "1"
        );
    }

    #[test]
    fn masking_hides_and_unmasking_restores_passwords() {
        let mut stored = Document::default();
        stored.accounts.push(Account {
            id: 2,
            password: "secret".into(),
            ..Account::default()
        });
        stored.actions.ftp.password = "ftp-secret".into();
        stored.web.users.push(WebUser {
            name: "installer".into(),
            role: WebRole::Admin,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
                .into(),
            digest_ha1: "ab".repeat(32),
        });
        let mut masked = stored.masked();
        assert_eq!(masked.accounts[0].password, PASSWORD_MASK);
        assert_eq!(masked.actions.email.password, "");
        assert_eq!(masked.web.users[0].password_hash, PASSWORD_MASK);
        assert_eq!(masked.web.users[0].digest_ha1, PASSWORD_MASK);
        assert!(!serde_json::to_string(&masked).unwrap().contains("argon2"));
        masked.unmask_from(&stored);
        assert_eq!(masked, stored);
    }

    #[test]
    fn dial_plan_replaces_a_prefix_and_passes_other_numbers() {
        let plan = DialPlan::new(&[DialRule {
            id: 1,
            prefix: "0".into(),
            account: AccountChoice::Account(2),
            replace: vec!["201".into(), "10.0.0.2".into()],
            ..DialRule::default()
        }]);
        assert_eq!(
            plan.resolve("0"),
            (
                AccountChoice::Account(2),
                vec!["201".into(), "10.0.0.2".into()]
            )
        );
        assert_eq!(plan.resolve("05"), (AccountChoice::Auto, vec!["05".into()]));
    }
}
