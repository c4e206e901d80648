//! The call tasks on a paused clock, with media, the relays, the dialog and
//! the bus as fakes: every timer of an answered call measured in exact
//! milliseconds of test time, and what the call asks of its peers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use doorphone_interfaces::config::Document;
use doorphone_interfaces::config::document::{DtmfAuthority, HangUpAfterOpen, HangUpType, Relay};
use doorphone_interfaces::relay::source;
use doorphone_interfaces::sip::EndReason;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::active::Active;
use crate::agent::Agent;
use crate::call::{CallShared, Command, Direction};
use crate::events::{Announcer, Event};
use crate::history::History;
use crate::identity::{Identity, Via};
use crate::machine::active::DigitFrom;
use crate::ports::{BoxFuture, Leg, MediaError, MediaOptions, MediaPort, RelayPort, Session};
use crate::settings::Settings;
use crate::stack::{CallEvent, CallEvents, Stack};

#[derive(Default)]
struct FakeMedia {
    stopped: Mutex<Vec<String>>,
}

impl MediaPort for FakeMedia {
    fn create_offer(&self, _: MediaOptions) -> BoxFuture<'_, Result<Session, MediaError>> {
        Box::pin(async { Ok(("/s/2".into(), "v=0".into())) })
    }
    fn create_answer(
        &self,
        _: String,
        _: MediaOptions,
    ) -> BoxFuture<'_, Result<Session, MediaError>> {
        Box::pin(async { Ok(("/s/2".into(), "v=0".into())) })
    }
    fn set_remote(&self, _: String, _: String) -> BoxFuture<'_, Result<String, MediaError>> {
        Box::pin(async { Ok(String::new()) })
    }
    fn hold(&self, _: String, _: bool) -> BoxFuture<'_, Result<String, MediaError>> {
        Box::pin(async { Ok("v=0".into()) })
    }
    fn stop(&self, session: String) -> BoxFuture<'_, ()> {
        self.stopped.lock().unwrap().push(session);
        Box::pin(async {})
    }
    fn snapshot(&self) -> BoxFuture<'_, Result<Vec<u8>, MediaError>> {
        Box::pin(async { Err(MediaError::Failed("no camera".into())) })
    }
}

#[derive(Default)]
struct FakeRelay {
    opened: Mutex<Vec<(String, &'static str, Instant)>>,
}

impl RelayPort for FakeRelay {
    fn open(&self, relay: String, source: &'static str) -> BoxFuture<'_, Result<(), String>> {
        self.opened
            .lock()
            .unwrap()
            .push((relay, source, Instant::now()));
        Box::pin(async { Ok(()) })
    }
}

/// What the agent announced, in words.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

impl Announcer for Recorder {
    fn announce<'a>(&'a self, event: Event<'a>) -> BoxFuture<'a, ()> {
        let said = match event {
            Event::CallState(_, state, reason) => format!("{} {reason}", state.as_str()),
            Event::DoorCodesLocked { caller, .. } => format!("locked {caller}"),
            Event::CallRefused { reason, .. } => format!("refused {}", reason.as_str()),
            _ => String::new(),
        };
        if !said.is_empty() {
            self.events.lock().unwrap().push(said);
        }
        Box::pin(async {})
    }
}

/// The dialog: when it was asked to end.
#[derive(Default)]
struct FakeLeg {
    byes: Mutex<Vec<Instant>>,
}

impl Leg for FakeLeg {
    fn bye(&self) -> BoxFuture<'_, Result<(), String>> {
        self.byes.lock().unwrap().push(Instant::now());
        Box::pin(async { Ok(()) })
    }
    fn reinvite(&self, _: String) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async { Ok(Some("v=0".into())) })
    }
    fn ended(&self) -> bool {
        false
    }
}

struct Rig {
    agent: Arc<Agent>,
    media: Arc<FakeMedia>,
    relay: Arc<FakeRelay>,
    events: Arc<Recorder>,
    _history: tempfile::TempDir,
}

fn doc(authority: DtmfAuthority) -> Document {
    Document {
        relays: vec![Relay {
            id: "A".into(),
            dtmf_code: "#".into(),
            ..Relay::default()
        }],
        dtmf_authority: authority,
        calls: doorphone_interfaces::config::document::Calls {
            max_call_time: 0,
            hang_up_after_open: HangUpAfterOpen {
                types: vec![HangUpType::Dtmf],
                timeout: 5,
            },
            ..Default::default()
        },
        ..Document::default()
    }
}

