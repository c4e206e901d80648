//! The agent: incoming calls through the policy, outgoing calls through the dial
//! plan, and every call's life from the first INVITE to the history.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use doorphone_interfaces::config::Document;
use doorphone_interfaces::config::document::{
    AccountChoice, DialPlan, DtmfAuthority, DtmfMode, HangUpType, MediaMode, Transport,
};
use doorphone_interfaces::media::{self, Media1Proxy};
use doorphone_interfaces::relay::{self, Relay1Proxy};
use doorphone_interfaces::sip::{
    AccountStatus, CALL_PATH_PREFIX, HistoryEntry, account_state, call_state, end_reason,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use zbus::{OwnedObjectPath, Variant as Value};

use crate::history::History;
use crate::policy::{self, Caller, Decision, ServerAddrs, Via};
use crate::service;
use crate::stack::{
    CallEvent, CallEvents, ClientCall, Credential, Ended, Incoming, Invite, ServerCall, Stack,
};

/// The configuration as the agent uses it: the document and what is derived
/// from it once per change, so no call waits on a lookup.
pub struct Settings {
    /// The `Config1` revision `doc` is at (or after).
    pub revision: u64,
    pub doc: Document,
    pub plan: DialPlan,
    /// Where each account's server is.
    pub servers: HashMap<u32, SocketAddr>,
    /// The addresses each account's server resolves to.
    pub server_ips: ServerAddrs,
}

impl Settings {
    pub async fn new(doc: Document, revision: u64) -> Settings {
        let mut servers = HashMap::new();
        let mut server_ips = ServerAddrs::new();
        for a in doc
            .accounts
            .iter()
            .filter(|a| a.enabled && !a.server.is_empty())
        {
            let target = if a.server.contains(':') {
                a.server.clone()
            } else {
                format!("{}:5060", a.server)
            };
            match tokio::net::lookup_host(&target).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if let Some(first) = addrs.first() {
                        servers.insert(a.id, *first);
                    }
                    server_ips.insert(a.id, addrs.iter().map(SocketAddr::ip).collect());
                }
                Err(e) => tracing::warn!(account = a.id, "server {}: {e}", a.server),
            }
        }
        Settings {
            revision,
            plan: DialPlan::new(&doc.dial_plan),
            doc,
            servers,
            server_ips,
        }
    }
}

/// What a call's task is asked to do.
pub enum Command {
    Answer(oneshot::Sender<Result<(), String>>),
    Hangup(oneshot::Sender<Result<(), String>>),
    Hold(oneshot::Sender<Result<(), String>>),
    Resume(oneshot::Sender<Result<(), String>>),
    /// Refuse a ringing call with this code (another call was answered).
    Refuse(u16),
    /// Media saw no RTP from the peer for its timeout.
    MediaTimeout,
    /// Media's pipeline failed.
    MediaFailed,
    /// A DTMF digit from the peer, through RFC 4733 (`true`) or SIP INFO.
    Dtmf(char, bool),
    /// A door was opened, for this reason (`Relay1.DoorOpened`).
    DoorOpened(String),
}

/// A call's properties, as its D-Bus object shows them.
#[derive(Debug, Clone, Default)]
pub struct CallProps {
    pub state: String,
    pub direction: String,
    pub remote: String,
    pub account: String,
    pub media_mode: String,
    pub start_time: u64,
    pub answer_time: u64,
    pub end_reason: String,
    pub media_session: Option<String>,
    pub code: u16,
    /// The ACK to our answer arrived (or our INVITE was answered).
    pub confirmed: bool,
}

pub struct CallShared {
    pub id: u32,
    pub path: OwnedObjectPath,
    pub props: Mutex<CallProps>,
    /// The answered dialog.
    leg: Mutex<Option<Leg>>,
    /// Who is at the other end, as the whitelist sees it.
    peer: Caller,
    via: Via,
    pub commands: mpsc::UnboundedSender<Command>,
}

impl CallShared {
    pub fn props(&self) -> CallProps {
        self.props.lock().expect("call lock").clone()
    }

    fn update(&self, f: impl FnOnce(&mut CallProps)) {
        f(&mut self.props.lock().expect("call lock"));
    }

    /// Sends a command and waits for its outcome.
    pub async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Command,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| "the call has ended".to_owned())?;
        rx.await.map_err(|_| "the call has ended".to_owned())?
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One side of an answered call.
#[derive(Clone)]
enum Leg {
    Server(ServerCall),
    Client(ClientCall),
}

impl Leg {
    async fn bye(&self) {
        let r = match self {
            Leg::Server(s) => s.bye().await,
            Leg::Client(c) => c.hangup().await,
        };
        if let Err(e) = r {
            tracing::debug!("BYE: {e}");
        }
    }

    fn ended(&self) -> bool {
        match self {
            Leg::Server(s) => s.ended(),
            Leg::Client(c) => c.ended(),
        }
    }

    async fn reinvite(&self, sdp: &str) -> crate::stack::Result<Option<String>> {
        match self {
            Leg::Server(s) => s.reinvite(sdp).await,
            Leg::Client(c) => c.reinvite(sdp).await,
        }
    }
}

/// Where an outgoing branch goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub to: String,
    pub from: String,
    pub display_name: String,
    pub destination: Option<SocketAddr>,
    pub transport: Transport,
    pub credential: Option<Credential>,
    pub via: Via,
}

