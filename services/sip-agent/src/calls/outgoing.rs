//! An outgoing call: one media offer for every branch, the [`Dialling`]
//! machine deciding which targets ring when, the first answer winning; then
//! the answered call.

use std::collections::VecDeque;
use std::sync::Arc;

use doorphone_interfaces::sip::EndReason;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::active::{self, until};
use crate::agent::Agent;
use crate::call::{CallShared, Command, Direction};
use crate::error::AgentError;
use crate::events::Event;
use crate::machine::plan::{BranchEnd, Dialling, Outcome, Plan, Step};
use crate::routes::Route;
use crate::settings::Settings;
use crate::stack::{CallEvent, CallEvents, ClientCall, Ended, Invite};

/// How ringing ended: answered by a target, or over.
enum Rung {
    Answered {
        leg: ClientCall,
        events: CallEvents,
        by: String,
    },
    /// Over without an answer; the reason it is recorded with.
    Over(Outcome, EndReason),
}

/// How an outgoing call's ringing ended, and who answered (empty if nobody).
pub type Finished = (Outcome, String);

/// Places an outgoing call to `routes` as `plan` says; `outcome` hears how
/// its ringing ended.
pub async fn place(
    agent: &Arc<Agent>,
    settings: &Settings,
    routes: Vec<Route>,
    video: Option<bool>,
    plan: Plan,
    outcome: Option<oneshot::Sender<Finished>>,
) -> Result<Arc<CallShared>, AgentError> {
    let video = video.unwrap_or(
        settings.doc.calls.auto_answer.mode
            == doorphone_interfaces::config::document::MediaMode::Video,
    );
    let first = routes
        .first()
        .ok_or(AgentError::Invalid("nothing to call".into()))?;
    let options = agent.media_options(first.via, video);
    let (session, offer) = agent.media().create_offer(options).await?;
    let (call, commands) =
        agent.new_call(Direction::Out, &first.to, first.peer(), first.via, video);
    agent.own_session(&call, &session);
    agent.announce(Event::CallAdded(&call)).await;
    tracing::info!(call = call.id, ?plan, targets = ?routes.iter().map(|r| &r.to).collect::<Vec<_>>(), "calling");
    let agent = agent.clone();
    let out = call.clone();
    tokio::spawn(async move {
        let mut commands = commands;
        let rung = ring(&agent, &out, &routes, &mut commands, &session, &offer, plan).await;
        match rung {
            Rung::Answered { leg, events, by } => {
                // The call is the active one before anyone hears of the answer.
                agent.answered(&out).await;
                if let Some(tx) = outcome {
                    let i = routes.iter().position(|r| r.to == by).unwrap_or(0);
                    tx.send((Outcome::Answered(i), by)).ok();
                }
                active::Active {
                    dialog: Arc::new(crate::stack::Dialog::from(leg)),
                    events,
                    commands,
                    session,
                    awaiting_answer: false,
                }
                .run(agent, out)
                .await;
            }
            Rung::Over(over, reason) => {
                agent.stop_media(&session).await;
                let code = match over {
                    Outcome::Refused(code) => code,
                    _ => 0,
                };
                agent.end(&out, reason, code).await;
                if let Some(tx) = outcome {
                    tx.send((over, String::new())).ok();
                }
            }
        }
    });
    Ok(call)
}

fn reason_of(outcome: Outcome) -> EndReason {
    match outcome {
        Outcome::Refused(_) => EndReason::Refused,
        Outcome::NoAnswer => EndReason::NoAnswer,
        Outcome::Cancelled => EndReason::LocalHangup,
        Outcome::Failed | Outcome::Answered(_) => EndReason::Failed,
    }
}

fn branch_end(how: Ended) -> BranchEnd {
    match how {
        Ended::Refused(code) => BranchEnd::Code(code),
        _ => BranchEnd::Failed,
    }
}

