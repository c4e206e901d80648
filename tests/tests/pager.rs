//! System tests of `doorphone-pager`: the real pager, config, media (its speaker
//! a WAV file) and SIP agent as their own users on a private bus; pages sent by
//! `doorctl page send` to multicast groups on loopback, each sender with its own
//! tone, and the speaker's WAV read back window by window to say which tone
//! played when. SIPp is the far end of the calls that pages barge into.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use doorphone_interfaces::pager::{self, Listening, Page, Pager1Proxy, end_reason, listen_state};
use doorphone_interfaces::sip::{CallProxy, Sip1Proxy, call_state};
use doorphone_system_tests::audio::{dominant, read_wav};
use doorphone_system_tests::sip::{Caller, Sipp, caller, free_port, held_caller, start_agent};
use doorphone_system_tests::{
    Bus, ConfigDb, PATIENCE, Service, applied, bin, check_released_interface, chown_to,
    reconfigure, repo_root, start_config, start_service,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Each listen entry's sender plays its own tone: entry 1, 2, 3.
const TONES: [f64; 3] = [620.0, 940.0, 1380.0];

/// A multicast group of a test: `239.255.TEST.N`, on a port of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Group {
    address: Ipv4Addr,
    port: u16,
}

impl Group {
    fn new(test: u8, n: u8) -> Group {
        Group {
            address: Ipv4Addr::new(239, 255, test, n),
            port: even_port(),
        }
    }

    fn entry(&self, label: &str) -> Value {
        json!({"address": self.address.to_string(), "port": self.port, "label": label})
    }

    fn target(&self) -> String {
        SocketAddrV4::new(self.address, self.port).to_string()
    }
}

/// A port free on loopback, with the next one free too (RTCP).
fn even_port() -> u16 {
    loop {
        let port = free_port();
        if port.is_multiple_of(2)
            && port < 65534
            && std::net::UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
}

struct Rig {
    bus: Bus,
    _db: ConfigDb,
    _config: Service,
    media: Service,
    pager: Service,
    sip: Option<Service>,
    sip_port: u16,
    dir: tempfile::TempDir,
    conn: zbus::Connection,
}

impl Rig {
    /// Config with `multicast` as its multicast section, media writing the
    /// speaker to a WAV file and receiving pages on `lo`, the pager on `lo`,
    /// and the SIP agent (answering IP calls at once) when `with_sip`.
    async fn start(multicast: Value, with_sip: bool) -> Rig {
        let bus = Bus::start().unwrap();
        let db = ConfigDb::new().unwrap();
        let config = start_config(&bus, &db).await.unwrap();
        let conn = bus.connect().await.unwrap();
        reconfigure(&conn, |doc| {
            doc["calls"]["auto_answer"] =
                json!({"ip": true, "sip": false, "delay": 0, "mode": "audio"});
            doc["multicast"] = multicast;
        })
        .await
        .unwrap();

        let dir = tempfile::Builder::new()
            .prefix("doorphone-pager")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let media_dir = dir.path().join("media");
        std::fs::create_dir(&media_dir).unwrap();
        chown_to(&media_dir, "doorphone-media").unwrap();
        let media = start_media(&bus, dir.path(), "media.log").await;
        let (sip, sip_port) = if with_sip {
            let (service, port) = start_agent(&bus, dir.path(), &[]).await.unwrap();
            (Some(service), port)
        } else {
            (None, 0)
        };
        let pager = start_service(
            &bus,
            "doorphone-pager",
            "doorphone-pager",
            pager::BUS_NAME,
            &["--iface".into(), "lo".into()],
            &dir.path().join("pager.log"),
        )
        .await
        .unwrap();
        Rig {
            bus,
            _db: db,
            _config: config,
            media,
            pager,
            sip,
            sip_port,
            dir,
            conn,
        }
    }

    fn speaker(&self) -> PathBuf {
        self.dir.path().join("media/speaker.wav")
    }

    async fn pager(&self) -> Pager1Proxy<'static> {
        Pager1Proxy::builder(&self.conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap()
    }

    /// Everything the pager emits from now on, in order.
    async fn events(&self) -> Events {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .path(pager::OBJECT_PATH)
            .build()
            .unwrap();
        Events {
            stream: zbus::MessageStream::for_match_rule(rule, &self.conn, None)
                .await
                .unwrap(),
            pager: self.pager().await,
        }
    }

    /// `doorctl page send` to `group` with a tone of `freq` for `seconds`.
    fn send(&self, group: Group, freq: f64, seconds: f64) -> Sender {
        let child = Command::new(bin("doorctl"))
            .args(["page", "send", &group.target(), "--iface", "lo"])
            .args([
                "--tone",
                &freq.to_string(),
                "--seconds",
                &seconds.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Sender { child: Some(child) }
    }

    /// Changes the configuration and waits until the pager works with it.
    async fn reconfigure(&self, change: impl FnOnce(&mut Value)) -> anyhow::Result<()> {
        let revision = reconfigure(&self.conn, change).await?;
        applied(
            &self.conn,
            pager::BUS_NAME,
            pager::OBJECT_PATH,
            pager::INTERFACE,
            revision,
        )
        .await
    }

    /// Waits until the speaker, from now on, has played `tone` (`None`:
    /// silence) for `seconds` in all.
    async fn hears(&self, tone: Option<f64>, seconds: f64) {
        let from = self.tones().len();
        let windows = (seconds * 5.0).ceil() as usize;
        let heard = || {
            self.tones()
                .get(from..)
                .is_some_and(|t| t.iter().filter(|w| **w == tone).count() >= windows)
        };
        let deadline = Instant::now() + PATIENCE;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while !heard() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the speaker to play {tone:?} for {seconds} s; it played {:?}\n{}",
                self.tones().get(from..),
                self.logs()
            );
            tick.tick().await;
        }
    }

    /// The tone that dominates each 200 ms of the speaker so far (none before
    /// the file has its header).
    fn tones(&self) -> Vec<Option<f64>> {
        let Some((rate, samples)) = std::fs::read(self.speaker())
            .ok()
            .and_then(|wav| read_wav(&wav))
        else {
            return Vec::new();
        };
        samples
            .chunks_exact(rate as usize / 5)
            .map(|w| dominant(w, rate, &TONES))
            .collect()
    }

    fn sip_agent(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip_port))
    }

    /// A SIPp caller that the door phone answers.
    fn call(&self, name: &str, scenario: &str) -> Sipp {
        Sipp::start(
            self.dir.path(),
            name,
            scenario,
            free_port(),
            Some(self.sip_agent()),
            &[],
        )
        .unwrap()
    }

    fn logs(&self) -> String {
        format!(
            "--- pager\n{}\n--- media\n{}\n--- sip\n{}",
            self.pager.log(),
            self.media.log(),
            self.sip.as_ref().map(Service::log).unwrap_or_default()
        )
    }
}