impl Route {
    /// The callee as the whitelist sees it (for the DTMF authority).
    fn peer(&self) -> Caller {
        let user = self
            .to
            .get(4..)
            .and_then(|rest| rest.split_once('@'))
            .map(|(user, _)| user.to_owned())
            .unwrap_or_default();
        Caller {
            uri: self.to.clone(),
            user,
            source: self.destination,
            called_user: String::new(),
        }
    }
}

/// How the targets of an outgoing call ring.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// All at once for `ring_for`; a refusal ends every branch when
    /// `refusal_ends_all`, else only its own.
    Group {
        refusal_ends_all: bool,
        ring_for: Duration,
    },
    /// One after another, each for `each`; a refusal ends the plan when
    /// `refusal_stops`, else the next number is called at once.
    Sequence { each: Duration, refusal_stops: bool },
}

/// How an outgoing call's ringing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by this target.
    Answered(String),
    /// Nobody answered in time.
    NoAnswer,
    /// Refused by a callee (this status).
    Refused(u16),
    /// No branch could be placed or kept (no route, 5xx).
    Failed,
    /// Hung up here before an answer.
    Cancelled,
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Answered(_) => "answered",
            Outcome::NoAnswer => "no_answer",
            Outcome::Refused(_) => "refused",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

enum Ringing {
    Answered {
        leg: ClientCall,
        events: CallEvents,
        by: String,
    },
    Over(Outcome),
}

pub struct Agent {
    pub stack: Stack,
    pub conn: zbus::Connection,
    media: Media1Proxy<'static>,
    relay: Relay1Proxy<'static>,
    config: watch::Receiver<Arc<Settings>>,
    calls: Mutex<BTreeMap<u32, Arc<CallShared>>>,
    next_id: AtomicU32,
    /// Media session path → the call that owns it.
    sessions: Mutex<HashMap<String, mpsc::UnboundedSender<Command>>>,
    pub accounts: Mutex<Vec<AccountStatus>>,
    pub history: History,
    /// Buttons whose call plan runs.
    pub pressed: Mutex<std::collections::HashSet<u16>>,
}

impl Agent {
    pub fn new(
        stack: Stack,
        conn: zbus::Connection,
        media: Media1Proxy<'static>,
        relay: Relay1Proxy<'static>,
        config: watch::Receiver<Arc<Settings>>,
        history: History,
    ) -> Agent {
        let accounts = (1..=2)
            .map(|id| AccountStatus {
                id,
                state: account_state::DISABLED.to_owned(),
                code: 0,
                reason: String::new(),
                aor: String::new(),
            })
            .collect();
        Agent {
            stack,
            conn,
            media,
            relay,
            config,
            calls: Mutex::new(BTreeMap::new()),
            next_id: AtomicU32::new(1),
            sessions: Mutex::new(HashMap::new()),
            accounts: Mutex::new(accounts),
            history,
            pressed: Mutex::new(std::collections::HashSet::new()),
        }
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.config.borrow().clone()
    }

    pub fn calls(&self) -> Vec<Arc<CallShared>> {
        self.calls
            .lock()
            .expect("calls lock")
            .values()
            .cloned()
            .collect()
    }

    /// The answered call, if any.
    pub fn active_call(&self) -> Option<Arc<CallShared>> {
        self.calls().into_iter().find(|c| {
            let p = c.props();
            p.state == call_state::ANSWERED || p.state == call_state::HELD
        })
    }

    fn registered(&self, id: u32) -> bool {
        self.accounts
            .lock()
            .expect("accounts lock")
            .iter()
            .any(|a| a.id == id && a.state == account_state::REGISTERED)
    }

    /// A call that holds the door phone: answered, and confirmed by the peer.
    /// An answer the caller never acknowledges does not lock out the next one.
    fn busy(&self) -> bool {
        self.calls().iter().any(|c| {
            let p = c.props();
            let hung_up = c
                .leg
                .lock()
                .expect("leg lock")
                .as_ref()
                .is_some_and(Leg::ended);
            (p.state == call_state::ANSWERED || p.state == call_state::HELD)
                && p.confirmed
                && !hung_up
        })
    }

    /// Handles a request that came in outside the agent's own transactions.
    pub async fn on_request(self: &Arc<Self>, req: Incoming) {
        if let Err(why) = req.check() {
            tracing::debug!(source = ?req.source(), method = %req.method(), "malformed request: {why}");
            req.reply(400).await;
            return;
        }
        if req.in_dialog() {
            self.stack.dispatch(req);
            return;
        }
        let caller = Caller {
            uri: req.from_uri(),
            user: req.from_user(),
            source: req.source(),
            called_user: req.request_user(),
        };
        let settings = self.settings();
        let via = policy::classify(&settings.doc, &settings.server_ips, &caller);
        match req.method().as_str() {
            "INVITE" => {}
            "OPTIONS" => {
                // Scanners probe with OPTIONS: a guarded door phone tells a
                // stranger no more than it tells a stranger's INVITE.
                let code = match policy::decide(&settings.doc, via, &caller, false) {
                    Decision::Refuse { code: 403, .. } => 403,
                    _ => 200,
                };
                req.reply(code).await;
                return;
            }
            "ACK" => return,
            "BYE" | "CANCEL" => {
                req.reply(481).await;
                return;
            }
            _ => {
                req.reply(405).await;
                return;
            }
        }
        match policy::decide(&settings.doc, via, &caller, self.busy()) {
            Decision::Refuse { code, reason } => {
                tracing::info!(caller = %caller.uri, source = ?caller.source, account = %via.label(), code, "call refused: {reason}");
                req.reply(code).await;
                service::call_refused(&self.conn, &caller.uri, code, reason).await;
                let now = now_ms();
                self.history.add(HistoryEntry {
                    direction: "in".into(),
                    remote: caller.uri,
                    account: via.label(),
                    start: now,
                    answered: 0,
                    end: now,
                    end_reason: end_reason::POLICY.into(),
                    code,
                });
            }
            Decision::Ring { auto_answer, video } => {
                let offer = String::from_utf8_lossy(req.body()).into_owned();
                let (server, events) = match self.stack.take_invite(req) {
                    Ok(taken) => taken,
                    Err(e) => {
                        tracing::warn!(caller = %caller.uri, "cannot take the call: {e}");
                        return;
                    }
                };
                let (call, commands) = self.new_call("in", &caller.uri, via, video, caller.clone());
                tracing::info!(call = call.id, caller = %caller.uri, account = %via.label(), "incoming call");
                let agent = self.clone();
                tokio::spawn(async move {
                    agent
                        .run_incoming(call, server, events, commands, offer, auto_answer, video)
                        .await
                });
            }
        }
    }

