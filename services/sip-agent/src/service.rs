//! `org.doorphone.Sip1` on the bus, and one `org.doorphone.Sip1.Call` object per
//! call in progress.

use std::collections::HashMap;
use std::sync::Arc;

use doorphone_interfaces::sip::{AccountStatus, Error, HistoryEntry, OBJECT_PATH};
use zbus::interface;
use zbus::object_server::SignalEmitter;
use zbus::{ObjectPath, OwnedObjectPath, OwnedVariant as OwnedValue};

use crate::agent::{Agent, CallShared, Command};
use crate::policy::Via;

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
        match self.agent.dial(number, account, video).await {
            Ok(call) => Ok(call.path.clone()),
            Err(e) if e.starts_with("media") => Err(Error::Failed(e)),
            Err(e) => Err(Error::Invalid(e)),
        }
    }

    /// Starts call button `button`'s group or sequence call (as a press of
    /// the physical button does).
    async fn press_button(&self, button: u16) -> Result<(), Error> {
        crate::buttons::press(&self.agent, button)
            .await
            .map_err(|e| match e {
                e if e.contains("not configured") => Error::NotFound(e),
                e if e.starts_with("media") || e.contains("in progress") => Error::Failed(e),
                e => Error::Invalid(e),
            })
    }

    /// Ended calls, oldest first (the last 1000).
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

    /// An incoming call was refused by the call policy.
    #[zbus(signal)]
    async fn call_refused(
        emitter: &SignalEmitter<'_>,
        caller: &str,
        code: u16,
        reason: &str,
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

fn failed(e: String) -> Error {
    Error::Failed(e)
}

#[interface(name = "org.doorphone.Sip1.Call")]
impl CallObject {
    /// Answers a ringing incoming call.
    async fn answer(&self) -> Result<(), Error> {
        self.call.ask(Command::Answer).await.map_err(failed)
    }

    /// Ends the call: refuses it while it rings, cancels it while it dials, BYE
    /// once answered.
    async fn hangup(&self) -> Result<(), Error> {
        self.call.ask(Command::Hangup).await.map_err(failed)
    }

    /// Holds an answered call.
    async fn hold(&self) -> Result<(), Error> {
        self.call.ask(Command::Hold).await.map_err(failed)
    }

    /// Resumes a held call.
    async fn resume(&self) -> Result<(), Error> {
        self.call.ask(Command::Resume).await.map_err(failed)
    }

    #[zbus(property)]
    fn state(&self) -> String {
        self.call.props().state
    }

    #[zbus(property)]
    fn direction(&self) -> String {
        self.call.props().direction
    }

    #[zbus(property)]
    fn remote(&self) -> String {
        self.call.props().remote
    }

    #[zbus(property)]
    fn account(&self) -> String {
        self.call.props().account
    }

    #[zbus(property)]
    fn media_mode(&self) -> String {
        self.call.props().media_mode
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
        self.call.props().end_reason
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

async fn sip_iface(
    conn: &zbus::Connection,
) -> Option<zbus::object_server::InterfaceRef<SipService>> {
    conn.object_server()
        .interface::<_, SipService>(OBJECT_PATH)
        .await
        .ok()
}

/// Puts a call's object on the bus and announces it.
pub async fn publish(agent: &Arc<Agent>, call: &Arc<CallShared>) {
    let object = CallObject { call: call.clone() };
    if let Err(e) = agent.conn.object_server().at(&call.path, object).await {
        tracing::warn!("cannot serve {}: {e}", call.path);
    }
    let p = call.props();
    if let Some(iface) = sip_iface(&agent.conn).await {
        let emitter = iface.signal_emitter();
        log(SipService::call_state_changed(emitter, call.path.as_ref(), &p.state, "new").await);
        log(iface.get().await.calls_changed(emitter).await);
    }
}

/// Takes an ended call's object off the bus.
pub async fn unpublish(conn: &zbus::Connection, call: &Arc<CallShared>) {
    conn.object_server()
        .remove::<CallObject, _>(&call.path)
        .await
        .ok();
    if let Some(iface) = sip_iface(conn).await {
        log(iface
            .get()
            .await
            .calls_changed(iface.signal_emitter())
            .await);
    }
}

pub async fn call_state_changed(
    conn: &zbus::Connection,
    call: &CallShared,
    state: &str,
    reason: &str,
) {
    if let Ok(iface) = conn
        .object_server()
        .interface::<_, CallObject>(&call.path)
        .await
    {
        log(iface
            .get()
            .await
            .state_changed(iface.signal_emitter())
            .await);
    }
    if let Some(iface) = sip_iface(conn).await {
        log(SipService::call_state_changed(
            iface.signal_emitter(),
            call.path.as_ref(),
            state,
            reason,
        )
        .await);
    }
}

pub async fn active_call_changed(conn: &zbus::Connection) {
    if let Some(iface) = sip_iface(conn).await {
        log(iface
            .get()
            .await
            .active_call_changed(iface.signal_emitter())
            .await);
    }
}

pub async fn call_refused(conn: &zbus::Connection, caller: &str, code: u16, reason: &str) {
    if let Some(iface) = sip_iface(conn).await {
        log(SipService::call_refused(iface.signal_emitter(), caller, code, reason).await);
    }
}

pub async fn account_changed(conn: &zbus::Connection, status: &AccountStatus) {
    if let Some(iface) = sip_iface(conn).await {
        let emitter = iface.signal_emitter();
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
}

pub async fn config_revision_changed(conn: &zbus::Connection) {
    if let Some(iface) = sip_iface(conn).await {
        log(iface
            .get()
            .await
            .config_revision_changed(iface.signal_emitter())
            .await);
    }
}

pub async fn button_call_finished(
    conn: &zbus::Connection,
    button: u16,
    outcome: &str,
    answered_by: &str,
) {
    if let Some(iface) = sip_iface(conn).await {
        log(
            SipService::button_call_finished(iface.signal_emitter(), button, outcome, answered_by)
                .await,
        );
    }
}

pub async fn action_failed(conn: &zbus::Connection, action: &str, error: &str) {
    if let Some(iface) = sip_iface(conn).await {
        log(SipService::action_failed(iface.signal_emitter(), action, error).await);
    }
}
