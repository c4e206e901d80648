//! Every rule of `design/config.md`, checked on a whole document before it is
//! committed. An error names the field path and the rule; list items are named by
//! their id (`accounts[1]`, `relays[A]`, `buttons[3]`) or, for multicast groups
//! and inputs, by their position (`multicast.listen[2]`, 1 = highest priority;
//! `inputs[2]`).

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use doorphone_interfaces::config::document::{
    ActionKind, CallType, Document, WhenRefused, trusted_net,
};
use doorphone_interfaces::config::urls;

pub const MAX_CONTACTS: usize = 1000;
pub const MAX_DIAL_RULES: usize = 500;
pub const MAX_LISTEN: usize = 10;
pub const MAX_RELAYS: usize = 8;
pub const MAX_INPUTS: usize = 16;
pub const MAX_TRUSTED_PROXIES: usize = 8;
pub const MAX_WEB_USERS: usize = 8;
const MAX_NAME: usize = 64;

/// A refused value: where it is and which rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub rule: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

impl std::error::Error for Invalid {}

fn invalid(path: impl Into<String>, rule: impl Into<String>) -> Invalid {
    Invalid {
        path: path.into(),
        rule: rule.into(),
    }
}

type Check = Result<(), Invalid>;

fn range(path: &str, value: u32, lo: u32, hi: u32) -> Check {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("{value} is out of range ({lo}-{hi})"),
        ))
    }
}

fn text(path: &str, value: &str, max: usize) -> Check {
    if value.chars().count() > max {
        return Err(invalid(path, format!("at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(path, "control characters are not allowed"));
    }
    Ok(())
}

fn unique<T: std::hash::Hash + Eq + fmt::Debug>(
    path: &str,
    items: impl IntoIterator<Item = T>,
    what: &str,
) -> Check {
    let mut seen = HashSet::new();
    for item in items {
        let shown = format!("{item:?}");
        if !seen.insert(item) {
            return Err(invalid(path, format!("duplicate {what} {shown}")));
        }
    }
    Ok(())
}

fn dtmf_digits(path: &str, value: &str, min: usize, max: usize) -> Check {
    let len = value.chars().count();
    if len < min
        || len > max
        || !value
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
    {
        let rule = if min == 0 {
            format!("{value:?} must be at most {max} of 0-9, * and #")
        } else {
            format!("{value:?} must be {min}-{max} of 0-9, * and #")
        };
        return Err(invalid(path, rule));
    }
    Ok(())
}

/// A SIP user part as the door phone accepts it: 1-64 of `A-Z a-z 0-9 * # + . _ -`.
pub fn is_sip_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "*#+._-".contains(c))
}

/// A host name, an IPv4 address or a bracketed IPv6 address.
pub fn is_host(s: &str) -> bool {
    urls::host(s).is_some()
}

/// `host` or `host:port` with a port in 1-65535.
pub fn is_host_port(s: &str) -> bool {
    urls::host_port(s, 1).is_ok()
}

/// A number to call: a SIP user (`200`), a SIP URI (`sip:200@host[:port]`) or an
/// IP address with an optional port (`192.168.1.20`, `192.168.1.20:5062`).
pub fn is_number(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix("sip:").or_else(|| s.strip_prefix("sips:")) {
        return match rest.split_once('@') {
            Some((user, host)) => is_sip_user(user) && is_host_port(host),
            None => is_host_port(rest),
        };
    }
    // Digits and dots (and a port) are meant as an IPv4 address, and must be one.
    if s.contains('.')
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ':')
    {
        return s.parse::<Ipv4Addr>().is_ok()
            || s.parse::<SocketAddrV4>().is_ok_and(|a| a.port() != 0);
    }
    is_sip_user(s)
}

fn number(path: &str, value: &str) -> Check {
    if is_number(value) {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("{value:?} is not a SIP user, SIP URI or IP address"),
        ))
    }
}