async fn rig(doc: Document) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (stack, _requests) = Stack::bind(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
        // No account uses TLS here: the bundle is never read.
        dir.path().join("no-ca.pem"),
    )
    .await
    .unwrap();
    let media = Arc::new(FakeMedia::default());
    let relay = Arc::new(FakeRelay::default());
    let events = Arc::new(Recorder::default());
    let agent = Arc::new(Agent::new(
        stack,
        media.clone(),
        relay.clone(),
        events.clone(),
        Settings::new(doc, 1).await,
        History::open(&dir.path().join("history.db")).unwrap(),
    ));
    Rig {
        agent,
        media,
        relay,
        events,
        _history: dir,
    }
}

/// An answered direct call from `peer`, run by its task: its command
/// channel, its dialog's event feed, the fake dialog and the task.
fn answered(
    rig: &Rig,
    peer: &str,
) -> (
    Arc<CallShared>,
    mpsc::UnboundedSender<CallEvent>,
    Arc<FakeLeg>,
    tokio::task::JoinHandle<()>,
) {
    let (call, commands) = rig.agent.new_call(
        Direction::In,
        "sip:x@y",
        Identity::Address(peer.parse().unwrap()),
        Via::Ip,
        false,
    );
    rig.agent.own_session(&call, "/s/1");
    call.update(|p| {
        p.state = doorphone_interfaces::sip::CallState::Answered;
        p.confirmed = true;
    });
    let (feed, events) = CallEvents::channel();
    let leg = Arc::new(FakeLeg::default());
    let task = tokio::spawn(
        Active {
            dialog: leg.clone(),
            events,
            commands,
            session: "/s/1".into(),
            awaiting_answer: false,
        }
        .run(rig.agent.clone(), call.clone()),
    );
    (call, feed, leg, task)
}

/// Waits for the call's task to end; a task that never would fails the test
/// (on the paused clock an hour passes at once) instead of hanging it.
async fn ends(task: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(3600), task)
        .await
        .expect("the call ends")
        .unwrap();
}

fn ended_with(rig: &Rig) -> Option<String> {
    rig.events
        .lock_events()
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("ended ").map(str::to_owned))
}

