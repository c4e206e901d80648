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

/// A call's state, as the `State` property and `CallStateChanged` give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    /// Incoming, ringing at the door phone.
    Ringing,
    /// Outgoing, waiting for the callee to answer.
    Dialing,
    /// Answered: media flows.
    Answered,
    /// Answered, and held by this door phone (a page plays).
    Held,
    /// Ended; `EndReason` says why. The object goes away shortly after.
    Ended,
}

impl CallState {
    /// The word on the bus.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::Dialing => "dialing",
            CallState::Answered => "answered",
            CallState::Held => "held",
            CallState::Ended => "ended",
        }
    }

    /// Answered or held: the call that has the door phone.
    pub const fn is_active(self) -> bool {
        matches!(self, CallState::Answered | CallState::Held)
    }
}

/// Call states as words, for clients that compare the bus strings.
pub mod call_state {
    use super::CallState;
    pub const RINGING: &str = CallState::Ringing.as_str();
    pub const DIALING: &str = CallState::Dialing.as_str();
    pub const ANSWERED: &str = CallState::Answered.as_str();
    pub const HELD: &str = CallState::Held.as_str();
    pub const ENDED: &str = CallState::Ended.as_str();
}

/// Why a call ended, or why the door phone refused it, as `EndReason`,
/// `CallRefused` and the history give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The remote party hung up (BYE or CANCEL).
    RemoteHangup,
    /// Hung up here (`Hangup`).
    LocalHangup,
    /// The remote party refused the call (a 4xx, 5xx or 6xx final answer).
    Refused,
    /// Refused: the request came from no source the door phone trusts for it
    /// (direct IP calls are off and it is no account's server or proxy; an
    /// in-dialog request from another address than the call's).
    UntrustedSource,
    /// Refused by prevent SIP hacking: the caller is no whitelisted contact.
    NotWhitelisted,
    /// Refused by the account's Do Not Disturb.
    Dnd,
    /// Refused: another call has the door phone.
    Busy,
    /// Five wrong door codes within ten minutes: door codes are locked for
    /// this caller (the call ends; its next calls are refused while locked).
    DoorCodesLocked,
    /// Nobody answered within the dial-in or dial-out time.
    NoAnswer,
    /// The maximum call time was reached.
    MaxCallTime,
    /// The peer sent no RTP for the media RTP timeout.
    RtpTimeout,
    /// The door was opened and the hang-up-after-open rule ended the call.
    DoorOpened,
    /// The call's media session died (media stopped or crashed, its pipeline
    /// failed).
    MediaFailed,
    /// Signalling failed (no route, a transport error, a refused answer).
    Failed,
    /// The SIP agent stopped.
    Shutdown,
}

impl EndReason {
    /// The word on the bus.
    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::RemoteHangup => "remote_hangup",
            EndReason::LocalHangup => "local_hangup",
            EndReason::Refused => "refused",
            EndReason::UntrustedSource => "untrusted_source",
            EndReason::NotWhitelisted => "not_whitelisted",
            EndReason::Dnd => "dnd",
            EndReason::Busy => "busy",
            EndReason::DoorCodesLocked => "door_codes_locked",
            EndReason::NoAnswer => "no_answer",
            EndReason::MaxCallTime => "max_call_time",
            EndReason::RtpTimeout => "rtp_timeout",
            EndReason::DoorOpened => "door_opened",
            EndReason::MediaFailed => "media_failed",
            EndReason::Failed => "failed",
            EndReason::Shutdown => "shutdown",
        }
    }

    /// A refusal by the door phone's own call policy (kept apart from the
    /// calls in the history).
    pub const fn is_refusal(self) -> bool {
        matches!(
            self,
            EndReason::UntrustedSource
                | EndReason::NotWhitelisted
                | EndReason::Dnd
                | EndReason::Busy
                | EndReason::DoorCodesLocked
        )
    }
}

/// End reasons as words, for clients that compare the bus strings.
pub mod end_reason {
    use super::EndReason;
    pub const REMOTE_HANGUP: &str = EndReason::RemoteHangup.as_str();
    pub const LOCAL_HANGUP: &str = EndReason::LocalHangup.as_str();
    pub const REFUSED: &str = EndReason::Refused.as_str();
    pub const UNTRUSTED_SOURCE: &str = EndReason::UntrustedSource.as_str();
    pub const NOT_WHITELISTED: &str = EndReason::NotWhitelisted.as_str();
    pub const DND: &str = EndReason::Dnd.as_str();
    pub const BUSY: &str = EndReason::Busy.as_str();
    pub const DOOR_CODES_LOCKED: &str = EndReason::DoorCodesLocked.as_str();
    pub const NO_ANSWER: &str = EndReason::NoAnswer.as_str();
    pub const MAX_CALL_TIME: &str = EndReason::MaxCallTime.as_str();
    pub const RTP_TIMEOUT: &str = EndReason::RtpTimeout.as_str();
    pub const DOOR_OPENED: &str = EndReason::DoorOpened.as_str();
    pub const MEDIA_FAILED: &str = EndReason::MediaFailed.as_str();
    pub const FAILED: &str = EndReason::Failed.as_str();
    pub const SHUTDOWN: &str = EndReason::Shutdown.as_str();
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

/// One account's media encryption, as `MediaEncryption` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AccountMedia {
    /// 1 or 2.
    pub id: u32,
    /// `off`, `optional` or `mandatory` (the account's `media_encryption`).
    pub encryption: String,
    /// Empty, or why the encryption is weaker than it looks: SDES keys travel
    /// in the SIP messages, in clear over any transport but TLS.
    pub warning: String,
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
    /// Each configured account's media encryption, and its warning.
    #[zbus(property)]
    fn media_encryption(&self) -> zbus::Result<Vec<AccountMedia>>;

    /// An incoming call was refused by the call policy: `caller` is who the
    /// door phone takes it for (a SIP URI, or `sip:ADDRESS` for a direct
    /// call), `reason` one of the refusal [`EndReason`]s
    /// (`untrusted_source`, `not_whitelisted`, `dnd`, `busy`,
    /// `door_codes_locked`).
    #[zbus(signal)]
    fn call_refused(&self, caller: &str, code: u16, reason: &str) -> zbus::Result<()>;
    /// Five wrong door codes within ten minutes: DTMF door opening is locked
    /// for `caller` until `until` (Unix milliseconds).
    #[zbus(signal)]
    fn door_codes_locked(&self, caller: &str, until: u64) -> zbus::Result<()>;
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
    /// The other party's URI, as its From (or our To) header names it: shown,
    /// not trusted.
    #[zbus(property)]
    fn remote(&self) -> zbus::Result<String>;
    /// Who the door phone verified the other party to be: for a call through
    /// an account the caller's URI its server asserts (`sip:200@pbx`), for a
    /// direct call the address it came from (`sip:192.0.2.7:5060`). The
    /// whitelist and the DTMF authority go by this.
    #[zbus(property)]
    fn identity(&self) -> zbus::Result<String>;
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
