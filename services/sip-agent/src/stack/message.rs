//! A request that arrived outside the agent's own transactions, and what the
//! agent reads of it. Everything it hands out is text a D-Bus string can hold
//! (no NUL, valid UTF-8): the network's bytes are checked here, once.

use std::net::SocketAddr;
use std::sync::Arc;

use rsipstack::sip::prelude::{HasHeaders, HeadersExt};
use rsipstack::sip::{Header, Method, SipMessage, StatusCode};
use rsipstack::transaction::transaction::Transaction;

use super::UserAgent;
use crate::identity::Claims;

/// Largest body the agent reads (an SDP with audio and video is ~1 KiB).
const MAX_BODY: usize = 16 * 1024;

/// The SIP methods the agent tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Info,
    Update,
    /// Any other method the stack knows (REGISTER, MESSAGE, SUBSCRIBE, ...).
    Other,
}

/// A request that arrived outside the agent's own transactions.
pub struct Incoming {
    pub(super) tx: Transaction,
    pub(super) user_agent: Arc<UserAgent>,
}

/// `Some(text)` when `bytes` are text a bus string can carry.
pub fn bus_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.contains('\0'))
}

impl Incoming {
    pub fn kind(&self) -> Kind {
        match self.tx.original.method {
            Method::Invite => Kind::Invite,
            Method::Ack => Kind::Ack,
            Method::Bye => Kind::Bye,
            Method::Cancel => Kind::Cancel,
            Method::Options => Kind::Options,
            Method::Info => Kind::Info,
            Method::Update => Kind::Update,
            _ => Kind::Other,
        }
    }

    pub fn method(&self) -> String {
        self.tx.original.method.to_string()
    }

    /// The request's To tag: present on in-dialog requests.
    pub fn in_dialog(&self) -> bool {
        self.tx
            .original
            .to_header()
            .ok()
            .and_then(|to| to.tag().ok().flatten())
            .is_some()
    }

    pub fn call_id(&self) -> String {
        self.tx
            .original
            .call_id_header()
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    /// The address the request came from: the one thing about it the network
    /// proves.
    pub fn source(&self) -> Option<SocketAddr> {
        let conn = self.tx.connection.as_ref()?;
        conn.get_remote_addr()?.get_socketaddr().ok()
    }

    /// Over TCP or TLS (a connection proves the address; a datagram's port
    /// is the sender's to choose).
    pub fn reliable(&self) -> bool {
        self.tx.connection.as_ref().is_some_and(|c| c.is_reliable())
    }

    /// What the request says of its caller, with the address it came from.
    pub fn claims(&self) -> Option<Claims> {
        let req = &self.tx.original;
        let from = req.from_header().ok()?.uri().ok()?;
        let to_user = req
            .to_header()
            .ok()
            .and_then(|t| t.uri().ok())
            .and_then(|u| u.user().map(str::to_owned))
            .unwrap_or_default();
        let asserted = req.headers().iter().find_map(|h| match h {
            Header::PAssertedIdentity(value) => Some(value.value().to_owned()),
            _ => None,
        });
        let claims = Claims {
            source: self.source()?,
            from_uri: strip_uri(&from.to_string()),
            from_user: from.user().unwrap_or_default().to_owned(),
            request_user: req.uri.user().unwrap_or_default().to_owned(),
            to_user,
            asserted: asserted.and_then(|a| asserted_uri(&a)),
        };
        // Everything the agent shows or signals must be bus text.
        let text = [
            &claims.from_uri,
            &claims.from_user,
            &claims.request_user,
            &claims.to_user,
        ];
        text.iter()
            .all(|s| bus_text(s.as_bytes()).is_some())
            .then_some(claims)
    }

    /// The body as text, `Err` when it is no text a bus string holds.
    pub fn body_text(&self) -> Result<&str, &'static str> {
        bus_text(&self.tx.original.body).ok_or("the body is no UTF-8 text without NUL")
    }

