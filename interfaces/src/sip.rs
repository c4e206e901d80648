//! `org.doorphone.Sip1`: the SIP agent. It registers the accounts, applies the
//! call policy to incoming calls, places outgoing calls, and shows every call
//! as an object under `/org/doorphone/Sip1/call/N`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use zbus::{DBusError, OwnedObjectPath, Type, Variant, proxy};

pub const BUS_NAME: &str = "org.doorphone.Sip1";
pub const OBJECT_PATH: &str = "/org/doorphone/Sip1";
pub const INTERFACE: &str = "org.doorphone.Sip1";
/// Interface of each call object, `/org/doorphone/Sip1/call/N`.
pub const CALL_INTERFACE: &str = "org.doorphone.Sip1.Call";
/// Object paths of calls start with this.
pub const CALL_PATH_PREFIX: &str = "/org/doorphone/Sip1/call/";

/// Errors `org.doorphone.Sip1` replies with.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.doorphone.Sip1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// A refused argument: a number that cannot be called, an unknown account.
    Invalid(String),
    /// No such call (or it has ended).
    NotFound(String),
    /// The request is valid but cannot be carried out now (the call is not in a
    /// state that allows it, media is not reachable, a call is in progress).
    Failed(String),
}

/// Call states, as the `State` property and `CallStateChanged` give them.
pub mod call_state {
    /// Incoming, ringing at the door phone.
    pub const RINGING: &str = "ringing";
    /// Outgoing, waiting for the callee to answer.
    pub const DIALING: &str = "dialing";
    /// Answered: media flows.
    pub const ANSWERED: &str = "answered";
    /// Answered, and held by this door phone (a page plays).
    pub const HELD: &str = "held";
    /// Ended; `EndReason` says why. The object goes away shortly after.
    pub const ENDED: &str = "ended";
}

/// Why a call ended, as `EndReason` and the history give it.
pub mod end_reason {
    /// The remote party hung up (BYE or CANCEL).
    pub const REMOTE_HANGUP: &str = "remote_hangup";
    /// Hung up here (`Hangup`).
    pub const LOCAL_HANGUP: &str = "local_hangup";
    /// The remote party refused the call (a 4xx, 5xx or 6xx final answer).
    pub const REFUSED: &str = "refused";
    /// Refused by the door phone's call policy (whitelist, DND, busy).
    pub const POLICY: &str = "policy";
    /// Nobody answered within the dial-in or dial-out time.
    pub const NO_ANSWER: &str = "no_answer";
    /// The maximum call time was reached.
    pub const MAX_CALL_TIME: &str = "max_call_time";
    /// The peer sent no RTP for the media RTP timeout.
    pub const RTP_TIMEOUT: &str = "rtp_timeout";
    /// Another branch of the same dialling answered first.
    pub const ANSWERED_ELSEWHERE: &str = "answered_elsewhere";
    /// The door was opened and the hang-up-after-open rule ended the call.
    pub const DOOR_OPENED: &str = "door_opened";
    /// Five wrong door codes were entered in the call.
    pub const WRONG_CODES: &str = "wrong_codes";
    /// Signalling or media failed (no route, no media, a transport error).
    pub const FAILED: &str = "failed";
    /// The SIP agent stopped.
    pub const SHUTDOWN: &str = "shutdown";
}

/// Account states, as `Accounts` and `AccountStateChanged` give them.
pub mod account_state {
    /// Registered at its server.
    pub const REGISTERED: &str = "registered";
    /// A REGISTER is on its way.
    pub const REGISTERING: &str = "registering";
    /// The last REGISTER failed; `code` and `reason` say how. Retried with back-off.
    pub const FAILED: &str = "failed";
    /// Not enabled, or not configured.
    pub const DISABLED: &str = "disabled";
}

/// One account's registration, as `Accounts` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AccountStatus {
    /// 1 or 2.
    pub id: u32,
    /// See [`account_state`].
    pub state: String,
    /// SIP status of the last REGISTER answer (0 when none came).
    pub code: u16,
    /// Reason phrase or error of the last attempt.
    pub reason: String,
    /// The address of record, `sip:user@server`.
    pub aor: String,
}

/// One ended call, as `History` gives it. Times are Unix milliseconds; 0 is never.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct HistoryEntry {
    /// `in` or `out`.
    pub direction: String,
    pub remote: String,
    /// `1`, `2` or `ip`.
    pub account: String,
    pub start: u64,
    pub answered: u64,
    pub end: u64,
    /// See [`end_reason`].
    pub end_reason: String,
    /// SIP status of a refusal (ours or the callee's); 0 otherwise.
    pub code: u16,
}

