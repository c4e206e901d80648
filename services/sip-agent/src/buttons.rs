//! Call buttons: a press places the button's group or sequence call; when
//! nobody answers, the button's relays open, a snapshot is taken and the
//! no-answer actions run, beside the calls, never in their way.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use doorphone_interfaces::config::document::{Button, CallType, WhenRefused};
use doorphone_interfaces::relay::source;
use tokio::sync::oneshot;

use crate::actions::{self, Snapshot};
use crate::agent::Agent;
use crate::error::AgentError;
use crate::events::Event;
use crate::machine::plan::{Outcome, Plan};

/// The call plan of a button.
pub fn plan(button: &Button, max_dial_out: Duration) -> Plan {
    match button.call_type {
        CallType::Group => Plan::Group {
            refusal_ends_all: button.when_refused == Some(WhenRefused::EndAllCalls),
            ring_for: max_dial_out,
        },
        CallType::Sequence => Plan::Sequence {
            each: Duration::from_secs(u64::from(button.timeout)),
            refusal_stops: button.when_refused == Some(WhenRefused::DoNotCallNext),
        },
    }
}

/// Who a button calls: its group number alone when set, else its numbers.
pub fn numbers(button: &Button) -> Vec<String> {
    if button.group_number.trim().is_empty() {
        button.numbers.clone()
    } else {
        vec![button.group_number.trim().to_owned()]
    }
}

/// Starts button `number`'s call plan.
pub async fn press(agent: &Arc<Agent>, number: u16) -> Result<(), AgentError> {
    let settings = agent.settings();
    let Some(button) = settings
        .doc
        .buttons
        .iter()
        .find(|b| b.button == u32::from(number))
        .cloned()
    else {
        return Err(AgentError::NotFound(format!(
            "button {number} is not configured"
        )));
    };
    if agent.active_call().is_some() {
        return Err(AgentError::InProgress("a call is in progress".into()));
    }
    if !agent.pressed.lock().expect("pressed lock").insert(number) {
        return Err(AgentError::InProgress(format!(
            "button {number}'s call is already in progress"
        )));
    }
    let placed = async {
        let routes = agent.resolve(&settings, &numbers(&button), None)?;
        let plan = plan(
            &button,
            Duration::from_secs(u64::from(settings.doc.calls.max_dial_out_time)),
        );
        let (tx, rx) = oneshot::channel();
        crate::calls::outgoing::place(agent, &settings, routes, None, plan, Some(tx)).await?;
        Ok::<_, AgentError>(rx)
    };
    let outcome = match placed.await {
        Ok(rx) => rx,
        Err(e) => {
            agent.pressed.lock().expect("pressed lock").remove(&number);
            return Err(e);
        }
    };
    tracing::info!(button = number, "button pressed: calling");
    let agent = agent.clone();
    tokio::spawn(async move {
        let (outcome, answered_by) = outcome.await.unwrap_or((Outcome::Failed, String::new()));
        agent.pressed.lock().expect("pressed lock").remove(&number);
        tracing::info!(
            button = number,
            outcome = outcome.name(),
            answered_by,
            "button call finished"
        );
        agent
            .announce(Event::ButtonCallFinished {
                button: number,
                outcome: outcome.name(),
                answered_by: &answered_by,
            })
            .await;
        if !matches!(outcome, Outcome::Answered(_) | Outcome::Cancelled) {
            no_answer(&agent, &button, number).await;
        }
    });
    Ok(())
}

/// Nobody answered: the button's relays, one snapshot, and its actions.
async fn no_answer(agent: &Arc<Agent>, button: &Button, number: u16) {
    let what = &button.no_answer;
    for relay in &what.relays {
        if let Err(e) = agent.relay().open(relay.clone(), source::NO_ANSWER).await {
            tracing::warn!(button = number, relay, "no-answer relay: {e}");
        }
    }
    if what.actions.is_empty() {
        return;
    }
    let needs_picture = what
        .actions
        .iter()
        .any(|a| !matches!(a, doorphone_interfaces::config::document::ActionKind::Http));
    let snapshot = if needs_picture {
        match agent.media().snapshot().await {
            Ok(jpeg) => Some(Snapshot {
                jpeg,
                taken: SystemTime::now(),
                button: number,
            }),
            Err(e) => {
                tracing::warn!(button = number, "no snapshot: {e}");
                None
            }
        }
    } else {
        None
    };
    let settings = agent.settings();
    for (kind, result) in actions::run(
        &settings.doc.actions,
        &what.actions,
        &what.http_url,
        snapshot.as_ref(),
    )
    .await
    {
        match result {
            Ok(()) => tracing::info!(
                button = number,
                action = actions::action_name(kind),
                "no-answer action done"
            ),
            Err(e) => {
                tracing::warn!(
                    button = number,
                    action = actions::action_name(kind),
                    "no-answer action failed: {e}"
                );
                agent
                    .announce(Event::ActionFailed {
                        action: actions::action_name(kind),
                        error: &e,
                    })
                    .await;
            }
        }
    }
}
