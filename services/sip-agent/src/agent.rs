//! The agent: what comes in over SIP goes through the guard, the identity
//! checks and the policy here; calls it takes are driven by the tasks of
//! [`crate::calls`]; and every call's end lands in the history.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use doorphone_interfaces::config::document::{DtmfAuthority, MediaEncryption};
use doorphone_interfaces::sip::{AccountStatus, CallState, EndReason, HistoryEntry, account_state};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::budget::{Budget, Spend};
use crate::call::{CallShared, Command, Direction, now_ms};
use crate::events::{Announcer, Event};
use crate::history::History;
use crate::identity::{Claims, Identity, Trust, Via};
use crate::lockout::Lockouts;
use crate::policy::{self, Decision};
use crate::ports::{MediaOptions, MediaPort, RelayPort};
use crate::settings::Settings;
use crate::stack::{Incoming, Kind, Stack};

/// Refusals answered per source per window; past it the door phone is silent
/// towards that source until the window ends.
const REFUSALS_PER_WINDOW: u32 = 20;
const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

pub struct Agent {
    pub stack: Stack,
    media: Arc<dyn MediaPort>,
    relay: Arc<dyn RelayPort>,
    events: Arc<dyn Announcer>,
    config: watch::Sender<Arc<Settings>>,
    /// Who may speak for each account: the settings', with each account's
    /// server re-resolved when it registers.
    trust: RwLock<Trust>,
    calls: Mutex<BTreeMap<u32, Arc<CallShared>>>,
    next_id: AtomicU32,
    /// Media session path → the call that owns it.
    sessions: Mutex<HashMap<String, mpsc::UnboundedSender<Command>>>,
    pub accounts: Mutex<Vec<AccountStatus>>,
    pub history: History,
    /// Buttons whose call plan runs.
    pub pressed: Mutex<HashSet<u16>>,
    lockouts: Mutex<Lockouts>,
    refusals: Mutex<Budget>,
    /// Woken when the last call ends.
    idle: tokio::sync::Notify,
}

impl Agent {
    pub fn new(
        stack: Stack,
        media: Arc<dyn MediaPort>,
        relay: Arc<dyn RelayPort>,
        events: Arc<dyn Announcer>,
        settings: Settings,
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
        stack.set_user_agent(settings.user_agent());
        stack.trust_tls(settings.uses_tls());
        for m in settings.media_security() {
            if !m.warning.is_empty() {
                tracing::warn!(account = m.id, "{}", m.warning);
            }
        }
        Agent {
            stack,
            media,
            relay,
            events,
            trust: RwLock::new(settings.trust.clone()),
            config: watch::Sender::new(Arc::new(settings)),
            calls: Mutex::new(BTreeMap::new()),
            next_id: AtomicU32::new(1),
            sessions: Mutex::new(HashMap::new()),
            accounts: Mutex::new(accounts),
            history,
            pressed: Mutex::new(HashSet::new()),
            lockouts: Mutex::new(Lockouts::default()),
            refusals: Mutex::new(Budget::new(REFUSALS_PER_WINDOW, REFUSAL_WINDOW)),
            idle: tokio::sync::Notify::new(),
        }
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.config.borrow().clone()
    }

