//! `GET /api/v1/events`: the door phone's signals as Server-Sent Events.
//!
//! One subscription per signal on the bus, made at start, feeds one broadcast
//! channel; each event stream reads from it. A client too slow to keep up
//! loses the oldest events (and is told how many), never the service's memory.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::peers::{Peers, call_id};

/// Events kept for slow clients.
const BACKLOG: usize = 256;

/// One event: its SSE name and JSON data.
#[derive(Debug, Clone)]
pub struct Signal {
    pub name: &'static str,
    pub data: Value,
}

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Signal>,
}

impl Events {
    /// Subscribes to every signal the events carry and forwards them.
    pub async fn start(peers: &Peers) -> zbus::Result<Events> {
        let (tx, _) = broadcast::channel(BACKLOG);
        let forward = |stream: futures_util::stream::BoxStream<'static, Option<Signal>>| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                while let Some(signal) = stream.next().await {
                    if let Some(signal) = signal {
                        let _ = tx.send(signal);
                    }
                }
            });
        };
        forward(
            peers
                .sip
                .receive_call_state_changed()
                .await?
                .map(|s| {
                    let a = s.args().ok()?;
                    Some(Signal {
                        name: "call_state",
                        data: json!({"call": call_id(a.call.as_str()), "state": a.state, "reason": a.reason}),
                    })
                })
                .boxed(),
        );
        forward(
            peers
                .sip
                .receive_call_refused()
                .await?
                .map(|s| {
                    let a = s.args().ok()?;
                    Some(Signal {
                        name: "call_refused",
                        data: json!({"caller": a.caller, "code": a.code, "reason": a.reason}),
                    })
                })
                .boxed(),
        );
        forward(
            peers
                .relay
                .receive_door_opened()
                .await?
                .map(|s| {
                    let a = s.args().ok()?;
                    Some(Signal {
                        name: "door_opened",
                        data: json!({"relay": a.relay, "source": a.source}),
                    })
                })
                .boxed(),
        );
        forward(
            peers
                .relay
                .receive_door_closed()
                .await?
                .map(|s| {
                    let a = s.args().ok()?;
                    Some(Signal {
                        name: "door_closed",
                        data: json!({"relay": a.relay}),
                    })
                })
                .boxed(),
        );
        forward(
            peers
                .relay
                .receive_button_pressed()
                .await?
                .map(|s| {
                    let a = s.args().ok()?;
                    Some(Signal {
                        name: "button_pressed",
                        data: json!({"button": a.button}),
                    })
                })
                .boxed(),
        );
        forward(
            peers
                .pager
                .receive_page_started()
                .await?
                .map(|s| {
                    let a = s.args().ok()?;
                    Some(Signal {
                        name: "page_started",
                        data: json!({"address": a.address, "port": a.port, "priority": a.priority}),
                    })
                })
                .boxed(),
        );
        forward(
            peers
                .pager
                .receive_page_ended()
                .await?
                .map(|s| {
                    let a = s.args().ok()?;
                    Some(Signal {
                        name: "page_ended",
                        data: json!({"address": a.address, "port": a.port, "reason": a.reason}),
                    })
                })
                .boxed(),
        );
        forward(
            peers
                .config
                .receive_changed()
                .await?
                .map(|s| {
                    let a = s.args().ok()?;
                    Some(Signal {
                        name: "config_changed",
                        data: json!({"sections": a.sections}),
                    })
                })
                .boxed(),
        );
        Ok(Events { tx })
    }

    /// The event stream of one client: `ready` first (it is subscribed), then
    /// every signal, with a keep-alive comment every 15 s.
    pub fn stream(&self) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
        let rx = self.tx.subscribe();
        let ready =
            futures_util::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
        let signals = futures_util::stream::unfold(rx, |mut rx| async move {
            let event = match rx.recv().await {
                Ok(signal) => Event::default()
                    .event(signal.name)
                    .data(signal.data.to_string()),
                Err(broadcast::error::RecvError::Lagged(missed)) => Event::default()
                    .event("lagged")
                    .data(json!({"missed": missed}).to_string()),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(event), rx))
        });
        Sse::new(ready.chain(signals))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    }
}
