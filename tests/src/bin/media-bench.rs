//! Whole-system figures of the media service, measured on a private bus with the
//! release binaries running as their own users (`doorphone-media` with its test
//! microphone, test camera and a fake speaker; its GStreamer registry in a cache
//! file it owns, as the unit's `CacheDirectory=` gives it):
//! - the `CreateAnswer` round trip and the time until media's first RTP packet
//!   reaches the offer's port, over 50 sequential sessions each answered once
//!   media has a session prepared (`PreparedPorts`), as calls that come seconds
//!   apart find it, and over 50 sessions back to back;
//! - one-way audio latency from media's microphone to a GStreamer peer's output on
//!   loopback, timed with clicks;
//! - CPU of an audio call and of an audio+video call, above idle;
//! - resident memory idle, with one call, and after 50 sessions.
//!
//! Run with `cargo xtask bench`.

use std::collections::HashMap;
use std::io::Read;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use doorphone_interfaces::media::{self, Media1Proxy, SessionProxy};
use doorphone_system_tests::bench::{cpu_percent, percentile, rss_kib};
use doorphone_system_tests::rtp::Relay;
use doorphone_system_tests::{Bus, ConfigDb, PATIENCE, bin, chown_to, start_config};
use futures_util::StreamExt;

/// PCMU's sample rate and RTP clock.
const RATE: f64 = 8000.0;
/// How long each CPU figure is averaged over.
const CPU_WINDOW: Duration = Duration::from_secs(10);
const SESSIONS: usize = 50;
/// Clicks in the latency run (the test microphone clicks once a second).
const CLICKS: u64 = 25;
/// The peer's audio: 1 kHz PCMU in 20 ms packets.
const PEER_SENDER: &str = "audiotestsrc is-live=true samplesperbuffer=160 wave=sine freq=1000 \
     volume=0.5 ! audio/x-raw,format=S16LE,rate=8000,channels=1 ! mulawenc ! rtppcmupay pt=0";
/// The peer's receiving side: jitter buffer as media's own (60 ms), decoder, and a
/// sink that releases each buffer when the clock says it is played (without the
/// 20 ms processing deadline GStreamer sinks add by default: the figure is the
/// jitter buffer's, not a sound card's).
const PEER_RECEIVER: &str = "rtpjitterbuffer latency=60 ! rtppcmudepay ! mulawdec ! \
     audio/x-raw,format=S16LE,rate=8000,channels=1 ! \
     fdsink fd=1 sync=true processing-deadline=0";
const PCMU_CAPS: &str =
    "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `doorphone-media` as its own user on the bench's bus.
struct MediaProcess {
    child: Child,
    pid: u32,
}