/// Media with its speaker writing `DIR/media/speaker.wav` and pages received on
/// `lo`, logging to `DIR/LOG`.
async fn start_media(bus: &Bus, dir: &std::path::Path, log: &str) -> Service {
    doorphone_system_tests::start_media(
        bus,
        &[
            "--audio-sink".into(),
            format!("file:{}", dir.join("media/speaker.wav").display()),
            "--video-source".into(),
            "none".into(),
            // SIPp sends no RTP: the calls must not time out.
            "--rtp-timeout".into(),
            "300".into(),
            "--multicast-iface".into(),
            "lo".into(),
        ],
        &dir.join(log),
    )
    .await
    .unwrap()
}

/// A `gst-launch-1.0` pipeline, ended with the test.
struct Launched(Child);

impl Launched {
    /// Sends `freq` to `group` in `codec`'s RTP, without RTCP.
    fn page(group: Group, freq: f64, codec: &str) -> Launched {
        let chain = match codec {
            "PCMA" => "audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay pt=8",
            "G722" => "audio/x-raw,rate=16000,channels=1 ! avenc_g722 ! rtpg722pay pt=9",
            other => panic!("no sender for {other}"),
        };
        let description = format!(
            "audiotestsrc is-live=true wave=sine freq={freq} volume=0.5 ! {chain} ! \
             udpsink host={} port={} multicast-iface=lo ttl-mc=0 auto-multicast=true",
            group.address, group.port
        );
        Launched(
            Command::new("gst-launch-1.0")
                .arg("-q")
                .args(description.split_whitespace())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("gst-launch-1.0 runs (gstreamer1.0-tools)"),
        )
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// A WAV file of a tone: 16-bit PCM at `rate` with `channels`.
fn wav_tone(freq: f64, rate: u32, channels: u16, seconds: f64) -> Vec<u8> {
    let n = (seconds * f64::from(rate)) as usize;
    let mut data = Vec::new();
    for i in 0..n {
        let x = (12000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
            as i16;
        for _ in 0..channels {
            data.extend_from_slice(&x.to_le_bytes());
        }
    }
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
    wav.extend_from_slice(&(2 * channels).to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

/// Waits until `ready` holds, checking every 20 ms.
async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tick.tick().await;
    }
}

/// A `doorctl page send` running.
struct Sender {
    child: Option<Child>,
}

impl Sender {
    /// Kills it: the page just stops arriving, without an RTCP BYE.
    fn kill(&mut self) -> Instant {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        let killed = Instant::now();
        child.wait().unwrap();
        killed
    }

    /// Waits until it has sent its page and the BYE.
    async fn finish(&mut self) {
        let child = self.child.take().expect("running");
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "doorctl page send: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// What the pager says, as it says it.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Started(Group, u32),
    Ended(Group, &'static str),
}

struct Events {
    stream: zbus::MessageStream,
    pager: Pager1Proxy<'static>,
}

enum Said {
    Started(String, u16, u32),
    Ended(String, u16, String),
    /// Properties changed.
    Changed,
}

impl Events {
    async fn next_said(&mut self) -> Said {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("the pager said nothing")
                .expect("the bus is open")
                .unwrap();
            let header = message.header();
            let member = header.member().map(|m| m.to_string()).unwrap_or_default();
            let body = message.body();
            return match member.as_str() {
                "PageStarted" => {
                    let (a, p, n): (String, u16, u32) = body.deserialize().unwrap();
                    Said::Started(a, p, n)
                }
                "PageEnded" => {
                    let (a, p, r): (String, u16, String) = body.deserialize().unwrap();
                    Said::Ended(a, p, r)
                }
                "PropertiesChanged" => Said::Changed,
                _ => continue,
            };
        }
    }

    /// The next page signal must be `expected`.
    async fn expect(&mut self, groups: &[Group], expected: Event) {
        let find = |a: &str, p: u16| {
            *groups
                .iter()
                .find(|g| g.address.to_string() == a && g.port == p)
                .unwrap_or_else(|| panic!("a page from a group of no test: {a}:{p}"))
        };
        let got = loop {
            match self.next_said().await {
                Said::Started(a, p, n) => break Event::Started(find(&a, p), n),
                Said::Ended(a, p, r) => {
                    let reason = [end_reason::ENDED, end_reason::PREEMPTED, end_reason::CALL]
                        .into_iter()
                        .find(|k| *k == r)
                        .unwrap_or_else(|| panic!("unknown reason {r}"));
                    break Event::Ended(find(&a, p), reason);
                }
                Said::Changed => {}
            }
        };
        assert_eq!(got, expected);
    }

    /// Waits until `group` is listed in `state`, failing on any page signal
    /// meanwhile.
    async fn quiet_until(&mut self, group: Group, state: &str) {
        loop {
            if self.state(group).await.as_deref() == Some(state) {
                return;
            }
            match self.next_said().await {
                Said::Changed => {}
                Said::Started(a, p, _) => panic!("a page started from {a}:{p}"),
                Said::Ended(a, p, r) => panic!("a page ended from {a}:{p} ({r})"),
            }
        }
    }

    async fn state(&self, group: Group) -> Option<String> {
        listed(&self.pager.listening().await.unwrap(), group).map(|l| l.state.clone())
    }
}

fn listed(listening: &[Listening], group: Group) -> Option<&Listening> {
    listening
        .iter()
        .find(|l| l.address == group.address.to_string() && l.port == group.port)
}

/// The tones that played, in order, each for at least 400 ms (shorter stretches
/// are the switches between them); silence is left out.
fn runs(tones: &[Option<f64>]) -> Vec<(f64, usize)> {
    let mut runs: Vec<(f64, usize)> = Vec::new();
    for tone in tones.iter().flatten() {
        match runs.last_mut() {
            Some((t, n)) if t == tone => *n += 1,
            _ => runs.push((*tone, 1)),
        }
    }
    runs.retain(|(_, n)| *n >= 2);
    // Neighbours left equal after a short stretch went are one run.
    let mut merged: Vec<(f64, usize)> = Vec::new();
    for (t, n) in runs {
        match merged.last_mut() {
            Some((last, m)) if *last == t => *m += n,
            _ => merged.push((t, n)),
        }
    }
    merged
}

fn sequence(tones: &[Option<f64>]) -> Vec<f64> {
    runs(tones).into_iter().map(|(t, _)| t).collect()
}

fn multicast(groups: &[Group], priority: bool, barge: u32) -> Value {
    json!({
        "paging_priority": priority,
        "paging_barge": barge,
        "listen": groups.iter().enumerate().map(|(i, g)| g.entry(&format!("Entry {}", i + 1))).collect::<Vec<_>>(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_page_plays_its_tone_and_ends_on_bye_or_silence() {
    let groups = [Group::new(11, 1)];
    let g = groups[0];
    let rig = Rig::start(multicast(&groups, true, 0), false).await;
    let pager = rig.pager().await;
    let listening = pager.listening().await.unwrap();
    assert_eq!(listening.len(), 1);
    assert_eq!(listening[0].priority, 1);
    assert_eq!(listening[0].label, "Entry 1");
    assert_eq!(listening[0].state, listen_state::IDLE);
    let mut events = rig.events().await;

    // Three seconds of tone, then the sender's RTCP BYE.
    let mut sender = rig.send(g, TONES[0], 3.0);
    events.expect(&groups, Event::Started(g, 1)).await;
    let page = pager.page().await.unwrap();
    assert_eq!(
        (
            page.address.as_str(),
            page.port,
            page.priority,
            page.codec.as_str()
        ),
        (g.address.to_string().as_str(), g.port, 1, "PCMU")
    );
    assert_eq!(
        events.state(g).await.as_deref(),
        Some(listen_state::PLAYING)
    );
    sender.finish().await;
    let bye = Instant::now();
    events
        .expect(&groups, Event::Ended(g, end_reason::ENDED))
        .await;
    let after_bye = bye.elapsed();
    assert!(
        after_bye < Duration::from_secs(1),
        "BYE ended the page after {after_bye:?}"
    );
    assert_eq!(pager.page().await.unwrap(), Page::default());

    // A sender that goes away without a BYE: the page ends after 2 s of silence.
    let mut sender = rig.send(g, TONES[0], 60.0);
    events.expect(&groups, Event::Started(g, 1)).await;
    rig.hears(Some(TONES[0]), 1.0).await;
    let killed = sender.kill();
    events
        .expect(&groups, Event::Ended(g, end_reason::ENDED))
        .await;
    let silence = killed.elapsed();
    eprintln!("figure: a page ends {silence:?} after its last packet, {after_bye:?} after its BYE");
    assert!(
        silence >= Duration::from_millis(1900) && silence < Duration::from_millis(3500),
        "the page ended {silence:?} after its last packet"
    );
    rig.hears(None, 0.4).await;

    let tones = rig.tones();
    let runs = runs(&tones);
    assert_eq!(
        runs.iter().map(|r| r.0).collect::<Vec<_>>(),
        [TONES[0]],
        "{tones:?}\n{}",
        rig.logs()
    );
    // Each page played for most of its length: 3 s and 1 s at least.
    let windows = tones.iter().filter(|t| **t == Some(TONES[0])).count();
    assert!(
        windows >= 18,
        "{windows} windows of the page's tone: {tones:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_priority_a_higher_page_preempts_and_the_lower_resumes() {
    let groups = [Group::new(12, 1), Group::new(12, 2), Group::new(12, 3)];
    let [g1, _, g3] = groups;
    let rig = Rig::start(multicast(&groups, true, 0), false).await;
    let mut events = rig.events().await;

    let mut low = rig.send(g3, TONES[2], 60.0);
    events.expect(&groups, Event::Started(g3, 3)).await;
    rig.hears(Some(TONES[2]), 1.0).await;
    let mut high = rig.send(g1, TONES[0], 2.0);
    events
        .expect(&groups, Event::Ended(g3, end_reason::PREEMPTED))
        .await;
    events.expect(&groups, Event::Started(g1, 1)).await;
    high.finish().await;
    events
        .expect(&groups, Event::Ended(g1, end_reason::ENDED))
        .await;
    events.expect(&groups, Event::Started(g3, 3)).await;
    rig.hears(Some(TONES[2]), 1.0).await;
    low.kill();
    events
        .expect(&groups, Event::Ended(g3, end_reason::ENDED))
        .await;
    rig.hears(None, 0.4).await;

    let tones = rig.tones();
    assert_eq!(
        sequence(&tones),
        [TONES[2], TONES[0], TONES[2]],
        "{tones:?}\n{}",
        rig.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_priority_a_page_plays_to_its_end_and_the_next_waits() {
    let groups = [Group::new(13, 1), Group::new(13, 2), Group::new(13, 3)];
    let [g1, _, g3] = groups;
    let rig = Rig::start(multicast(&groups, false, 0), false).await;
    let mut events = rig.events().await;

    let mut first = rig.send(g3, TONES[2], 3.0);
    events.expect(&groups, Event::Started(g3, 3)).await;
    let mut second = rig.send(g1, TONES[0], 60.0);
    events.quiet_until(g1, listen_state::WAITING).await;
    first.finish().await;
    events
        .expect(&groups, Event::Ended(g3, end_reason::ENDED))
        .await;
    events.expect(&groups, Event::Started(g1, 1)).await;
    rig.hears(Some(TONES[0]), 1.0).await;
    second.kill();
    events
        .expect(&groups, Event::Ended(g1, end_reason::ENDED))
        .await;
    rig.hears(None, 0.4).await;

    let tones = rig.tones();
    assert_eq!(
        sequence(&tones),
        [TONES[2], TONES[0]],
        "{tones:?}\n{}",
        rig.logs()
    );
}

/// Whether a SIP message body offers (or answers) media on hold.
fn holds(text: &str) -> bool {
    text.contains("a=sendonly") || text.contains("a=inactive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_within_the_barge_level_holds_the_call_and_one_above_is_ignored() {
    let groups = [Group::new(14, 1), Group::new(14, 2), Group::new(14, 3)];
    let [g1, _, g3] = groups;
    let rig = Rig::start(multicast(&groups, true, 2), true).await;
    let agent = Sip1Proxy::new(&rig.conn).await.unwrap();
    let mut states = agent.receive_call_state_changed().await.unwrap();
    let mut events = rig.events().await;

    let mut peer = rig.call(
        "held",
        &held_caller("door", "resident", 1, Duration::from_millis(500)),
    );
    let call = loop {
        let change = tokio::time::timeout(PATIENCE, states.next())
            .await
            .expect("the call is answered")
            .unwrap();
        let args = change.args().unwrap();
        if args.state == call_state::ANSWERED {
            break args.call.into_owned();
        }
    };

    // Entry 3 is above the barge level: it waits, plays nothing, and the call
    // is untouched.
    let mut ignored = rig.send(g3, TONES[2], 2.0);
    events.quiet_until(g3, listen_state::WAITING).await;
    ignored.finish().await;
    events.quiet_until(g3, listen_state::IDLE).await;

    // Entry 1 barges in: the call is held while it plays, then resumed.
    let mut barging = rig.send(g1, TONES[0], 3.0);
    events.expect(&groups, Event::Started(g1, 1)).await;
    let held = CallProxy::builder(&rig.conn)
        .path(call.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    assert_eq!(held.state().await.unwrap(), call_state::HELD);
    barging.finish().await;
    events
        .expect(&groups, Event::Ended(g1, end_reason::ENDED))
        .await;
    peer.succeeds(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.logs()));

    let reinvites: Vec<_> = peer
        .messages()
        .into_iter()
        .filter(|m| !m.sent && m.is_request("INVITE"))
        .collect();
    assert_eq!(reinvites.len(), 2, "{reinvites:#?}");
    assert!(holds(&reinvites[0].text), "{}", reinvites[0].text);
    assert!(
        !holds(&reinvites[1].text) && !reinvites[1].text.contains("a=recvonly"),
        "{}",
        reinvites[1].text
    );
    rig.hears(None, 0.4).await;

    let tones = rig.tones();
    assert_eq!(sequence(&tones), [TONES[0]], "{tones:?}\n{}", rig.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_barge_a_call_stops_the_page_and_no_page_plays_during_it() {
    let groups = [Group::new(15, 1)];
    let g = groups[0];
    let rig = Rig::start(multicast(&groups, true, 0), true).await;
    let agent = Sip1Proxy::builder(&rig.conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let mut events = rig.events().await;

    let mut sender = rig.send(g, TONES[0], 60.0);
    events.expect(&groups, Event::Started(g, 1)).await;
    rig.hears(Some(TONES[0]), 1.0).await;
    let mut peer = rig.call(
        "caller",
        &caller("door", "resident", false, &Caller::AnsweredUntilBye),
    );
    events
        .expect(&groups, Event::Ended(g, end_reason::CALL))
        .await;
    assert_eq!(
        events.state(g).await.as_deref(),
        Some(listen_state::WAITING)
    );
    let during = Instant::now();
    rig.hears(None, 1.5).await;
    let call = agent.active_call().await.unwrap();
    assert_ne!(call.as_str(), "/");
    CallProxy::builder(&rig.conn)
        .path(call)
        .build()
        .await
        .unwrap()
        .hangup()
        .await
        .unwrap();
    peer.succeeds(PATIENCE).await.unwrap();
    // The page still arrives: it plays again once the call has ended.
    events.expect(&groups, Event::Started(g, 1)).await;
    let call_lasted = during.elapsed();
    rig.hears(Some(TONES[0]), 1.0).await;
    sender.kill();
    events
        .expect(&groups, Event::Ended(g, end_reason::ENDED))
        .await;
    rig.hears(None, 0.4).await;

    // Tone, a silence as long as the call, tone again.
    let tones = rig.tones();
    let first = tones.iter().position(|t| *t == Some(TONES[0])).unwrap();
    let last = tones.iter().rposition(|t| *t == Some(TONES[0])).unwrap();
    let longest_gap = tones[first..=last]
        .split(|t| t.is_some())
        .map(<[_]>::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_gap * 200 >= 1200 && (longest_gap as u128) * 200 <= call_lasted.as_millis() + 1000,
        "a gap of {longest_gap} windows for a call of {call_lasted:?}: {tones:?}\n{}",
        rig.logs()
    );
}

/// The groups `/proc/net/igmp` lists as joined on `lo`.
fn joined_on_lo() -> Vec<Ipv4Addr> {
    let text = std::fs::read_to_string("/proc/net/igmp").unwrap();
    let mut on_lo = false;
    let mut groups = Vec::new();
    for line in text.lines().skip(1) {
        if !line.starts_with(char::is_whitespace) {
            on_lo = line.split_whitespace().nth(1) == Some("lo");
        } else if on_lo
            && let Some(hex) = line.split_whitespace().next()
            && let Ok(raw) = u32::from_str_radix(hex, 16)
        {
            groups.push(Ipv4Addr::from(raw.swap_bytes()));
        }
    }
    groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_join_and_leave_groups_live_and_an_eleventh_is_refused() {
    let groups = [Group::new(16, 1), Group::new(16, 2), Group::new(16, 3)];
    let [g1, g2, g3] = groups;
    let rig = Rig::start(multicast(&groups[..2], true, 0), false).await;
    let pager = rig.pager().await;
    assert!(joined_on_lo().contains(&g2.address));

    let refused = rig
        .reconfigure(|doc| {
            doc["multicast"]["listen"] = (1..=11u8)
                .map(|n| Group::new(16, 100 + n).entry("too many"))
                .collect();
        })
        .await
        .expect_err("an eleventh group is refused");
    assert!(
        refused.to_string().contains("multicast.listen"),
        "{refused}"
    );
    assert_eq!(pager.listening().await.unwrap().len(), 2);

    rig.reconfigure(|doc| doc["multicast"] = multicast(&[g1, g3], true, 0))
        .await
        .unwrap();
    let listening = pager.listening().await.unwrap();
    assert_eq!(listening.len(), 2);
    assert_eq!(listed(&listening, g3).map(|l| l.priority), Some(2));
    assert!(listed(&listening, g2).is_none());
    until("the pager to leave the removed group", || {
        !joined_on_lo().contains(&g2.address)
    })
    .await;
    assert!(joined_on_lo().contains(&g3.address));

    // A page to the removed group is not heard; one to the added group is.
    let mut events = rig.events().await;
    let _removed = rig.send(g2, TONES[1], 60.0);
    rig.hears(None, 1.0).await;
    let mut added = rig.send(g3, TONES[2], 2.0);
    events.expect(&groups, Event::Started(g3, 2)).await;
    added.finish().await;
    events
        .expect(&groups, Event::Ended(g3, end_reason::ENDED))
        .await;
    rig.hears(None, 0.4).await;
    let tones = rig.tones();
    assert_eq!(sequence(&tones), [TONES[2]], "{tones:?}\n{}", rig.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_a_listened_port_is_ignored() {
    let groups = [Group::new(17, 1)];
    let g = groups[0];
    let rig = Rig::start(multicast(&groups, true, 0), false).await;
    let mut events = rig.events().await;
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    socket.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    let socket = std::net::UdpSocket::from(socket);
    let junk = |socket: &std::net::UdpSocket| {
        let rtp = |first: u8, pt: u8| {
            let mut p = vec![first, pt, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
            p.extend([0x55; 160]);
            p
        };
        let datagrams: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            vec![],
            vec![0x80],
            rtp(0x80, 96),
            rtp(0x80, 18),
            rtp(0x80, 34),
            // RTP version 1, and a header that claims more CSRCs than it has.
            rtp(0x40, 0),
            rtp(0x8f, 0)[..40].to_vec(),
            // RTCP on the RTP port, with a length past its end.
            vec![0x81, 203, 0, 40, 1, 2, 3, 4],
            (0..=255u8).collect(),
        ];
        for d in &datagrams {
            for port in [g.port, g.port + 1] {
                socket
                    .send_to(d, SocketAddrV4::new(g.address, port))
                    .unwrap();
            }
        }
    };
    for _ in 0..20 {
        junk(&socket);
    }
    rig.hears(None, 0.4).await;
    assert_eq!(events.state(g).await.as_deref(), Some(listen_state::IDLE));

    // The pager still works, and junk during a page does not end it.
    let mut sender = rig.send(g, TONES[0], 3.0);
    events.expect(&groups, Event::Started(g, 1)).await;
    for _ in 0..20 {
        junk(&socket);
    }
    sender.finish().await;
    events
        .expect(&groups, Event::Ended(g, end_reason::ENDED))
        .await;
    assert!(rig.pager.pid().is_some());
    assert!(!rig.pager.log().contains("panicked"), "{}", rig.pager.log());
}

/// `org.doorphone.Pager1` as released in `dbus/interfaces/`, readable by
/// everyone, with no method anyone may call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pager_serves_its_released_interface_to_everyone() {
    let bus = Bus::start().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("doorphone-pager")
        .tempdir()
        .unwrap();
    // Without config, media or SIP agent it still serves, listening to nothing.
    let _pager = start_service(
        &bus,
        "doorphone-pager",
        "doorphone-pager",
        pager::BUS_NAME,
        &[],
        &dir.path().join("pager.log"),
    )
    .await
    .unwrap();
    let conn = bus.connect().await.unwrap();
    check_released_interface(
        &conn,
        pager::BUS_NAME,
        pager::OBJECT_PATH,
        pager::INTERFACE,
        &repo_root().join(format!("dbus/interfaces/{}.xml", pager::INTERFACE)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    for property in ["Listening", "Page", "ConfigRevision"] {
        let out = bus.busctl_as(
            "nobody",
            &[
                "get-property",
                pager::BUS_NAME,
                pager::OBJECT_PATH,
                pager::INTERFACE,
                property,
            ],
        );
        assert!(out.status.success(), "{property}: {out:?}");
    }
    let out = bus.busctl_as(
        "nobody",
        &[
            "call",
            pager::BUS_NAME,
            pager::OBJECT_PATH,
            "org.freedesktop.DBus.Properties",
            "Set",
            "ssv",
            pager::INTERFACE,
            "ConfigRevision",
            "t",
            "7",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Access denied"),
        "{out:?}"
    );
}

/// `doorctl page status` shows the groups and their states; `page send` refuses
/// what it cannot send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doorctl_shows_the_pagers_groups_and_sends_pages() {
    let groups = [Group::new(18, 1), Group::new(18, 2)];
    let [g1, g2] = groups;
    let rig = Rig::start(multicast(&groups, true, 0), false).await;
    let doorctl = |args: &[&str]| {
        Command::new(bin("doorctl"))
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &rig.bus.address)
            .output()
            .unwrap()
    };
    let mut events = rig.events().await;
    let mut sender = rig.send(g2, TONES[1], 60.0);
    events.expect(&groups, Event::Started(g2, 2)).await;

    let out = doorctl(&["page", "status"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("PRIORITY"), "{text}");
    assert!(
        lines[1].contains(&g1.address.to_string()) && lines[1].ends_with(listen_state::IDLE),
        "{text}"
    );
    assert!(
        lines[2].contains("Entry 2") && lines[2].ends_with(listen_state::PLAYING),
        "{text}"
    );
    let out = doorctl(&["page", "status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["page"]["port"], g2.port);
    assert_eq!(json["page"]["codec"], "PCMU");
    assert_eq!(json["listening"][1]["state"], listen_state::PLAYING);

    rig.hears(Some(TONES[1]), 0.6).await;
    sender.kill();
    events
        .expect(&groups, Event::Ended(g2, end_reason::ENDED))
        .await;
    let json: Value =
        serde_json::from_slice(&doorctl(&["page", "status", "--json"]).stdout).unwrap();
    assert_eq!(json["page"], Value::Null);

    // A WAV file at 16 kHz in stereo is mixed down and resampled.
    let wav = rig.dir.path().join("page.wav");
    std::fs::write(&wav, wav_tone(TONES[0], 16000, 2, 2.0)).unwrap();
    let out = doorctl(&[
        "page",
        "send",
        &g1.target(),
        "--iface",
        "lo",
        "--file",
        wav.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    events.expect(&groups, Event::Started(g1, 1)).await;
    events
        .expect(&groups, Event::Ended(g1, end_reason::ENDED))
        .await;
    rig.hears(None, 0.4).await;
    let tones = rig.tones();
    assert_eq!(sequence(&tones), [TONES[1], TONES[0]], "{tones:?}");

    let missing = rig.dir.path().join("missing.wav");
    let out = doorctl(&[
        "page",
        "send",
        &g1.target(),
        "--file",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = doorctl(&["page", "send", "239.1.1.1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = doorctl(&["page", "send", &g1.target(), "--iface", "no-such-if0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_in_pcma_and_g722_play_by_their_payload_type() {
    let groups = [Group::new(19, 1), Group::new(19, 2)];
    let [g1, g2] = groups;
    let rig = Rig::start(multicast(&groups, true, 0), false).await;
    let pager = rig.pager().await;
    let mut events = rig.events().await;

    for (group, priority, tone, codec) in [(g1, 1, TONES[0], "PCMA"), (g2, 2, TONES[1], "G722")] {
        let sender = Launched::page(group, tone, codec);
        events
            .expect(&groups, Event::Started(group, priority))
            .await;
        assert_eq!(pager.page().await.unwrap().codec, codec);
        rig.hears(Some(tone), 1.0).await;
        drop(sender);
        events
            .expect(&groups, Event::Ended(group, end_reason::ENDED))
            .await;
    }
    rig.hears(None, 0.4).await;
    let tones = rig.tones();
    assert_eq!(
        sequence(&tones),
        [TONES[0], TONES[1]],
        "{tones:?}\n{}",
        rig.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_plays_on_when_media_restarts() {
    let groups = [Group::new(20, 1)];
    let g = groups[0];
    let mut rig = Rig::start(multicast(&groups, true, 0), false).await;
    let mut events = rig.events().await;
    let mut sender = rig.send(g, TONES[0], 60.0);
    events.expect(&groups, Event::Started(g, 1)).await;
    rig.hears(Some(TONES[0]), 1.0).await;

    // A crash: the new media writes a new speaker file, and the pager asks it
    // for the page again without announcing a new one.
    rig.media.kill();
    rig.media = start_media(&rig.bus, rig.dir.path(), "media-again.log").await;
    rig.hears(Some(TONES[0]), 1.0).await;
    sender.kill();
    events
        .expect(&groups, Event::Ended(g, end_reason::ENDED))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_answered_while_a_barging_page_plays_is_held_until_it_ends() {
    let groups = [Group::new(21, 1)];
    let g = groups[0];
    let rig = Rig::start(multicast(&groups, true, 1), true).await;
    let mut events = rig.events().await;
    let mut sender = rig.send(g, TONES[0], 60.0);
    events.expect(&groups, Event::Started(g, 1)).await;

    // The call rings and is answered as usual; the page keeps playing over it.
    let mut peer = rig.call(
        "during",
        &held_caller("door", "resident", 1, Duration::from_millis(200)),
    );
    rig.hears(Some(TONES[0]), 1.0).await;
    sender.kill();
    events
        .expect(&groups, Event::Ended(g, end_reason::ENDED))
        .await;
    peer.succeeds(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.logs()));
    let reinvites: Vec<_> = peer
        .messages()
        .into_iter()
        .filter(|m| !m.sent && m.is_request("INVITE"))
        .collect();
    assert_eq!(reinvites.len(), 2, "{reinvites:#?}");
    assert!(holds(&reinvites[0].text), "{}", reinvites[0].text);
    assert!(!holds(&reinvites[1].text), "{}", reinvites[1].text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pager_that_stops_gives_the_speaker_and_the_call_back() {
    let groups = [Group::new(22, 1)];
    let g = groups[0];
    let mut rig = Rig::start(multicast(&groups, true, 1), true).await;
    let agent = Sip1Proxy::new(&rig.conn).await.unwrap();
    let mut states = agent.receive_call_state_changed().await.unwrap();
    let mut events = rig.events().await;
    let mut peer = rig.call(
        "stopped",
        &held_caller("door", "resident", 1, Duration::from_millis(200)),
    );
    while tokio::time::timeout(PATIENCE, states.next())
        .await
        .expect("the call is answered")
        .unwrap()
        .args()
        .unwrap()
        .state
        != call_state::ANSWERED
    {}
    let _sender = rig.send(g, TONES[0], 60.0);
    events.expect(&groups, Event::Started(g, 1)).await;
    rig.hears(Some(TONES[0]), 1.0).await;

    let status = rig.pager.stop().expect("the pager ran");
    assert!(status.success(), "{status:?}\n{}", rig.logs());
    events
        .expect(&groups, Event::Ended(g, end_reason::ENDED))
        .await;
    // The page still arrives, but nobody plays it; the call is resumed.
    peer.succeeds(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.logs()));
    rig.hears(None, 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_before_the_page_stays_held_after_it() {
    let groups = [Group::new(23, 1)];
    let g = groups[0];
    let rig = Rig::start(multicast(&groups, true, 1), true).await;
    let agent = Sip1Proxy::new(&rig.conn).await.unwrap();
    let mut states = agent.receive_call_state_changed().await.unwrap();
    let mut events = rig.events().await;
    let mut peer = rig.call(
        "held-before",
        &held_caller("door", "resident", 1, Duration::from_millis(200)),
    );
    let call = loop {
        let change = tokio::time::timeout(PATIENCE, states.next())
            .await
            .expect("the call is answered")
            .unwrap();
        let args = change.args().unwrap();
        if args.state == call_state::ANSWERED {
            break args.call.into_owned();
        }
    };
    let call = CallProxy::builder(&rig.conn)
        .path(call)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let held = Instant::now();
    call.hold().await.unwrap();

    let mut sender = rig.send(g, TONES[0], 2.0);
    events.expect(&groups, Event::Started(g, 1)).await;
    sender.finish().await;
    events
        .expect(&groups, Event::Ended(g, end_reason::ENDED))
        .await;
    assert_eq!(call.state().await.unwrap(), call_state::HELD);
    let held_for = held.elapsed().as_secs_f64();
    call.resume().await.unwrap();
    peer.succeeds(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.logs()));
    let reinvites: Vec<_> = peer
        .messages()
        .into_iter()
        .filter(|m| !m.sent && m.is_request("INVITE"))
        .collect();
    // Ours: the hold, then the resume after the page; none from the pager.
    assert_eq!(reinvites.len(), 2, "{reinvites:#?}");
    assert!(holds(&reinvites[0].text), "{}", reinvites[0].text);
    assert!(
        reinvites[1].at - reinvites[0].at >= held_for - 0.1,
        "resumed before the page ended: {reinvites:#?}"
    );
}
