//! An answered call, incoming or outgoing, until its end: the [`Active`]
//! machine's timers, door codes by RFC 4733 and SIP INFO, hold and resume,
//! the peer's re-offers (with and without SDP), the late offer's answer in
//! the ACK, and a media session that dies.

use std::sync::Arc;

use doorphone_interfaces::relay::source;
use doorphone_interfaces::sip::{CallState, EndReason};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::Agent;
use crate::call::{CallShared, Command};
use crate::codes::info_digit;
use crate::error::AgentError;
use crate::machine::active::{Act, Active as Machine, DigitFrom, DtmfPaths};
use crate::ports::Leg;
use crate::stack::{CallEvent, CallEvents, Ended};

/// Sleeps until `at`, or forever when there is no deadline.
pub(crate) async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// An answered call.
pub struct Active {
    pub dialog: Arc<dyn Leg>,
    pub events: CallEvents,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub session: String,
    /// Our 200 carried the offer: the peer's answer comes in the ACK.
    pub awaiting_answer: bool,
}

impl Active {
    pub async fn run(mut self, agent: Arc<Agent>, call: Arc<CallShared>) {
        *call.dialog.lock().expect("call lock") = Some(self.dialog.clone());
        let settings = agent.settings();
        let mode = match call.via {
            crate::identity::Via::Account(id) => settings
                .doc
                .accounts
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.dtmf_mode),
            crate::identity::Via::Ip => None,
        };
        let mut machine = Machine::new(
            Instant::now(),
            settings.doc.calls.max_call_time,
            DtmfPaths::of(mode),
        );
        // A re-INVITE without SDP got our offer: its answer is in the ACK.
        let mut reoffer_answer_due = false;
        let reason = loop {
            tokio::select! {
                _ = until(machine.deadline()) => match machine.due(Instant::now()) {
                    Act::Bye(reason) => break reason,
                    Act::Wrong => {
                        if let Some(reason) = agent.wrong_code(&call).await {
                            break reason;
                        }
                    }
                    _ => {}
                },
                command = self.commands.recv() => match command {
                    Some(Command::Hangup(done)) => {
                        done.send(Ok(())).ok();
                        break EndReason::LocalHangup;
                    }
                    Some(Command::Hold(done)) => {
                        let r = self.rehold(&agent, true).await;
                        if r.is_ok() {
                            agent.set_state(&call, CallState::Held, "held").await;
                        }
                        done.send(r).ok();
                    }
                    Some(Command::Resume(done)) => {
                        let r = self.rehold(&agent, false).await;
                        if r.is_ok() {
                            agent.set_state(&call, CallState::Answered, "resumed").await;
                        }
                        done.send(r).ok();
                    }
                    Some(Command::Answer(done)) => {
                        done.send(Err(AgentError::WrongState("the call is already answered"))).ok();
                    }
                    Some(Command::MediaTimeout) => {
                        tracing::info!(call = call.id, "no RTP from the peer: hanging up");
                        break EndReason::RtpTimeout;
                    }
                    Some(Command::MediaFailed(why)) => {
                        tracing::warn!(call = call.id, "the media session died ({why}): hanging up");
                        break EndReason::MediaFailed;
                    }
                    Some(Command::Busy) => {}
                    Some(Command::Dtmf(digit, from)) => {
                        if let Some(reason) = digit_entered(&agent, &call, &mut machine, digit, from).await {
                            break reason;
                        }
                    }
                    Some(Command::DoorOpened(opened_by)) => {
                        let rule = &agent.settings().doc.calls.hang_up_after_open;
                        if machine.door_opened(&opened_by, rule, Instant::now()) {
                            tracing::info!(call = call.id, source = opened_by, "door opened: hanging up in {} s", rule.timeout);
                        }
                    }
                    Some(Command::Shutdown) | None => break EndReason::Shutdown,
                },
                event = self.events.next() => match event {
                    Some(CallEvent::Confirmed(ack)) => {
                        call.update(|p| p.confirmed = true);
                        if self.awaiting_answer || reoffer_answer_due {
                            let initial = std::mem::take(&mut self.awaiting_answer);
                            reoffer_answer_due = false;
                            let taken = match ack {
                                Some(Ok(sdp)) => agent
                                    .media()
                                    .set_remote(self.session.clone(), sdp)
                                    .await
                                    .map_err(|e| e.to_string()),
                                Some(Err(())) => Err("the ACK's SDP is no text".to_owned()),
                                None => Err("the ACK carried no answer".to_owned()),
                            };
                            if let Err(e) = taken {
                                tracing::info!(call = call.id, "answer to our offer refused: {e}");
                                if initial {
                                    break EndReason::Failed;
                                }
                            }
                        }
                    }
                    Some(CallEvent::Info(content_type, body)) => {
                        if let Some(digit) = body.as_deref().and_then(|b| info_digit(&content_type, b))
                            && let Some(reason) = digit_entered(&agent, &call, &mut machine, digit, DigitFrom::Info).await
                        {
                            break reason;
                        }
                    }
                    Some(CallEvent::Reoffer(offer, reply)) => match offer {
                        Some(Ok(sdp)) => match agent.media().set_remote(self.session.clone(), sdp).await {
                            Ok(answer) => reply.ok(Some(&answer)).await,
                            Err(e) => {
                                tracing::info!(call = call.id, "re-offer refused: {e}");
                                reply.refuse(488).await;
                            }
                        },
                        Some(Err(())) => reply.refuse(488).await,
                        None => {
                            // Our offer in the 200, as the call stands now.
                            let held = call.state() == CallState::Held;
                            match agent.media().hold(self.session.clone(), held).await {
                                Ok(offer) => {
                                    reoffer_answer_due = true;
                                    reply.ok(Some(&offer)).await;
                                }
                                Err(e) => {
                                    tracing::info!(call = call.id, "no offer for an empty re-INVITE: {e}");
                                    reply.refuse(500).await;
                                }
                            }
                        }
                    },
                    Some(CallEvent::Ended(Ended::RemoteBye | Ended::RemoteCancel)) => {
                        break EndReason::RemoteHangup;
                    }
                    Some(CallEvent::Ended(_)) | None => break EndReason::Failed,
                    Some(_) => {}
                },
            }
        };
        if reason != EndReason::RemoteHangup
            && let Err(e) = self.dialog.bye().await
        {
            tracing::debug!(call = call.id, "BYE: {e}");
        }
        agent.stop_media(&self.session).await;
        agent.end(&call, reason, 0).await;
    }

    /// Holds or resumes: media's re-offer to the peer, the peer's answer to
    /// media.
    async fn rehold(&self, agent: &Agent, hold: bool) -> Result<(), AgentError> {
        let offer = agent.media().hold(self.session.clone(), hold).await?;
        match self.dialog.reinvite(offer).await {
            Ok(Some(answer)) => agent
                .media()
                .set_remote(self.session.clone(), answer)
                .await
                .map(|_| ())
                .map_err(AgentError::from),
            Ok(None) => Err(AgentError::Media(
                "the peer answered the re-INVITE without SDP".into(),
            )),
            Err(e) => Err(AgentError::Media(e.to_string())),
        }
    }
}

/// A digit from the peer: a door opens, or a wrong code counts. The end
/// reason when the call must end for it (door codes locked).
async fn digit_entered(
    agent: &Agent,
    call: &CallShared,
    machine: &mut Machine,
    digit: char,
    from: DigitFrom,
) -> Option<EndReason> {
    let may_open = agent.may_open_doors(call);
    let settings = agent.settings();
    match machine.digit(digit, from, may_open, &settings.doc.relays, Instant::now()) {
        Act::Open(relay) => {
            tracing::info!(call = call.id, relay, "door code entered: opening");
            if let Err(e) = agent.relay().open(relay.clone(), source::DTMF).await {
                tracing::warn!(call = call.id, relay, "door did not open: {e}");
            }
            None
        }
        Act::Wrong => agent.wrong_code(call).await,
        Act::Ignored => {
            tracing::info!(call = call.id, caller = %call.peer.uri(), ?from, "DTMF ignored: this way or this caller may not open doors");
            None
        }
        Act::Nothing | Act::Bye(_) => None,
    }
}
