//! `org.doorphone.Sip1` on the bus, one `org.doorphone.Sip1.Call` object per
//! call in progress, and the agent's [`Event`]s as signals and properties.

use std::collections::HashMap;
use std::sync::Arc;

use doorphone_interfaces::sip::{AccountMedia, AccountStatus, Error, HistoryEntry, OBJECT_PATH};
use zbus::interface;
use zbus::object_server::SignalEmitter;
use zbus::{ObjectPath, OwnedObjectPath, OwnedVariant as OwnedValue};

use crate::agent::Agent;
use crate::call::{CallShared, Command};
use crate::events::{Announcer, Event};
use crate::identity::Via;
use crate::ports::BoxFuture;

pub struct SipService {
    agent: Arc<Agent>,
}

impl SipService {
    pub fn new(agent: Arc<Agent>) -> SipService {
        SipService { agent }
    }
}

fn no_call() -> OwnedObjectPath {
    OwnedObjectPath::try_from("/").expect("/ is a path")
}

#[interface(name = "org.doorphone.Sip1")]
impl SipService {
    /// Calls `number` through the dial plan. Options: `account` (s: `auto`, `1`,
    /// `2` or `ip`), `video` (b).
    async fn dial(
        &self,
        number: &str,
        options: HashMap<String, OwnedValue>,
    ) -> Result<OwnedObjectPath, Error> {
        let account = match options.get("account").map(|v| String::try_from(v.clone())) {
            None => None,
            Some(Ok(a)) => match a.as_str() {
                "auto" => None,
                "1" => Some(Via::Account(1)),
                "2" => Some(Via::Account(2)),
                "ip" => Some(Via::Ip),
                other => {
                    return Err(Error::Invalid(format!(
                        "account: {other:?} is not auto, 1, 2 or ip"
                    )));
                }
            },
            Some(Err(_)) => return Err(Error::Invalid("account: must be a string".into())),
        };
        let video = match options.get("video").map(|v| bool::try_from(v.clone())) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return Err(Error::Invalid("video: must be a boolean".into())),
        };
        let call = self.agent.dial(number, account, video).await?;
        Ok(call.path.clone())
    }

    /// Starts call button `button`'s group or sequence call (as a press of
    /// the physical button does).
    async fn press_button(&self, button: u16) -> Result<(), Error> {
        Ok(crate::buttons::press(&self.agent, button).await?)
    }

    /// Ended and refused calls, oldest first (the last 1000 calls and the last
    /// 100 refusals).
    async fn history(&self) -> Vec<HistoryEntry> {
        self.agent.history.list().await
    }

    /// Calls in progress.
    #[zbus(property)]
    fn calls(&self) -> Vec<OwnedObjectPath> {
        self.agent.calls().iter().map(|c| c.path.clone()).collect()
    }

    /// The answered call, or `/` when there is none.
    #[zbus(property)]
    fn active_call(&self) -> OwnedObjectPath {
        self.agent
            .active_call()
            .map_or_else(no_call, |c| c.path.clone())
    }

    /// Accounts 1 and 2 and their registration.
    #[zbus(property)]
    fn accounts(&self) -> Vec<AccountStatus> {
        self.agent.accounts.lock().expect("accounts lock").clone()
    }

    /// The `Config1` revision the agent works with.
    #[zbus(property)]
    fn config_revision(&self) -> u64 {
        self.agent.settings().revision
    }

    /// Each configured account's media encryption, and a warning where its
    /// SDES keys travel in clear (any transport but TLS).
    #[zbus(property)]
    fn media_encryption(&self) -> Vec<AccountMedia> {
        self.agent.settings().media_security()
    }

    /// An incoming call was refused by the call policy; `reason` is one of
    /// `untrusted_source`, `not_whitelisted`, `dnd`, `busy`,
    /// `door_codes_locked`.
    #[zbus(signal)]
    async fn call_refused(
        emitter: &SignalEmitter<'_>,
        caller: &str,
        code: u16,
        reason: &str,
    ) -> zbus::Result<()>;

    /// Five wrong door codes within ten minutes: DTMF door opening is locked
    /// for `caller` until `until` (Unix milliseconds).
    #[zbus(signal)]
    async fn door_codes_locked(
        emitter: &SignalEmitter<'_>,
        caller: &str,
        until: u64,
    ) -> zbus::Result<()>;

    /// A call changed state; `reason` says why.
    #[zbus(signal)]
    async fn call_state_changed(
        emitter: &SignalEmitter<'_>,
        call: ObjectPath<'_>,
        state: &str,
        reason: &str,
    ) -> zbus::Result<()>;

    /// A button's call plan ended: `outcome` is `answered` (by
    /// `answered_by`), `no_answer`, `refused`, `failed` or `cancelled`.
    #[zbus(signal)]
    async fn button_call_finished(
        emitter: &SignalEmitter<'_>,
        button: u16,
        outcome: &str,
        answered_by: &str,
    ) -> zbus::Result<()>;

    /// A no-answer action (`ftp`, `email`, `http`) failed after its retry.
    #[zbus(signal)]
    async fn action_failed(
        emitter: &SignalEmitter<'_>,
        action: &str,
        error: &str,
    ) -> zbus::Result<()>;

    /// An account's registration changed.
    #[zbus(signal)]
    async fn account_state_changed(
        emitter: &SignalEmitter<'_>,
        account: u32,
        state: &str,
        code: u16,
        reason: &str,
    ) -> zbus::Result<()>;
}