    fn new_call(
        &self,
        direction: &str,
        remote: &str,
        via: Via,
        video: bool,
        peer: Caller,
    ) -> (Arc<CallShared>, mpsc::UnboundedReceiver<Command>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let call = Arc::new(CallShared {
            id,
            path: OwnedObjectPath::try_from(format!("{CALL_PATH_PREFIX}{id}"))
                .expect("a call path is valid"),
            props: Mutex::new(CallProps {
                state: match direction {
                    "in" => call_state::RINGING,
                    _ => call_state::DIALING,
                }
                .to_owned(),
                direction: direction.to_owned(),
                remote: remote.to_owned(),
                account: via.label(),
                media_mode: if video { "video" } else { "audio" }.to_owned(),
                start_time: now_ms(),
                ..CallProps::default()
            }),
            leg: Mutex::new(None),
            peer,
            via,
            commands: tx,
        });
        self.calls
            .lock()
            .expect("calls lock")
            .insert(id, call.clone());
        (call, rx)
    }

    async fn set_state(&self, call: &CallShared, state: &str, reason: &str) {
        call.update(|p| p.state = state.to_owned());
        service::call_state_changed(&self.conn, call, state, reason).await;
    }

    /// Media's answer to `offer`, and 200 OK with it.
    async fn answer_incoming(
        &self,
        call: &CallShared,
        server: &ServerCall,
        offer: &str,
        video: bool,
        commands: &mpsc::UnboundedSender<Command>,
    ) -> Result<String, u16> {
        let options = self.media_options(video);
        let (session, sdp) = match self.media.create_answer(offer, options).await {
            Ok(answer) => answer,
            Err(e) => {
                let code = match e {
                    media::Error::NoCommonCodec(_) | media::Error::InvalidSdp(_) => 488,
                    _ => 503,
                };
                tracing::warn!(call = call.id, code, "media cannot answer: {e}");
                server.reject(code).ok();
                return Err(code);
            }
        };
        let session = session.to_string();
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(session.clone(), commands.clone());
        if let Err(e) = server.answer(&sdp) {
            tracing::warn!(call = call.id, "answer: {e}");
            self.stop_media(&session).await;
            return Err(500);
        }
        call.update(|p| {
            p.answer_time = now_ms();
            p.media_session = Some(session.clone());
        });
        Ok(session)
    }

    fn media_options(&self, video: bool) -> HashMap<&'static str, Value<'static>> {
        HashMap::from([
            ("video", Value::from(video)),
            ("address", Value::from(self.stack.contact_ip().to_string())),
        ])
    }

