//! The SIP stack (rsipstack) behind the agent's own types. Everything that names
//! an rsipstack type lives here, so a new release of the stack changes this file
//! and nothing else.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use doorphone_interfaces::config::document::Transport;
use rsipstack::dialog::DialogId;
use rsipstack::dialog::authenticate::Credential as StackCredential;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason, TransactionHandle};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::registration::Registration;
use rsipstack::sip::prelude::{HasHeaders, HeadersExt};
use rsipstack::sip::{Header, Method, SipMessage, StatusCode};
use rsipstack::transaction::endpoint::{EndpointOption, MessageInspector};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::{Endpoint, EndpointBuilder, TransactionReceiver};
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Largest body the agent reads (an SDP with audio and video is ~1 KiB).
const MAX_BODY: usize = 16 * 1024;

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
struct UserAgent(Arc<RwLock<String>>);

impl MessageInspector for UserAgent {
    fn before_send(&self, mut msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
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

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        msg
    }
}

/// The agent's SIP endpoint: UDP and TCP on one port.
pub struct Stack {
    endpoint: Endpoint,
    dialogs: Arc<DialogLayer>,
    cancel: CancellationToken,
    local: SocketAddr,
    contact_ip: IpAddr,
    user_agent: Arc<RwLock<String>>,
}

/// Requests that arrive outside any transaction the agent started.
pub struct Requests(TransactionReceiver);

impl Requests {
    pub async fn next(&mut self) -> Option<Incoming> {
        self.0.recv().await.map(|tx| Incoming { tx })
    }
}

impl Stack {
    /// Binds UDP and TCP on `addr`; `contact_ip` is the address put in Contact
    /// headers (the address peers reach this door phone at).
    /// `tls_ca` holds the PEM certificates TLS servers are checked against.
    pub async fn bind(
        addr: SocketAddr,
        contact_ip: IpAddr,
        tls_ca: Option<Vec<u8>>,
    ) -> Result<(Stack, Requests)> {
        let cancel = CancellationToken::new();
        let transports = TransportLayer::new(cancel.child_token());
        transports.set_tls_config(rsipstack::transport::tls::TlsConfig {
            ca_certs: tls_ca,
            ..Default::default()
        });
        let udp = UdpConnection::create_connection(addr, None, Some(cancel.child_token()))
            .await
            .map_err(|e| Error(format!("cannot bind SIP UDP {addr}: {e}")))?;
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

        let user_agent = Arc::new(RwLock::new(String::new()));
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
            .with_inspector(Box::new(UserAgent(user_agent.clone())))
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
                user_agent,
            },
            Requests(incoming),
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn contact_ip(&self) -> IpAddr {
        self.contact_ip
    }

