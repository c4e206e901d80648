//! `GET /api/v1/events`: the door phone's signals as Server-Sent Events.
//!
//! While at least one client follows the events, one subscription per signal
//! on the bus feeds one broadcast channel, and each event stream reads from
//! it. The first client makes the subscriptions and the last one to leave
//! drops them: with nobody following, the bus does not wake the service for
//! every call, door and page. A client too slow to keep up loses the oldest
//! events (and is told how many), never the service's memory.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

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
    peers: Peers,
    tx: broadcast::Sender<Signal>,
    /// Held while the first client subscribes, so that a second one waits
    /// for the subscriptions instead of making its own.
    subscribing: Arc<tokio::sync::Mutex<()>>,
    followers: Arc<Mutex<Followers>>,
}

/// The clients following the events, and the tasks forwarding the signals
/// while there are any.
#[derive(Default)]
struct Followers {
    clients: usize,
    forwarders: Vec<AbortHandle>,
}

/// One signal of the bus as an event (`None`: a signal whose arguments did
/// not read).
type SignalStream = futures_util::stream::BoxStream<'static, Option<Signal>>;

/// One client's place among the followers; its stream holds it, and the last
/// one dropped ends the subscriptions.
struct Follower(Arc<Mutex<Followers>>);

impl Drop for Follower {
    fn drop(&mut self) {
        let mut followers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        followers.clients -= 1;
        if followers.clients == 0 {
            for forwarder in followers.forwarders.drain(..) {
                forwarder.abort();
            }
        }
    }
}

impl Events {
    /// The events of the door phone's peers; nothing is subscribed until a
    /// client follows them.
    pub fn new(peers: &Peers) -> Events {
        Events {
            peers: peers.clone(),
            tx: broadcast::channel(BACKLOG).0,
            subscribing: Arc::default(),
            followers: Arc::default(),
        }
    }

    /// Subscribes to every signal the events carry. Dropping a stream drops
    /// its subscription.
    async fn subscribe(&self) -> zbus::Result<Vec<SignalStream>> {
        let peers = &self.peers;
        let mut streams = Vec::new();
        let mut add = |stream: SignalStream| streams.push(stream);
        add(
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
        add(peers
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
            .boxed());
        add(peers
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
            .boxed());
        add(peers
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
            .boxed());
        add(peers
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
            .boxed());
        add(peers
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
            .boxed());
        add(peers
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
            .boxed());
        add(peers
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
            .boxed());
        Ok(streams)
    }

    /// Forwards each stream's signals to the channel, in a task of its own.
    fn forward(&self, streams: Vec<SignalStream>) -> Vec<AbortHandle> {
        streams
            .into_iter()
            .map(|mut stream| {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    while let Some(signal) = stream.next().await {
                        if let Some(signal) = signal {
                            let _ = tx.send(signal);
                        }
                    }
                })
                .abort_handle()
            })
            .collect()
    }

    /// The event stream of one client: `ready` first (the signals are
    /// subscribed), then every signal, with a keep-alive comment every 15 s.
    /// The first client subscribes on the bus; an error is a subscription the
    /// bus refused.
    pub async fn stream(
        &self,
    ) -> zbus::Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
        let _one_at_a_time = self.subscribing.lock().await;
        // Counted before subscribing: a client that goes away meanwhile is
        // uncounted by its `Follower`, and the check below sees it.
        let follower = Follower(self.followers.clone());
        let first = {
            let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
            followers.clients += 1;
            followers.clients == 1
        };
        if first {
            // Every subscription is made before any task starts, so a client
            // gone in between leaves no forwarder behind.
            let forwarders = self.forward(self.subscribe().await?);
            self.followers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forwarders = forwarders;
        }
        let rx = self.tx.subscribe();
        let ready =
            futures_util::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
        let signals =
            futures_util::stream::unfold((rx, follower), |(mut rx, follower)| async move {
                let event = match rx.recv().await {
                    Ok(signal) => Event::default()
                        .event(signal.name)
                        .data(signal.data.to_string()),
                    Err(broadcast::error::RecvError::Lagged(missed)) => Event::default()
                        .event("lagged")
                        .data(json!({"missed": missed}).to_string()),
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((Ok(event), (rx, follower)))
            });
        Ok(Sse::new(ready.chain(signals))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
    }
}
