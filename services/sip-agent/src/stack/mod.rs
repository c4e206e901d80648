//! The SIP stack (rsipstack) behind the agent's own types. Everything that names
//! an rsipstack type lives here, so a new release of the stack changes this folder
//! and nothing else.

mod dialog;
pub mod guard;
mod message;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use dialog::{CallEvent, CallEvents, ClientCall, Dialog, Ended, Reply, ServerCall};
use doorphone_interfaces::config::document::Transport;
pub use message::{Incoming, Kind, bus_text, strip_uri};
use rsipstack::dialog::authenticate::Credential as StackCredential;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::registration::Registration;
use rsipstack::sip::{Header, Method, SipMessage, StatusCode};
use rsipstack::transaction::endpoint::{EndpointOption, MessageInspector};
use rsipstack::transaction::{Endpoint, EndpointBuilder, TransactionReceiver};
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use tokio_util::sync::CancellationToken;

/// A SIP error, as text: the agent logs it and moves on.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<rsipstack::Error> for Error {
    fn from(e: rsipstack::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<rsipstack::sip::Error> for Error {
    fn from(e: rsipstack::sip::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Digest credentials of an account.
#[derive(Debug, Clone)]
pub struct Credential {
    pub user: String,
    pub auth_user: String,
    pub password: String,
}

impl Credential {
    fn stack(&self) -> StackCredential {
        StackCredential {
            username: self.user.clone(),
            password: self.password.clone(),
            realm: None,
            auth_username: (!self.auth_user.is_empty() && self.auth_user != self.user)
                .then(|| self.auth_user.clone()),
        }
    }
}

/// Puts the configured `User-Agent` on what leaves, or none at all: a door phone
/// does not tell scanners which software it runs.
pub struct UserAgent(RwLock<String>);

impl UserAgent {
    fn apply(&self, mut msg: SipMessage) -> SipMessage {
        let ua = self.0.read().expect("user agent lock").clone();
        let headers = match &mut msg {
            SipMessage::Request(r) => &mut r.headers,
            SipMessage::Response(r) => &mut r.headers,
        };
        headers.retain(|h| !matches!(h, Header::UserAgent(_) | Header::Server(_)));
        if !ua.is_empty() {
            let header = match msg {
                SipMessage::Request(_) => Header::UserAgent(ua.into()),
                SipMessage::Response(_) => Header::Server(ua.into()),
            };
            match &mut msg {
                SipMessage::Request(r) => r.headers.push(header),
                SipMessage::Response(r) => r.headers.push(header),
            }
        }
        msg
    }
}

struct Inspector(Arc<UserAgent>);

impl MessageInspector for Inspector {
    fn before_send(&self, msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        self.0.apply(msg)
    }

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        msg
    }
}

/// The agent's SIP endpoint: UDP (behind the [`guard`]) and TCP on one port.
pub struct Stack {
    endpoint: Endpoint,
    dialogs: Arc<DialogLayer>,
    cancel: CancellationToken,
    local: SocketAddr,
    contact_ip: IpAddr,
    user_agent: Arc<UserAgent>,
    /// Where the PEM certificates TLS servers are checked against come from;
    /// read only while an account uses TLS.
    tls_ca: std::path::PathBuf,
    tls_trusted: std::sync::atomic::AtomicBool,
}

/// Requests that arrive outside any transaction the agent started.
pub struct Requests {
    rx: TransactionReceiver,
    user_agent: Arc<UserAgent>,
}

impl Requests {
    pub async fn next(&mut self) -> Option<Incoming> {
        let tx = self.rx.recv().await?;
        Some(Incoming {
            tx,
            user_agent: self.user_agent.clone(),
        })
    }
}

impl Stack {
    /// Binds UDP and TCP on `addr`; `contact_ip` is the address put in Contact
    /// headers (the address peers reach this door phone at).
    /// `tls_ca` names the PEM certificates TLS servers are checked against
    /// ([`Stack::trust_tls`] reads them).
    pub async fn bind(
        addr: SocketAddr,
        contact_ip: IpAddr,
        tls_ca: std::path::PathBuf,
    ) -> Result<(Stack, Requests)> {
        let cancel = CancellationToken::new();
        let transports = TransportLayer::new(cancel.child_token());
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|e| Error(format!("cannot bind SIP UDP {addr}: {e}")))?;
        let udp = UdpConnection::from_socket(
            Arc::new(guard::GuardedSocket::new(socket)),
            None,
            Some(cancel.child_token()),
        )
        .await
        .map_err(|e| Error(format!("SIP UDP {addr}: {e}")))?;
        let local = udp
            .get_addr()
            .get_socketaddr()
            .map_err(|e| Error(format!("SIP UDP address: {e}")))?;
        transports.add_transport(udp.into());
        let tcp_addr = SocketAddr::new(addr.ip(), local.port());
        let tcp = TcpListenerConnection::new(tcp_addr, None)
            .await
            .map_err(|e| Error(format!("cannot bind SIP TCP {tcp_addr}: {e}")))?;
        transports.add_transport(tcp.into());

        let user_agent = Arc::new(UserAgent(RwLock::new(String::new())));
        let option = EndpointOption {
            callid_suffix: Some(format!("{contact_ip}")),
            // A CANCEL that no final answer follows ends the call after 32 s,
            // not after the default 180 s (RFC 3261 Timer C is a minimum).
            timerc: Duration::from_secs(32),
            ..EndpointOption::default()
        };
        let endpoint = EndpointBuilder::new()
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transports)
            .with_user_agent("")
            .with_inspector(Box::new(Inspector(user_agent.clone())))
            .with_option(option)
            .build();
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| Error(format!("SIP endpoint: {e}")))?;
        let inner = endpoint.inner.clone();
        let serve_cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = inner.serve() => {}
                _ = serve_cancel.cancelled() => {}
            }
        });
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        Ok((
            Stack {
                endpoint,
                dialogs,
                cancel,
                local,
                contact_ip,
                user_agent: user_agent.clone(),
                tls_ca,
                tls_trusted: Default::default(),
            },
            Requests {
                rx: incoming,
                user_agent,
            },
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn contact_ip(&self) -> IpAddr {
        self.contact_ip
    }

    /// Whether TLS connections are to be made (an account uses TLS): the
    /// certificates TLS servers are checked against are read then, and
    /// dropped when no account needs them (the system's bundle is some
    /// 200 kB, kept as PEM by the stack). An unreadable bundle is logged: TLS
    /// servers then cannot be checked, and TLS accounts fail.
    pub fn trust_tls(&self, wanted: bool) {
        use std::sync::atomic::Ordering;
        if self.tls_trusted.swap(wanted, Ordering::SeqCst) == wanted {
            return;
        }
        let transports = &self.endpoint.inner.transport_layer;
        if !wanted {
            transports.clear_tls_config();
            return;
        }
        let ca_certs = match std::fs::read(&self.tls_ca) {
            Ok(pem) => Some(pem),
            Err(e) => {
                tracing::warn!(
                    "{}: {e}: TLS servers cannot be checked, TLS accounts will fail",
                    self.tls_ca.display()
                );
                None
            }
        };
        transports.set_tls_config(rsipstack::transport::tls::TlsConfig {
            ca_certs,
            ..Default::default()
        });
    }

    /// What `User-Agent`/`Server` say; empty sends neither.
    pub fn set_user_agent(&self, ua: &str) {
        *self.user_agent.0.write().expect("user agent lock") = ua.to_owned();
    }

    /// Our Contact for `user` (empty for none).
    pub fn contact(&self, user: &str) -> String {
        let at = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        format!(
            "sip:{at}{}",
            SocketAddr::new(self.contact_ip, self.local.port())
        )
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Hands an in-dialog request to its dialog. Returns false (after
    /// answering 481) when no dialog matches.
    pub fn dispatch(&self, mut incoming: Incoming) -> bool {
        match self.dialogs.match_dialog(&incoming.tx) {
            Some(rsipstack::dialog::dialog::Dialog::Invite(mut dialog)) => {
                tokio::spawn(async move {
                    if let Err(e) = dialog.handle(&mut incoming.tx).await {
                        tracing::debug!("in-dialog request: {e}");
                    }
                });
                true
            }
            _ => {
                if incoming.tx.original.method != Method::Ack {
                    tokio::spawn(async move {
                        incoming
                            .tx
                            .reply(StatusCode::CallTransactionDoesNotExist)
                            .await
                            .ok();
                    });
                }
                false
            }
        }
    }

    /// Takes an incoming INVITE the policy lets ring into a dialog: its first
    /// response is 180 Ringing, and from then on the call's events arrive on
    /// the returned receiver. No 100 Trying: the 180 goes out at once, and RFC
    /// 3261 (§17.2.1) asks for a 100 only when the call would not answer
    /// within 200 ms.
    pub fn take_invite(&self, mut incoming: Incoming) -> Result<(ServerCall, CallEvents)> {
        let (state_tx, state_rx) = self.dialogs.new_dialog_state_channel();
        let contact = rsipstack::sip::Uri::try_from(self.contact("").as_str())?;
        let dialog = self.dialogs.get_or_create_server_invite(
            &incoming.tx,
            state_tx,
            None,
            Some(contact),
        )?;
        // Queued before the transaction is handled, the 180 is its first
        // response (once handled, the stack would answer 100 first).
        dialog.ringing(None, None)?;
        let mut handler = dialog.clone();
        tokio::spawn(async move {
            // The call's task, spawned next, asks media for the answer first:
            // the 180 then goes out while media works on it.
            tokio::task::yield_now().await;
            if let Err(e) = handler.handle(&mut incoming.tx).await {
                tracing::debug!("incoming INVITE transaction: {e}");
            }
        });
        let events = CallEvents::spawn(self.dialogs.clone(), dialog.clone(), state_rx, None);
        Ok((ServerCall { dialog }, events))
    }

    /// Sends an INVITE. `destination` overrides where it goes (the account's
    /// server for a user on that account).
    pub fn invite(&self, spec: Invite) -> Result<(ClientCall, CallEvents)> {
        let (state_tx, state_rx) = self.dialogs.new_dialog_state_channel();
        let contact_user = spec
            .credential
            .as_ref()
            .map(|c| c.user.as_str())
            .unwrap_or("");
        let option = InviteOption {
            caller_display_name: (!spec.display_name.is_empty()).then(|| spec.display_name.clone()),
            caller: rsipstack::sip::Uri::try_from(spec.from.as_str())?,
            callee: rsipstack::sip::Uri::try_from(spec.to.as_str())?,
            destination: spec.destination.map(|addr| SipAddr {
                r#type: Some(transport(spec.transport)),
                addr: addr.into(),
            }),
            content_type: spec.offer.as_ref().map(|_| "application/sdp".to_owned()),
            offer: spec.offer.map(String::into_bytes),
            contact: rsipstack::sip::Uri::try_from(self.contact(contact_user).as_str())?,
            credential: spec.credential.as_ref().map(Credential::stack),
            ..InviteOption::default()
        };
        let (dialog, outcome) = self.dialogs.do_invite_async(option, state_tx)?;
        let events = CallEvents::spawn(
            self.dialogs.clone(),
            dialog.clone(),
            state_rx,
            Some(outcome),
        );
        Ok((ClientCall { dialog }, events))
    }

    /// A registration of `aor` (`sip:user@server`) at `server`.
    pub fn registration(&self, credential: &Credential) -> Registrar {
        let mut reg = Registration::new(self.endpoint.inner.clone(), Some(credential.stack()));
        reg.contact = rsipstack::sip::Uri::try_from(self.contact(&credential.user).as_str())
            .ok()
            .map(|uri| rsipstack::sip::typed::Contact {
                display_name: None,
                uri,
                params: vec![],
            });
        Registrar { reg }
    }
}

/// An INVITE to send.
pub struct Invite {
    pub from: String,
    pub display_name: String,
    pub to: String,
    pub destination: Option<SocketAddr>,
    pub transport: Transport,
    pub credential: Option<Credential>,
    pub offer: Option<String>,
}

fn transport(t: Transport) -> rsipstack::sip::Transport {
    match t {
        Transport::Udp => rsipstack::sip::Transport::Udp,
        Transport::Tcp => rsipstack::sip::Transport::Tcp,
        Transport::Tls => rsipstack::sip::Transport::Tls,
    }
}

/// One account's registration.
pub struct Registrar {
    reg: Registration,
}

/// The outcome of a REGISTER.
pub struct Registered {
    pub code: u16,
    pub reason: String,
    /// The lifetime the server granted, when it accepted.
    pub expires: Option<u32>,
}

impl Registrar {
    /// Sends REGISTER to `server` (`sip:host:port`); `expires` 0 unregisters.
    pub async fn register(&mut self, server: &str, expires: u32) -> Result<Registered> {
        let uri = rsipstack::sip::Uri::try_from(server)?;
        let resp = self.reg.register(uri, Some(expires)).await?;
        let code = u16::from(resp.status_code.clone());
        let expires = (resp.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful)
            .then(|| self.reg.expires());
        Ok(Registered {
            code,
            reason: resp.status_code.to_string(),
            expires,
        })
    }
}