    /// What `User-Agent`/`Server` say; empty sends neither.
    pub fn set_user_agent(&self, ua: &str) {
        *self.user_agent.write().expect("user agent lock") = ua.to_owned();
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

    /// Takes an incoming INVITE into a dialog: answers 100 Trying and from then
    /// on the call's events arrive on the returned receiver.
    pub fn take_invite(&self, mut incoming: Incoming) -> Result<(ServerCall, CallEvents)> {
        let (state_tx, state_rx) = self.dialogs.new_dialog_state_channel();
        let contact = rsipstack::sip::Uri::try_from(self.contact("").as_str())?;
        let dialog = self.dialogs.get_or_create_server_invite(
            &incoming.tx,
            state_tx,
            None,
            Some(contact),
        )?;
        let mut handler = dialog.clone();
        tokio::spawn(async move {
            if let Err(e) = handler.handle(&mut incoming.tx).await {
                tracing::debug!("incoming INVITE transaction: {e}");
            }
        });
        let events = CallEvents::spawn(self.dialogs.clone(), dialog.id(), state_rx, None);
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
            destination: match spec.destination {
                Some(addr) => Some(SipAddr {
                    r#type: Some(transport(spec.transport)),
                    addr: addr.into(),
                }),
                None => None,
            },
            content_type: spec.offer.as_ref().map(|_| "application/sdp".to_owned()),
            offer: spec.offer.map(String::into_bytes),
            contact: rsipstack::sip::Uri::try_from(self.contact(contact_user).as_str())?,
            credential: spec.credential.as_ref().map(Credential::stack),
            ..InviteOption::default()
        };
        let (dialog, outcome) = self.dialogs.do_invite_async(option, state_tx)?;
        let events = CallEvents::spawn(self.dialogs.clone(), dialog.id(), state_rx, Some(outcome));
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

/// A request that arrived outside the agent's own transactions.
pub struct Incoming {
    tx: Transaction,
}

impl Incoming {
    pub fn is_invite(&self) -> bool {
        self.tx.original.method == Method::Invite
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

    /// The address the request came from.
    pub fn source(&self) -> Option<SocketAddr> {
        let conn = self.tx.connection.as_ref()?;
        conn.get_remote_addr()?.get_socketaddr().ok()
    }

    /// The caller's URI (From), without display name and parameters.
    pub fn from_uri(&self) -> String {
        self.tx
            .original
            .from_header()
            .ok()
            .and_then(|f| f.uri().ok())
            .map(|u| strip_uri(&u.to_string()))
            .unwrap_or_default()
    }

    pub fn from_user(&self) -> String {
        self.tx
            .original
            .from_header()
            .ok()
            .and_then(|f| f.uri().ok())
            .and_then(|u| u.user().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The user part of the Request-URI: whom the caller asks for.
    pub fn request_user(&self) -> String {
        self.tx.original.uri.user().unwrap_or_default().to_owned()
    }

    pub fn body(&self) -> &[u8] {
        &self.tx.original.body
    }

    /// RFC 3261 §8.2 checks the parser leaves to the agent: a request that fails
    /// one is answered 400 (or dropped when it cannot be answered).
    pub fn check(&self) -> std::result::Result<(), &'static str> {
        let req = &self.tx.original;
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

    /// Answers with a final status and no dialog.
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
fn strip_uri(uri: &str) -> String {
    let uri = uri.trim().trim_start_matches('<');
    let end = uri.find([';', '>', '?']).unwrap_or(uri.len());
    uri[..end].to_owned()
}

/// An incoming call's dialog.
#[derive(Clone)]
pub struct ServerCall {
    dialog: InviteDialog,
}

impl ServerCall {
    /// 180 Ringing.
    pub fn ringing(&self) -> Result<()> {
        Ok(self.dialog.ringing(None, None)?)
    }

    /// 200 OK with our SDP answer.
    pub fn answer(&self, sdp: &str) -> Result<()> {
        let headers = vec![Header::ContentType("application/sdp".into())];
        Ok(self
            .dialog
            .accept(Some(headers), Some(sdp.as_bytes().to_vec()))?)
    }

    /// A final refusal while the call rings.
    pub fn reject(&self, code: u16) -> Result<()> {
        Ok(self.dialog.reject(Some(StatusCode::from(code)), None)?)
    }

    pub async fn bye(&self) -> Result<()> {
        Ok(self.dialog.bye().await?)
    }

    /// The dialog has ended (BYE, CANCEL or a final refusal), even if the
    /// agent has not handled that event yet.
    pub fn ended(&self) -> bool {
        matches!(self.dialog.state(), DialogState::Terminated(..))
    }

    /// A re-INVITE with `sdp`; the peer's answer, if it gave one.
    pub async fn reinvite(&self, sdp: &str) -> Result<Option<String>> {
        reinvite(&self.dialog, sdp).await
    }
}

/// An outgoing call's dialog.
#[derive(Clone)]
pub struct ClientCall {
    dialog: InviteDialog,
}

impl ClientCall {
    /// CANCEL while it rings, BYE once answered.
    pub async fn hangup(&self) -> Result<()> {
        Ok(self.dialog.hangup().await?)
    }

    pub async fn reinvite(&self, sdp: &str) -> Result<Option<String>> {
        reinvite(&self.dialog, sdp).await
    }

    /// See [`ServerCall::ended`].
    pub fn ended(&self) -> bool {
        matches!(self.dialog.state(), DialogState::Terminated(..))
    }
}

async fn reinvite(dialog: &InviteDialog, sdp: &str) -> Result<Option<String>> {
    let headers = vec![Header::ContentType("application/sdp".into())];
    let resp = dialog
        .reinvite(Some(headers), Some(sdp.as_bytes().to_vec()))
        .await?;
    match resp {
        Some(r) if r.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful => {
            Ok((!r.body.is_empty()).then(|| String::from_utf8_lossy(&r.body).into_owned()))
        }
        Some(r) => Err(Error(format!("re-INVITE refused: {}", r.status_code))),
        None => Err(Error("re-INVITE outside an established call".into())),
    }
}

/// How a dialog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The peer sent BYE.
    RemoteBye,
    /// The caller cancelled before the answer.
    RemoteCancel,
    /// A final answer other than 200 (the code).
    Refused(u16),
    /// No answer from the peer (transaction timeout, no ACK).
    Timeout,
    /// Ended here (our BYE, CANCEL or refusal).
    Local,
    /// The transaction failed (no route, transport error).
    Failed,
}

/// What happens in a dialog, as the agent needs it.
#[derive(Debug)]
pub enum CallEvent {
    /// A provisional answer to our INVITE (180, 183).
    Progress(u16),
    /// 200 OK to our INVITE, with the peer's SDP.
    Answered(String),
    /// The ACK to our 200 OK arrived.
    Confirmed,
    /// The peer sent a re-INVITE; answer it through the reply.
    Reoffer(String, Reply),
    /// An INFO request (DTMF relay); it is answered 200 already.
    Info(String, String),
    Ended(Ended),
}

/// The answer to a request inside a dialog.
#[derive(Debug)]
pub struct Reply(TransactionHandle);

impl Reply {
    pub async fn ok(self, sdp: Option<&str>) {
        let headers = sdp.map(|_| vec![Header::ContentType("application/sdp".into())]);
        self.0
            .respond(StatusCode::OK, headers, sdp.map(|s| s.as_bytes().to_vec()))
            .await
            .ok();
    }

    pub async fn refuse(self, code: u16) {
        self.0.reply(StatusCode::from(code)).await.ok();
    }
}

/// A dialog's events, in order.
pub struct CallEvents(mpsc::UnboundedReceiver<CallEvent>);

impl CallEvents {
    fn spawn(
        dialogs: Arc<DialogLayer>,
        early_id: DialogId,
        mut states: rsipstack::dialog::dialog::DialogStateReceiver,
        outcome: Option<
            rsipstack::platform::JoinHandle<rsipstack::dialog::invitation::InviteAsyncResult>,
        >,
    ) -> CallEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = outcome.is_some();
        let mut answered = false;
        if let Some(outcome) = outcome {
            let tx = tx.clone();
            tokio::spawn(async move {
                let failed = !matches!(outcome.await, Ok(Ok(_)));
                if failed {
                    tx.send(CallEvent::Ended(Ended::Failed)).ok();
                }
            });
        }
        tokio::spawn(async move {
            let mut ids = vec![early_id];
            while let Some(state) = states.recv().await {
                let event = match state {
                    DialogState::Early(_, resp) => {
                        CallEvent::Progress(u16::from(resp.status_code.clone()))
                    }
                    DialogState::Confirmed(id, resp) => {
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                        // A client dialog confirms with the peer's 200 OK; a
                        // server dialog with the ACK to ours.
                        if client && !answered {
                            answered = true;
                            CallEvent::Answered(String::from_utf8_lossy(&resp.body).into_owned())
                        } else {
                            CallEvent::Confirmed
                        }
                    }
                    DialogState::Updated(_, req, handle) if req.method == Method::Invite => {
                        CallEvent::Reoffer(
                            String::from_utf8_lossy(&req.body).into_owned(),
                            Reply(handle),
                        )
                    }
                    DialogState::Updated(_, _, handle) => {
                        handle.reply(StatusCode::OK).await.ok();
                        continue;
                    }
                    DialogState::Info(_, req, handle) => {
                        handle.reply(StatusCode::OK).await.ok();
                        let content_type = req
                            .headers()
                            .iter()
                            .find_map(|h| match h {
                                Header::ContentType(c) => Some(c.value().to_owned()),
                                _ => None,
                            })
                            .unwrap_or_default();
                        CallEvent::Info(
                            content_type,
                            String::from_utf8_lossy(&req.body).into_owned(),
                        )
                    }
                    DialogState::Options(_, _, handle) => {
                        handle.reply(StatusCode::OK).await.ok();
                        continue;
                    }
                    DialogState::Notify(_, _, handle)
                    | DialogState::Refer(_, _, handle)
                    | DialogState::Message(_, _, handle)
                    | DialogState::Publish(_, _, handle) => {
                        handle.reply(StatusCode::NotImplemented).await.ok();
                        continue;
                    }
                    DialogState::Terminated(id, reason) => {
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                        for id in &ids {
                            dialogs.remove_dialog(id);
                        }
                        tx.send(CallEvent::Ended(ended(reason))).ok();
                        break;
                    }
                    _ => continue,
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        CallEvents(rx)
    }

    /// Events fed by hand, for a call whose events are picked from several
    /// dialogs (the answered branch of a forked INVITE).
    pub fn channel() -> (mpsc::UnboundedSender<CallEvent>, CallEvents) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, CallEvents(rx))
    }

    /// The next event; `None` once the dialog is gone.
    pub async fn next(&mut self) -> Option<CallEvent> {
        self.0.recv().await
    }
}

fn ended(reason: TerminatedReason) -> Ended {
    match reason {
        TerminatedReason::UacBye | TerminatedReason::UasBye => Ended::RemoteBye,
        TerminatedReason::UacCancel => Ended::RemoteCancel,
        TerminatedReason::Timeout => Ended::Timeout,
        TerminatedReason::UasBusy => Ended::Refused(486),
        TerminatedReason::UasDecline => Ended::Local,
        TerminatedReason::UacBusy => Ended::Local,
        TerminatedReason::ProxyAuthRequired => Ended::Refused(407),
        TerminatedReason::ProxyError(code)
        | TerminatedReason::UacOther(code)
        | TerminatedReason::UasOther(code) => Ended::Refused(u16::from(code)),
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
