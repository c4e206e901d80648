//! The task that owns every door and the backend: it takes requests, sleeps until
//! the next door's deadline, drives the lines and reports what happened.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::door::{Door, Transition};
use crate::gpio::{Backend, Claims, Line};

/// One configured relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    pub line: Line,
    pub trigger_delay: Duration,
    pub hold: Duration,
}

impl RelayConfig {
    /// The relays of the configuration document's `relays` section.
    pub fn from_document(relays: &[doorphone_interfaces::config::document::Relay]) -> Vec<Self> {
        relays
            .iter()
            .map(|r| RelayConfig {
                line: Line {
                    relay: r.id.clone(),
                    gpio: r.gpio,
                    active_low: r.active_low,
                },
                trigger_delay: Duration::from_secs(r.trigger_delay.into()),
                hold: Duration::from_secs(r.hold.into()),
            })
            .collect()
    }
}

/// What the doors did, for the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened {
        relay: String,
        source: String,
    },
    Closed {
        relay: String,
    },
    /// The relays or their states changed: see [`Handle::states`].
    StatesChanged,
    /// An input wired to call button `button` was pressed (sent by the inputs
    /// task, [`crate::input`]).
    ButtonPressed {
        button: u16,
    },
}

/// Every relay's id and whether it is energised, in configuration order.
pub type States = Vec<(String, bool)>;

#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    NotFound,
    Failed(String),
}

enum Command {
    Open {
        relay: String,
        source: String,
        reply: oneshot::Sender<Result<(), OpenError>>,
    },
    Configure(Vec<RelayConfig>, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// The way to the controller task.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
    states: watch::Receiver<States>,
}

impl Handle {
    /// Asks `relay` to open because of `source`.
    pub async fn open(&self, relay: &str, source: &str) -> Result<(), OpenError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Open {
                relay: relay.to_owned(),
                source: source.to_owned(),
                reply,
            })
            .map_err(|_| OpenError::Failed("the relay service is stopping".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(OpenError::Failed("the relay service is stopping".into())))
    }

    /// Replaces the relays: lines no longer used are released, new ones are
    /// driven inactive, relays that stay keep their state.
    pub async fn configure(&self, relays: Vec<RelayConfig>) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Configure(relays, done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Releases every line and ends the task.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
    }

    pub fn states(&self) -> States {
        self.states.borrow().clone()
    }
}

struct Relay {
    config: RelayConfig,
    door: Door,
}

struct Controller {
    backend: Box<dyn Backend>,
    claims: Claims,
    relays: Vec<Relay>,
    events: mpsc::UnboundedSender<Event>,
    states: watch::Sender<States>,
}

/// Starts the controller with no relays. Lines a previous run left in `claims`
/// are driven inactive and released first.
pub fn spawn(
    backend: Box<dyn Backend>,
    claims: Claims,
    events: mpsc::UnboundedSender<Event>,
) -> Handle {
    let stale = claims.lines();
    let (commands, rx) = mpsc::unbounded_channel();
    let (states, states_rx) = watch::channel(Vec::new());
    let mut controller = Controller {
        backend,
        claims,
        relays: Vec::new(),
        events,
        states,
    };
    for line in stale {
        controller.release(&line);
    }
    tokio::spawn(controller.run(rx));
    Handle {
        commands,
        states: states_rx,
    }
}