#[proxy(
    interface = "org.doorphone.Sip1",
    default_service = "org.doorphone.Sip1",
    default_path = "/org/doorphone/Sip1"
)]
pub trait Sip1 {
    /// Calls `number` through the dial plan. Options: `account` (s: `auto`, `1`,
    /// `2` or `ip`; default: the dial plan's), `video` (b, default: the
    /// auto-answer mode).
    async fn dial(
        &self,
        number: &str,
        options: HashMap<&str, Variant<'_>>,
    ) -> Result<OwnedObjectPath, Error>;
    /// Ended calls, oldest first (the last 1000).
    async fn history(&self) -> Result<Vec<HistoryEntry>, Error>;
    /// Starts call button `button`'s group or sequence call.
    async fn press_button(&self, button: u16) -> Result<(), Error>;

    /// Calls in progress.
    #[zbus(property)]
    fn calls(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
    /// The answered call, or `/` when there is none.
    #[zbus(property)]
    fn active_call(&self) -> zbus::Result<OwnedObjectPath>;
    /// Accounts 1 and 2.
    #[zbus(property)]
    fn accounts(&self) -> zbus::Result<Vec<AccountStatus>>;
    /// The `Config1` revision the agent works with (changes apply live).
    #[zbus(property)]
    fn config_revision(&self) -> zbus::Result<u64>;

    /// An incoming call was refused by the call policy.
    #[zbus(signal)]
    fn call_refused(&self, caller: &str, code: u16, reason: &str) -> zbus::Result<()>;
    /// A call changed state (see [`call_state`]); `reason` says why.
    #[zbus(signal)]
    fn call_state_changed(
        &self,
        call: zbus::ObjectPath<'_>,
        state: &str,
        reason: &str,
    ) -> zbus::Result<()>;
    /// A button's call plan ended: `outcome` is `answered` (by `answered_by`),
    /// `no_answer`, `refused`, `failed` or `cancelled`.
    #[zbus(signal)]
    fn button_call_finished(
        &self,
        button: u16,
        outcome: &str,
        answered_by: &str,
    ) -> zbus::Result<()>;
    /// A no-answer action (`ftp`, `email`, `http`) failed after its retry.
    #[zbus(signal)]
    fn action_failed(&self, action: &str, error: &str) -> zbus::Result<()>;
    /// An account's registration changed.
    #[zbus(signal)]
    fn account_state_changed(
        &self,
        account: u32,
        state: &str,
        code: u16,
        reason: &str,
    ) -> zbus::Result<()>;
}

#[proxy(
    interface = "org.doorphone.Sip1.Call",
    default_service = "org.doorphone.Sip1"
)]
pub trait Call {
    /// Answers a ringing incoming call.
    async fn answer(&self) -> Result<(), Error>;
    /// Ends the call: refuses it while it rings, cancels it while it dials,
    /// BYE once answered.
    async fn hangup(&self) -> Result<(), Error>;
    /// Holds an answered call (the peer gets a re-INVITE with `sendonly`).
    async fn hold(&self) -> Result<(), Error>;
    /// Resumes a held call.
    async fn resume(&self) -> Result<(), Error>;

    /// See [`call_state`].
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    /// `in` or `out`.
    #[zbus(property)]
    fn direction(&self) -> zbus::Result<String>;
    /// The other party's URI.
    #[zbus(property)]
    fn remote(&self) -> zbus::Result<String>;
    /// `1`, `2` or `ip`.
    #[zbus(property)]
    fn account(&self) -> zbus::Result<String>;
    /// `audio` or `video`.
    #[zbus(property)]
    fn media_mode(&self) -> zbus::Result<String>;
    /// Unix milliseconds.
    #[zbus(property)]
    fn start_time(&self) -> zbus::Result<u64>;
    /// Unix milliseconds, 0 until answered.
    #[zbus(property)]
    fn answer_time(&self) -> zbus::Result<u64>;
    /// See [`end_reason`]; empty while the call lasts.
    #[zbus(property)]
    fn end_reason(&self) -> zbus::Result<String>;
    /// The media session (`Media1`), `/` when none.
    #[zbus(property)]
    fn media_session(&self) -> zbus::Result<OwnedObjectPath>;
}