impl MediaProcess {
    /// Starts the service and waits until it owns its name; also returns how long
    /// that took.
    async fn start(bus: &Bus, dir: &Path, extra: &[&str]) -> Result<(MediaProcess, Duration)> {
        let conn = bus.connect().await?;
        let log = std::fs::File::create(dir.join("media.log"))?;
        let started = Instant::now();
        let child = bus
            .command_as("doorphone-media", &bin("doorphone-media"))
            .args(["--audio-source", "test", "--audio-sink", "fake"])
            .args(["--video-source", "test"])
            .args(extra)
            .env("GST_REGISTRY", dir.join("gst-registry.bin"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let pid = child.id();
        let media = MediaProcess { child, pid };
        bus.wait_for_name(&conn, media::BUS_NAME)
            .await
            .with_context(|| std::fs::read_to_string(dir.join("media.log")).unwrap_or_default())?;
        Ok((media, started.elapsed()))
    }

    /// Asks the service to stop (SIGTERM) and waits for it.
    fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for MediaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `gst-launch-1.0` pipeline playing the far end; ends with its owner.
struct Launched(Child);

impl Launched {
    fn start(description: &str, stdout: Stdio) -> Result<Launched> {
        Ok(Launched(
            Command::new("gst-launch-1.0")
                .arg("-q")
                .args(description.split_whitespace())
                .stdin(Stdio::null())
                .stdout(stdout)
                .spawn()
                .context("gst-launch-1.0 runs (gstreamer1.0-tools)")?,
        ))
    }

    /// The peer sending 1 kHz PCMU to `port` from its RTP `socket` (symmetric
    /// RTP: media takes the peer's packets only from the port its SDP names).
    fn sender(socket: &UdpSocket, port: u16) -> Result<(Launched, Relay)> {
        let relay = Relay::send_from(socket, ([127, 0, 0, 1], port).into())?;
        let launched = Launched::start(
            &format!(
                "{PEER_SENDER} ! udpsink host=127.0.0.1 port={}",
                relay.inlet
            ),
            Stdio::null(),
        )?;
        Ok((launched, relay))
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The peer's RTP socket on an even port, with its RTCP neighbour held too.
struct PortPair {
    rtp: UdpSocket,
    _rtcp: UdpSocket,
    port: u16,
}

fn port_pair() -> Result<PortPair> {
    loop {
        let rtp = UdpSocket::bind("127.0.0.1:0")?;
        let port = rtp.local_addr()?.port();
        if port.is_multiple_of(2)
            && port < 65534
            && let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1))
        {
            return Ok(PortPair {
                rtp,
                _rtcp: rtcp,
                port,
            });
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// An SDP offer from the peer: PCMU and telephone-event at `audio`, and H.264 at
/// `video` when given.
fn offer(audio: u16, video: Option<u16>) -> String {
    let mut sdp = format!(
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {audio} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    if let Some(video) = video {
        sdp.push_str(&format!(
            "m=video {video} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\na=sendrecv\r\n"
        ));
    }
    sdp
}

/// The port of the answer's `m=KIND` line.
fn answer_port(sdp: &str, kind: &str) -> Result<u16> {
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("m={kind} ")))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no {kind} port in {sdp}"))
}

/// One RTP packet as it arrived.
struct Packet {
    at: Instant,
    seq: u16,
    timestamp: u32,
    payload: Vec<u8>,
}

/// The RTP header's sequence number and timestamp, and the payload.
fn parse_rtp(b: &[u8]) -> Option<(u16, u32, &[u8])> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let mut start = 12 + 4 * usize::from(b[0] & 0x0f);
    if b[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*b.get(start + 2)?, *b.get(start + 3)?]);
        start += 4 + 4 * usize::from(words);
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*b.last()?))?;
    }
    Some((
        u16::from_be_bytes([b[2], b[3]]),
        u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        b.get(start..end)?,
    ))
}

