//! System tests of `doorphone-media`: the real binary as its own user on a private
//! bus, with a GStreamer pipeline as the far end of the call. Each side sends its
//! own tone and the received audio is checked for it.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use doorphone_interfaces::media::{self, Media1Proxy, SessionProxy};
use doorphone_system_tests::audio::{dominant, read_wav, samples};
use doorphone_system_tests::rtp::{Relay, unused_port};
use doorphone_system_tests::{
    Bus, ConfigDb, PATIENCE, Service, chown_to, jpeg_size, start_config, start_service_env,
};
use futures_util::StreamExt;

const MEDIA_TONE: f64 = 440.0;
/// The media service's RTP timeout in these tests.
const RTP_TIMEOUT: Duration = Duration::from_secs(2);
const PEER_TONE: f64 = 1000.0;

struct Rig {
    bus: Bus,
    _db: ConfigDb,
    _config: Service,
    media: Service,
    dir: tempfile::TempDir,
    conn: zbus::Connection,
}

impl Rig {
    async fn start() -> Rig {
        Rig::start_with(serde_json::json!({})).await
    }

    /// Starts the config service, sets each of `settings` (dotted key to value),
    /// then starts media, which reads them.
    async fn start_with(settings: serde_json::Value) -> Rig {
        Rig::start_full(settings, "test").await
    }

    /// As `start_with`, with the microphone named by `audio_source`.
    async fn start_full(settings: serde_json::Value, audio_source: &str) -> Rig {
        let bus = Bus::start().unwrap();
        let db = ConfigDb::new().unwrap();
        let config = start_config(&bus, &db).await.unwrap();
        let conn = bus.connect().await.unwrap();
        let config_proxy = doorphone_interfaces::config::Config1Proxy::new(&conn)
            .await
            .unwrap();
        for (key, value) in settings.as_object().unwrap() {
            let value = doorphone_interfaces::json::to_variant(value).unwrap();
            config_proxy.set(key, &value).await.unwrap();
        }
        let dir = tempfile::Builder::new()
            .prefix("doorphone-media")
            .tempdir()
            .unwrap();
        chown_to(dir.path(), "doorphone-media").unwrap();
        let env = doorphone_system_tests::gst_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let media = start_service_env(
            &bus,
            "doorphone-media",
            "doorphone-media",
            media::BUS_NAME,
            &[
                "--audio-source".into(),
                audio_source.into(),
                "--test-tone".into(),
                MEDIA_TONE.to_string(),
                "--audio-sink".into(),
                format!("file:{}", dir.path().join("speaker.wav").display()),
                "--rtp-timeout".into(),
                RTP_TIMEOUT.as_secs().to_string(),
                "--video-source".into(),
                "test".into(),
                "--multicast-iface".into(),
                "lo".into(),
            ],
            &env,
            &dir.path().join("media.log"),
        )
        .await
        .unwrap();
        Rig {
            bus,
            _db: db,
            _config: config,
            media,
            dir,
            conn,
        }
    }

    async fn proxy(&self) -> Media1Proxy<'static> {
        Media1Proxy::new(&self.conn).await.unwrap()
    }

    async fn session(&self, path: &zbus::OwnedObjectPath) -> SessionProxy<'static> {
        SessionProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap()
    }

    fn speaker(&self) -> PathBuf {
        self.dir.path().join("speaker.wav")
    }
}

/// A codec as the far end speaks it: its SDP lines and its GStreamer chains.
struct PeerCodec {
    name: &'static str,
    pt: u8,
    rtpmap: &'static str,
    /// The tone source's output to RTP.
    send: &'static str,
    /// Caps of the RTP it receives.
    recv_caps: &'static str,
    /// RTP to raw audio.
    recv: &'static str,
}

const PCMU: PeerCodec = PeerCodec {
    name: "PCMU",
    pt: 0,
    rtpmap: "PCMU/8000",
    send: "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay pt=0",
    recv_caps: "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0",
    recv: "rtppcmudepay ! mulawdec",
};

const OPUS: PeerCodec = PeerCodec {
    name: "opus",
    pt: 111,
    rtpmap: "opus/48000/2",
    send: "audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay pt=111",
    recv_caps: "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111",
    recv: "rtpopusdepay ! opusdec",
};

/// G.722 at the far end through libav's codec, an implementation of its own.
const G722: PeerCodec = PeerCodec {
    name: "G722",
    pt: 9,
    rtpmap: "G722/8000",
    send: "audio/x-raw,rate=16000,channels=1 ! avenc_g722 ! rtpg722pay pt=9",
    recv_caps: "application/x-rtp,media=audio,clock-rate=8000,encoding-name=G722,payload=9",
    recv: "rtpg722depay ! avdec_g722",
};

/// The far end: sends its tone to `to` from its port `listen` (symmetric RTP, as
/// phones do), and writes what it receives there as raw 8 kHz samples.
struct Peer {
    sender: Child,
    receiver: Child,
    received: PathBuf,
    /// The peer's RTP socket, with the relays that join it to the pipelines.
    socket: UdpSocket,
    _relays: [Relay; 2],
}

fn gst_launch(description: &str) -> Child {
    Command::new("gst-launch-1.0")
        .arg("-q")
        .args(description.split_whitespace())
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 runs (gstreamer1.0-tools)")
}

/// A `gst-launch-1.0` pipeline that ends with the test.
struct Launched(Child);

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    fn start(dir: &Path, listen: u16, to: u16, codec: &PeerCodec) -> Peer {
        let socket = UdpSocket::bind(("127.0.0.1", listen)).unwrap();
        let outlet = unused_port().unwrap();
        let delivered = Relay::deliver(&socket, outlet).unwrap();
        let sent = Relay::send_from(&socket, ([127, 0, 0, 1], to).into()).unwrap();
        let received = dir.join(format!("peer-{listen}.raw"));
        let receiver = gst_launch(&format!(
            "udpsrc port={outlet} caps={} ! rtpjitterbuffer latency=60 ! {} ! audioconvert ! \
             audioresample ! audio/x-raw,format=S16LE,rate=8000,channels=1 ! filesink location={}",
            codec.recv_caps,
            codec.recv,
            received.display()
        ));
        let sender = gst_launch(&format!(
            "audiotestsrc is-live=true wave=sine freq={PEER_TONE} volume=0.5 ! {} ! \
             udpsink host=127.0.0.1 port={}",
            codec.send, sent.inlet
        ));
        Peer {
            sender,
            receiver,
            received,
            socket,
            _relays: [delivered, sent],
        }
    }

    /// What the peer has received so far, as samples.
    fn heard(&self) -> Vec<i16> {
        samples(&std::fs::read(&self.received).unwrap_or_default())
    }

    fn stop_sending(&mut self) {
        let _ = self.sender.kill();
        let _ = self.sender.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        for child in [&mut self.sender, &mut self.receiver] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn offer(port: u16, codec: &PeerCodec) -> String {
    format!(
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {rtpmap}\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n",
        pt = codec.pt,
        rtpmap = codec.rtpmap
    )
}

fn audio_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no audio port in {sdp}"))
}