fn email_address(path: &str, value: &str) -> Check {
    let ok = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && local.len() <= 64
            && !local
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
            && is_host(domain)
    });
    if ok {
        Ok(())
    } else {
        Err(invalid(path, format!("{value:?} is not an e-mail address")))
    }
}

/// Checks every rule; the first broken one is returned.
pub fn validate(doc: &Document) -> Check {
    if doc.schema != doorphone_interfaces::config::document::DOCUMENT_SCHEMA {
        return Err(invalid(
            "schema",
            format!(
                "document schema {} is not supported (this version reads {})",
                doc.schema,
                doorphone_interfaces::config::document::DOCUMENT_SCHEMA
            ),
        ));
    }
    device(doc)?;
    accounts(doc)?;
    calls(doc)?;
    contacts(doc)?;
    relays(doc)?;
    inputs(doc)?;
    buttons(doc)?;
    dial_plan(doc)?;
    multicast(doc)?;
    actions(doc)?;
    media(doc)?;
    web(doc)
}

fn device(doc: &Document) -> Check {
    let name = &doc.device.name;
    if name.trim().is_empty() {
        return Err(invalid("device.name", "must not be empty"));
    }
    text("device.name", name, MAX_NAME)?;
    range("device.ip_call.port", doc.device.ip_call.port, 1, 65535)
}

fn accounts(doc: &Document) -> Check {
    if doc.accounts.len() > 2 {
        return Err(invalid("accounts", "at most 2 accounts"));
    }
    for a in &doc.accounts {
        if a.id != 1 && a.id != 2 {
            return Err(invalid(
                format!("accounts[{}].id", a.id),
                "account ids are 1 and 2 only",
            ));
        }
    }
    unique("accounts", doc.accounts.iter().map(|a| a.id), "account id")?;
    for a in &doc.accounts {
        let p = format!("accounts[{}]", a.id);
        text(&format!("{p}.label"), &a.label, MAX_NAME)?;
        text(&format!("{p}.display_name"), &a.display_name, MAX_NAME)?;
        text(&format!("{p}.password"), &a.password, 128)?;
        for (field, value) in [("user", &a.user), ("auth_user", &a.auth_user)] {
            if !value.is_empty() && !is_sip_user(value) {
                return Err(invalid(
                    format!("{p}.{field}"),
                    format!("{value:?} must be 1-64 of A-Z, a-z, 0-9, *, #, +, ., _ and -"),
                ));
            }
        }
        if !a.server.is_empty() && !is_host_port(&a.server) {
            return Err(invalid(
                format!("{p}.server"),
                format!("{:?} is not host or host:port", a.server),
            ));
        }
        if a.enabled {
            if a.user.is_empty() {
                return Err(invalid(
                    format!("{p}.user"),
                    "required when the account is enabled",
                ));
            }
            if a.server.is_empty() {
                return Err(invalid(
                    format!("{p}.server"),
                    "required when the account is enabled",
                ));
            }
        }
        range(
            &format!("{p}.register_expires"),
            a.register_expires,
            30,
            86400,
        )?;
        if ![404, 480, 486, 603].contains(&a.dnd.return_code) {
            return Err(invalid(
                format!("{p}.dnd.return_code"),
                format!("{} is not one of 404, 480, 486, 603", a.dnd.return_code),
            ));
        }
        dtmf_digits(&format!("{p}.dnd.on_code"), &a.dnd.on_code, 0, 16)?;
        dtmf_digits(&format!("{p}.dnd.off_code"), &a.dnd.off_code, 0, 16)?;
        if !a
            .user_agent
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' ')
        {
            return Err(invalid(format!("{p}.user_agent"), "printable ASCII only"));
        }
        text(&format!("{p}.user_agent"), &a.user_agent, 128)?;
        if a.trusted_proxies.len() > MAX_TRUSTED_PROXIES {
            return Err(invalid(
                format!("{p}.trusted_proxies"),
                format!("at most {MAX_TRUSTED_PROXIES} entries"),
            ));
        }
        for (n, entry) in a.trusted_proxies.iter().enumerate() {
            if trusted_net(entry).is_none() {
                return Err(invalid(
                    format!("{p}.trusted_proxies[{}]", n + 1),
                    format!("{entry:?} is not an IP address or CIDR prefix (192.0.2.0/24)"),
                ));
            }
        }
    }
    Ok(())
}