    /// The settings from now on, for tasks that follow them.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Settings>> {
        self.config.subscribe()
    }

    /// A new configuration: the agent works with it from now on.
    pub async fn apply(&self, settings: Settings) {
        let before = self.settings().media_security();
        for m in settings.media_security() {
            if !m.warning.is_empty() && !before.contains(&m) {
                tracing::warn!(account = m.id, "{}", m.warning);
            }
        }
        self.stack.set_user_agent(settings.user_agent());
        self.stack.trust_tls(settings.uses_tls());
        *self.trust.write().expect("trust lock") = settings.trust.clone();
        self.config.send_replace(Arc::new(settings));
        self.announce(Event::ConfigRevision).await;
    }

    /// Account `id`'s server resolved anew (at its registration).
    pub fn server_resolved(&self, id: u32, addrs: &[SocketAddr]) {
        let ips = addrs.iter().map(SocketAddr::ip).collect();
        self.trust.write().expect("trust lock").set_server(id, ips);
    }

    pub async fn announce(&self, event: Event<'_>) {
        self.events.announce(event).await;
    }

    pub fn media(&self) -> &dyn MediaPort {
        self.media.as_ref()
    }

    pub fn relay(&self) -> &dyn RelayPort {
        self.relay.as_ref()
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
        self.calls().into_iter().find(|c| c.state().is_active())
    }

    pub fn registered(&self, id: u32) -> bool {
        self.accounts
            .lock()
            .expect("accounts lock")
            .iter()
            .any(|a| a.id == id && a.state == account_state::REGISTERED)
    }

    /// A call holds the door phone (see [`CallShared::holds_the_door`]).
    fn busy(&self) -> bool {
        self.calls().iter().any(|c| c.holds_the_door())
    }

    /// What media is asked for a call that came or goes this way.
    pub fn media_options(&self, via: Via, video: bool) -> MediaOptions {
        let settings = self.settings();
        let encryption = match via {
            Via::Account(id) => settings
                .doc
                .accounts
                .iter()
                .find(|a| a.id == id)
                .map_or(MediaEncryption::Off, |a| a.media_encryption),
            Via::Ip => settings.doc.device.ip_call.media_encryption,
        };
        MediaOptions {
            video,
            address: self.stack.contact_ip().to_string(),
            encryption,
        }
    }

    /// Handles a request that came in outside the agent's own transactions.
    pub async fn on_request(self: &Arc<Self>, req: Incoming) {
        if let Err(why) = req.check() {
            tracing::debug!(source = ?req.source(), method = %req.method(), "malformed request: {why}");
            return req.refuse(400).await;
        }
        if req.in_dialog() {
            return self.in_dialog(req).await;
        }
        match req.kind() {
            Kind::Invite | Kind::Options => {}
            Kind::Ack => return,
            Kind::Bye | Kind::Cancel => return req.refuse(481).await,
            _ => return req.refuse(405).await,
        }
        let Some(claims) = req.claims() else {
            return req.refuse(400).await;
        };
        let settings = self.settings();
        let (via, caller) = self.trust.read().expect("trust lock").classify(&claims);
        let locked = self
            .lockouts
            .lock()
            .expect("lockouts lock")
            .locked(&caller.lock_key(), Instant::now())
            .is_some();
        let state = policy::State {
            busy: req.kind() == Kind::Invite && self.busy(),
            locked,
        };
        let decision = policy::decide(&settings.doc, &settings.whitelist, via, &caller, state);
        if req.kind() == Kind::Options {
            // Scanners probe with OPTIONS: a guarded door phone tells a
            // stranger no more than it tells a stranger's INVITE.
            let code = match decision {
                Decision::Refuse {
                    code: 403,
                    reason: EndReason::UntrustedSource | EndReason::NotWhitelisted,
                } => 403,
                _ => 200,
            };
            return req.refuse(code).await;
        }
        // The offer goes to media as a bus string: it must be one.
        let offer = match req.body_text() {
            Ok(body) if body.trim().is_empty() => None,
            Ok(body) => Some(body.to_owned()),
            Err(why) => {
                tracing::info!(source = %claims.source, "INVITE refused: {why}");
                return req.refuse(488).await;
            }
        };
        match decision {
            Decision::Refuse { code, reason } => {
                self.refuse(req, &claims, &caller, via, code, reason).await
            }
            Decision::Ring { auto_answer, video } => {
                let (server, events) = match self.stack.take_invite(req) {
                    Ok(taken) => taken,
                    Err(e) => {
                        tracing::warn!(caller = %claims.from_uri, "cannot take the call: {e}");
                        return;
                    }
                };
                let (call, commands) =
                    self.new_call(Direction::In, &claims.from_uri, caller, via, video);
                call.add_call_id(server.call_id());
                let agent = self.clone();
                let incoming = crate::calls::incoming::Incoming {
                    server,
                    events,
                    commands,
                    offer,
                    auto_answer,
                    video,
                };
                tokio::spawn(async move { incoming.run(agent, call).await });
            }
        }
    }

    /// A refusal by the policy: answered (statelessly), signalled and recorded
    /// while the source is within its budget; silence past it.
    async fn refuse(
        &self,
        req: Incoming,
        claims: &Claims,
        caller: &Identity,
        via: Via,
        code: u16,
        reason: EndReason,
    ) {
        let (spend, summary) = self
            .refusals
            .lock()
            .expect("refusals lock")
            .spend(claims.source.ip(), std::time::Instant::now());
        if let Some(s) = summary {
            tracing::info!(source = %s.source, refused = s.answered, silenced = s.withheld, "refusals from one source in {} s", REFUSAL_WINDOW.as_secs());
        }
        if spend == Spend::Silence {
            let withheld = self
                .refusals
                .lock()
                .expect("refusals lock")
                .withheld(claims.source.ip());
            if withheld == 1 {
                tracing::info!(source = %claims.source, "too many refused calls: silent towards this source for up to {} s", REFUSAL_WINDOW.as_secs());
            }
            return;
        }
        tracing::info!(from = %claims.from_uri, identity = %caller.uri(), source = %claims.source, account = %via.label(), code, reason = reason.as_str(), "call refused");
        req.refuse(code).await;
        let shown = caller.uri();
        self.announce(Event::CallRefused {
            caller: &shown,
            code,
            reason,
        })
        .await;
        let now = now_ms();
        self.history.add_refusal(HistoryEntry {
            direction: Direction::In.as_str().into(),
            remote: claims.from_uri.clone(),
            account: via.label(),
            start: now,
            answered: 0,
            end: now,
            end_reason: reason.as_str().into(),
            code,
        });
    }

    /// A request inside a dialog: only from the address the call's INVITE
    /// came from (or went to), or from its account's server and proxies.
    async fn in_dialog(&self, req: Incoming) {
        let call_id = req.call_id();
        let call = self.calls().into_iter().find(|c| c.has_call_id(&call_id));
        if let (Some(call), Some(source)) = (call, req.source())
            && !self.speaks_for(&call, source, req.reliable())
        {
            tracing::info!(call = call.id, %source, method = %req.method(), reason = EndReason::UntrustedSource.as_str(), "in-dialog request refused: not from the call's peer");
            return req.refuse(403).await;
        }
        self.stack.dispatch(req);
    }

    /// Whether `source` may speak in `call`'s dialog.
    fn speaks_for(&self, call: &CallShared, source: SocketAddr, reliable: bool) -> bool {
        match (call.via, &call.peer) {
            (Via::Account(id), _) => self
                .trust
                .read()
                .expect("trust lock")
                .trusts(id, source.ip()),
            (Via::Ip, Identity::Address(peer)) if reliable => peer.ip() == source.ip(),
            (Via::Ip, Identity::Address(peer)) => *peer == source,
            (Via::Ip, Identity::User { .. }) => false,
        }
    }

    pub fn new_call(
        &self,
        direction: Direction,
        remote: &str,
        peer: Identity,
        via: Via,
        video: bool,
    ) -> (Arc<CallShared>, mpsc::UnboundedReceiver<Command>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (call, rx) = CallShared::new(id, direction, remote, peer, via, video);
        let call = Arc::new(call);
        self.calls
            .lock()
            .expect("calls lock")
            .insert(id, call.clone());
        (call, rx)
    }

    pub async fn set_state(&self, call: &Arc<CallShared>, state: CallState, reason: &str) {
        call.update(|p| p.state = state);
        self.announce(Event::CallState(call, state, reason)).await;
    }

    /// A media session belongs to `call` from now on.
    pub fn own_session(&self, call: &CallShared, session: &str) {
        call.update(|p| p.media_session = Some(session.to_owned()));
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(session.to_owned(), call.commands.clone());
    }

    pub async fn stop_media(&self, session: &str) {
        self.sessions.lock().expect("sessions lock").remove(session);
        self.media.stop(session.to_owned()).await;
    }

    /// The call is answered: it is the active call; other ringing calls are
    /// refused as busy.
    pub async fn answered(&self, call: &Arc<CallShared>) {
        if call.props().answer_time == 0 {
            call.update(|p| p.answer_time = now_ms());
        }
        self.set_state(call, CallState::Answered, "answered").await;
        for other in self.calls() {
            if other.id != call.id && other.state() == CallState::Ringing {
                other.commands.send(Command::Busy).ok();
            }
        }
        self.announce(Event::ActiveCallChanged).await;
    }

    /// Ends a call: state, signal, history, and the object goes away.
    pub async fn end(&self, call: &Arc<CallShared>, reason: EndReason, code: u16) {
        let was_active = call.state().is_active();
        call.update(|p| {
            p.end_reason = Some(reason);
            p.code = code;
        });
        tracing::info!(call = call.id, reason = reason.as_str(), code, "call ended");
        let p = call.props();
        self.history.add(HistoryEntry {
            direction: p.direction.as_str().into(),
            remote: p.remote,
            account: p.account,
            start: p.start_time,
            answered: p.answer_time,
            end: now_ms(),
            end_reason: reason.as_str().into(),
            code,
        });
        let none_left = {
            let mut calls = self.calls.lock().expect("calls lock");
            calls.remove(&call.id);
            calls.is_empty()
        };
        self.set_state(call, CallState::Ended, reason.as_str())
            .await;
        self.announce(Event::CallRemoved { call, was_active }).await;
        if none_left {
            self.idle.notify_waiters();
        }
    }

    /// Whether the DTMF authority lets the call's peer open doors now.
    pub fn may_open_doors(&self, call: &CallShared) -> bool {
        let settings = self.settings();
        let allowed = match settings.doc.dtmf_authority {
            DtmfAuthority::All => true,
            DtmfAuthority::Contacts => settings.whitelist.contains(&call.peer),
            DtmfAuthority::None => false,
        };
        allowed
            && self
                .lockouts
                .lock()
                .expect("lockouts lock")
                .locked(&call.peer.lock_key(), Instant::now())
                .is_none()
    }

    /// A wrong door code in `call`: counted against its peer; when that locks
    /// the peer, the lock is announced and the call ends for it.
    pub async fn wrong_code(&self, call: &CallShared) -> Option<EndReason> {
        let key = call.peer.lock_key();
        let now = Instant::now();
        let (until, count) = {
            let mut lockouts = self.lockouts.lock().expect("lockouts lock");
            let until = lockouts.wrong(&key, now);
            (until, lockouts.count(&key, now))
        };
        let Some(until) = until else {
            tracing::info!(call = call.id, caller = %call.peer.uri(), wrong = count, "wrong door code");
            return None;
        };
        let until_ms = now_ms() + until.saturating_duration_since(now).as_millis() as u64;
        let caller = call.peer.uri();
        tracing::warn!(call = call.id, %caller, reason = EndReason::DoorCodesLocked.as_str(), "five wrong door codes: door codes locked for {} s", crate::lockout::LOCK.as_secs());
        self.announce(Event::DoorCodesLocked {
            caller: &caller,
            until: until_ms,
        })
        .await;
        Some(EndReason::DoorCodesLocked)
    }

    /// Media received a DTMF digit in a session.
    pub fn on_dtmf(&self, session: &str, digit: &str) {
        let Some(digit) = digit.chars().next() else {
            return;
        };
        if let Some(call) = self.sessions.lock().expect("sessions lock").get(session) {
            call.send(Command::Dtmf(digit, crate::machine::active::DigitFrom::Rtp))
                .ok();
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
    pub fn on_media_state(&self, session: &str, state: &str, reason: &str) {
        use doorphone_interfaces::media::state;
        let command = match state {
            state::TIMEOUT => Command::MediaTimeout,
            state::FAILED => Command::MediaFailed(reason.to_owned()),
            // Stopped by media itself (never by us: our stops drop the
            // session from the table first).
            state::STOPPED => Command::MediaFailed(reason.to_owned()),
            _ => return,
        };
        if let Some(call) = self.sessions.lock().expect("sessions lock").get(session) {
            call.send(command).ok();
        }
    }

    /// The media service left the bus: every session it held is gone, and
    /// so is every call that had one.
    pub fn media_gone(&self) {
        let sessions: Vec<_> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .drain()
            .collect();
        for (session, call) in sessions {
            tracing::warn!(session, "media left the bus: ending the call");
            call.send(Command::MediaFailed(
                "the media service left the bus".into(),
            ))
            .ok();
        }
    }

    /// Ends every call (the agent stops), waiting at most `patience`.
    pub async fn hang_up_all(&self, patience: Duration) {
        for call in self.calls() {
            call.commands.send(Command::Shutdown).ok();
        }
        let deadline = Instant::now() + patience;
        loop {
            let idle = self.idle.notified();
            if self.calls().is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                tracing::warn!(calls = self.calls().len(), "calls still up at the stop");
                return;
            }
        }
    }
}