/// One call, at `/org/doorphone/Sip1/call/N`.
pub struct CallObject {
    call: Arc<CallShared>,
}

#[interface(name = "org.doorphone.Sip1.Call")]
impl CallObject {
    /// Answers a ringing incoming call.
    async fn answer(&self) -> Result<(), Error> {
        Ok(self.call.ask(Command::Answer).await?)
    }

    /// Ends the call: refuses it while it rings, cancels it while it dials, BYE
    /// once answered.
    async fn hangup(&self) -> Result<(), Error> {
        Ok(self.call.ask(Command::Hangup).await?)
    }

    /// Holds an answered call.
    async fn hold(&self) -> Result<(), Error> {
        Ok(self.call.ask(Command::Hold).await?)
    }

    /// Resumes a held call.
    async fn resume(&self) -> Result<(), Error> {
        Ok(self.call.ask(Command::Resume).await?)
    }

    #[zbus(property)]
    fn state(&self) -> String {
        self.call.state().as_str().to_owned()
    }

    #[zbus(property)]
    fn direction(&self) -> String {
        self.call.props().direction.as_str().to_owned()
    }

    /// What the peer's header names it (shown, not trusted).
    #[zbus(property)]
    fn remote(&self) -> String {
        self.call.props().remote
    }

    /// Who the door phone verified the peer to be.
    #[zbus(property)]
    fn identity(&self) -> String {
        self.call.props().identity
    }

    #[zbus(property)]
    fn account(&self) -> String {
        self.call.props().account
    }

    #[zbus(property)]
    fn media_mode(&self) -> String {
        if self.call.props().video {
            "video"
        } else {
            "audio"
        }
        .to_owned()
    }

    #[zbus(property)]
    fn start_time(&self) -> u64 {
        self.call.props().start_time
    }

    #[zbus(property)]
    fn answer_time(&self) -> u64 {
        self.call.props().answer_time
    }

    #[zbus(property)]
    fn end_reason(&self) -> String {
        self.call
            .props()
            .end_reason
            .map_or("", |r| r.as_str())
            .to_owned()
    }

    #[zbus(property)]
    fn media_session(&self) -> OwnedObjectPath {
        self.call
            .props()
            .media_session
            .and_then(|s| OwnedObjectPath::try_from(s).ok())
            .unwrap_or_else(no_call)
    }
}

