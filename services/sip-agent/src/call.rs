//! A call in progress as the rest of the agent and the bus see it: its
//! properties, the commands its task takes, and who the other party is.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use doorphone_interfaces::sip::{CALL_PATH_PREFIX, CallState, EndReason};
use tokio::sync::{mpsc, oneshot};
use zbus::OwnedObjectPath;

use crate::error::AgentError;
use crate::identity::{Identity, Via};
use crate::machine::active::DigitFrom;
use crate::ports::Leg;

/// Where a command's outcome goes.
pub type Done = oneshot::Sender<Result<(), AgentError>>;

/// What a call's task is asked to do, or told.
#[derive(Debug)]
pub enum Command {
    Answer(Done),
    Hangup(Done),
    Hold(Done),
    Resume(Done),
    /// Another call was answered: a ringing call is refused as busy.
    Busy,
    /// Media saw no RTP from the peer for its time-out.
    MediaTimeout,
    /// The call's media session died (media left the bus, or its pipeline
    /// failed); why.
    MediaFailed(String),
    /// A DTMF digit from the peer.
    Dtmf(char, DigitFrom),
    /// A door was opened, for this reason (`Relay1.DoorOpened`).
    DoorOpened(String),
    /// The agent stops.
    Shutdown,
}

/// Incoming or outgoing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// A call's properties, as its D-Bus object shows them.
#[derive(Debug, Clone)]
pub struct CallProps {
    pub state: CallState,
    pub direction: Direction,
    /// What the peer's header says it is (shown, not trusted).
    pub remote: String,
    /// Who the door phone verified the peer to be.
    pub identity: String,
    pub account: String,
    pub video: bool,
    pub start_time: u64,
    pub answer_time: u64,
    pub end_reason: Option<EndReason>,
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
    pub dialog: Mutex<Option<Arc<dyn Leg>>>,
    /// Who is at the other end, as the network proved it.
    pub peer: Identity,
    pub via: Via,
    /// The Call-IDs of the call's dialogs (one per branch of an outgoing call).
    pub call_ids: Mutex<Vec<String>>,
    pub commands: mpsc::UnboundedSender<Command>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl CallShared {
    pub fn new(
        id: u32,
        direction: Direction,
        remote: &str,
        peer: Identity,
        via: Via,
        video: bool,
    ) -> (CallShared, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let call = CallShared {
            id,
            path: OwnedObjectPath::try_from(format!("{CALL_PATH_PREFIX}{id}"))
                .expect("a call path is valid"),
            props: Mutex::new(CallProps {
                state: match direction {
                    Direction::In => CallState::Ringing,
                    Direction::Out => CallState::Dialing,
                },
                direction,
                remote: remote.to_owned(),
                identity: peer.uri(),
                account: via.label(),
                video,
                start_time: now_ms(),
                answer_time: 0,
                end_reason: None,
                media_session: None,
                code: 0,
                confirmed: false,
            }),
            dialog: Mutex::new(None),
            peer,
            via,
            call_ids: Mutex::new(Vec::new()),
            commands: tx,
        };
        (call, rx)
    }

    pub fn props(&self) -> CallProps {
        self.props.lock().expect("call lock").clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut CallProps)) {
        f(&mut self.props.lock().expect("call lock"));
    }

    pub fn state(&self) -> CallState {
        self.props.lock().expect("call lock").state
    }

    /// Sends a command and waits for its outcome.
    pub async fn ask(&self, make: impl FnOnce(Done) -> Command) -> Result<(), AgentError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| AgentError::CallEnded)?;
        rx.await.map_err(|_| AgentError::CallEnded)?
    }

    pub fn add_call_id(&self, call_id: String) {
        self.call_ids.lock().expect("call lock").push(call_id);
    }

    pub fn has_call_id(&self, call_id: &str) -> bool {
        self.call_ids
            .lock()
            .expect("call lock")
            .iter()
            .any(|c| c == call_id)
    }

    /// The answered call holds the door phone: its peer acknowledged the
    /// answer and its dialog is alive. An answer never acknowledged, or a
    /// call whose BYE is on its way, never locks the door phone.
    pub fn holds_the_door(&self) -> bool {
        let p = self.props.lock().expect("call lock");
        let alive = !self
            .dialog
            .lock()
            .expect("call lock")
            .as_ref()
            .as_ref()
            .is_some_and(|d| d.ended());
        p.state.is_active() && p.confirmed && alive
    }
}
