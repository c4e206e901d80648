//! A call's dialog, incoming or outgoing, and its events as the agent needs
//! them. Bodies handed out are bus text (no NUL, valid UTF-8); a body that is
//! not comes as `None`, and the agent refuses it.

use std::sync::Arc;

use rsipstack::dialog::DialogId;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason, TransactionHandle};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HasHeaders;
use rsipstack::sip::{Header, Method, StatusCode};
use tokio::sync::mpsc;

use super::message::bus_text;
use super::{Error, Result};

fn sdp_header() -> Vec<Header> {
    vec![Header::ContentType("application/sdp".into())]
}

/// A body as SDP text: empty is none, and bytes no bus string holds are
/// `Some(Err(()))`.
fn sdp(body: &[u8]) -> Option<std::result::Result<String, ()>> {
    if body.is_empty() {
        return None;
    }
    Some(bus_text(body).map(str::to_owned).ok_or(()))
}

/// An incoming call's dialog.
#[derive(Clone)]
pub struct ServerCall {
    pub(super) dialog: InviteDialog,
}

impl ServerCall {
    /// 200 OK with our SDP: the answer to the caller's offer, or our offer
    /// when its INVITE had none (the answer then comes in the ACK).
    pub fn answer(&self, sdp: &str) -> Result<()> {
        Ok(self
            .dialog
            .accept(Some(sdp_header()), Some(sdp.as_bytes().to_vec()))?)
    }

    /// A final refusal while the call rings.
    pub fn reject(&self, code: u16) -> Result<()> {
        Ok(self.dialog.reject(Some(StatusCode::from(code)), None)?)
    }

    pub fn call_id(&self) -> String {
        self.dialog.id().call_id
    }
}

/// An outgoing call's dialog.
#[derive(Clone)]
pub struct ClientCall {
    pub(super) dialog: InviteDialog,
}

impl ClientCall {
    /// CANCEL while it rings, BYE once answered.
    pub async fn hangup(&self) -> Result<()> {
        Ok(self.dialog.hangup().await?)
    }

    pub fn call_id(&self) -> String {
        self.dialog.id().call_id
    }
}

/// One side of an answered call, incoming or outgoing.
#[derive(Clone)]
pub struct Dialog {
    dialog: InviteDialog,
    client: bool,
}

impl From<ServerCall> for Dialog {
    fn from(call: ServerCall) -> Dialog {
        Dialog {
            dialog: call.dialog,
            client: false,
        }
    }
}

impl From<ClientCall> for Dialog {
    fn from(call: ClientCall) -> Dialog {
        Dialog {
            dialog: call.dialog,
            client: true,
        }
    }
}

impl Dialog {
    /// Ends the answered call.
    pub async fn bye(&self) -> Result<()> {
        if self.client {
            Ok(self.dialog.hangup().await?)
        } else {
            Ok(self.dialog.bye().await?)
        }
    }

    /// The dialog has ended (BYE, CANCEL or a final refusal), even if the
    /// agent has not handled that event yet.
    pub fn ended(&self) -> bool {
        matches!(self.dialog.state(), DialogState::Terminated(..))
    }

    /// A re-INVITE with `sdp`; the peer's answer, if it gave one.
    pub async fn reinvite(&self, sdp: &str) -> Result<Option<String>> {
        let resp = self
            .dialog
            .reinvite(Some(sdp_header()), Some(sdp.as_bytes().to_vec()))
            .await?;
        match resp {
            Some(r) if r.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful => {
                match self::sdp(&r.body) {
                    None => Ok(None),
                    Some(Ok(answer)) => Ok(Some(answer)),
                    Some(Err(())) => Err(Error("the re-INVITE's answer is no SDP text".into())),
                }
            }
            Some(r) => Err(Error(format!("re-INVITE refused: {}", r.status_code))),
            None => Err(Error("re-INVITE outside an established call".into())),
        }
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
    /// Our INVITE is on its way: dial-out time counts from here.
    Sent,
    /// A provisional answer to our INVITE (180, 183).
    Progress(u16),
    /// 200 OK to our INVITE, with the peer's SDP (`Err` when it is no text).
    Answered(std::result::Result<String, ()>),
    /// The ACK to our 200 OK arrived; with the peer's answer when our 200
    /// carried the offer (late offer).
    Confirmed(Option<std::result::Result<String, ()>>),
    /// The peer sent a re-INVITE (or an UPDATE with SDP), its offer (none for
    /// a re-INVITE without SDP: ours goes in the 200, the answer in the ACK);
    /// answer it through the reply.
    Reoffer(Option<std::result::Result<String, ()>>, Reply),
    /// An INFO request (DTMF relay); it is answered 200 already. Content type
    /// and body, `None` when the body is no text.
    Info(String, Option<String>),
    Ended(Ended),
}

/// The answer to a request inside a dialog.
#[derive(Debug)]
pub struct Reply(TransactionHandle);

impl Reply {
    pub async fn ok(self, sdp: Option<&str>) {
        let headers = sdp.map(|_| sdp_header());
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

fn content_type(req: &rsipstack::sip::Request) -> String {
    req.headers()
        .iter()
        .find_map(|h| match h {
            Header::ContentType(c) => Some(c.value().to_owned()),
            _ => None,
        })
        .filter(|c| bus_text(c.as_bytes()).is_some())
        .unwrap_or_default()
}

impl CallEvents {
    pub(super) fn spawn(
        dialogs: Arc<DialogLayer>,
        dialog: InviteDialog,
        mut states: rsipstack::dialog::dialog::DialogStateReceiver,
        outcome: Option<
            rsipstack::platform::JoinHandle<rsipstack::dialog::invitation::InviteAsyncResult>,
        >,
    ) -> CallEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = outcome.is_some();
        let early_id: DialogId = dialog.id();
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
                    DialogState::Calling(_) => CallEvent::Sent,
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
                            CallEvent::Answered(sdp(&resp.body).unwrap_or(Ok(String::new())))
                        } else {
                            let ack = dialog.last_remote_ack();
                            CallEvent::Confirmed(ack.and_then(|a| sdp(&a.body)))
                        }
                    }
                    DialogState::Updated(_, req, handle)
                        if req.method == Method::Invite
                            || (req.method == Method::Update && !req.body.is_empty()) =>
                    {
                        CallEvent::Reoffer(sdp(&req.body), Reply(handle))
                    }
                    DialogState::Updated(_, _, handle) => {
                        handle.reply(StatusCode::OK).await.ok();
                        continue;
                    }
                    DialogState::Info(_, req, handle) => {
                        handle.reply(StatusCode::OK).await.ok();
                        CallEvent::Info(content_type(&req), bus_text(&req.body).map(str::to_owned))
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