fn log(result: zbus::Result<()>) {
    if let Err(e) = result {
        tracing::warn!("cannot emit a signal: {e}");
    }
}

/// The agent's events on the bus.
pub struct BusAnnouncer {
    conn: zbus::Connection,
}

impl BusAnnouncer {
    pub fn new(conn: zbus::Connection) -> BusAnnouncer {
        BusAnnouncer { conn }
    }

    async fn sip(&self) -> Option<zbus::object_server::InterfaceRef<SipService>> {
        self.conn
            .object_server()
            .interface::<_, SipService>(OBJECT_PATH)
            .await
            .ok()
    }

    async fn emit(&self, event: Event<'_>) {
        let Some(iface) = self.sip().await else {
            return;
        };
        let emitter = iface.signal_emitter();
        match event {
            Event::CallAdded(call) => {
                let object = CallObject { call: call.clone() };
                if let Err(e) = self.conn.object_server().at(&call.path, object).await {
                    tracing::warn!("cannot serve {}: {e}", call.path);
                }
                let state = call.state().as_str();
                log(
                    SipService::call_state_changed(emitter, call.path.as_ref(), state, "new").await,
                );
                log(iface.get().await.calls_changed(emitter).await);
            }
            Event::CallState(call, state, reason) => {
                if let Ok(object) = self
                    .conn
                    .object_server()
                    .interface::<_, CallObject>(&call.path)
                    .await
                {
                    log(object
                        .get()
                        .await
                        .state_changed(object.signal_emitter())
                        .await);
                }
                log(SipService::call_state_changed(
                    emitter,
                    call.path.as_ref(),
                    state.as_str(),
                    reason,
                )
                .await);
            }
            Event::CallRemoved { call, was_active } => {
                self.conn
                    .object_server()
                    .remove::<CallObject, _>(&call.path)
                    .await
                    .ok();
                let service = iface.get().await;
                if was_active {
                    // Both change at once: one signal names both.
                    let changed = HashMap::from([
                        ("Calls", zbus::Variant::from(service.calls())),
                        ("ActiveCall", zbus::Variant::from(service.active_call())),
                    ]);
                    drop(service);
                    log(zbus::fdo::Properties::properties_changed(
                        emitter,
                        zbus::names::InterfaceName::from_static_str_unchecked(
                            doorphone_interfaces::sip::INTERFACE,
                        ),
                        changed,
                        std::borrow::Cow::Borrowed(&[]),
                    )
                    .await);
                } else {
                    log(service.calls_changed(emitter).await);
                }
            }
            Event::ActiveCallChanged => {
                log(iface.get().await.active_call_changed(emitter).await);
            }
            Event::CallRefused {
                caller,
                code,
                reason,
            } => log(SipService::call_refused(emitter, caller, code, reason.as_str()).await),
            Event::DoorCodesLocked { caller, until } => {
                log(SipService::door_codes_locked(emitter, caller, until).await)
            }
            Event::AccountChanged(status) => {
                log(SipService::account_state_changed(
                    emitter,
                    status.id,
                    &status.state,
                    status.code,
                    &status.reason,
                )
                .await);
                log(iface.get().await.accounts_changed(emitter).await);
            }
            Event::ConfigRevision => {
                let service = iface.get().await;
                log(service.media_encryption_changed(emitter).await);
                log(service.config_revision_changed(emitter).await);
            }
            Event::ButtonCallFinished {
                button,
                outcome,
                answered_by,
            } => log(SipService::button_call_finished(emitter, button, outcome, answered_by).await),
            Event::ActionFailed { action, error } => {
                log(SipService::action_failed(emitter, action, error).await)
            }
        }
    }
}

impl Announcer for BusAnnouncer {
    fn announce<'a>(&'a self, event: Event<'a>) -> BoxFuture<'a, ()> {
        Box::pin(self.emit(event))
    }
}