/// What a [`Tap`] saw.
#[derive(Default)]
struct Tapped {
    /// Every packet, when the tap keeps them.
    packets: Vec<Packet>,
    count: u64,
    payload_bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Tapped {
    fn per_second(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if last > first => {
                (self.count - 1) as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn kbit_per_second(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if last > first => {
                self.payload_bytes as f64 * 8.0 / 1e3 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// Receives what media sends to the peer's socket, on a thread of its own: notes
/// each packet's arrival, keeps the packets when asked, and forwards each at once
/// to `forward` when given.
struct Tap {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Tapped>,
}

impl Tap {
    fn start(socket: UdpSocket, keep: bool, forward: Option<u16>) -> Result<Tap> {
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Tapped::default();
            let mut buf = [0u8; 2048];
            while !stopping.load(Ordering::Relaxed) {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                let at = Instant::now();
                if let Some(port) = forward {
                    let _ = socket.send_to(&buf[..n], ("127.0.0.1", port));
                }
                let Some((seq, timestamp, payload)) = parse_rtp(&buf[..n]) else {
                    continue;
                };
                seen.count += 1;
                seen.payload_bytes += payload.len() as u64;
                seen.first.get_or_insert(at);
                seen.last = Some(at);
                if keep {
                    seen.packets.push(Packet {
                        at,
                        seq,
                        timestamp,
                        payload: payload.to_vec(),
                    });
                }
            }
            seen
        });
        Ok(Tap { stop, thread })
    }

    fn finish(self) -> Tapped {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the tap thread does not panic")
    }
}

/// G.711 μ-law to linear.
fn ulaw(byte: u8) -> i16 {
    let u = !byte;
    let magnitude = ((i32::from(u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 {
        0x84 - magnitude
    } else {
        magnitude - 0x84
    }) as i16
}

/// Where clicks start: a loud sample after at least 100 ms of quiet.
fn onsets(samples: &[i16]) -> Vec<usize> {
    const LOUD: i32 = 1000;
    const QUIET: usize = 800;
    let mut quiet_for = 0;
    let mut found = Vec::new();
    for (i, &s) in samples.iter().enumerate() {
        if i32::from(s).abs() >= LOUD {
            if quiet_for >= QUIET {
                found.push(i);
            }
            quiet_for = 0;
        } else {
            quiet_for += 1;
        }
    }
    found
}

/// The peer's output as the bench read it: the bytes, and per read its time, where
/// it starts in the bytes and its length.
struct Heard {
    bytes: Vec<u8>,
    reads: Vec<(Instant, usize, usize)>,
}

fn read_output(mut out: impl Read + Send + 'static) -> JoinHandle<Heard> {
    std::thread::spawn(move || {
        let mut heard = Heard {
            bytes: Vec::new(),
            reads: Vec::new(),
        };
        let mut buf = [0u8; 8192];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            heard.reads.push((Instant::now(), heard.bytes.len(), n));
            heard.bytes.extend_from_slice(&buf[..n]);
        }
        heard
    })
}

/// One click's way from media's microphone to the peer's output, in seconds.
struct Click {
    /// From due at media's microphone to out of the peer's sink.
    total: f64,
    /// How much later its packet reached the peer's socket than the fastest packet
    /// of the stream (media's send path and loopback, beyond their best).
    sent_late: f64,
}

/// Matches the clicks in media's RTP with those the peer played.
fn clicks(epoch: Instant, sent: &[Packet], heard: &Heard) -> Result<Vec<Click>> {
    let Some(first) = sent.first() else {
        bail!("media sent no audio");
    };
    let secs = |t: Instant| (t - epoch).as_secs_f64();
    let offset = |p: &Packet| p.timestamp.wrapping_sub(first.timestamp) as usize;
    // Media's stream laid out by RTP timestamp; the clock of its samples is anchored
    // at the packet that arrived earliest for its timestamp.
    let total = sent
        .iter()
        .map(|p| offset(p) + p.payload.len())
        .max()
        .unwrap_or(0);
    let mut stream = vec![0i16; total];
    // Per sample: its packet's arrival less the packet's place in the stream.
    let mut lag = vec![0.0f64; total];
    for p in sent {
        let start = offset(p);
        let late = secs(p.at) - start as f64 / RATE;
        for (i, &b) in p.payload.iter().enumerate() {
            stream[start + i] = ulaw(b);
            lag[start + i] = late;
        }
    }
    let anchor = sent
        .iter()
        .map(|p| secs(p.at) - offset(p) as f64 / RATE)
        .fold(f64::INFINITY, f64::min);
    let lost = sent
        .windows(2)
        .filter(|w| w[1].seq != w[0].seq.wrapping_add(1))
        .count();
    if lost > 0 {
        eprintln!("media-bench: {lost} gaps in media's RTP sequence");
    }

    // The peer's output: each read holds whole buffers, and the last of them was
    // released at the read's time (the sink syncs on a buffer's start).
    let samples: Vec<i16> = heard
        .bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let played_at = |index: usize| -> Option<f64> {
        let byte = index * 2;
        let &(at, start, len) = heard
            .reads
            .iter()
            .find(|(_, start, len)| byte >= *start && byte < start + len)?;
        let last_buffer = start + len - len.min(320);
        Some(secs(at) + (byte as f64 - last_buffer as f64) / 2.0 / RATE)
    };
    let played: Vec<f64> = onsets(&samples).into_iter().filter_map(played_at).collect();

    let mut found = Vec::new();
    for index in onsets(&stream) {
        let due = anchor + index as f64 / RATE;
        if let Some(&out) = played.iter().find(|&&t| t >= due && t < due + 0.5) {
            found.push(Click {
                total: out - due,
                sent_late: lag[index] - anchor,
            });
        }
    }
    Ok(found)
}

/// The peer's RTP to media for an active call, and media's RTP to the peer.
struct Call {
    path: zbus::OwnedObjectPath,
    _sender: (Launched, Relay),
    audio: Tap,
    video: Option<(Tap, PortPair)>,
    _audio_pair: PortPair,
    answered: Duration,
}

impl Call {
    async fn start(proxy: &Media1Proxy<'_>, video: bool) -> Result<Call> {
        let audio_pair = port_pair()?;
        let video_pair = if video { Some(port_pair()?) } else { None };
        let options = if video {
            HashMap::from([("video", zbus::Variant::from(true))])
        } else {
            HashMap::new()
        };
        let sdp = offer(audio_pair.port, video_pair.as_ref().map(|p| p.port));
        let audio = Tap::start(audio_pair.rtp.try_clone()?, false, None)?;
        let start = Instant::now();
        let (path, answer) = proxy.create_answer(&sdp, options).await?;
        let answered = start.elapsed();
        let video = match video_pair {
            Some(pair) => {
                if answer_port(&answer, "video")? == 0 {
                    bail!("media refused video: {answer}");
                }
                Some((Tap::start(pair.rtp.try_clone()?, false, None)?, pair))
            }
            None => None,
        };
        Ok(Call {
            path,
            _sender: Launched::sender(&audio_pair.rtp, answer_port(&answer, "audio")?)?,
            audio,
            video,
            _audio_pair: audio_pair,
            answered,
        })
    }

    /// Stops the session; returns what media sent (audio, and video if any).
    async fn stop(self, proxy: &Media1Proxy<'_>) -> Result<(Tapped, Option<Tapped>)> {
        proxy.stop(&self.path.as_ref()).await?;
        Ok((self.audio.finish(), self.video.map(|(tap, _)| tap.finish())))
    }
}

/// CPU figures of one media process, in % of one core.
struct Cpu {
    /// Idle just before the audio call, and the call.
    audio: (f64, f64),
    /// Idle just before the audio+video call, and the call.
    audio_video: (f64, f64),
    /// Media's audio packets per second in the audio call.
    audio_packets: f64,
    video_kbit: f64,
}

impl Cpu {
    fn line(&self, what: &str) -> String {
        format!(
            "    {what}: audio (PCMU, media sending {:.0} packets/s of {:.0} ms) {:.1} %, \
             audio+video (H.264 640x480@15, {:.0} kbit/s) {:.1} %; idle {:.1} and {:.1} %",
            self.audio_packets,
            1e3 / self.audio_packets.max(f64::MIN_POSITIVE),
            self.audio.1 - self.audio.0,
            self.video_kbit,
            self.audio_video.1 - self.audio_video.0,
            self.audio.0,
            self.audio_video.0,
        )
    }
}

/// Waits until the session at `path` has sent `packets` RTP packets (50 a
/// second of 20 ms audio): the call has settled, or has run for that long.
async fn sent_at_least(
    conn: &zbus::Connection,
    path: &zbus::OwnedObjectPath,
    packets: u64,
) -> Result<()> {
    let session = SessionProxy::builder(conn)
        .path(path.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let deadline = Instant::now() + PATIENCE + Duration::from_secs(packets / 50);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while session.packets_sent().await? < packets {
        if Instant::now() > deadline {
            bail!("media sent fewer than {packets} packets");
        }
        tick.tick().await;
    }
    Ok(())
}

/// Media's `PreparedPorts` (the session it prepares ahead of the next call),
/// followed through its change signals while it lives (unread signals would
/// stall the connection). A media service without the property prepares
/// nothing.
struct PreparedPorts {
    properties: zbus::fdo::PropertiesProxy<'static>,
    changes: zbus::fdo::PropertiesChangedStream,
    now: Option<Vec<u16>>,
}

impl PreparedPorts {
    async fn follow(conn: &zbus::Connection) -> Result<PreparedPorts> {
        let properties = zbus::fdo::PropertiesProxy::builder(conn)
            .destination(media::BUS_NAME)
            .path(media::OBJECT_PATH)
            .build()
            .await?;
        let changes = properties.receive_properties_changed().await?;
        let mut prepared = PreparedPorts {
            properties,
            changes,
            now: None,
        };
        prepared.now = read_prepared(&prepared.properties).await;
        Ok(prepared)
    }

    /// Waits for a prepared session other than `taken`'s; returns its port
    /// (`None` when media prepares none).
    async fn next_after(&mut self, taken: Option<u16>) -> Result<Option<u16>> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let Some(now) = &self.now else {
                return Ok(None);
            };
            if let [port] = now[..]
                && Some(port) != taken
            {
                return Ok(Some(port));
            }
            let signal = tokio::time::timeout_at(deadline, self.changes.next())
                .await
                .context("no session prepared")?
                .context("the property changes ended")?;
            let args = signal.args()?;
            if args.interface_name.as_str() == media::INTERFACE
                && let Some(ports) = args.changed_properties.get("PreparedPorts")
            {
                self.now = Some(Vec::<u16>::try_from(ports.try_clone()?)?);
            }
        }
    }
}

/// Media's `PreparedPorts` as it has it now (a call, not the signals).
async fn read_prepared(properties: &zbus::fdo::PropertiesProxy<'_>) -> Option<Vec<u16>> {
    let value = properties
        .get(media::INTERFACE.try_into().ok()?, "PreparedPorts")
        .await
        .ok()?;
    Vec::<u16>::try_from(value).ok()
}

/// Figures of sequential sessions: answered, first RTP, stopped.
struct Sessions {
    answers: Vec<f64>,
    first_rtp: Vec<f64>,
    stops: Vec<f64>,
    /// How many were answered on the port of the session media had prepared.
    served_prepared: usize,
    /// From each CreateAnswer's reply until the next session was prepared.
    prepared_after: Vec<f64>,
}

impl Sessions {
    fn lines(&self, what: &str) -> String {
        let prepared = if self.prepared_after.is_empty() {
            String::new()
        } else {
            format!(
                "; the next session prepared p50 {:.2} ms, p95 {:.2} ms after the reply",
                percentile(&self.prepared_after, 0.5),
                percentile(&self.prepared_after, 0.95)
            )
        };
        format!(
            "  {what}, {} of them served by the prepared session:\n    CreateAnswer (PCMU) \
             round trip p50 {:.2} ms, p95 {:.2} ms\n    CreateAnswer called -> media's first \
             RTP packet at the offer's port (the call playing): p50 {:.2} ms, p95 {:.2} ms; \
             Stop round trip p50 {:.2} ms{prepared}",
            self.served_prepared,
            percentile(&self.answers, 0.5),
            percentile(&self.answers, 0.95),
            percentile(&self.first_rtp, 0.5),
            percentile(&self.first_rtp, 0.95),
            percentile(&self.stops, 0.5),
        )
    }
}

/// `SESSIONS` sessions one after the other, each until media's first RTP packet;
/// with `spaced`, each waits until media has a session prepared.
async fn sessions(proxy: &Media1Proxy<'_>, spaced: bool) -> Result<Sessions> {
    let conn = proxy.inner().connection();
    let mut prepared = if spaced {
        Some(PreparedPorts::follow(conn).await?)
    } else {
        None
    };
    let properties = zbus::fdo::PropertiesProxy::builder(conn)
        .destination(media::BUS_NAME)
        .path(media::OBJECT_PATH)
        .build()
        .await?;
    let mut figures = Sessions {
        answers: Vec::new(),
        first_rtp: Vec::new(),
        stops: Vec::new(),
        served_prepared: 0,
        prepared_after: Vec::new(),
    };
    let mut taken = None;
    for _ in 0..SESSIONS {
        let ready = match &mut prepared {
            Some(prepared) => prepared.next_after(taken).await?,
            None => read_prepared(&properties)
                .await
                .and_then(|p| p.first().copied()),
        };
        let pair = port_pair()?;
        let socket = pair.rtp.try_clone()?;
        socket.set_read_timeout(Some(PATIENCE))?;
        let listening = Arc::new(Barrier::new(2));
        let ready_to_listen = listening.clone();
        let waiter = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            ready_to_listen.wait();
            socket.recv(&mut buf).ok().map(|_| Instant::now())
        });
        listening.wait();
        let start = Instant::now();
        let (path, answer) = proxy
            .create_answer(&offer(pair.port, None), HashMap::new())
            .await?;
        let replied = Instant::now();
        figures.answers.push(ms(replied - start));
        let port = answer_port(&answer, "audio")?;
        taken = None;
        if ready == Some(port) {
            figures.served_prepared += 1;
            taken = ready;
        }
        let arrived = waiter
            .join()
            .expect("the waiting thread does not panic")
            .context("no RTP from media")?;
        figures.first_rtp.push(ms(arrived - start));
        if let Some(prepared) = &mut prepared
            && taken.is_some()
        {
            prepared.next_after(taken).await?;
            figures.prepared_after.push(ms(replied.elapsed()));
        }
        let stopping = Instant::now();
        proxy.stop(&path.as_ref()).await?;
        figures.stops.push(ms(stopping.elapsed()));
    }
    Ok(figures)
}

/// Waits until the service's camera has delivered a frame: start-up is over.
async fn started(proxy: &Media1Proxy<'_>) -> Result<()> {
    proxy.snapshot().await?;
    Ok(())
}

/// An audio+video call held for a CPU window, after an idle one; returns the idle
/// and call CPU and the video rate.
async fn audio_video_cpu(proxy: &Media1Proxy<'_>, pid: u32) -> Result<((f64, f64), f64)> {
    let idle = cpu_percent(pid, CPU_WINDOW).await?;
    let call = Call::start(proxy, true).await?;
    sent_at_least(proxy.inner().connection(), &call.path, 100).await?;
    let cpu = cpu_percent(pid, CPU_WINDOW).await?;
    let (_, video) = call.stop(proxy).await?;
    let video = video.context("a video tap")?;
    if video.count == 0 {
        bail!("media sent no video");
    }
    Ok(((idle, cpu), video.kbit_per_second()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let bus = Bus::start()?;
    let db = ConfigDb::new()?;
    let _config = start_config(&bus, &db).await?;
    let conn = bus.connect().await?;
    let dir = tempfile::Builder::new()
        .prefix("doorphone-media-bench")
        .tempdir()?;
    chown_to(dir.path(), "doorphone-media")?;

    // The first start writes the registry cache; the measured ones read it.
    let (first, registry_start) = MediaProcess::start(&bus, dir.path(), &[]).await?;
    first.stop()?;

    // The test microphone as the service has it: a sine tone in 1024-sample blocks.
    let (media, cached_start) = MediaProcess::start(&bus, dir.path(), &[]).await?;
    let pid = media.pid;
    let proxy = Media1Proxy::new(&conn).await?;
    started(&proxy).await?;
    let idle = cpu_percent(pid, CPU_WINDOW).await?;
    let idle_rss = rss_kib(pid);

    let call = Call::start(&proxy, false).await?;
    let first_answer = call.answered;
    sent_at_least(&conn, &call.path, 100).await?;
    let audio = cpu_percent(pid, CPU_WINDOW).await?;
    let call_rss = rss_kib(pid);
    let (sent, _) = call.stop(&proxy).await?;
    let sine_packets = sent.per_second();

    let spaced = sessions(&proxy, true).await?;
    let back_to_back = sessions(&proxy, false).await?;
    let after_sessions_rss = rss_kib(pid);
    let (audio_video, video_kbit) = audio_video_cpu(&proxy, pid).await?;
    let sine = Cpu {
        audio: (idle, audio),
        audio_video,
        audio_packets: sine_packets,
        video_kbit,
    };
    media.stop()?;

    // Clicks from the test microphone, in 20 ms blocks.
    let (media, _) = MediaProcess::start(&bus, dir.path(), &["--test-wave", "ticks"]).await?;
    let pid = media.pid;
    let proxy = Media1Proxy::new(&conn).await?;
    started(&proxy).await?;
    let idle = cpu_percent(pid, CPU_WINDOW).await?;

    let pair = port_pair()?;
    let peer_port = free_port()?;
    let mut receiver = Launched::start(
        &format!("udpsrc port={peer_port} caps={PCMU_CAPS} ! {PEER_RECEIVER}"),
        Stdio::piped(),
    )?;
    let output = read_output(receiver.0.stdout.take().context("the peer's output")?);
    let epoch = Instant::now();
    let tap = Tap::start(pair.rtp.try_clone()?, true, Some(peer_port))?;
    let (path, answer) = proxy
        .create_answer(&offer(pair.port, None), HashMap::new())
        .await?;
    let sender = Launched::sender(&pair.rtp, answer_port(&answer, "audio")?)?;
    sent_at_least(&conn, &path, 100).await?;
    let audio = cpu_percent(pid, CPU_WINDOW).await?;
    // One click a second: the call runs until media has sent CLICKS + 1 seconds.
    sent_at_least(&conn, &path, (CLICKS + 1) * 50).await?;
    let sent = tap.finish();
    proxy.stop(&path.as_ref()).await?;
    drop(sender);
    drop(receiver);
    let heard = output.join().expect("the reading thread does not panic");
    let clicks = clicks(epoch, &sent.packets, &heard)?;
    if clicks.len() < 20 {
        bail!(
            "only {} clicks made it from media to the peer's output",
            clicks.len()
        );
    }
    let (audio_video, video_kbit) = audio_video_cpu(&proxy, pid).await?;
    let ticks = Cpu {
        audio: (idle, audio),
        audio_video,
        audio_packets: sent.per_second(),
        video_kbit,
    };
    media.stop()?;

    let total: Vec<f64> = clicks.iter().map(|c| c.total * 1e3).collect();
    let late: Vec<f64> = clicks.iter().map(|c| c.sent_late * 1e3).collect();

    println!(
        "media service, release build, private bus, {} cores; GStreamer registry in a cache \
         file the service owns (GST_REGISTRY in the bench's folder): start to the bus name \
         {:.0} ms while writing it, {:.0} ms reading it",
        std::thread::available_parallelism()?,
        ms(registry_start),
        ms(cached_start)
    );
    println!(
        "  the process's first session (CreateAnswer, PCMU): round trip {:.2} ms",
        ms(first_answer)
    );
    println!(
        "{}",
        spaced.lines(&format!(
            "{SESSIONS} sequential sessions, each answered once media has a session prepared"
        ))
    );
    println!(
        "{}",
        back_to_back.lines(&format!(
            "{SESSIONS} sessions back to back (each CreateAnswer as soon as the last Stop returns)"
        ))
    );
    println!(
        "  one-way audio latency media -> peer, PCMU on loopback, the peer's rtpjitterbuffer \
         latency=60, {} clicks: p50 {:.1} ms, max {:.1} ms (a click's packet later than \
         media's fastest: p50 {:.2} ms, max {:.2} ms)",
        clicks.len(),
        percentile(&total, 0.5),
        percentile(&total, 1.0),
        percentile(&late, 0.5),
        percentile(&late, 1.0)
    );
    println!(
        "    method: media's test microphone clicks once a second (--test-wave ticks); the \
         bench receives media's RTP, forwards each packet at once to a gst-launch peer \
         ({PEER_RECEIVER}) and times each click as the peer's sink releases it (the read \
         of its output); a click is due when media's RTP timestamp says, on the clock \
         set by the packet that arrived earliest for its timestamp (that packet's send \
         path counted as zero)"
    );
    println!(
        "    not included: a microphone's block fill (the test microphone hands each 20 ms \
         block over as it starts, a microphone as it ends: +20 ms at 20 ms blocks) and \
         sound-card buffers at either end"
    );
    println!(
        "  CPU per call (utime+stime), % of one core above the idle window just before \
         (idle: test camera and the speaker's silence), over {} s with the peer sending \
         20 ms PCMU:",
        CPU_WINDOW.as_secs()
    );
    println!("{}", sine.line("sine test microphone (1024-sample blocks)"));
    println!("{}", ticks.line("--test-wave ticks (20 ms blocks)"));
    println!(
        "  resident memory (VmRSS): idle {:.1} MiB, with one audio call {:.1} MiB, after \
         {SESSIONS} more sessions started and stopped {:.1} MiB",
        mib(idle_rss),
        mib(call_rss),
        mib(after_sessions_rss)
    );
    Ok(())
}
