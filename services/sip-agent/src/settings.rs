//! The configuration as the agent uses it: the document and what is derived
//! from it once per change, so no call waits on a look-up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use doorphone_interfaces::config::Document;
use doorphone_interfaces::config::document::DialPlan;

use crate::identity::{Trust, Whitelist};

pub struct Settings {
    /// The `Config1` revision `doc` is at (or after).
    pub revision: u64,
    pub doc: Document,
    pub plan: DialPlan,
    /// Where each account's server is.
    pub servers: HashMap<u32, SocketAddr>,
    /// Who may speak for each account, as the document and the name look-ups
    /// said when it was read.
    pub trust: Trust,
    pub whitelist: Whitelist,
}

/// `host` or `host:port` with SIP's default port.
fn with_port(server: &str) -> String {
    if server.starts_with('[') {
        if server.contains("]:") {
            server.to_owned()
        } else {
            format!("{server}:5060")
        }
    } else if server.contains(':') {
        server.to_owned()
    } else {
        format!("{server}:5060")
    }
}

/// The addresses `server` resolves to now.
pub async fn resolve(server: &str) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host(with_port(server)).await?.collect())
}

impl Settings {
    pub async fn new(doc: Document, revision: u64) -> Settings {
        let mut servers = HashMap::new();
        let mut ips: HashMap<u32, Vec<IpAddr>> = HashMap::new();
        for a in doc
            .accounts
            .iter()
            .filter(|a| a.enabled && !a.server.is_empty())
        {
            match resolve(&a.server).await {
                Ok(addrs) => {
                    if let Some(first) = addrs.first() {
                        servers.insert(a.id, *first);
                    }
                    ips.insert(a.id, addrs.iter().map(SocketAddr::ip).collect());
                }
                Err(e) => tracing::warn!(account = a.id, "server {}: {e}", a.server),
            }
        }
        Settings {
            revision,
            plan: DialPlan::new(&doc.dial_plan),
            trust: Trust::new(&doc, &ips),
            whitelist: Whitelist::new(&doc),
            doc,
            servers,
        }
    }

    /// Whether an enabled account talks to its server over TLS.
    pub fn uses_tls(&self) -> bool {
        use doorphone_interfaces::config::document::Transport;
        self.doc
            .accounts
            .iter()
            .any(|a| a.enabled && a.transport == Transport::Tls)
    }

    /// Each configured account's media encryption, with a warning where
    /// its SDES keys would travel in clear.
    pub fn media_security(&self) -> Vec<doorphone_interfaces::sip::AccountMedia> {
        use doorphone_interfaces::config::document::{MediaEncryption, Transport};
        self.doc
            .accounts
            .iter()
            .map(|a| doorphone_interfaces::sip::AccountMedia {
                id: a.id,
                encryption: a.media_encryption.name().to_owned(),
                warning: if a.media_encryption != MediaEncryption::Off
                    && a.transport != Transport::Tls
                {
                    format!(
                        "SRTP keys (SDES) travel in clear over {}: use transport tls",
                        match a.transport {
                            Transport::Udp => "udp",
                            Transport::Tcp => "tcp",
                            Transport::Tls => "tls",
                        }
                    )
                } else {
                    String::new()
                },
            })
            .collect()
    }

    /// The user agent string of the first account that sets one.
    pub fn user_agent(&self) -> &str {
        self.doc
            .accounts
            .iter()
            .map(|a| a.user_agent.as_str())
            .find(|u| !u.is_empty())
            .unwrap_or("")
    }
}