/// Rings `routes` as `plan` says until one answers, every branch has ended,
/// the plan's time is up or the call is hung up here.
async fn ring(
    agent: &Agent,
    call: &Arc<CallShared>,
    routes: &[Route],
    commands: &mut mpsc::UnboundedReceiver<Command>,
    session: &str,
    offer: &str,
    plan: Plan,
) -> Rung {
    let (branch_tx, mut branches) = mpsc::unbounded_channel::<(usize, CallEvent)>();
    let mut legs: Vec<Option<ClientCall>> = vec![None; routes.len()];
    let mut dialling = Dialling::new(plan, routes.len());
    let mut steps: VecDeque<Step> = dialling.start(Instant::now()).into();
    let mut first_sent = true;
    // Why the plan was cut short, when it was not the callees'.
    let mut cut: Option<EndReason> = None;
    loop {
        while let Some(step) = steps.pop_front() {
            match step {
                Step::Call(i) => match start(agent, &routes[i], offer, i, &branch_tx) {
                    Ok(leg) => {
                        call.add_call_id(leg.call_id());
                        if i > 0 || matches!(plan, Plan::Sequence { .. }) {
                            tracing::info!(call = call.id, to = %routes[i].to, "calling");
                        }
                        legs[i] = Some(leg);
                    }
                    Err(e) => {
                        tracing::warn!(call = call.id, to = %routes[i].to, "INVITE: {e}");
                        steps.extend(dialling.ended(i, BranchEnd::Failed, Instant::now()));
                    }
                },
                Step::Cancel(i) => {
                    if let Some(leg) = legs[i].take() {
                        tokio::spawn(async move { leg.hangup().await.ok() });
                    }
                }
                Step::Over(Outcome::Answered(_)) => {}
                Step::Over(over) => return Rung::Over(over, cut.unwrap_or(reason_of(over))),
            }
        }
        tokio::select! {
            _ = until(dialling.deadline()) => steps.extend(dialling.due(Instant::now())),
            command = commands.recv() => match command {
                Some(Command::Hangup(done)) => {
                    done.send(Ok(())).ok();
                    steps.extend(dialling.hangup());
                }
                Some(Command::MediaFailed(why)) => {
                    tracing::warn!(call = call.id, "the media session died ({why}): cancelling");
                    cut = Some(EndReason::MediaFailed);
                    steps.extend(dialling.hangup());
                }
                Some(Command::Shutdown) | None => {
                    cut = Some(EndReason::Shutdown);
                    steps.extend(dialling.hangup());
                }
                Some(Command::Answer(done) | Command::Hold(done) | Command::Resume(done)) => {
                    done.send(Err(AgentError::WrongState("the call is not answered"))).ok();
                }
                Some(_) => {}
            },
            Some((i, event)) = branches.recv() => match event {
                CallEvent::Sent => {
                    dialling.sent(i, Instant::now(), first_sent);
                    first_sent = false;
                }
                CallEvent::Answered(sdp) => {
                    let Some(won) = (match sdp {
                        Ok(_) => dialling.answered(i),
                        Err(()) => None,
                    }) else {
                        // Too late, or no SDP text: that callee is hung up.
                        if let Some(leg) = legs[i].take() {
                            tokio::spawn(async move { leg.hangup().await.ok() });
                        }
                        steps.extend(dialling.ended(i, BranchEnd::Failed, Instant::now()));
                        continue;
                    };
                    let leg = legs[i].take().expect("the answering leg");
                    for step in won {
                        if let Step::Cancel(j) = step
                            && let Some(other) = legs[j].take()
                        {
                            tokio::spawn(async move { other.hangup().await.ok() });
                        }
                    }
                    call.update(|p| {
                        p.remote = routes[i].to.clone();
                        p.account = routes[i].via.label();
                        p.confirmed = true;
                    });
                    let sdp = sdp.expect("checked above");
                    if let Err(e) = agent.media().set_remote(session.to_owned(), sdp).await {
                        tracing::warn!(call = call.id, "media refused the answer: {e}");
                        leg.hangup().await.ok();
                        return Rung::Over(Outcome::Failed, EndReason::Failed);
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
                    return Rung::Answered { leg, events, by: routes[i].to.clone() };
                }
                CallEvent::Ended(how) => {
                    legs[i] = None;
                    tracing::info!(call = call.id, to = %routes[i].to, ?how, "branch ended");
                    steps.extend(dialling.ended(i, branch_end(how), Instant::now()));
                }
                _ => {}
            },
        }
    }
}

/// Sends target `route`'s INVITE; its events go to `events` as branch `i`.
fn start(
    agent: &Agent,
    route: &Route,
    offer: &str,
    i: usize,
    events: &mpsc::UnboundedSender<(usize, CallEvent)>,
) -> crate::stack::Result<ClientCall> {
    let invite = Invite {
        from: route.from.clone(),
        display_name: route.display_name.clone(),
        to: route.to.clone(),
        destination: route.destination,
        transport: route.transport,
        credential: route.credential.clone(),
        offer: Some(offer.to_owned()),
    };
    let (leg, mut branch) = agent.stack.invite(invite)?;
    let tx = events.clone();
    tokio::spawn(async move {
        while let Some(e) = branch.next().await {
            if tx.send((i, e)).is_err() {
                break;
            }
        }
    });
    Ok(leg)
}