impl Recorder {
    fn lock_events(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.events.lock().unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_door_code_opens_its_relay_and_the_call_ends_exactly_the_hang_up_time_later() {
    let rig = rig(doc(DtmfAuthority::All)).await;
    let (call, _feed, leg, task) = answered(&rig, "192.0.2.7:5060");
    call.commands
        .send(Command::Dtmf('#', DigitFrom::Rtp))
        .unwrap();
    // The relay service tells every client the door opened.
    tokio::task::yield_now().await;
    let opened_at = Instant::now();
    rig.agent.on_door_opened(source::DTMF);
    ends(task).await;
    let opened = rig.relay.opened.lock().unwrap().clone();
    assert_eq!(opened.len(), 1);
    assert_eq!((opened[0].0.as_str(), opened[0].1), ("A", source::DTMF));
    let byes = leg.byes.lock().unwrap().clone();
    assert_eq!(byes, [opened_at + Duration::from_secs(5)]);
    assert_eq!(
        ended_with(&rig).as_deref(),
        Some(EndReason::DoorOpened.as_str())
    );
    assert_eq!(*rig.media.stopped.lock().unwrap(), ["/s/1"]);
}

#[tokio::test(start_paused = true)]
async fn a_stranger_opens_nothing_when_the_authority_is_contacts() {
    let mut doc = doc(DtmfAuthority::Contacts);
    doc.contacts = vec![doorphone_interfaces::config::document::Contact {
        number: "192.0.2.7".into(),
        whitelist: true,
        ..Default::default()
    }];
    let rig = rig(doc).await;
    let (stranger, _feed, _, task) = answered(&rig, "192.0.2.66:5060");
    stranger
        .commands
        .send(Command::Dtmf('#', DigitFrom::Info))
        .unwrap();
    stranger.ask(Command::Hangup).await.unwrap();
    ends(task).await;
    assert!(rig.relay.opened.lock().unwrap().is_empty());
    let (resident, _feed, _, task) = answered(&rig, "192.0.2.7:6000");
    resident
        .commands
        .send(Command::Dtmf('#', DigitFrom::Info))
        .unwrap();
    resident.ask(Command::Hangup).await.unwrap();
    ends(task).await;
    assert_eq!(rig.relay.opened.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn five_wrong_codes_lock_the_caller_and_end_the_call_at_once() {
    let rig = rig(doc(DtmfAuthority::All)).await;
    let (call, _feed, leg, task) = answered(&rig, "192.0.2.9:5060");
    let t0 = Instant::now();
    for _ in 0..5 {
        call.commands.send(Command::Dtmf('9', DigitFrom::Rtp)).ok();
    }
    ends(task).await;
    assert_eq!(
        *leg.byes.lock().unwrap(),
        [t0],
        "no timer between the codes and the BYE"
    );
    assert_eq!(
        ended_with(&rig).as_deref(),
        Some(EndReason::DoorCodesLocked.as_str())
    );
    assert!(
        rig.events
            .lock_events()
            .iter()
            .any(|e| e == "locked sip:192.0.2.9:5060")
    );
    // The same caller from another port: its right code opens nothing.
    let (again, _feed, _, task) = answered(&rig, "192.0.2.9:6000");
    again
        .commands
        .send(Command::Dtmf('#', DigitFrom::Rtp))
        .unwrap();
    again.ask(Command::Hangup).await.unwrap();
    ends(task).await;
    assert!(rig.relay.opened.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_code_counts_as_wrong_after_three_seconds() {
    let mut doc = doc(DtmfAuthority::All);
    doc.relays[0].dtmf_code = "1234".into();
    let rig = rig(doc).await;
    let (call, _feed, leg, task) = answered(&rig, "192.0.2.9:5060");
    // Five times a code left at its first digit: each is wrong 3 s later.
    let t0 = Instant::now();
    for n in 0..5u32 {
        tokio::time::sleep_until(t0 + Duration::from_secs(4) * n).await;
        call.commands
            .send(Command::Dtmf('1', DigitFrom::Rtp))
            .unwrap();
    }
    ends(task).await;
    let last_digit = t0 + Duration::from_secs(16);
    assert_eq!(
        *leg.byes.lock().unwrap(),
        [last_digit + Duration::from_secs(3)]
    );
}

#[tokio::test(start_paused = true)]
async fn the_max_call_time_ends_the_call_with_bye() {
    let mut doc = doc(DtmfAuthority::All);
    doc.calls.max_call_time = 120;
    let rig = rig(doc).await;
    let t0 = Instant::now();
    let (_call, _feed, leg, task) = answered(&rig, "192.0.2.9:5060");
    ends(task).await;
    assert_eq!(*leg.byes.lock().unwrap(), [t0 + Duration::from_secs(120)]);
    assert_eq!(
        ended_with(&rig).as_deref(),
        Some(EndReason::MaxCallTime.as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_that_dies_ends_its_call_at_once() {
    let rig = rig(doc(DtmfAuthority::All)).await;
    let (_call, _feed, leg, task) = answered(&rig, "192.0.2.9:5060");
    let t0 = Instant::now();
    rig.agent.media_gone();
    ends(task).await;
    assert_eq!(*leg.byes.lock().unwrap(), [t0]);
    assert_eq!(
        ended_with(&rig).as_deref(),
        Some(EndReason::MediaFailed.as_str())
    );
    assert!(
        rig.agent.calls().is_empty(),
        "the door phone is free at once"
    );
}

#[tokio::test(start_paused = true)]
async fn the_peers_bye_ends_the_call_without_one_of_ours() {
    let rig = rig(doc(DtmfAuthority::All)).await;
    let (_call, feed, leg, task) = answered(&rig, "192.0.2.9:5060");
    feed.send(CallEvent::Ended(crate::stack::Ended::RemoteBye))
        .unwrap();
    ends(task).await;
    assert!(leg.byes.lock().unwrap().is_empty());
    assert_eq!(
        ended_with(&rig).as_deref(),
        Some(EndReason::RemoteHangup.as_str())
    );
}