fn free_port() -> u16 {
    // An even port with a free neighbour, for the peer's RTP and RTCP.
    loop {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        if port.is_multiple_of(2)
            && port < 65534
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
}

/// Waits until `ready` holds, checking as packets arrive (every 20 ms at most).
async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tick.tick().await;
    }
}

enum Counter {
    Sent,
    Received,
    Rejected,
}

/// Waits until a session's packet counter reaches `target`.
async fn counter_reaches(session: &SessionProxy<'_>, target: u64, which: Counter) {
    let deadline = Instant::now() + PATIENCE;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let now = match which {
            Counter::Sent => session.packets_sent().await.unwrap(),
            Counter::Received => session.packets_received().await.unwrap(),
            Counter::Rejected => session.packets_rejected().await.unwrap(),
        };
        if now >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the packet counter stopped at {now}, short of {target}"
        );
        tick.tick().await;
    }
}

/// RFC 4733 packets for one key press: three start packets (the first marked) and
/// three end packets, all with the press's timestamp.
fn press(socket: &UdpSocket, to: u16, seq: &mut u16, timestamp: u32, event: u8) {
    for i in 0..6u16 {
        let mut p = vec![0x80, 101 | if i == 0 { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
        let end = if i >= 3 { 0x80 } else { 0 };
        p.extend_from_slice(&[event, end | 10]);
        p.extend_from_slice(&(160 * (i + 1)).to_be_bytes());
        socket.send_to(&p, ("127.0.0.1", to)).unwrap();
        *seq = seq.wrapping_add(1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_pcmu_audio_dtmf_and_hold() {
    let mut rig = Rig::start().await;
    let media = rig.proxy().await;
    let peer_port = free_port();
    let (path, answer) = media
        .create_answer(&offer(peer_port, &PCMU), HashMap::new())
        .await
        .unwrap();
    assert!(
        answer.contains("PCMU/8000") || answer.contains(" 0 "),
        "{answer}"
    );
    assert!(answer.contains("telephone-event/8000"), "{answer}");
    let media_port = audio_port(&answer);
    assert_eq!(media_port % 2, 0);
    let session = rig.session(&path).await;
    assert_eq!(session.audio_codec().await.unwrap(), "PCMU");
    assert_eq!(
        session.local_rtp().await.unwrap(),
        format!("127.0.0.1:{media_port}")
    );
    assert_eq!(
        session.remote_rtp().await.unwrap(),
        format!("127.0.0.1:{peer_port}")
    );

    let mut peer = Peer::start(rig.dir.path(), peer_port, media_port, &PCMU);
    // One second of audio at the peer: the door's tone.
    until("one second of audio at the peer", || {
        peer.heard().len() >= 8000
    })
    .await;
    let heard = peer.heard();
    let last = &heard[heard.len() - 4000..];
    assert_eq!(
        dominant(last, 8000, &[MEDIA_TONE, PEER_TONE]),
        Some(MEDIA_TONE)
    );
    let received = session.packets_received().await.unwrap();
    assert!(received > 0, "media counted no packets from the peer");
    assert!(session.bytes_received().await.unwrap() >= received * 160);
    // Loopback loses nothing (RFC 3550 counts a duplicate as -1, and the first
    // packet after probation may be counted either way), and a live source's
    // jitter stays far below a packet.
    let lost = session.packets_lost().await.unwrap();
    assert!(lost.abs() <= 1, "{lost} packets lost on loopback");
    assert!(session.jitter_ms().await.unwrap() < 20);

    // DTMF from the peer's port (another SSRC than its audio), once per press.
    let mut digits = media.receive_dtmf_received().await.unwrap();
    let mut seq = 1u16;
    for (i, event) in [1u8, 11, 10].into_iter().enumerate() {
        press(
            &peer.socket,
            media_port,
            &mut seq,
            16000 * (i as u32 + 1),
            event,
        );
    }
    let mut got = String::new();
    while got.len() < 3 {
        let signal = tokio::time::timeout(PATIENCE, digits.next())
            .await
            .expect("a DTMF digit")
            .unwrap();
        let args = signal.args().unwrap();
        assert_eq!(args.session.as_str(), path.as_str());
        got.push_str(args.digit);
    }
    assert_eq!(got, "1#*");

    // Hold: the offer says sendonly and the door stops sending, while the peer's
    // packets keep arriving.
    let reoffer = media.hold(&path.as_ref()).await.unwrap();
    assert!(
        reoffer.contains("a=sendonly") || reoffer.contains("a=inactive"),
        "{reoffer}"
    );
    assert_eq!(session.state().await.unwrap(), media::state::HELD);
    let sent_at_hold = session.packets_sent().await.unwrap();
    let received_at_hold = session.packets_received().await.unwrap();
    // Half a second of the peer's packets is the clock.
    counter_reaches(&session, received_at_hold + 25, Counter::Received).await;
    // At most the packets already on their way when the valve closed.
    assert!(session.packets_sent().await.unwrap() <= sent_at_hold + 2);
    let resumed = media.resume(&path.as_ref()).await.unwrap();
    assert!(resumed.contains("a=sendrecv"), "{resumed}");
    let sent_at_resume = session.packets_sent().await.unwrap();
    counter_reaches(&session, sent_at_resume + 25, Counter::Sent).await;

    // The peer falls silent: after the RTP timeout (2 s here) the session says so.
    let mut states = media.receive_session_state_changed().await.unwrap();
    peer.stop_sending();
    let silent_since = Instant::now();
    let timed_out = tokio::time::timeout(PATIENCE, next_timeout(&mut states))
        .await
        .expect("a timeout state");
    let waited = silent_since.elapsed();
    assert_eq!(timed_out, path.as_str());
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "reported after {waited:?}"
    );
    assert_eq!(session.state().await.unwrap(), media::state::TIMEOUT);

    // The speaker got the peer's tone; the WAV is finished when the service stops.
    media.stop(&path.as_ref()).await.unwrap();
    assert!(
        media.stop(&path.as_ref()).await.is_err(),
        "a stopped session is gone"
    );
    rig.media.stop();
    assert_speaker_played_the_peer(&rig);
}

/// The speaker's WAV (finished when the service stopped) holds the peer's tone
/// for at least a second.
fn assert_speaker_played_the_peer(rig: &Rig) {
    let (rate, speaker) = read_wav(&std::fs::read(rig.speaker()).unwrap()).unwrap();
    let windows = speaker.chunks(rate as usize / 5);
    let with_peer_tone = windows
        .filter(|w| dominant(w, rate, &[MEDIA_TONE, PEER_TONE]) == Some(PEER_TONE))
        .count();
    assert!(
        with_peer_tone >= 5,
        "the speaker played the peer's tone in {with_peer_tone} windows of 200 ms"
    );
}

/// Whether the process has spandsp (G.722, and the libtiff it links) mapped.
fn maps_spandsp(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .contains("libspandsp.so")
}

/// Two-way audio in both codecs; spandsp is loaded by the first G.722 call,
/// not before (an Opus call leaves it out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_audio_in_opus_and_g722() {
    for codec in [&OPUS, &G722] {
        let mut rig = Rig::start().await;
        let media = rig.proxy().await;
        let pid = rig.media.pid().unwrap();
        assert!(!maps_spandsp(pid), "spandsp loaded before any call");
        let peer_port = free_port();
        let (path, answer) = media
            .create_answer(&offer(peer_port, codec), HashMap::new())
            .await
            .unwrap();
        assert!(answer.contains(codec.rtpmap), "{}: {answer}", codec.name);
        let session = rig.session(&path).await;
        assert_eq!(session.audio_codec().await.unwrap(), codec.name);
        let mut peer = Peer::start(rig.dir.path(), peer_port, audio_port(&answer), codec);
        until("one second of audio at the peer", || {
            peer.heard().len() >= 8000
        })
        .await;
        let heard = peer.heard();
        assert_eq!(
            dominant(&heard[heard.len() - 4000..], 8000, &[MEDIA_TONE, PEER_TONE]),
            Some(MEDIA_TONE),
            "{}: the peer did not hear the door's tone",
            codec.name
        );
        // A second of the peer's packets reaches the door before it stops.
        counter_reaches(&session, 50, Counter::Received).await;
        assert_eq!(maps_spandsp(pid), codec.name == "G722", "{}", codec.name);
        peer.stop_sending();
        media.stop(&path.as_ref()).await.unwrap();
        rig.media.stop();
        assert_speaker_played_the_peer(&rig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_are_refused_and_leave_no_session() {
    let rig = Rig::start().await;
    let media = rig.proxy().await;
    let cases = [
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
            "NoCommonCodec",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 99999999 RTP/AVP 0\r\n",
            "InvalidSdp",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 999\r\n",
            "InvalidSdp",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=aud",
            "InvalidSdp",
        ),
        ("hello", "InvalidSdp"),
    ];
    for (offer, expected) in cases {
        let err = media
            .create_answer(offer, HashMap::new())
            .await
            .expect_err(offer);
        let name = match &err {
            media::Error::NoCommonCodec(_) => "NoCommonCodec",
            media::Error::InvalidSdp(_) => "InvalidSdp",
            other => panic!("{offer:?}: {other:?}"),
        };
        assert_eq!(name, expected, "{offer:?}: {err:?}");
    }
    let xml = zbus::fdo::IntrospectableProxy::builder(&rig.conn)
        .destination(media::BUS_NAME)
        .path("/org/doorphone/Media1")
        .build()
        .await
        .unwrap()
        .introspect()
        .await
        .unwrap();
    assert!(!xml.contains("<node name=\"session\""), "{xml}");
    drop(rig.bus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_video_session_sends_h264_that_a_peer_decodes() {
    let rig = Rig::start().await;
    let media = rig.proxy().await;
    let audio = free_port();
    let video = free_port();
    let offer = format!(
        "{}m=video {video} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\na=sendrecv\r\n",
        offer(audio, &PCMU)
    );
    // Audio only unless the caller asks for video.
    let (path, answer) = media.create_answer(&offer, HashMap::new()).await.unwrap();
    assert!(answer.contains("m=video 0 "), "{answer}");
    media.stop(&path.as_ref()).await.unwrap();

    let options = HashMap::from([("video", zbus::Variant::from(true))]);
    let (path, answer) = media.create_answer(&offer, options).await.unwrap();
    let video_port = answer
        .lines()
        .find_map(|l| l.strip_prefix("m=video "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap();
    assert_ne!(video_port, 0, "{answer}");
    assert_eq!(
        rig.session(&path).await.video_codec().await.unwrap(),
        "H264"
    );
    let frames = rig.dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    let _decoder = Launched(gst_launch(&format!(
        "udpsrc port={video} caps=application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96 ! \
         rtpjitterbuffer ! rtph264depay ! h264parse ! openh264dec ! videoconvert ! jpegenc ! \
         multifilesink location={}/frame-%05d.jpg",
        frames.display()
    )));
    until("five decoded frames", || {
        std::fs::read_dir(&frames).map(|d| d.count()).unwrap_or(0) >= 5
    })
    .await;
    let first = std::fs::read(frames.join("frame-00000.jpg")).unwrap();
    assert_eq!(jpeg_size(&first), Some((640, 480)));
    media.stop(&path.as_ref()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_a_jpeg_of_the_camera() {
    let rig = Rig::start().await;
    let media = rig.proxy().await;
    let jpeg = media.snapshot().await.unwrap();
    assert_eq!(jpeg_size(&jpeg), Some((640, 480)));
    let file = rig.dir.path().join("snapshot.jpg");
    std::fs::write(&file, &jpeg).unwrap();
    let decoded = Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", file.display()))
        .args([
            "!",
            "jpegdec",
            "!",
            "video/x-raw,width=640,height=480",
            "!",
            "fakesink",
        ])
        .status()
        .unwrap();
    assert!(decoded.success(), "the snapshot does not decode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_come_from_the_configured_range_and_stop_frees_them() {
    let rig = Rig::start_with(serde_json::json!({"media.rtp_ports": [42000, 42003]})).await;
    let media = rig.proxy().await;
    let (first, sdp1) = media.create_offer(HashMap::new()).await.unwrap();
    let (_second, sdp2) = media.create_offer(HashMap::new()).await.unwrap();
    let mut ports = [audio_port(&sdp1), audio_port(&sdp2)];
    ports.sort();
    assert_eq!(ports, [42000, 42002]);
    match media.create_offer(HashMap::new()).await {
        Err(media::Error::Failed(m)) => assert!(m.contains("no free RTP port pair"), "{m}"),
        other => panic!("a third session in a two-pair range: {other:?}"),
    }
    media.stop(&first.as_ref()).await.unwrap();
    let (_third, sdp3) = media.create_offer(HashMap::new()).await.unwrap();
    assert_eq!(audio_port(&sdp3), audio_port(&sdp1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sip_agent_pager_and_admins_may_drive_media() {
    let rig = Rig::start().await;
    let dest = [media::BUS_NAME, media::OBJECT_PATH, media::INTERFACE];
    let offer_args = ["a{sv}", "0"];
    let call = |user: &str| {
        let mut argv = vec!["call", dest[0], dest[1], dest[2], "CreateOffer"];
        argv.extend_from_slice(&offer_args);
        rig.bus.busctl_as(user, &argv)
    };
    let denied = call("nobody");
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Access denied"));
    for user in ["doorphone-sip", "doorphone-pager", "root"] {
        let out = call(user);
        assert!(out.status.success(), "{user}: {out:?}");
    }
    let introspect = rig
        .bus
        .busctl_as("nobody", &["introspect", dest[0], dest[1]]);
    assert!(introspect.status.success(), "{introspect:?}");
    // busctl's sessions ended with its connection; one that lasts is read.
    let (session, _) = rig
        .proxy()
        .await
        .create_offer(HashMap::new())
        .await
        .unwrap();
    let state = rig.bus.busctl_as(
        "nobody",
        &[
            "get-property",
            dest[0],
            session.as_str(),
            media::SESSION_INTERFACE,
            "State",
        ],
    );
    assert!(state.status.success(), "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_released_interfaces_match_the_code() {
    let rig = Rig::start().await;
    let media = rig.proxy().await;
    let (path, _) = media.create_offer(HashMap::new()).await.unwrap();
    for (object, interface) in [
        (media::OBJECT_PATH, media::INTERFACE),
        (path.as_str(), media::SESSION_INTERFACE),
    ] {
        doorphone_system_tests::check_released_interface(
            &rig.conn,
            media::BUS_NAME,
            object,
            interface,
            &doorphone_system_tests::repo_root().join(format!("dbus/interfaces/{interface}.xml")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
}

/// Waits until the speaker has played `seconds` more (its file grows at 32000
/// bytes a second: 16 kHz, 16-bit, mono).
async fn speaker_plays(rig: &Rig, seconds: f64) {
    let size = || {
        std::fs::metadata(rig.speaker())
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let target = size() + (32000.0 * seconds) as u64;
    until("the speaker to play on", || size() >= target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_page_takes_the_speaker_from_a_call_and_gives_it_back() {
    const PAGE_TONE: f64 = 1500.0;
    let mut rig = Rig::start().await;
    let media = rig.proxy().await;
    let peer_port = free_port();
    let (path, answer) = media
        .create_answer(&offer(peer_port, &PCMU), HashMap::new())
        .await
        .unwrap();
    let _peer = Peer::start(rig.dir.path(), peer_port, audio_port(&answer), &PCMU);
    speaker_plays(&rig, 1.0).await;

    let group = "239.255.77.1";
    let port = free_port();
    let _pager = Launched(gst_launch(&format!(
        "audiotestsrc is-live=true wave=sine freq={PAGE_TONE} volume=0.5 ! \
         audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay pt=0 ! \
         udpsink host={group} port={port} multicast-iface=lo ttl-mc=0 auto-multicast=true"
    )));
    let options = HashMap::from([("solo", zbus::Variant::from(true))]);
    let stream = media
        .play_stream(group, port, "PCMU", options)
        .await
        .unwrap();
    speaker_plays(&rig, 1.5).await;
    media.stop_stream(&stream.as_ref()).await.unwrap();
    assert!(media.stop_stream(&stream.as_ref()).await.is_err());
    speaker_plays(&rig, 1.0).await;
    media.stop(&path.as_ref()).await.unwrap();
    rig.media.stop();

    let (rate, speaker) = read_wav(&std::fs::read(rig.speaker()).unwrap()).unwrap();
    let tones: Vec<Option<f64>> = speaker
        .chunks(rate as usize / 5)
        .map(|w| dominant(w, rate, &[MEDIA_TONE, PEER_TONE, PAGE_TONE]))
        .collect();
    let first_page = tones
        .iter()
        .position(|t| *t == Some(PAGE_TONE))
        .expect("the page played");
    let last_page = tones.iter().rposition(|t| *t == Some(PAGE_TONE)).unwrap();
    assert!(
        last_page - first_page >= 4,
        "the page played for under a second: {tones:?}"
    );
    assert!(
        tones[..first_page].contains(&Some(PEER_TONE)),
        "the call was not heard before the page: {tones:?}"
    );
    assert!(
        !tones[first_page..=last_page].contains(&Some(PEER_TONE)),
        "the call was heard during a solo page: {tones:?}"
    );
    assert!(
        tones[last_page..].contains(&Some(PEER_TONE)),
        "the call was not heard again after the page: {tones:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_dtmf_reaches_the_peer_as_rfc4733_events() {
    let rig = Rig::start().await;
    let media = rig.proxy().await;
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let port = peer.local_addr().unwrap().port();
    let (path, _) = media
        .create_answer(&offer(port, &PCMU), HashMap::new())
        .await
        .unwrap();
    media.send_dtmf(&path.as_ref(), "12#").await.unwrap();
    assert!(media.send_dtmf(&path.as_ref(), "x").await.is_err());
    // One press is one RTP timestamp; its packets repeat until the end bit.
    let mut presses: Vec<(u32, u8, bool)> = Vec::new();
    let mut buf = [0u8; 2048];
    while presses.iter().filter(|p| p.2).count() < 3 {
        let n = peer.recv(&mut buf).expect("RTP from the door");
        let packet = &buf[..n];
        if n < 16 || packet[1] & 0x7f != 101 {
            continue;
        }
        let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let (event, end) = (packet[12], packet[13] & 0x80 != 0);
        match presses.iter_mut().find(|p| p.0 == timestamp) {
            Some(press) => press.2 |= end,
            None => presses.push((timestamp, event, end)),
        }
    }
    let events: Vec<u8> = presses.iter().map(|p| p.1).collect();
    assert_eq!(events, [1, 2, 11]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_pipeline_breaks_is_stopped_and_reported() {
    // A microphone that is not there: the call's pipeline cannot start.
    let rig = Rig::start_full(serde_json::json!({}), "alsa:no-such-card").await;
    let media = rig.proxy().await;
    let mut states = media.receive_session_state_changed().await.unwrap();
    let (path, _) = media
        .create_answer(&offer(free_port(), &PCMU), HashMap::new())
        .await
        .unwrap();
    let failed = tokio::time::timeout(PATIENCE, async {
        loop {
            let signal = states.next().await.unwrap();
            let args = signal.args().unwrap();
            if args.session.as_str() == path.as_str() && args.state == media::state::FAILED {
                return args.reason.to_owned();
            }
        }
    })
    .await
    .expect("the session is reported failed");
    assert!(!failed.is_empty());
    // Gone, and the service still serves.
    assert!(matches!(
        media.stop(&path.as_ref()).await,
        Err(media::Error::NotFound(_))
    ));
    media.create_offer(HashMap::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_hold_re_offer_is_answered_and_stops_sending() {
    let rig = Rig::start().await;
    let media = rig.proxy().await;
    let peer_port = free_port();
    let (path, answer) = media
        .create_answer(&offer(peer_port, &PCMU), HashMap::new())
        .await
        .unwrap();
    let session = rig.session(&path).await;
    let _peer = Peer::start(rig.dir.path(), peer_port, audio_port(&answer), &PCMU);
    counter_reaches(&session, 10, Counter::Sent).await;

    // The peer holds: same session, version 2, sendonly.
    let hold = offer(peer_port, &PCMU)
        .replace("o=peer 1 1", "o=peer 1 2")
        .replace("a=sendrecv", "a=sendonly");
    let reply = media.set_remote(&path.as_ref(), &hold).await.unwrap();
    assert!(reply.contains("a=recvonly"), "{reply}");
    let sent_at_hold = session.packets_sent().await.unwrap();
    let received_at_hold = session.packets_received().await.unwrap();
    counter_reaches(&session, received_at_hold + 25, Counter::Received).await;
    assert!(session.packets_sent().await.unwrap() <= sent_at_hold + 2);

    // And resumes from another port: the door's audio follows it there.
    let moved = free_port();
    let resume = offer(moved, &PCMU).replace("o=peer 1 1", "o=peer 1 3");
    let reply = media.set_remote(&path.as_ref(), &resume).await.unwrap();
    assert!(reply.contains("a=sendrecv"), "{reply}");
    let moved_peer = Peer::start(rig.dir.path(), moved, audio_port(&answer), &PCMU);
    until("the door's audio at the new port", || {
        moved_peer.heard().len() >= 8000
    })
    .await;
    // And takes the peer's packets from its new port only: the old one, still
    // sending, is refused.
    let rejected = session.packets_rejected().await.unwrap();
    counter_reaches(&session, rejected + 25, Counter::Rejected).await;
    let received = session.packets_received().await.unwrap();
    counter_reaches(&session, received + 25, Counter::Received).await;

    // Our own re-offer is answered through SetRemote too.
    let reoffer = media.hold(&path.as_ref()).await.unwrap();
    assert!(reoffer.contains("a=sendonly"), "{reoffer}");
    let their_answer = offer(moved, &PCMU)
        .replace("o=peer 1 1", "o=peer 1 4")
        .replace("a=sendrecv", "a=recvonly");
    assert_eq!(
        media
            .set_remote(&path.as_ref(), &their_answer)
            .await
            .unwrap(),
        ""
    );
}

/// A re-INVITE without SDP right after the call's ACK: our re-offer, and the
/// peer's answer from another port, come while the call's pipeline may still
/// be starting. The door's audio goes to the port of the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_offer_answered_while_the_call_starts_moves_the_audio() {
    let rig = Rig::start().await;
    let media = rig.proxy().await;
    let (first, moved) = (free_port(), free_port());
    let (path, answer) = media
        .create_answer(&offer(first, &PCMU), HashMap::new())
        .await
        .unwrap();
    let reoffer = media.resume(&path.as_ref()).await.unwrap();
    assert!(reoffer.contains("a=sendrecv"), "{reoffer}");
    let their_answer = offer(moved, &PCMU).replace("o=peer 1 1", "o=peer 1 2");
    assert_eq!(
        media
            .set_remote(&path.as_ref(), &their_answer)
            .await
            .unwrap(),
        ""
    );
    let moved_peer = Peer::start(rig.dir.path(), moved, audio_port(&answer), &PCMU);
    until("the door's audio at the answer's port", || {
        moved_peer.heard().len() >= 8000
    })
    .await;
    let session = rig.session(&path).await;
    let received = session.packets_received().await.unwrap();
    counter_reaches(&session, received + 25, Counter::Received).await;
}

const PCMA: PeerCodec = PeerCodec {
    name: "PCMA",
    pt: 8,
    rtpmap: "PCMA/8000",
    send: "audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay pt=8",
    recv_caps: "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMA,payload=8",
    recv: "rtppcmadepay ! alawdec",
};

/// Follows media's `PreparedPorts` (the session prepared ahead of the next call)
/// through its change signals.
struct Prepared {
    properties: zbus::fdo::PropertiesProxy<'static>,
    changes: zbus::fdo::PropertiesChangedStream,
    now: Vec<u16>,
}

impl Prepared {
    async fn follow(rig: &Rig) -> Prepared {
        let properties = zbus::fdo::PropertiesProxy::builder(&rig.conn)
            .destination(media::BUS_NAME)
            .path(media::OBJECT_PATH)
            .build()
            .await
            .unwrap();
        // Changes are followed from before the first read: none is missed.
        let changes = properties.receive_properties_changed().await.unwrap();
        let now = Vec::<u16>::try_from(
            properties
                .get(media::INTERFACE.try_into().unwrap(), "PreparedPorts")
                .await
                .unwrap(),
        )
        .unwrap();
        Prepared {
            properties,
            changes,
            now,
        }
    }

    /// Waits until the prepared ports satisfy `ready`; returns them.
    async fn until(&mut self, what: &str, ready: impl Fn(&[u16]) -> bool) -> Vec<u16> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !ready(&self.now) {
            let signal = tokio::time::timeout_at(deadline, self.changes.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for {what}; prepared: {:?}", self.now)
                })
                .expect("the property changes keep coming");
            let args = signal.args().unwrap();
            if args.interface_name.as_str() == media::INTERFACE
                && let Some(ports) = args.changed_properties.get("PreparedPorts")
            {
                self.now = Vec::<u16>::try_from(ports.try_clone().unwrap()).unwrap();
            }
        }
        let _ = &self.properties;
        self.now.clone()
    }

    /// Waits for a prepared session other than `old`'s, and returns its port.
    async fn next_after(&mut self, old: Option<u16>) -> u16 {
        self.until("a session prepared", |p| p.len() == 1 && Some(p[0]) != old)
            .await[0]
    }
}

/// Whether media holds `port` and the next (RTCP) bound.
fn bound(port: u16) -> bool {
    UdpSocket::bind(("0.0.0.0", port)).is_err() && UdpSocket::bind(("0.0.0.0", port + 1)).is_err()
}

/// The RTP ports in `range` that media holds with their RTCP ports.
fn pairs_bound(range: std::ops::Range<u16>) -> Vec<u16> {
    range.step_by(2).filter(|&port| bound(port)).collect()
}

/// Whether media's object tree has a session object.
async fn has_session_objects(rig: &Rig) -> bool {
    let xml = zbus::fdo::IntrospectableProxy::builder(&rig.conn)
        .destination(media::BUS_NAME)
        .path(media::OBJECT_PATH)
        .build()
        .await
        .unwrap()
        .introspect()
        .await
        .unwrap();
    xml.contains("<node name=\"session\"")
}

/// A call answered by media with the peer speaking `codec`, its audio checked at
/// both ends; returns the session and media's RTP port.
async fn call_with_tones(rig: &Rig, codec: &PeerCodec) -> (zbus::OwnedObjectPath, u16, Peer) {
    let media = rig.proxy().await;
    let peer_port = free_port();
    let (path, answer) = media
        .create_answer(&offer(peer_port, codec), HashMap::new())
        .await
        .unwrap();
    let port = audio_port(&answer);
    let session = rig.session(&path).await;
    assert_eq!(session.audio_codec().await.unwrap(), codec.name);
    let peer = Peer::start(rig.dir.path(), peer_port, port, codec);
    until("one second of audio at the peer", || {
        peer.heard().len() >= 8000
    })
    .await;
    let heard = peer.heard();
    assert_eq!(
        dominant(&heard[heard.len() - 4000..], 8000, &[MEDIA_TONE, PEER_TONE]),
        Some(MEDIA_TONE),
        "{}: the peer did not hear the door's tone",
        codec.name
    );
    counter_reaches(&session, 25, Counter::Received).await;
    (path, port, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_call_is_served_from_a_session_prepared_ahead() {
    let rig = Rig::start_with(serde_json::json!({"media.rtp_ports": [43000, 43099]})).await;
    let media = rig.proxy().await;
    let mut prepared = Prepared::follow(&rig).await;

    // At rest: one session prepared, its ports bound, no session object for it.
    let first = prepared.next_after(None).await;
    assert!((43000..43099).contains(&first) && first % 2 == 0, "{first}");
    assert!(bound(first), "the prepared port pair {first} is not bound");
    assert!(!has_session_objects(&rig).await);

    // The first call takes it; once it ends, its pipeline (and ports) wait
    // for the next call: a call does not pay for building and tearing down one.
    let (path, port, _peer) = call_with_tones(&rig, &PCMU).await;
    assert_eq!(port, first, "the call did not get the prepared session");
    prepared
        .until("the call to take the prepared session", |p| p.is_empty())
        .await;
    media.stop(&path.as_ref()).await.unwrap();
    prepared
        .until("the call's pipeline waiting for the next call", |p| {
            p == [first]
        })
        .await;

    // The next call, from another peer, is answered from it, and the door and
    // the new peer hear each other.
    let (path, port, _peer) = call_with_tones(&rig, &PCMU).await;
    assert_eq!(
        port, first,
        "the second call did not get the prepared session"
    );
    media.stop(&path.as_ref()).await.unwrap();
    let third = prepared
        .until("the session prepared again", |p| p.len() == 1)
        .await[0];
    assert_eq!(third, first);

    // A call in another codec than the prepared one is built as it comes, on
    // other ports, and leaves the prepared session for the next call.
    let (path, port, _peer) = call_with_tones(&rig, &OPUS).await;
    assert_ne!(port, third);
    assert_eq!(prepared.now, [third]);
    media.stop(&path.as_ref()).await.unwrap();
    let (path, port, _peer) = call_with_tones(&rig, &PCMU).await;
    assert_eq!(port, third);
    media.stop(&path.as_ref()).await.unwrap();
}

/// The session of the next `timeout` state media reports.
async fn next_timeout(states: &mut media::SessionStateChangedStream) -> String {
    loop {
        let signal = states.next().await.unwrap();
        let args = signal.args().unwrap();
        if args.state == media::state::TIMEOUT {
            return args.session.to_string();
        }
    }
}

/// Waits for the next session reported silent, which must be `path`, and no
/// sooner than the RTP timeout after `since` (when the count started).
async fn reported_silent(
    states: &mut media::SessionStateChangedStream,
    path: &zbus::OwnedObjectPath,
    since: Instant,
    what: &str,
) {
    let reported = tokio::time::timeout(PATIENCE, next_timeout(states))
        .await
        .unwrap_or_else(|_| panic!("{what} is reported silent"));
    let waited = since.elapsed();
    assert_eq!(reported, path.as_str(), "the timeout names {what}");
    assert!(
        waited >= RTP_TIMEOUT,
        "{what} was reported silent {waited:?} after its count started"
    );
}

/// A call on hold is not hung up for the peer's silence: the peer that answers
/// the hold `recvonly` stops sending, as it should. Once resumed, the silence
/// counts again, from the resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_whose_peer_stops_sending_is_not_timed_out_until_resumed() {
    let rig = Rig::start().await;
    let media = rig.proxy().await;
    let mut states = media.receive_session_state_changed().await.unwrap();
    let (path, _, mut peer) = call_with_tones(&rig, &PCMU).await;
    let peer_port = peer.socket.local_addr().unwrap().port();

    let reoffer = media.hold(&path.as_ref()).await.unwrap();
    assert!(reoffer.contains("a=sendonly"), "{reoffer}");
    let recvonly = offer(peer_port, &PCMU)
        .replace("o=peer 1 1", "o=peer 1 2")
        .replace("a=sendrecv", "a=recvonly");
    media.set_remote(&path.as_ref(), &recvonly).await.unwrap();
    peer.stop_sending();
    // Held for half as long again as the RTP timeout: the time the test must
    // let pass for a timeout that should not come.
    let held = tokio::time::timeout(RTP_TIMEOUT * 3 / 2, next_timeout(&mut states)).await;
    assert!(held.is_err(), "a held call was reported silent: {held:?}");

    let reoffer = media.resume(&path.as_ref()).await.unwrap();
    assert!(reoffer.contains("a=sendrecv"), "{reoffer}");
    let resumed = Instant::now();
    let sendrecv = offer(peer_port, &PCMU).replace("o=peer 1 1", "o=peer 1 3");
    media.set_remote(&path.as_ref(), &sendrecv).await.unwrap();
    reported_silent(
        &mut states,
        &path,
        resumed,
        "the resumed call, still silent,",
    )
    .await;
    media.stop(&path.as_ref()).await.unwrap();
}

/// A stranger's packets do not keep alive a call whose peer fell silent: the
/// RTP timeout (2 s here) counts the packets the source gate admits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_s_packets_do_not_keep_a_silent_call_alive() {
    let rig = Rig::start().await;
    let media = rig.proxy().await;
    let mut states = media.receive_session_state_changed().await.unwrap();
    let (path, port, mut peer) = call_with_tones(&rig, &PCMU).await;
    let session = rig.session(&path).await;
    peer.stop_sending();
    let silent_since = Instant::now();
    // A third host sends audio to the call's port for 8 s, a packet every 20 ms.
    let injector = tokio::spawn(async move {
        for _ in 0..4 {
            inject_audio(port).await;
        }
    });
    let timed_out = tokio::time::timeout(PATIENCE, next_timeout(&mut states))
        .await
        .expect("the call is reported silent");
    let waited = silent_since.elapsed();
    assert_eq!(timed_out, path.as_str());
    assert!(
        waited < Duration::from_secs(5),
        "reported {waited:?} after the peer fell silent: the stranger's packets counted"
    );
    assert!(
        session.packets_rejected().await.unwrap() > 0,
        "the stranger's packets did not reach media"
    );
    media.stop(&path.as_ref()).await.unwrap();
    injector.await.unwrap();
}

/// The RTP timeout (2 s here) counts from the call's start: a call that takes
/// the pipeline of a call whose peer was silent gets the whole of it, and is
/// then reported silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_after_a_silent_one_on_the_same_pipeline_gets_the_whole_rtp_timeout() {
    let rig = Rig::start_with(serde_json::json!({"media.rtp_ports": [43600, 43699]})).await;
    let media = rig.proxy().await;
    let mut prepared = Prepared::follow(&rig).await;
    let first = prepared.next_after(None).await;
    let mut states = media.receive_session_state_changed().await.unwrap();

    // A peer that listens and never speaks: the call plays for a second (50 of
    // the door's packets), then ends.
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_port = peer.local_addr().unwrap().port();
    let (silent, answer) = media
        .create_answer(&offer(peer_port, &PCMU), HashMap::new())
        .await
        .unwrap();
    assert_eq!(audio_port(&answer), first);
    let mut packet = [0u8; 2048];
    for _ in 0..50 {
        tokio::time::timeout(PATIENCE, peer.recv_from(&mut packet))
            .await
            .expect("the door's audio reaches the peer")
            .unwrap();
    }
    media.stop(&silent.as_ref()).await.unwrap();
    prepared
        .until("the call's pipeline waiting for the next call", |p| {
            p == [first]
        })
        .await;

    // The next call, silent too, on the same pipeline.
    let started = Instant::now();
    let (path, answer) = media
        .create_answer(&offer(peer_port, &PCMU), HashMap::new())
        .await
        .unwrap();
    assert_eq!(audio_port(&answer), first, "the call got another pipeline");
    reported_silent(&mut states, &path, started, "the second call").await;
    media.stop(&path.as_ref()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_overlap_their_hang_ups_take_turns_on_two_pipelines() {
    let rig = Rig::start_with(serde_json::json!({"media.rtp_ports": [43400, 43499]})).await;
    let media = rig.proxy().await;
    let mut prepared = Prepared::follow(&rig).await;
    let first = prepared.next_after(None).await;

    // A caller hangs up and calls again at once: the new call comes in before
    // the last one's end reaches media. It gets a pipeline of its own, and no
    // third is prepared while both are on: the first comes back.
    let (a, port, _peer) = call_with_tones(&rig, &PCMU).await;
    assert_eq!(port, first);
    prepared
        .until("the first call to take the prepared session", |p| {
            p.is_empty()
        })
        .await;
    let (b, second, _peer) = call_with_tones(&rig, &PCMU).await;
    assert_ne!(second, first);
    let mut both = [first, second];
    both.sort();
    assert_eq!(pairs_bound(43400..43500), both, "a third pipeline");
    media.stop(&a.as_ref()).await.unwrap();
    prepared
        .until("the first call's pipeline back", |p| p == [first])
        .await;

    // Again: the next call takes the first pipeline, and the pipeline built for
    // the second call, once it ends, waits for the call after.
    let (c, port, _peer) = call_with_tones(&rig, &PCMU).await;
    assert_eq!(port, first, "the third call did not get the first pipeline");
    prepared
        .until("the third call to take the first pipeline", |p| {
            p.is_empty()
        })
        .await;
    media.stop(&b.as_ref()).await.unwrap();
    prepared
        .until(
            "the second call's pipeline waiting for the next call",
            |p| p == [second],
        )
        .await;
    let (d, port, _peer) = call_with_tones(&rig, &PCMU).await;
    assert_eq!(
        port, second,
        "the fourth call did not get the second pipeline"
    );
    prepared
        .until("the fourth call to take the second pipeline", |p| {
            p.is_empty()
        })
        .await;
    assert_eq!(pairs_bound(43400..43500), both, "a third pipeline");

    // Both end: one pipeline waits for the next call, the other goes with its
    // ports.
    media.stop(&c.as_ref()).await.unwrap();
    media.stop(&d.as_ref()).await.unwrap();
    let kept = prepared
        .until("one pipeline waiting", |p| p.len() == 1)
        .await[0];
    let gone = if kept == first { second } else { first };
    until("the other pipeline's ports freed", || !bound(gone)).await;
    assert!(bound(kept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_config_change_prepares_again_from_the_new_settings() {
    let rig = Rig::start_with(serde_json::json!({"media.rtp_ports": [43100, 43199]})).await;
    let config = doorphone_interfaces::config::Config1Proxy::new(&rig.conn)
        .await
        .unwrap();
    let set = |key: &'static str, value: serde_json::Value| {
        let config = config.clone();
        async move {
            let value = doorphone_interfaces::json::to_variant(&value).unwrap();
            config.set(key, &value).await.unwrap();
        }
    };
    let mut prepared = Prepared::follow(&rig).await;
    let old = prepared.next_after(None).await;
    assert!((43100..43199).contains(&old), "{old}");

    // A new port range: the prepared session moves into it and frees its ports.
    set("media.rtp_ports", serde_json::json!([43200, 43299])).await;
    let moved = prepared
        .until("a session prepared in 43200-43299", |p| {
            p.len() == 1 && (43200..43299).contains(&p[0])
        })
        .await[0];
    assert!(bound(moved));
    assert!(!bound(old), "the old prepared port {old} is still bound");

    // A new preferred codec: prepared anew, and the call in it gets that session.
    set("media.audio_codecs", serde_json::json!(["PCMA", "PCMU"])).await;
    let pcma = prepared.next_after(Some(moved)).await;
    let (path, port, _peer) = call_with_tones(&rig, &PCMA).await;
    assert_eq!(port, pcma, "the PCMA call did not get the prepared session");
    rig.proxy().await.stop(&path.as_ref()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_client_started_stops_when_it_leaves_the_bus() {
    doorphone_system_tests::require_root();
    let rig = Rig::start().await;
    let watcher = rig.proxy().await;
    let mut states = watcher.receive_session_state_changed().await.unwrap();
    // A client (the SIP agent, the pager) on a connection of its own.
    let client = rig.bus.connect().await.unwrap();
    let media = Media1Proxy::new(&client).await.unwrap();
    let (path, _) = media
        .create_answer(&offer(free_port(), &PCMU), HashMap::new())
        .await
        .unwrap();
    let options = HashMap::from([("solo", zbus::Variant::from(true))]);
    let stream = media
        .play_stream("239.255.77.2", free_port(), "PCMU", options)
        .await
        .unwrap();
    drop(media);
    client.close().await.unwrap();
    let stopped = tokio::time::timeout(PATIENCE, async {
        loop {
            let s = states.next().await.unwrap();
            let a = s.args().unwrap();
            if a.session.as_str() == path.as_str() && a.state == media::state::STOPPED {
                return a.reason.to_owned();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(stopped, "its client left the bus");
    assert!(matches!(
        watcher.stop_stream(&stream.as_ref()).await,
        Err(media::Error::NotFound(_))
    ));
}

/// The RFC 4733 presses a peer socket receives, each with the time its first
/// packet came, read on a thread of their own until the socket's time-out.
fn hear_presses(socket: UdpSocket) -> std::sync::Arc<std::sync::Mutex<Vec<(u32, u8, Instant)>>> {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = heard.clone();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let quiet_until = Instant::now() + PATIENCE * 2;
        while Instant::now() < quiet_until {
            let Ok(n) = socket.recv(&mut buf) else {
                continue;
            };
            if n < 16 || buf[1] & 0x7f != 101 {
                continue;
            }
            let timestamp = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let mut presses = into.lock().unwrap();
            if !presses
                .iter()
                .any(|p: &(u32, u8, Instant)| p.0 == timestamp)
            {
                presses.push((timestamp, buf[12], Instant::now()));
            }
        }
    });
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_answered_while_another_session_sends_digits() {
    let rig = Rig::start().await;
    let media = rig.proxy().await;
    let dialled = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dialled_port = dialled.local_addr().unwrap().port();
    let (sending, _) = media
        .create_answer(&offer(dialled_port, &PCMU), HashMap::new())
        .await
        .unwrap();
    let presses = hear_presses(dialled);

    // Ten digits go out on the first session: at 350 ms a digit, 3.5 s of work.
    let digits = {
        let media = media.clone();
        let sending = sending.clone();
        tokio::spawn(async move { media.send_dtmf(&sending.as_ref(), "0123456789").await })
    };
    until("the first digit at the first peer", || {
        !presses.lock().unwrap().is_empty()
    })
    .await;

    // A call comes in meanwhile: its answer and its first RTP do not wait for
    // the digits.
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let asked = Instant::now();
    let (call, answer) = media
        .create_answer(
            &offer(peer.local_addr().unwrap().port(), &PCMU),
            HashMap::new(),
        )
        .await
        .unwrap();
    let answered = asked.elapsed();
    let pressed_by_then = presses.lock().unwrap().len();
    let mut buf = [0u8; 2048];
    peer.recv(&mut buf).expect("RTP from the new call");
    let flowing = Instant::now();
    assert!(audio_port(&answer) > 0);
    assert!(
        !digits.is_finished(),
        "the digits were all sent before the call was answered ({answered:?})"
    );
    assert!(
        pressed_by_then < 10,
        "all ten digits had gone out when the answer came, after {answered:?}"
    );
    // The ten digits need 3.5 s; a busy machine answers far sooner.
    assert!(
        answered < Duration::from_millis(1500),
        "answered after {answered:?}"
    );

    digits.await.unwrap().unwrap();
    until("the ten digits at the first peer", || {
        presses.lock().unwrap().len() >= 10
    })
    .await;
    let presses = presses.lock().unwrap().clone();
    let events: Vec<u8> = presses.iter().map(|p| p.1).collect();
    assert_eq!(events, (0..10).collect::<Vec<u8>>());
    assert!(
        flowing < presses[9].2,
        "the new call's media flowed only after the tenth digit"
    );
    media.stop(&call.as_ref()).await.unwrap();
    media.stop(&sending.as_ref()).await.unwrap();
}

/// The tone a third party injects into someone else's call.
const INJECTED_TONE: f64 = 1700.0;
/// The address the third party sends from: another host on the loopback network.
const INJECTOR: &str = "127.0.0.7";
/// RTP packets in one injection (20 ms each).
const INJECTED_PACKETS: u64 = 100;

/// A third party at [`INJECTOR`] sends [`INJECTED_PACKETS`] packets of PCMU in its
/// own tone to `port` with GStreamer, to the end of its stream.
async fn inject_audio(port: u16) {
    let status = tokio::task::spawn_blocking(move || {
        Command::new("gst-launch-1.0")
            .arg("-q")
            .args(
                format!(
                    "audiotestsrc is-live=true num-buffers={INJECTED_PACKETS} samplesperbuffer=160 \
                     wave=sine freq={INJECTED_TONE} volume=0.8 ! audio/x-raw,rate=8000,channels=1 ! \
                     mulawenc ! rtppcmupay pt=0 min-ptime=20000000 max-ptime=20000000 ! \
                     udpsink host=127.0.0.1 port={port} bind-address={INJECTOR}"
                )
                .split_whitespace(),
            )
            .status()
            .expect("gst-launch-1.0 runs")
    })
    .await
    .unwrap();
    assert!(status.success(), "the injector failed: {status}");
}

/// Five RTCP receiver reports from [`INJECTOR`] to `port`.
fn inject_rtcp(port: u16) {
    let socket = UdpSocket::bind((INJECTOR, 0)).unwrap();
    let mut report = vec![0x80, 201, 0, 1];
    report.extend_from_slice(&0x0bad_f00du32.to_be_bytes());
    for _ in 0..5 {
        socket.send_to(&report, ("127.0.0.1", port)).unwrap();
    }
}

/// Whether the speaker's WAV (finished when the service stopped) ever played the
/// injected tone.
fn speaker_played_injected_tone(rig: &Rig) -> bool {
    let (rate, speaker) = read_wav(&std::fs::read(rig.speaker()).unwrap()).unwrap();
    speaker
        .chunks(rate as usize / 5)
        .any(|w| dominant(w, rate, &[MEDIA_TONE, PEER_TONE, INJECTED_TONE]) == Some(INJECTED_TONE))
}

/// Collects DTMF digits of `session` until `count` came.
async fn digits_of(
    digits: &mut (impl futures_util::Stream<Item = media::DtmfReceived> + Unpin),
    session: &zbus::OwnedObjectPath,
    count: usize,
) -> String {
    let mut got = String::new();
    while got.len() < count {
        let signal = tokio::time::timeout(PATIENCE, digits.next())
            .await
            .expect("a DTMF digit")
            .unwrap();
        let args = signal.args().unwrap();
        assert_eq!(args.session.as_str(), session.as_str());
        got.push_str(args.digit);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_peer_speaks_in_a_call_and_injected_packets_are_counted() {
    let mut rig = Rig::start().await;
    let media = rig.proxy().await;
    let peer_port = free_port();
    let (path, answer) = media
        .create_answer(&offer(peer_port, &PCMU), HashMap::new())
        .await
        .unwrap();
    let media_port = audio_port(&answer);
    let session = rig.session(&path).await;
    let peer = Peer::start(rig.dir.path(), peer_port, media_port, &PCMU);
    counter_reaches(&session, 25, Counter::Received).await;
    let mut digits = media.receive_dtmf_received().await.unwrap();

    // A third host sends digits, audio and RTCP to the session's ports; so does
    // another port of the peer's own host.
    let mut seq = 1u16;
    let third = UdpSocket::bind((INJECTOR, 0)).unwrap();
    press(&third, media_port, &mut seq, 8000, 9);
    let same_host = UdpSocket::bind("127.0.0.1:0").unwrap();
    press(&same_host, media_port, &mut seq, 9000, 5);
    inject_rtcp(media_port + 1);
    inject_audio(media_port).await;
    let injected = INJECTED_PACKETS + 2 * 6 + 5;
    counter_reaches(&session, injected, Counter::Rejected).await;

    // The peer's own digits, sent after the injected ones, are the only ones.
    for (i, event) in [1u8, 11, 10].into_iter().enumerate() {
        press(
            &peer.socket,
            media_port,
            &mut seq,
            16000 * (i as u32 + 1),
            event,
        );
    }
    assert_eq!(digits_of(&mut digits, &path, 3).await, "1#*");
    assert_eq!(session.packets_rejected().await.unwrap(), injected);
    media.stop(&path.as_ref()).await.unwrap();
    rig.media.stop();
    assert_speaker_played_the_peer(&rig);
    assert!(
        !speaker_played_injected_tone(&rig),
        "the speaker played the third party's tone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_latching_a_peer_behind_nat_is_heard_and_a_second_source_is_not() {
    let mut rig = Rig::start_with(serde_json::json!({"media.rtp_latching": true})).await;
    let media = rig.proxy().await;
    // The peer's SDP names one port; its NAT sends from another.
    let described = free_port();
    let (path, answer) = media
        .create_answer(&offer(described, &PCMU), HashMap::new())
        .await
        .unwrap();
    let media_port = audio_port(&answer);
    let session = rig.session(&path).await;
    let mapped = free_port();
    assert_ne!(mapped, described);
    let peer = Peer::start(rig.dir.path(), mapped, media_port, &PCMU);
    counter_reaches(&session, 25, Counter::Received).await;
    // Media answers where the peer sends from: the peer hears the door.
    until("one second of the door's audio at the peer", || {
        peer.heard().len() >= 8000
    })
    .await;
    let heard = peer.heard();
    assert_eq!(
        dominant(&heard[heard.len() - 4000..], 8000, &[MEDIA_TONE, PEER_TONE]),
        Some(MEDIA_TONE)
    );

    // A second source, after the latch, is refused: digits, audio and RTCP.
    let mut digits = media.receive_dtmf_received().await.unwrap();
    let mut seq = 1u16;
    press(
        &UdpSocket::bind((INJECTOR, 0)).unwrap(),
        media_port,
        &mut seq,
        8000,
        9,
    );
    inject_rtcp(media_port + 1);
    inject_audio(media_port).await;
    let injected = INJECTED_PACKETS + 6 + 5;
    counter_reaches(&session, injected, Counter::Rejected).await;
    for (i, event) in [4u8, 2].into_iter().enumerate() {
        press(
            &peer.socket,
            media_port,
            &mut seq,
            16000 * (i as u32 + 1),
            event,
        );
    }
    assert_eq!(digits_of(&mut digits, &path, 2).await, "42");
    assert_eq!(session.packets_rejected().await.unwrap(), injected);
    media.stop(&path.as_ref()).await.unwrap();
    rig.media.stop();
    assert_speaker_played_the_peer(&rig);
    assert!(!speaker_played_injected_tone(&rig));
}