fn calls(doc: &Document) -> Check {
    let c = &doc.calls;
    if c.max_call_time != 0 && !(5..=7200).contains(&c.max_call_time) {
        return Err(invalid(
            "calls.max_call_time",
            format!("{} is out of range (0 or 5-7200)", c.max_call_time),
        ));
    }
    range("calls.max_dial_in_time", c.max_dial_in_time, 5, 300)?;
    range("calls.max_dial_out_time", c.max_dial_out_time, 5, 300)?;
    range("calls.auto_answer.delay", c.auto_answer.delay, 0, 30)?;
    unique(
        "calls.hang_up_after_open.types",
        c.hang_up_after_open.types.iter(),
        "type",
    )?;
    range(
        "calls.hang_up_after_open.timeout",
        c.hang_up_after_open.timeout,
        1,
        15,
    )
}

fn contacts(doc: &Document) -> Check {
    if doc.contacts.len() > MAX_CONTACTS {
        return Err(invalid(
            "contacts",
            format!("at most {MAX_CONTACTS} contacts"),
        ));
    }
    for c in &doc.contacts {
        if c.id == 0 {
            return Err(invalid("contacts[0].id", "ids start at 1"));
        }
    }
    unique("contacts", doc.contacts.iter().map(|c| c.id), "contact id")?;
    for c in &doc.contacts {
        let p = format!("contacts[{}]", c.id);
        text(&format!("{p}.name"), &c.name, MAX_NAME)?;
        number(&format!("{p}.number"), &c.number)?;
    }
    Ok(())
}

fn relays(doc: &Document) -> Check {
    if doc.relays.len() > MAX_RELAYS {
        return Err(invalid("relays", format!("at most {MAX_RELAYS} relays")));
    }
    for r in &doc.relays {
        if r.id.is_empty() || r.id.len() > 8 || !r.id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(
                format!("relays[{}].id", r.id),
                "must be 1-8 of A-Z, a-z and 0-9",
            ));
        }
    }
    unique(
        "relays",
        doc.relays.iter().map(|r| r.id.as_str()),
        "relay id",
    )?;
    for r in &doc.relays {
        let p = format!("relays[{}]", r.id);
        text(&format!("{p}.name"), &r.name, MAX_NAME)?;
        range(&format!("{p}.gpio"), r.gpio, 0, 4095)?;
        range(&format!("{p}.trigger_delay"), r.trigger_delay, 0, 10)?;
        range(&format!("{p}.hold"), r.hold, 1, 10)?;
        dtmf_digits(&format!("{p}.dtmf_code"), &r.dtmf_code, 0, 4)?;
    }
    Ok(())
}

fn inputs(doc: &Document) -> Check {
    if doc.inputs.len() > MAX_INPUTS {
        return Err(invalid("inputs", format!("at most {MAX_INPUTS} inputs")));
    }
    for (i, input) in doc.inputs.iter().enumerate() {
        let p = format!("inputs[{}]", i + 1);
        range(&format!("{p}.gpio"), input.gpio, 0, 4095)?;
        if let Some(relay) = doc.relays.iter().find(|r| r.gpio == input.gpio) {
            return Err(invalid(
                format!("{p}.gpio"),
                format!(
                    "gpio {} is the output of relay {}; a line is an input or an output",
                    input.gpio, relay.id
                ),
            ));
        }
        if let Some(j) = doc.inputs[..i].iter().position(|o| o.gpio == input.gpio) {
            return Err(invalid(
                format!("{p}.gpio"),
                format!("gpio {} is already inputs[{}]", input.gpio, j + 1),
            ));
        }
        range(&format!("{p}.debounce_ms"), input.debounce_ms, 10, 1000)?;
        match (&input.opens, input.presses) {
            (Some(relay), None) => {
                if !doc.relays.iter().any(|r| &r.id == relay) {
                    return Err(invalid(
                        format!("{p}.opens"),
                        format!("no relay {relay:?} is configured"),
                    ));
                }
            }
            (None, Some(button)) => range(&format!("{p}.presses"), button, 1, 16)?,
            _ => {
                return Err(invalid(
                    p,
                    "exactly one of opens (a relay) and presses (a call button)",
                ));
            }
        }
    }
    Ok(())
}