    pub fn relay(&self) -> &Relay1Proxy<'static> {
        &self.relay
    }

    /// The camera's current picture (JPEG).
    pub async fn snapshot(&self) -> Result<Vec<u8>, String> {
        self.media.snapshot().await.map_err(|e| e.to_string())
    }

    /// A media session with our offer: (session path, SDP).
    pub async fn create_offer(&self, video: bool) -> Option<(String, String)> {
        match self.media.create_offer(self.media_options(video)).await {
            Ok((session, sdp)) => Some((session.to_string(), sdp)),
            Err(e) => {
                tracing::warn!("media offer: {e}");
                None
            }
        }
    }

    pub async fn stop_media(&self, session: &str) {
        self.sessions.lock().expect("sessions lock").remove(session);
        if let Ok(path) = zbus::ObjectPath::try_from(session)
            && let Err(e) = self.media.stop(&path).await
        {
            tracing::debug!("media stop {session}: {e}");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_incoming(
        self: Arc<Self>,
        call: Arc<CallShared>,
        server: ServerCall,
        mut events: CallEvents,
        mut commands: mpsc::UnboundedReceiver<Command>,
        offer: String,
        auto_answer: Option<Duration>,
        video: bool,
    ) {
        if let Err(e) = server.ringing() {
            tracing::debug!(call = call.id, "180: {e}");
        }
        let settings = self.settings();
        let dial_in = Instant::now() + secs(settings.doc.calls.max_dial_in_time);
        let mut session = None;
        // No timer for an immediate answer: even a zero sleep waits for the
        // next timer tick.
        if auto_answer == Some(Duration::ZERO) {
            match self
                .answer_incoming(&call, &server, &offer, video, &call.commands)
                .await
            {
                Ok(s) => session = Some(s),
                Err(code) => {
                    service::publish(&self, &call).await;
                    return self.end(&call, end_reason::FAILED, code).await;
                }
            }
        }
        service::publish(&self, &call).await;
        if session.is_none() {
            let auto_at = auto_answer.map(|d| Instant::now() + d);
            let mut answer_reply = None;
            loop {
                tokio::select! {
                    _ = until(auto_at) => {}
                    _ = tokio::time::sleep_until(dial_in) => {
                        server.reject(480).ok();
                        return self.end(&call, end_reason::NO_ANSWER, 480).await;
                    }
                    command = commands.recv() => match command {
                        Some(Command::Answer(reply)) => answer_reply = Some(reply),
                        Some(Command::Hangup(reply)) => {
                            server.reject(603).ok();
                            reply.send(Ok(())).ok();
                            return self.end(&call, end_reason::LOCAL_HANGUP, 603).await;
                        }
                        Some(Command::Refuse(code)) => {
                            server.reject(code).ok();
                            return self.end(&call, end_reason::POLICY, code).await;
                        }
                        Some(Command::Hold(reply) | Command::Resume(reply)) => {
                            reply.send(Err("the call is not answered".into())).ok();
                            continue;
                        }
                        Some(_) => continue,
                        None => return,
                    },
                    event = events.next() => match event {
                        Some(CallEvent::Ended(how)) => {
                            let reason = match how {
                                Ended::RemoteCancel | Ended::RemoteBye => end_reason::REMOTE_HANGUP,
                                _ => end_reason::FAILED,
                            };
                            return self.end(&call, reason, 0).await;
                        }
                        Some(_) => continue,
                        None => return self.end(&call, end_reason::FAILED, 0).await,
                    },
                }
                match self
                    .answer_incoming(&call, &server, &offer, video, &call.commands)
                    .await
                {
                    Ok(s) => {
                        if let Some(reply) = answer_reply.take() {
                            reply.send(Ok(())).ok();
                        }
                        session = Some(s);
                        break;
                    }
                    Err(code) => {
                        if let Some(reply) = answer_reply.take() {
                            reply
                                .send(Err(format!("media could not answer ({code})")))
                                .ok();
                        }
                        return self.end(&call, end_reason::FAILED, code).await;
                    }
                }
            }
        }
        let session = session.expect("answered");
        self.answered(&call).await;
        self.in_call(call, Leg::Server(server), events, commands, session)
            .await;
    }

    /// The call is answered: it is the active call; other ringing calls are
    /// refused as busy.
    async fn answered(&self, call: &Arc<CallShared>) {
        if call.props().answer_time == 0 {
            call.update(|p| p.answer_time = now_ms());
        }
        self.set_state(call, call_state::ANSWERED, "answered").await;
        for other in self.calls() {
            if other.id != call.id && other.props().state == call_state::RINGING {
                other.commands.send(Command::Refuse(486)).ok();
            }
        }
        service::active_call_changed(&self.conn).await;
    }

    async fn in_call(
        self: Arc<Self>,
        call: Arc<CallShared>,
        leg: Leg,
        mut events: CallEvents,
        mut commands: mpsc::UnboundedReceiver<Command>,
        session: String,
    ) {
        *call.leg.lock().expect("leg lock") = Some(leg.clone());
        let settings = self.settings();
        let max = settings.doc.calls.max_call_time;
        let deadline = (max > 0).then(|| Instant::now() + secs(max));
        let (rfc4733, info) = match call.via {
            Via::Account(id) => match settings
                .doc
                .accounts
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.dtmf_mode)
            {
                Some(DtmfMode::Rfc4733) | None => (true, false),
                Some(DtmfMode::Info) => (false, true),
                Some(DtmfMode::Both) => (true, true),
            },
            Via::Ip => (true, true),
        };
        let mut codes = DoorCodes::default();
        let mut hang_up_at: Option<Instant> = None;
        let session_path = zbus::ObjectPath::try_from(session.clone())
            .expect("media gives valid paths")
            .into_owned();
        let reason = loop {
            tokio::select! {
                _ = until(deadline) => {
                    leg.bye().await;
                    break end_reason::MAX_CALL_TIME;
                }
                _ = until(hang_up_at) => {
                    leg.bye().await;
                    break end_reason::DOOR_OPENED;
                }
                _ = until(codes.deadline) => {
                    if codes.timed_out() {
                        tracing::info!(call = call.id, wrong = codes.wrong, "door code timed out");
                        if codes.wrong >= MAX_WRONG_CODES {
                            leg.bye().await;
                            break end_reason::WRONG_CODES;
                        }
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Hangup(reply)) => {
                        leg.bye().await;
                        reply.send(Ok(())).ok();
                        break end_reason::LOCAL_HANGUP;
                    }
                    Some(Command::Hold(reply)) => {
                        let r = self.rehold(&leg, &session_path, true).await;
                        if r.is_ok() {
                            self.set_state(&call, call_state::HELD, "held").await;
                        }
                        reply.send(r).ok();
                    }
                    Some(Command::Resume(reply)) => {
                        let r = self.rehold(&leg, &session_path, false).await;
                        if r.is_ok() {
                            self.set_state(&call, call_state::ANSWERED, "resumed").await;
                        }
                        reply.send(r).ok();
                    }
                    Some(Command::Answer(reply)) => {
                        reply.send(Err("the call is already answered".into())).ok();
                    }
                    Some(Command::MediaTimeout) => {
                        tracing::info!(call = call.id, "no RTP from the peer: hanging up");
                        leg.bye().await;
                        break end_reason::RTP_TIMEOUT;
                    }
                    Some(Command::MediaFailed) => {
                        leg.bye().await;
                        break end_reason::FAILED;
                    }
                    Some(Command::Refuse(_)) => {}
                    Some(Command::Dtmf(digit, by_rtp)) => {
                        if (by_rtp && !rfc4733) || (!by_rtp && !info) {
                            continue;
                        }
                        let settings = self.settings();
                        if !may_open_doors(&settings.doc, &call.peer) {
                            tracing::info!(call = call.id, "DTMF ignored: this caller may not open doors");
                            continue;
                        }
                        match codes.digit(digit, &settings.doc.relays) {
                            Some(Ok(relay)) => {
                                tracing::info!(call = call.id, relay, "door code entered: opening");
                                if let Err(e) = self.relay.open(&relay, relay::source::DTMF).await {
                                    tracing::warn!(call = call.id, relay, "door did not open: {e}");
                                }
                            }
                            Some(Err(())) => {
                                tracing::info!(call = call.id, wrong = codes.wrong, "wrong door code");
                                if codes.wrong >= MAX_WRONG_CODES {
                                    leg.bye().await;
                                    break end_reason::WRONG_CODES;
                                }
                            }
                            None => {}
                        }
                    }
                    Some(Command::DoorOpened(source)) => {
                        let rule = &self.settings().doc.calls.hang_up_after_open;
                        let covered = rule.types.iter().any(|t| match t {
                            HangUpType::Dtmf => source == relay::source::DTMF,
                            HangUpType::Api => source == relay::source::API,
                            HangUpType::Input => source == relay::source::INPUT,
                        });
                        if covered && hang_up_at.is_none() {
                            tracing::info!(call = call.id, source, "door opened: hanging up in {} s", rule.timeout);
                            hang_up_at = Some(Instant::now() + secs(rule.timeout));
                        }
                    }
                    None => break end_reason::SHUTDOWN,
                },
                event = events.next() => match event {
                    Some(CallEvent::Confirmed) => call.update(|p| p.confirmed = true),
                    Some(CallEvent::Info(content_type, body)) => {
                        if let Some(digit) = info_digit(&content_type, &body) {
                            call.commands.send(Command::Dtmf(digit, false)).ok();
                        }
                    }
                    Some(CallEvent::Reoffer(sdp, reply)) => {
                        match self.media.set_remote(&session_path, &sdp).await {
                            Ok(answer) => reply.ok(Some(&answer)).await,
                            Err(e) => {
                                tracing::info!(call = call.id, "re-offer refused: {e}");
                                reply.refuse(488).await;
                            }
                        }
                    }
                    Some(CallEvent::Ended(Ended::RemoteBye | Ended::RemoteCancel)) => {
                        break end_reason::REMOTE_HANGUP;
                    }
                    Some(CallEvent::Ended(_)) | None => break end_reason::FAILED,
                    Some(_) => {}
                },
            }
        };
        self.stop_media(&session).await;
        self.end(&call, reason, 0).await;
    }

    /// Holds or resumes: media's re-offer to the peer, the peer's answer to media.
    async fn rehold(
        &self,
        leg: &Leg,
        session: &zbus::ObjectPath<'_>,
        hold: bool,
    ) -> Result<(), String> {
        let offer = if hold {
            self.media.hold(session).await
        } else {
            self.media.resume(session).await
        }
        .map_err(|e| e.to_string())?;
        match leg.reinvite(&offer).await {
            Ok(Some(answer)) => self
                .media
                .set_remote(session, &answer)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Ok(None) => Err("the peer answered the re-INVITE without SDP".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Ends a call: state, signal, history, and the object goes away.
    async fn end(&self, call: &Arc<CallShared>, reason: &str, code: u16) {
        let was_active = {
            let p = call.props();
            p.state == call_state::ANSWERED || p.state == call_state::HELD
        };
        call.update(|p| {
            p.end_reason = reason.to_owned();
            p.code = code;
        });
        tracing::info!(call = call.id, reason, code, "call ended");
        let p = call.props();
        self.history.add(HistoryEntry {
            direction: p.direction,
            remote: p.remote,
            account: p.account,
            start: p.start_time,
            answered: p.answer_time,
            end: now_ms(),
            end_reason: p.end_reason,
            code: p.code,
        });
        self.calls.lock().expect("calls lock").remove(&call.id);
        self.set_state(call, call_state::ENDED, reason).await;
        service::unpublish(&self.conn, call).await;
        if was_active {
            service::active_call_changed(&self.conn).await;
        }
    }

    /// Media received a DTMF digit in a session.
    pub fn on_dtmf(&self, session: &str, digit: &str) {
        let Some(digit) = digit.chars().next() else {
            return;
        };
        if let Some(call) = self.sessions.lock().expect("sessions lock").get(session) {
            call.send(Command::Dtmf(digit, true)).ok();
        }
    }

    /// The relay service opened a door.
    pub fn on_door_opened(&self, source: &str) {
        if let Some(call) = self.active_call() {
            call.commands
                .send(Command::DoorOpened(source.to_owned()))
                .ok();
        }
    }

    /// Media said a session changed state.
    pub fn on_media_state(&self, session: &str, state: &str) {
        let command = match state {
            media::state::TIMEOUT => Command::MediaTimeout,
            media::state::FAILED => Command::MediaFailed,
            _ => return,
        };
        if let Some(call) = self.sessions.lock().expect("sessions lock").get(session) {
            call.send(command).ok();
        }
    }

    /// Where a dialled target goes, through which account.
    pub fn route(
        &self,
        settings: &Settings,
        target: &str,
        choice: Option<Via>,
    ) -> Result<Route, String> {
        let doc = &settings.doc;
        let display_name = doc.device.name.clone();
        let direct = |addr: SocketAddr| Route {
            to: format!("sip:{addr}"),
            from: format!("sip:door@{}", self.stack.contact_ip()),
            display_name: display_name.clone(),
            destination: Some(addr),
            transport: Transport::Udp,
            credential: None,
            via: Via::Ip,
        };
        if let Ok(ip) = target.parse::<IpAddr>() {
            return Ok(direct(SocketAddr::new(ip, 5060)));
        }
        if let Ok(addr) = target.parse::<SocketAddr>() {
            return Ok(direct(addr));
        }
        let account = match choice {
            Some(Via::Account(id)) => {
                if !doc.accounts.iter().any(|a| a.id == id && a.enabled) {
                    return Err(format!("account {id} is not enabled"));
                }
                Some(id)
            }
            Some(Via::Ip) => None,
            None => [1, 2].into_iter().find(|id| self.registered(*id)),
        };
        let is_uri = target.len() > 4 && target[..4].eq_ignore_ascii_case("sip:");
        let Some(id) = account else {
            if is_uri {
                return Ok(Route {
                    to: target.to_owned(),
                    from: format!("sip:door@{}", self.stack.contact_ip()),
                    display_name,
                    destination: None,
                    transport: Transport::Udp,
                    credential: None,
                    via: Via::Ip,
                });
            }
            return Err(format!(
                "{target}: a number needs a registered account, and none is registered"
            ));
        };
        let a = doc
            .accounts
            .iter()
            .find(|a| a.id == id)
            .expect("the account was checked");
        let host = a.server.clone();
        if !is_uri
            && !target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "*#+-_.".contains(c))
        {
            return Err(format!("{target:?} is not a number, SIP URI or IP address"));
        }
        Ok(Route {
            to: if is_uri {
                target.to_owned()
            } else {
                format!("sip:{target}@{host}")
            },
            from: format!("sip:{}@{host}", a.user),
            display_name: if a.display_name.is_empty() {
                display_name
            } else {
                a.display_name.clone()
            },
            destination: if is_uri {
                None
            } else {
                settings.servers.get(&id).copied()
            },
            transport: a.transport,
            credential: Some(Credential {
                user: a.user.clone(),
                auth_user: a.auth_user.clone(),
                password: a.password.clone(),
            }),
            via: Via::Account(id),
        })
    }

    /// Places a call to `number` through the dial plan; every target rings at
    /// once and the first answer wins.
    pub async fn dial(
        self: &Arc<Self>,
        number: &str,
        account: Option<Via>,
        video: Option<bool>,
    ) -> Result<Arc<CallShared>, String> {
        if number.trim().is_empty() {
            return Err("number: empty".into());
        }
        let settings = self.settings();
        let routes = self.resolve(&settings, &[number.trim().to_owned()], account)?;
        let plan = Plan::Group {
            refusal_ends_all: false,
            ring_for: secs(settings.doc.calls.max_dial_out_time),
        };
        self.place(&settings, routes, video, plan, None).await
    }

    /// The routes of `numbers`, each through the dial plan (a prefix brings
    /// its targets and its account, unless `account` says otherwise).
    pub fn resolve(
        &self,
        settings: &Settings,
        numbers: &[String],
        account: Option<Via>,
    ) -> Result<Vec<Route>, String> {
        let mut routes = Vec::new();
        for number in numbers {
            let (choice, targets) = settings.plan.resolve(number.trim());
            let choice = account.or(match choice {
                AccountChoice::Auto => None,
                AccountChoice::Account(id) => Some(Via::Account(id)),
            });
            for target in targets {
                routes.push(self.route(settings, &target, choice)?);
            }
        }
        if routes.is_empty() {
            return Err("nothing to call".into());
        }
        Ok(routes)
    }

    /// Places an outgoing call to `routes` as `plan` says; `outcome` hears how
    /// its ringing ended.
    pub async fn place(
        self: &Arc<Self>,
        settings: &Settings,
        routes: Vec<Route>,
        video: Option<bool>,
        plan: Plan,
        outcome: Option<oneshot::Sender<Outcome>>,
    ) -> Result<Arc<CallShared>, String> {
        let video = video.unwrap_or(settings.doc.calls.auto_answer.mode == MediaMode::Video);
        let (session, offer) = self
            .media
            .create_offer(self.media_options(video))
            .await
            .map_err(|e| match e {
                media::Error::ZBus(e) => {
                    format!(
                        "media: the media service ({}) is not reachable: {e}",
                        media::BUS_NAME
                    )
                }
                e => format!("media: {e}"),
            })?;
        let session = session.to_string();
        let peer = routes[0].peer();
        let (call, mut commands) = self.new_call("out", &routes[0].to, routes[0].via, video, peer);
        call.update(|p| p.media_session = Some(session.clone()));
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(session.clone(), call.commands.clone());
        service::publish(self, &call).await;
        tracing::info!(call = call.id, ?plan, targets = ?routes.iter().map(|r| &r.to).collect::<Vec<_>>(), "calling");
        let agent = self.clone();
        let out = call.clone();
        tokio::spawn(async move {
            let ringing = agent
                .ring(&out, &routes, &mut commands, &session, &offer, plan)
                .await;
            match ringing {
                Ringing::Answered { leg, events, by } => {
                    // The call is the active one before anyone hears of the answer.
                    agent.answered(&out).await;
                    if let Some(tx) = outcome {
                        tx.send(Outcome::Answered(by)).ok();
                    }
                    agent
                        .in_call(out, Leg::Client(leg), events, commands, session)
                        .await;
                }
                Ringing::Over(over) => {
                    agent.stop_media(&session).await;
                    let (reason, code) = match over {
                        Outcome::Refused(code) => (end_reason::REFUSED, code),
                        Outcome::NoAnswer => (end_reason::NO_ANSWER, 0),
                        Outcome::Cancelled => (end_reason::LOCAL_HANGUP, 0),
                        Outcome::Failed | Outcome::Answered(_) => (end_reason::FAILED, 0),
                    };
                    agent.end(&out, reason, code).await;
                    if let Some(tx) = outcome {
                        tx.send(over).ok();
                    }
                }
            }
        });
        Ok(call)
    }

    /// Rings `routes` as `plan` says until one answers, every branch has
    /// ended, the plan's time is up or the call is hung up here.
    async fn ring(
        &self,
        call: &Arc<CallShared>,
        routes: &[Route],
        commands: &mut mpsc::UnboundedReceiver<Command>,
        session: &str,
        offer: &str,
        plan: Plan,
    ) -> Ringing {
        let (branch_tx, mut branches) = mpsc::unbounded_channel::<(usize, CallEvent)>();
        let start = |i: usize| -> Option<ClientCall> {
            let route = &routes[i];
            let invite = Invite {
                from: route.from.clone(),
                display_name: route.display_name.clone(),
                to: route.to.clone(),
                destination: route.destination,
                transport: route.transport,
                credential: route.credential.clone(),
                offer: Some(offer.to_owned()),
            };
            match self.stack.invite(invite) {
                Ok((leg, mut events)) => {
                    let tx = branch_tx.clone();
                    tokio::spawn(async move {
                        while let Some(e) = events.next().await {
                            if tx.send((i, e)).is_err() {
                                break;
                            }
                        }
                    });
                    Some(leg)
                }
                Err(e) => {
                    tracing::warn!(call = call.id, to = %route.to, "INVITE: {e}");
                    None
                }
            }
        };
        let cancel = |legs: &mut Vec<Option<ClientCall>>, keep: Option<usize>| {
            for (i, leg) in legs.iter_mut().enumerate() {
                if Some(i) != keep
                    && let Some(leg) = leg.take()
                {
                    tokio::spawn(async move { leg.hangup().await.ok() });
                }
            }
        };
        let session_path = zbus::ObjectPath::try_from(session.to_owned())
            .expect("media gives valid paths")
            .into_owned();
        let mut legs: Vec<Option<ClientCall>> = vec![None; routes.len()];
        // The next route a sequence calls.
        let mut next = 0;
        let mut deadline;
        match plan {
            Plan::Group { ring_for, .. } => {
                for (i, leg) in legs.iter_mut().enumerate() {
                    *leg = start(i);
                }
                next = routes.len();
                deadline = Instant::now() + ring_for;
            }
            Plan::Sequence { .. } => deadline = Instant::now(),
        }
        let mut refused = 0;
        let mut timed_out = false;
        loop {
            if legs.iter().all(Option::is_none) {
                // A sequence goes on with its next number.
                match plan {
                    Plan::Sequence { each, .. } if next < routes.len() => {
                        legs[next] = start(next);
                        tracing::info!(call = call.id, to = %routes[next].to, "sequence: calling");
                        next += 1;
                        deadline = Instant::now() + each;
                        continue;
                    }
                    _ => {}
                }
                return Ringing::Over(if refused > 0 {
                    Outcome::Refused(refused)
                } else if timed_out {
                    Outcome::NoAnswer
                } else {
                    Outcome::Failed
                });
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    cancel(&mut legs, None);
                    timed_out = true;
                    if let Plan::Group { .. } = plan {
                        return Ringing::Over(Outcome::NoAnswer);
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Hangup(reply)) => {
                        cancel(&mut legs, None);
                        reply.send(Ok(())).ok();
                        return Ringing::Over(Outcome::Cancelled);
                    }
                    Some(Command::Answer(reply) | Command::Hold(reply) | Command::Resume(reply)) => {
                        reply.send(Err("the call is not answered".into())).ok();
                    }
                    Some(_) => {}
                    None => return Ringing::Over(Outcome::Cancelled),
                },
                branch = branches.recv() => match branch {
                    Some((i, CallEvent::Answered(sdp))) if legs[i].is_some() => {
                        cancel(&mut legs, Some(i));
                        call.update(|p| {
                            p.remote = routes[i].to.clone();
                            p.account = routes[i].via.label();
                            p.confirmed = true;
                        });
                        let leg = legs[i].take().expect("the answering leg");
                        if let Err(e) = self.media.set_remote(&session_path, &sdp).await {
                            tracing::warn!(call = call.id, "media refused the answer: {e}");
                            leg.hangup().await.ok();
                            return Ringing::Over(Outcome::Failed);
                        }
                        // The winner's later events (BYE, re-INVITEs) feed the call.
                        let (tx, events) = CallEvents::channel();
                        tokio::spawn(async move {
                            while let Some((n, e)) = branches.recv().await {
                                if n == i && tx.send(e).is_err() {
                                    break;
                                }
                            }
                        });
                        return Ringing::Answered { leg, events, by: routes[i].to.clone() };
                    }
                    Some((i, CallEvent::Ended(how))) if legs[i].is_some() => {
                        legs[i] = None;
                        // A refusal is a callee's 4xx or 6xx; 5xx and no answer
                        // are failures of that branch.
                        let refusal = match how {
                            Ended::Refused(code) if (400..500).contains(&code) || code >= 600 => Some(code),
                            _ => None,
                        };
                        tracing::info!(call = call.id, to = %routes[i].to, ?how, "branch ended");
                        if let Some(code) = refusal {
                            refused = code;
                            let stop = match plan {
                                Plan::Group { refusal_ends_all, .. } => refusal_ends_all,
                                Plan::Sequence { refusal_stops, .. } => refusal_stops,
                            };
                            if stop {
                                cancel(&mut legs, None);
                                return Ringing::Over(Outcome::Refused(code));
                            }
                        }
                    }
                    Some(_) => {}
                    None => return Ringing::Over(Outcome::Failed),
                },
            }
        }
    }

    /// Ends every call (the agent stops).
    pub async fn hang_up_all(&self) {
        for call in self.calls() {
            call.ask(Command::Hangup).await.ok();
        }
    }
}

/// Wrong door codes after which a call is ended.
pub const MAX_WRONG_CODES: u32 = 5;
/// Time between two digits of one door code.
pub const INTER_DIGIT: Duration = Duration::from_secs(3);

/// The digits of a door code being entered in a call.
#[derive(Debug, Default)]
pub struct DoorCodes {
    digits: String,
    /// When the digits entered so far count as a wrong code.
    pub deadline: Option<Instant>,
    /// Wrong codes so far in this call.
    pub wrong: u32,
}

impl DoorCodes {
    /// Adds a digit: `Some(Ok(relay))` when the digits are a relay's code,
    /// `Some(Err(()))` when they can no longer become one (a wrong code), `None`
    /// while they may.
    pub fn digit(
        &mut self,
        digit: char,
        relays: &[doorphone_interfaces::config::document::Relay],
    ) -> Option<Result<String, ()>> {
        self.digits.push(digit);
        let codes = relays.iter().filter(|r| !r.dtmf_code.is_empty());
        if let Some(r) = codes.clone().find(|r| r.dtmf_code == self.digits) {
            self.digits.clear();
            self.deadline = None;
            return Some(Ok(r.id.clone()));
        }
        if codes.clone().any(|r| r.dtmf_code.starts_with(&self.digits)) {
            self.deadline = Some(Instant::now() + INTER_DIGIT);
            return None;
        }
        self.digits.clear();
        self.deadline = None;
        self.wrong += 1;
        Some(Err(()))
    }

    /// The inter-digit time ran out: unfinished digits are a wrong code.
    pub fn timed_out(&mut self) -> bool {
        self.deadline = None;
        if self.digits.is_empty() {
            return false;
        }
        self.digits.clear();
        self.wrong += 1;
        true
    }
}

/// Whether the DTMF authority lets `peer` open doors.
pub fn may_open_doors(doc: &Document, peer: &Caller) -> bool {
    match doc.dtmf_authority {
        DtmfAuthority::All => true,
        DtmfAuthority::Contacts => policy::whitelisted(doc, peer),
        DtmfAuthority::None => false,
    }
}

/// The digit of a SIP INFO: `application/dtmf-relay` (`Signal=5`) or
/// `application/dtmf` (the digit alone).
pub fn info_digit(content_type: &str, body: &str) -> Option<char> {
    let kind = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let value = match kind.as_str() {
        "application/dtmf-relay" => body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?,
        "application/dtmf" => body.trim(),
        _ => return None,
    };
    let mut chars = value.chars();
    let digit = chars.next()?.to_ascii_uppercase();
    (chars.next().is_none() && "0123456789*#ABCD".contains(digit)).then_some(digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorphone_interfaces::config::document::Relay;

    fn relays() -> Vec<Relay> {
        vec![
            Relay {
                id: "A".into(),
                dtmf_code: "#".into(),
                ..Relay::default()
            },
            Relay {
                id: "B".into(),
                dtmf_code: "1234".into(),
                ..Relay::default()
            },
            Relay {
                id: "C".into(),
                dtmf_code: String::new(),
                ..Relay::default()
            },
        ]
    }

    #[test]
    fn codes_open_their_relay_and_wrong_ones_are_counted() {
        let r = relays();
        let mut c = DoorCodes::default();
        assert_eq!(c.digit('#', &r), Some(Ok("A".into())));
        for d in "123".chars() {
            assert_eq!(c.digit(d, &r), None);
        }
        assert!(c.deadline.is_some());
        assert_eq!(c.digit('4', &r), Some(Ok("B".into())));
        assert_eq!(c.digit('9', &r), Some(Err(())));
        assert_eq!(c.digit('1', &r), None);
        assert_eq!(c.digit('3', &r), Some(Err(())));
        assert_eq!(c.wrong, 2);
        assert_eq!(c.digit('1', &r), None);
        assert!(c.timed_out());
        assert_eq!(c.wrong, 3);
        assert!(!c.timed_out());
    }

    #[test]
    fn info_bodies_give_their_digit() {
        assert_eq!(
            info_digit("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            info_digit("Application/DTMF-Relay", "signal= #\nDuration=100"),
            Some('#')
        );
        assert_eq!(info_digit("application/dtmf", "9"), Some('9'));
        assert_eq!(info_digit("application/dtmf-relay", "Signal=55"), None);
        assert_eq!(info_digit("text/plain", "Signal=5"), None);
        assert_eq!(info_digit("application/dtmf-relay", "Duration=160"), None);
    }
}