    /// RFC 3261 §8.2 checks for what the UDP guard cannot see (TCP and TLS
    /// requests pass the stack's parser only): a request that fails one is
    /// answered 400.
    pub fn check(&self) -> Result<(), &'static str> {
        let req = &self.tx.original;
        if req.version != rsipstack::sip::Version::V2 {
            return Err("a SIP version other than 2.0");
        }
        let declared = req
            .headers()
            .iter()
            .find_map(|h| match h {
                Header::ContentLength(l) => Some(l.value().trim().parse::<usize>()),
                _ => None,
            })
            .transpose()
            .map_err(|_| "Content-Length is not a number")?;
        if let Some(len) = declared
            && len != req.body.len()
        {
            return Err("Content-Length does not match the body");
        }
        if req.body.len() > MAX_BODY {
            return Err("body too large");
        }
        let cseq = req.cseq_header().map_err(|_| "no CSeq")?;
        match cseq.method() {
            Ok(m) if m == req.method => {}
            _ => return Err("CSeq method does not match the request"),
        }
        req.call_id_header().map_err(|_| "no Call-ID")?;
        req.from_header()
            .ok()
            .and_then(|f| f.tag().ok().flatten())
            .ok_or("From has no tag")?;
        req.to_header().map_err(|_| "no To")?;
        req.via_header().map_err(|_| "no Via")?;
        if req.method == Method::Invite && req.contact_header().is_err() {
            return Err("INVITE without Contact");
        }
        Ok(())
    }

    /// Answers with a final status and no dialog, statelessly (RFC 3261
    /// §8.2.7): no transaction is kept for it, so a flood of refused requests
    /// holds no memory; a retransmission is refused again.
    pub async fn refuse(mut self, code: u16) {
        if self.tx.original.method == Method::Ack {
            return;
        }
        let Some(connection) = self.tx.connection.clone() else {
            return;
        };
        let req = &mut self.tx.original;
        if let Ok(to) = req.to_header()
            && to.tag().ok().flatten().is_none()
        {
            let tagged = to.clone().with_tag(rsipstack::transaction::make_tag());
            req.headers.unique_push(tagged.into());
        }
        let mut resp =
            self.tx
                .endpoint_inner
                .make_response(&self.tx.original, StatusCode::from(code), None);
        resp.version = rsipstack::sip::Version::V2;
        let msg = self.user_agent.apply(SipMessage::Response(resp));
        if let Err(e) = connection.send(msg, None).await {
            tracing::debug!("reply {code}: {e}");
        }
    }

    /// Answers with a final status through the transaction (retransmissions
    /// of the request get the same answer).
    pub async fn reply(mut self, code: u16) {
        if self.tx.original.method == Method::Ack {
            return;
        }
        if let Err(e) = self.tx.reply(StatusCode::from(code)).await {
            tracing::debug!("reply {code}: {e}");
        }
    }
}

/// `sip:user@host:port` from a URI with parameters or angle brackets.
pub fn strip_uri(uri: &str) -> String {
    let uri = uri.trim().trim_start_matches('<');
    let end = uri.find([';', '>', '?']).unwrap_or(uri.len());
    uri[..end].to_owned()
}

/// The first SIP or tel URI of a `P-Asserted-Identity` value
/// (`"Anna" <sip:200@pbx>, <tel:+41...>`).
fn asserted_uri(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let part = part.trim();
        let uri = match (part.find('<'), part.find('>')) {
            (Some(a), Some(b)) if a < b => &part[a + 1..b],
            _ => part,
        };
        let lower = uri.to_ascii_lowercase();
        (lower.starts_with("sip:") || lower.starts_with("sips:") || lower.starts_with("tel:"))
            .then(|| strip_uri(uri))
            .filter(|u| bus_text(u.as_bytes()).is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asserted_identities_give_their_first_uri() {
        assert_eq!(
            asserted_uri("\"Anna\" <sip:200@pbx.example.com;user=phone>"),
            Some("sip:200@pbx.example.com".into())
        );
        assert_eq!(
            asserted_uri("<tel:+41441234567>, <sip:200@pbx>"),
            Some("tel:+41441234567".into())
        );
        assert_eq!(asserted_uri("sip:300@x"), Some("sip:300@x".into()));
        assert_eq!(asserted_uri("garbage"), None);
    }

    #[test]
    fn bus_text_refuses_nul_and_invalid_utf8() {
        assert_eq!(bus_text(b"v=0\r\n"), Some("v=0\r\n"));
        assert_eq!(bus_text(b"s=\0\r\n"), None);
        assert_eq!(bus_text(&[0xff, 0x41]), None);
    }
}