impl Controller {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let deadline = self.relays.iter().filter_map(|r| r.door.deadline()).min();
            let due = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Open { relay, source, reply }) => {
                        let _ = reply.send(self.open(&relay, &source));
                    }
                    Some(Command::Configure(relays, done)) => {
                        self.configure(relays);
                        let _ = done.send(());
                    }
                    Some(Command::Shutdown(done)) => {
                        self.release_all();
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.release_all();
                        return;
                    }
                },
                () = due => {
                    self.step();
                }
            }
        }
    }

    fn open(&mut self, relay: &str, source: &str) -> Result<(), OpenError> {
        let index = self
            .relays
            .iter()
            .position(|r| r.config.line.relay == relay)
            .ok_or(OpenError::NotFound)?;
        self.relays[index].door.open(Instant::now(), source);
        match self.step_relay(index) {
            Ok(()) => Ok(()),
            Err(e) => Err(OpenError::Failed(e)),
        }
    }

    /// Takes every transition due now.
    fn step(&mut self) {
        for index in 0..self.relays.len() {
            if let Err(e) = self.step_relay(index) {
                tracing::error!("{e}");
            }
        }
    }

    fn step_relay(&mut self, index: usize) -> Result<(), String> {
        let now = Instant::now();
        let mut result = Ok(());
        while let Some(transition) = self.relays[index].door.step(now) {
            let line = self.relays[index].config.line.clone();
            let energised = matches!(transition, Transition::Energise(_));
            if let Err(e) = self.backend.drive(&line, energised) {
                result = Err(format!("relay {}: {e}", line.relay));
            }
            let event = match transition {
                Transition::Energise(source) => {
                    tracing::info!(relay = %line.relay, %source, "door opened");
                    Event::Opened {
                        relay: line.relay,
                        source,
                    }
                }
                Transition::Release => {
                    tracing::info!(relay = %line.relay, "door closed");
                    Event::Closed { relay: line.relay }
                }
            };
            // The new state goes out before the signal, so whoever hears the
            // signal and reads the state reads the new one.
            self.publish();
            let _ = self.events.send(event);
        }
        result
    }

    fn configure(&mut self, relays: Vec<RelayConfig>) {
        let old = std::mem::take(&mut self.relays);
        let mut kept = Vec::new();
        for relay in old {
            if relays.iter().any(|r| r.line == relay.config.line) {
                kept.push(relay);
            } else {
                if relay.door.is_open() {
                    let _ = self.events.send(Event::Closed {
                        relay: relay.config.line.relay.clone(),
                    });
                }
                self.release(&relay.config.line);
            }
        }
        for config in relays {
            let relay = match kept.iter().position(|r| r.config.line == config.line) {
                Some(i) => {
                    let mut relay = kept.swap_remove(i);
                    relay.door.retime(config.trigger_delay, config.hold);
                    relay.config = config;
                    relay
                }
                None => {
                    self.claim(&config.line);
                    Relay {
                        door: Door::new(config.trigger_delay, config.hold),
                        config,
                    }
                }
            };
            self.relays.push(relay);
        }
        self.publish();
    }

    /// Drives a new line inactive and records it as claimed.
    fn claim(&mut self, line: &Line) {
        if let Err(e) = self.claims.add(line) {
            tracing::warn!("cannot record the claim of gpio {}: {e}", line.gpio);
        }
        if let Err(e) = self.backend.drive(line, false) {
            tracing::error!("relay {}: {e}", line.relay);
        }
    }

    fn release(&mut self, line: &Line) {
        if let Err(e) = self.backend.release(line) {
            tracing::error!("relay {}: {e}", line.relay);
        }
        if let Err(e) = self.claims.remove(line) {
            tracing::warn!("cannot record the release of gpio {}: {e}", line.gpio);
        }
    }

    fn release_all(&mut self) {
        for relay in std::mem::take(&mut self.relays) {
            self.release(&relay.config.line);
        }
        self.publish();
    }

    fn publish(&mut self) {
        let states = self
            .relays
            .iter()
            .map(|r| (r.config.line.relay.clone(), r.door.is_open()))
            .collect();
        self.states.send_replace(states);
        let _ = self.events.send(Event::StatesChanged);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A backend that records (time since start, relay, level) for every drive.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(String, String, u8)>>>);

    struct Recording {
        start: Instant,
        log: Recorder,
    }

    impl Backend for Recording {
        fn drive(&mut self, line: &Line, energised: bool) -> std::io::Result<()> {
            let at = format!("{:.1}", (Instant::now() - self.start).as_secs_f64());
            self.log
                .0
                .lock()
                .unwrap()
                .push((at, line.relay.clone(), line.level(energised)));
            Ok(())
        }

        fn release(&mut self, line: &Line) -> std::io::Result<()> {
            self.drive(line, false)
        }
    }

    fn relay(id: &str, gpio: u32, active_low: bool, delay: u64, hold: u64) -> RelayConfig {
        RelayConfig {
            line: Line {
                relay: id.into(),
                gpio,
                active_low,
            },
            trigger_delay: Duration::from_secs(delay),
            hold: Duration::from_secs(hold),
        }
    }

    fn start() -> (Handle, Recorder, mpsc::UnboundedReceiver<Event>) {
        let log = Recorder::default();
        let backend = Recording {
            start: Instant::now(),
            log: log.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        (
            spawn(Box::new(backend), Claims::load(None).unwrap(), tx),
            log,
            rx,
        )
    }

    fn entries(log: &Recorder) -> Vec<(String, String, u8)> {
        log.0.lock().unwrap().clone()
    }

    fn e(at: &str, relay: &str, level: u8) -> (String, String, u8) {
        (at.into(), relay.into(), level)
    }

    async fn next_door_event(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
        loop {
            let event = events.recv().await.unwrap();
            if event != Event::StatesChanged {
                return event;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_door_opens_after_its_delay_for_its_hold() {
        let (handle, log, mut events) = start();
        handle.configure(vec![relay("A", 17, false, 1, 3)]).await;
        let t0 = Instant::now();
        handle.open("A", "api").await.unwrap();
        let opened = next_door_event(&mut events).await;
        assert_eq!(
            opened,
            Event::Opened {
                relay: "A".into(),
                source: "api".into()
            }
        );
        assert_eq!(Instant::now() - t0, Duration::from_secs(1));
        assert_eq!(handle.states(), [("A".to_owned(), true)]);
        let closed = next_door_event(&mut events).await;
        assert_eq!(closed, Event::Closed { relay: "A".into() });
        assert_eq!(Instant::now() - t0, Duration::from_secs(4));
        assert_eq!(handle.states(), [("A".to_owned(), false)]);
        handle.shutdown().await;
        assert_eq!(
            entries(&log),
            [
                e("0.0", "A", 0),
                e("1.0", "A", 1),
                e("4.0", "A", 0),
                e("4.0", "A", 0)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_open_extends_the_hold_and_active_low_is_inverted() {
        let (handle, log, mut events) = start();
        handle.configure(vec![relay("B", 4, true, 0, 3)]).await;
        handle.open("B", "api").await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        handle.open("B", "dtmf").await.unwrap();
        let opened = next_door_event(&mut events).await;
        assert!(matches!(opened, Event::Opened { source, .. } if source == "api"));
        let closed = next_door_event(&mut events).await;
        assert_eq!(closed, Event::Closed { relay: "B".into() });
        assert_eq!(
            entries(&log),
            [e("0.0", "B", 1), e("0.0", "B", 0), e("5.0", "B", 1)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_relay_is_not_found() {
        let (handle, _log, _events) = start();
        handle.configure(vec![relay("A", 17, false, 0, 3)]).await;
        assert_eq!(handle.open("Z", "api").await, Err(OpenError::NotFound));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_releases_removed_relays_and_keeps_the_others() {
        let (handle, log, _events) = start();
        handle
            .configure(vec![
                relay("A", 17, false, 0, 3),
                relay("B", 4, false, 0, 3),
            ])
            .await;
        handle.open("A", "api").await.unwrap();
        handle.configure(vec![relay("A", 17, false, 0, 5)]).await;
        assert_eq!(handle.states(), [("A".to_owned(), true)]);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            entries(&log),
            [
                e("0.0", "A", 0),
                e("0.0", "B", 0),
                e("0.0", "A", 1),
                e("0.0", "B", 0),
                e("3.0", "A", 0)
            ]
        );
    }
}
