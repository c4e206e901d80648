//! An incoming call from its 180 (sent as the stack took the INVITE) to its
//! answer: the [`Ringing`] machine's timers, `Answer`/`Hangup` from the bus,
//! the caller's CANCEL; then media's answer (or offer, for an INVITE without
//! SDP) in the 200 OK.

use std::sync::Arc;
use std::time::Duration;

use doorphone_interfaces::sip::EndReason;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::active;
use crate::agent::Agent;
use crate::call::{CallShared, Command, Done};
use crate::error::AgentError;
use crate::events::Event;
use crate::machine::ringing::{Due, Ringing};
use crate::ports::MediaError;
use crate::stack::{CallEvent, CallEvents, Ended, ServerCall};

/// An incoming call the policy let ring.
pub struct Incoming {
    pub server: ServerCall,
    pub events: CallEvents,
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// The caller's SDP offer; none for a late offer (ours goes in the 200).
    pub offer: Option<String>,
    pub auto_answer: Option<Duration>,
    pub video: bool,
}

/// What answering produced: the media session, and whether the caller's
/// answer is still to come in the ACK.
struct Answered {
    session: String,
    late_offer: bool,
}

impl Incoming {
    pub async fn run(mut self, agent: Arc<Agent>, call: Arc<CallShared>) {
        let settings = agent.settings();
        let max_dial_in = Duration::from_secs(u64::from(settings.doc.calls.max_dial_in_time));
        let mut ringing = Ringing::new(Instant::now(), max_dial_in, self.auto_answer);
        let mut asked: Option<Done> = None;
        // An immediate answer goes out before the call is logged and
        // announced: the journal and the bus can wait, the caller should not.
        let at_once = ringing.answers_at_once(Instant::now());
        if !at_once {
            log_incoming(&call);
            agent.announce(Event::CallAdded(&call)).await;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(ringing.deadline()) => match ringing.due(Instant::now()) {
                        Some(Due::Answer) => break,
                        Some(Due::Refuse(code, reason)) => {
                            self.server.reject(code).ok();
                            return agent.end(&call, reason, code).await;
                        }
                        None => {}
                    },
                    command = self.commands.recv() => match command {
                        Some(Command::Answer(done)) => {
                            asked = Some(done);
                            break;
                        }
                        Some(Command::Hangup(done)) => {
                            self.server.reject(603).ok();
                            done.send(Ok(())).ok();
                            return agent.end(&call, EndReason::LocalHangup, 603).await;
                        }
                        Some(Command::Busy) => {
                            self.server.reject(486).ok();
                            return agent.end(&call, EndReason::Busy, 486).await;
                        }
                        Some(Command::Shutdown) | None => {
                            self.server.reject(480).ok();
                            return agent.end(&call, EndReason::Shutdown, 480).await;
                        }
                        Some(Command::Hold(done) | Command::Resume(done)) => {
                            done.send(Err(AgentError::WrongState("the call is not answered"))).ok();
                        }
                        Some(_) => {}
                    },
                    event = self.events.next() => match event {
                        Some(CallEvent::Ended(how)) => {
                            let reason = match how {
                                Ended::RemoteCancel | Ended::RemoteBye => EndReason::RemoteHangup,
                                _ => EndReason::Failed,
                            };
                            return agent.end(&call, reason, 0).await;
                        }
                        Some(_) => {}
                        None => return agent.end(&call, EndReason::Failed, 0).await,
                    },
                }
            }
        }
        let answered = answer(
            &agent,
            &call,
            &self.server,
            self.offer.as_deref(),
            self.video,
        )
        .await;
        if at_once {
            log_incoming(&call);
            agent.announce(Event::CallAdded(&call)).await;
        }
        match answered {
            Ok(answered) => {
                if let Some(done) = asked {
                    done.send(Ok(())).ok();
                }
                agent.answered(&call).await;
                active::Active {
                    dialog: Arc::new(crate::stack::Dialog::from(self.server)),
                    events: self.events,
                    commands: self.commands,
                    session: answered.session,
                    awaiting_answer: answered.late_offer,
                }
                .run(agent, call)
                .await;
            }
            Err((code, reason, e)) => {
                tracing::warn!(call = call.id, code, "media cannot answer: {e}");
                self.server.reject(code).ok();
                if let Some(done) = asked {
                    done.send(Err(e)).ok();
                }
                agent.end(&call, reason, code).await;
            }
        }
    }
}

fn log_incoming(call: &CallShared) {
    tracing::info!(call = call.id, from = %call.props().remote, identity = %call.peer.uri(), account = %call.via.label(), "incoming call");
}

/// Media's answer to the caller's offer (or media's offer, when the INVITE
/// had none), and 200 OK with it.
async fn answer(
    agent: &Agent,
    call: &CallShared,
    server: &ServerCall,
    offer: Option<&str>,
    video: bool,
) -> Result<Answered, (u16, EndReason, AgentError)> {
    let options = agent.media_options(call.via, video);
    let made = match offer {
        Some(offer) => agent.media().create_answer(offer.to_owned(), options).await,
        None => agent.media().create_offer(options).await,
    };
    let (session, sdp) = made.map_err(|e| match e {
        MediaError::NotAcceptable(_) => (488, EndReason::Failed, e.into()),
        _ => (503, EndReason::MediaFailed, e.into()),
    })?;
    agent.own_session(call, &session);
    if let Err(e) = server.answer(&sdp) {
        agent.stop_media(&session).await;
        return Err((500, EndReason::Failed, AgentError::Media(e.to_string())));
    }
    // The 200 OK is queued to its transaction's task: it goes out now, before
    // the call's signals take this thread (the caller waits, the bus can wait).
    tokio::task::yield_now().await;
    call.update(|p| p.answer_time = crate::call::now_ms());
    Ok(Answered {
        session,
        late_offer: offer.is_none(),
    })
}