fn buttons(doc: &Document) -> Check {
    for b in &doc.buttons {
        range(&format!("buttons[{}].button", b.button), b.button, 1, 16)?;
    }
    unique("buttons", doc.buttons.iter().map(|b| b.button), "button")?;
    for b in &doc.buttons {
        let p = format!("buttons[{}]", b.button);
        if b.numbers.len() > 16 {
            return Err(invalid(format!("{p}.numbers"), "at most 16 numbers"));
        }
        if b.numbers.is_empty() && b.group_number.is_empty() {
            return Err(invalid(
                format!("{p}.numbers"),
                "at least 1 number (or a group_number)",
            ));
        }
        for (i, n) in b.numbers.iter().enumerate() {
            number(&format!("{p}.numbers[{}]", i + 1), n)?;
        }
        if !b.group_number.is_empty() {
            number(&format!("{p}.group_number"), &b.group_number)?;
        }
        let allowed: &[WhenRefused] = match b.call_type {
            CallType::Group => &[WhenRefused::EndThisCall, WhenRefused::EndAllCalls],
            CallType::Sequence => &[WhenRefused::CallNext, WhenRefused::DoNotCallNext],
        };
        if let Some(w) = b.when_refused
            && !allowed.contains(&w)
        {
            let rule = match b.call_type {
                CallType::Group => "a group call takes end_this_call or end_all_calls",
                CallType::Sequence => "a sequence call takes call_next or do_not_call_next",
            };
            return Err(invalid(format!("{p}.when_refused"), rule));
        }
        range(&format!("{p}.timeout"), b.timeout, 5, 120)?;
        let na = &b.no_answer;
        unique(&format!("{p}.no_answer.relays"), na.relays.iter(), "relay")?;
        for r in &na.relays {
            if !doc.relays.iter().any(|relay| &relay.id == r) {
                return Err(invalid(
                    format!("{p}.no_answer.relays"),
                    format!("no relay {r:?} is configured"),
                ));
            }
        }
        unique(
            &format!("{p}.no_answer.actions"),
            na.actions.iter(),
            "action",
        )?;
        if !na.http_url.is_empty() {
            urls::http_url(&na.http_url)
                .map_err(|e| invalid(format!("{p}.no_answer.http_url"), e.to_string()))?;
        }
        for action in &na.actions {
            match action {
                ActionKind::Http if na.http_url.is_empty() => {
                    return Err(invalid(
                        format!("{p}.no_answer.http_url"),
                        "required when the http action is chosen",
                    ));
                }
                ActionKind::Ftp if doc.actions.ftp.url.is_empty() => {
                    return Err(invalid(
                        format!("{p}.no_answer.actions"),
                        "ftp needs actions.ftp.url",
                    ));
                }
                ActionKind::Email
                    if doc.actions.email.smtp.is_empty() || doc.actions.email.to.is_empty() =>
                {
                    return Err(invalid(
                        format!("{p}.no_answer.actions"),
                        "email needs actions.email.smtp and actions.email.to",
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn dial_plan(doc: &Document) -> Check {
    if doc.dial_plan.len() > MAX_DIAL_RULES {
        return Err(invalid(
            "dial_plan",
            format!("at most {MAX_DIAL_RULES} rules"),
        ));
    }
    for r in &doc.dial_plan {
        if r.id == 0 {
            return Err(invalid("dial_plan[0].id", "ids start at 1"));
        }
    }
    unique("dial_plan", doc.dial_plan.iter().map(|r| r.id), "rule id")?;
    for r in &doc.dial_plan {
        let p = format!("dial_plan[{}]", r.id);
        text(&format!("{p}.name"), &r.name, MAX_NAME)?;
        if !is_sip_user(&r.prefix) || r.prefix.len() > 32 {
            return Err(invalid(
                format!("{p}.prefix"),
                format!(
                    "{:?} must be 1-32 of A-Z, a-z, 0-9, *, #, +, ., _ and -",
                    r.prefix
                ),
            ));
        }
        if r.replace.is_empty() || r.replace.len() > 5 {
            return Err(invalid(format!("{p}.replace"), "1-5 targets"));
        }
        for (i, n) in r.replace.iter().enumerate() {
            number(&format!("{p}.replace[{}]", i + 1), n)?;
        }
    }
    let mut seen = HashSet::new();
    for r in &doc.dial_plan {
        if !seen.insert(r.prefix.as_str()) {
            return Err(invalid(
                format!("dial_plan[{}].prefix", r.id),
                format!("prefix {:?} is already used by another rule", r.prefix),
            ));
        }
    }
    Ok(())
}

fn multicast(doc: &Document) -> Check {
    let m = &doc.multicast;
    range("multicast.paging_barge", m.paging_barge, 0, 10)?;
    if m.listen.len() > MAX_LISTEN {
        return Err(invalid(
            "multicast.listen",
            format!("at most {MAX_LISTEN} addresses"),
        ));
    }
    let mut ports = HashSet::new();
    for (i, l) in m.listen.iter().enumerate() {
        let p = format!("multicast.listen[{}]", i + 1);
        let is_multicast = l
            .address
            .parse::<Ipv4Addr>()
            .is_ok_and(|a| a.is_multicast());
        if !is_multicast {
            return Err(invalid(
                format!("{p}.address"),
                format!(
                    "{} is not a multicast address (224.0.0.0-239.255.255.255)",
                    l.address
                ),
            ));
        }
        range(&format!("{p}.port"), l.port, 1, 65535)?;
        if !ports.insert(l.port) {
            return Err(invalid(
                format!("{p}.port"),
                format!("port {} is already used by another address", l.port),
            ));
        }
        text(&format!("{p}.label"), &l.label, MAX_NAME)?;
    }
    Ok(())
}

fn actions(doc: &Document) -> Check {
    let ftp = &doc.actions.ftp;
    if !ftp.url.is_empty() {
        urls::ftp_url(&ftp.url).map_err(|e| invalid("actions.ftp.url", e.to_string()))?;
    }
    text("actions.ftp.user", &ftp.user, MAX_NAME)?;
    text("actions.ftp.password", &ftp.password, 128)?;
    let email = &doc.actions.email;
    if !email.smtp.is_empty() {
        // The port the agent would default to does not matter for the check.
        urls::host_port(&email.smtp, 25)
            .map_err(|e| invalid("actions.email.smtp", e.to_string()))?;
    }
    text("actions.email.user", &email.user, 128)?;
    text("actions.email.password", &email.password, 128)?;
    if !email.from.is_empty() {
        email_address("actions.email.from", &email.from)?;
    }
    if email.to.len() > 10 {
        return Err(invalid("actions.email.to", "at most 10 addresses"));
    }
    for (i, to) in email.to.iter().enumerate() {
        email_address(&format!("actions.email.to[{}]", i + 1), to)?;
    }
    Ok(())
}

fn media(doc: &Document) -> Check {
    let m = &doc.media;
    if m.audio_codecs.is_empty() {
        return Err(invalid("media.audio_codecs", "at least 1 codec"));
    }
    unique("media.audio_codecs", m.audio_codecs.iter(), "codec")?;
    unique("media.video_codecs", m.video_codecs.iter(), "codec")?;
    let [first, last] = m.rtp_ports;
    range("media.rtp_ports[1]", first, 1024, 65535)?;
    range("media.rtp_ports[2]", last, 1024, 65535)?;
    if first % 2 != 0 {
        return Err(invalid(
            "media.rtp_ports[1]",
            format!("{first} must be even (RTP on even ports, RTCP on the next)"),
        ));
    }
    if last < first + 3 {
        return Err(invalid(
            "media.rtp_ports",
            "the range must hold at least 2 RTP/RTCP port pairs",
        ));
    }
    Ok(())
}

/// A web user's name: 1-32 of `A-Z a-z 0-9 . _ -` (HTTP Basic and Digest
/// put it before a colon).
pub fn is_web_user_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// An Argon2id PHC string: `$argon2id$v=19$m=..,t=..,p=..$salt$hash` with
/// base64 salt and hash.
fn is_argon2id_phc(s: &str) -> bool {
    let fields: Vec<&str> = s.split('$').collect();
    let b64 = |f: &str| {
        !f.is_empty()
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    };
    let params = |f: &str| {
        f.split(',').all(|kv| {
            kv.split_once('=').is_some_and(|(k, v)| {
                ["m", "t", "p"].contains(&k)
                    && !v.is_empty()
                    && v.chars().all(|c| c.is_ascii_digit())
            })
        })
    };
    matches!(
        fields.as_slice(),
        ["", "argon2id", "v=19", p, salt, hash] if params(p) && b64(salt) && b64(hash)
    )
}

fn web(doc: &Document) -> Check {
    let web = &doc.web;
    range("web.session_timeout", web.session_timeout, 60, 86400)?;
    if web.users.len() > MAX_WEB_USERS {
        return Err(invalid(
            "web.users",
            format!("at most {MAX_WEB_USERS} users ({} given)", web.users.len()),
        ));
    }
    unique("web.users", web.users.iter().map(|u| &u.name), "user")?;
    for (i, user) in web.users.iter().enumerate() {
        let p = format!("web.users[{i}]");
        if !is_web_user_name(&user.name) {
            return Err(invalid(
                format!("{p}.name"),
                format!("{:?} must be 1-32 of A-Z a-z 0-9 . _ -", user.name),
            ));
        }
        if !is_argon2id_phc(&user.password_hash) {
            return Err(invalid(
                format!("{p}.password_hash"),
                format!(
                    "not an Argon2id hash; set the password of {:?} with `doorctl web passwd`",
                    user.name
                ),
            ));
        }
        let ha1 = &user.digest_ha1;
        if !ha1.is_empty()
            && (ha1.len() != 64 || !ha1.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
        {
            return Err(invalid(
                format!("{p}.digest_ha1"),
                "must be empty or 64 lowercase hex digits (SHA-256)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for ok in [
            "200",
            "sip:201@pbx.example.com",
            "sip:201@10.0.0.1:5062",
            "sips:a.b@[::1]:5061",
            "192.168.1.20",
            "192.168.1.20:5062",
            "*99#",
        ] {
            assert!(is_number(ok), "{ok}");
        }
        for bad in [
            "",
            "2 00",
            "sip:",
            "sip:@host",
            "192.168.1.300",
            "192.168.1.20:0",
            "192.168.1.20:70000",
            "sip:1@host:99999",
            "a\u{7}b",
        ] {
            assert!(!is_number(bad), "{bad}");
        }
    }

    #[test]
    fn host_ports() {
        assert!(is_host_port("pbx.example.com:5060"));
        assert!(is_host_port("pbx"));
        assert!(is_host_port("[::1]:5060"));
        assert!(!is_host_port("pbx:"));
        assert!(!is_host_port("pbx:0"));
        assert!(!is_host_port("-pbx"));
        assert!(!is_host_port("1.2.3"));
    }

    #[test]
    fn inputs() {
        use doorphone_interfaces::config::document::Input;
        let exit = |gpio| Input {
            gpio,
            active_low: true,
            opens: Some("A".into()),
            ..Input::default()
        };
        let call = |gpio, button| Input {
            gpio,
            presses: Some(button),
            ..Input::default()
        };
        let check = |inputs: Vec<Input>| {
            let mut doc = Document::default();
            doc.normalize();
            doc.inputs = inputs;
            validate(&doc).map_err(|e| e.to_string())
        };
        check(vec![exit(23), call(24, 1), call(25, 16)]).unwrap();
        assert_eq!(
            check(vec![exit(23), call(24, 17)]).unwrap_err(),
            "inputs[2].presses: 17 is out of range (1-16)"
        );
        assert_eq!(
            check(vec![call(24, 0)]).unwrap_err(),
            "inputs[1].presses: 0 is out of range (1-16)"
        );
        assert_eq!(
            check(vec![exit(23), exit(17)]).unwrap_err(),
            "inputs[2].gpio: gpio 17 is the output of relay A; a line is an input or an output"
        );
        assert_eq!(
            check(vec![exit(23), call(24, 1), call(23, 2)]).unwrap_err(),
            "inputs[3].gpio: gpio 23 is already inputs[1]"
        );
        let mut both = exit(23);
        both.presses = Some(1);
        let neither = Input {
            gpio: 23,
            ..Input::default()
        };
        for input in [both, neither] {
            assert_eq!(
                check(vec![input]).unwrap_err(),
                "inputs[1]: exactly one of opens (a relay) and presses (a call button)"
            );
        }
        let mut unknown = exit(23);
        unknown.opens = Some("Z".into());
        assert_eq!(
            check(vec![unknown]).unwrap_err(),
            "inputs[1].opens: no relay \"Z\" is configured"
        );
        for (ms, ok) in [(9, false), (10, true), (1000, true), (1001, false)] {
            let mut input = exit(23);
            input.debounce_ms = ms;
            assert_eq!(check(vec![input]).is_ok(), ok, "{ms} ms");
        }
        assert_eq!(
            check((0..17).map(|n| call(30 + n, 1)).collect()).unwrap_err(),
            "inputs: at most 16 inputs"
        );
    }

    #[test]
    fn urls_as_the_agent_uses_them() {
        use doorphone_interfaces::config::document::{Button, NoAnswer};
        let check = |edit: &dyn Fn(&mut Document)| {
            let mut doc = Document {
                buttons: vec![Button {
                    button: 1,
                    numbers: vec!["200".into()],
                    ..Button::default()
                }],
                ..Document::default()
            };
            edit(&mut doc);
            doc.normalize();
            validate(&doc).map_err(|e| e.to_string())
        };
        let http = |url: &'static str| {
            move |doc: &mut Document| {
                doc.buttons[0].no_answer = NoAnswer {
                    actions: vec![ActionKind::Http],
                    http_url: url.into(),
                    ..NoAnswer::default()
                }
            }
        };
        check(&http("http://192.0.2.1:8080/door bell?x=1")).unwrap();
        check(&http("http://[2001:db8::1]/missed")).unwrap();
        assert_eq!(
            check(&http("https://192.0.2.1/missed")).unwrap_err(),
            "buttons[1].no_answer.http_url: \"https://192.0.2.1/missed\" is not a http:// URL \
             with a host (https is not supported)"
        );
        assert_eq!(
            check(&http("http://door:secret@192.0.2.1/")).unwrap_err(),
            "buttons[1].no_answer.http_url: \"http://door:secret@192.0.2.1/\": \
             user names in the URL are not supported"
        );
        assert_eq!(
            check(&http("http://192.0.2.1:0/")).unwrap_err(),
            "buttons[1].no_answer.http_url: \"http://192.0.2.1:0/\": port 0 is not allowed"
        );

        let ftp = |url: &'static str| move |doc: &mut Document| doc.actions.ftp.url = url.into();
        // The login is actions.ftp.user and password; a user in the URL is ignored.
        check(&ftp("ftp://door@[::1]:2121//srv/door%20cam/")).unwrap();
        assert_eq!(
            check(&ftp("ftp://192.0.2.1/a%0D%0ADELE%20x/")).unwrap_err(),
            "actions.ftp.url: \"ftp://192.0.2.1/a%0D%0ADELE%20x/\": directory \
             \"a%0D%0ADELE%20x\" holds a control character when decoded"
        );
        assert_eq!(
            check(&ftp("ftp://10.1/")).unwrap_err(),
            "actions.ftp.url: \"ftp://10.1/\": \"10.1\" is not a host name or an IP address"
        );

        let smtp =
            |server: &'static str| move |doc: &mut Document| doc.actions.email.smtp = server.into();
        check(&smtp("[2001:db8::25]:465")).unwrap();
        check(&smtp("mail.example.com")).unwrap();
        assert_eq!(
            check(&smtp("mail.example.com:0")).unwrap_err(),
            "actions.email.smtp: \"mail.example.com:0\" is not host or host:port"
        );
        assert_eq!(
            check(&smtp("smtp://mail.example.com")).unwrap_err(),
            "actions.email.smtp: \"smtp://mail.example.com\" is not host or host:port"
        );
    }

    #[test]
    fn defaults_are_valid() {
        let mut doc = Document::default();
        doc.normalize();
        validate(&doc).unwrap();
    }

    #[test]
    fn web_users_need_a_name_an_argon2id_hash_and_a_sha256_ha1() {
        use doorphone_interfaces::config::document::{WebRole, WebUser};
        let good = WebUser {
            name: "installer".into(),
            role: WebRole::Admin,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
                .into(),
            digest_ha1: "0f".repeat(32),
        };
        let check = |users: Vec<WebUser>, timeout: u32| {
            let mut doc = Document::default();
            doc.web.users = users;
            doc.web.session_timeout = timeout;
            validate(&doc).map_err(|e| e.to_string())
        };
        check(vec![good.clone()], 900).unwrap();
        check(
            vec![WebUser {
                digest_ha1: String::new(),
                ..good.clone()
            }],
            60,
        )
        .unwrap();
        let err = |users, timeout| check(users, timeout).unwrap_err();
        assert_eq!(
            err(vec![good.clone()], 59),
            "web.session_timeout: 59 is out of range (60-86400)"
        );
        assert!(err(vec![good.clone()], 86401).starts_with("web.session_timeout"));
        assert!(err(vec![good.clone(); 2], 900).contains("duplicate user"));
        let many = (0..9)
            .map(|i| WebUser {
                name: format!("u{i}"),
                ..good.clone()
            })
            .collect();
        assert_eq!(err(many, 900), "web.users: at most 8 users (9 given)");
        for name in ["", "a:b", "a b", &"x".repeat(33)] {
            let e = err(
                vec![WebUser {
                    name: name.into(),
                    ..good.clone()
                }],
                900,
            );
            assert!(e.starts_with("web.users[0].name"), "{name:?}: {e}");
        }
        for hash in [
            "",
            "********",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            "$argon2id$v=19$m=19456,t=2,p=1$$aGFzaA",
            "$argon2id$v=19$x=1$c2FsdA$aGFzaA",
            "plain-password",
        ] {
            let e = err(
                vec![WebUser {
                    password_hash: hash.into(),
                    ..good.clone()
                }],
                900,
            );
            assert!(
                e.starts_with("web.users[0].password_hash: not an Argon2id hash"),
                "{e}"
            );
        }
        for ha1 in ["0F".repeat(32), "0f".repeat(16), "zz".repeat(32)] {
            let e = err(
                vec![WebUser {
                    digest_ha1: ha1,
                    ..good.clone()
                }],
                900,
            );
            assert!(e.starts_with("web.users[0].digest_ha1"), "{e}");
        }
    }
}
