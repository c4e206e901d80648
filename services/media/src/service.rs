//! `org.doorphone.Media1` and its session objects.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use doorphone_interfaces::config::document::Media;
use doorphone_interfaces::media::{Error, state};
use zbus::object_server::{ResponseDispatchNotifier, SignalEmitter};
use zbus::{ObjectPath, OwnedObjectPath, OwnedVariant, interface};

use crate::devices::{AudioSource, Speaker};
use crate::ports::PortRange;
use crate::sdp::{self, LocalCaps, LocalTransport, Negotiated, SdpError};
use crate::session::{self, CallPipeline, Event};

/// What the service was started with.
pub struct Options {
    pub audio_source: AudioSource,
    /// The camera, when the door has one.
    pub camera: Option<Arc<crate::camera::Camera>>,
    pub test_tone: f64,
    pub address: IpAddr,
    pub rtp_timeout: Duration,
    /// The interface multicast pages are received on.
    pub multicast_iface: Option<String>,
}

/// A session's events, tagged with its id, on their way to the bus.
pub type EventSender = tokio::sync::mpsc::UnboundedSender<(u32, Event)>;

struct Session {
    local: sdp::Local,
    negotiated: Option<Negotiated>,
    pipeline: Option<Arc<CallPipeline>>,
    /// Held for the pipeline until the remote description arrives.
    ports: Option<crate::ports::PortPair>,
    /// The video stream's ports, when video was offered or accepted.
    video_ports: Option<crate::ports::PortPair>,
    state: &'static str,
    held: bool,
    /// Our address and ports, as the SDP gives them.
    local_rtp: LocalTransport,
    /// Signalled when the pipeline is up (or will never be).
    started: Arc<std::sync::Condvar>,
}

/// The session object at `/org/doorphone/Media1/session/N`.
pub struct SessionObject {
    session: Arc<Mutex<Session>>,
}

fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(|e| e.into_inner())
}

impl SessionObject {
    fn reception(&self) -> (u32, i64) {
        lock(&self.session)
            .pipeline
            .as_ref()
            .map_or((0, 0), |p| p.reception())
    }

    fn counter(&self, pick: impl Fn(&session::Counters) -> u64) -> u64 {
        lock(&self.session)
            .pipeline
            .as_ref()
            .map_or(0, |p| pick(&p.counters))
    }
}

#[interface(name = "org.doorphone.Media1.Session")]
impl SessionObject {
    #[zbus(property)]
    async fn state(&self) -> String {
        lock(&self.session).state.to_owned()
    }

    #[zbus(property)]
    async fn audio_codec(&self) -> String {
        lock(&self.session)
            .negotiated
            .as_ref()
            .and_then(|n| n.audio.as_ref())
            .map(|a| a.codec.encoding.name().to_owned())
            .unwrap_or_default()
    }

    #[zbus(property)]
    async fn video_codec(&self) -> String {
        lock(&self.session)
            .negotiated
            .as_ref()
            .and_then(|n| n.video.as_ref())
            .map(|v| v.codec.encoding.name().to_owned())
            .unwrap_or_default()
    }

    #[zbus(property)]
    async fn local_rtp(&self) -> String {
        let s = lock(&self.session);
        std::net::SocketAddr::new(s.local_rtp.address, s.local_rtp.audio_port).to_string()
    }

    #[zbus(property)]
    async fn remote_rtp(&self) -> String {
        lock(&self.session)
            .negotiated
            .as_ref()
            .and_then(|n| n.audio.as_ref())
            .map(|a| a.remote_rtp.to_string())
            .unwrap_or_default()
    }

    #[zbus(property)]
    async fn packets_sent(&self) -> u64 {
        self.counter(|c| c.packets_sent.load(Ordering::Relaxed))
    }

    #[zbus(property)]
    async fn packets_received(&self) -> u64 {
        self.counter(|c| c.packets_received.load(Ordering::Relaxed))
    }

    #[zbus(property)]
    async fn bytes_sent(&self) -> u64 {
        self.counter(|c| c.bytes_sent.load(Ordering::Relaxed))
    }

    #[zbus(property)]
    async fn bytes_received(&self) -> u64 {
        self.counter(|c| c.bytes_received.load(Ordering::Relaxed))
    }

    /// The peer's interarrival jitter, in milliseconds (RTCP statistics).
    #[zbus(property)]
    async fn jitter_ms(&self) -> u32 {
        self.reception().0
    }

    /// Packets from the peer that never arrived (RTCP statistics).
    #[zbus(property)]
    async fn packets_lost(&self) -> i64 {
        self.reception().1
    }
}

pub struct MediaService {
    options: Options,
    media: Arc<Mutex<Media>>,
    /// The range and the configured bounds it was made from.
    ports: (PortRange, [u32; 2]),
    speaker: Arc<Speaker>,
    sessions: HashMap<u32, Arc<Mutex<Session>>>,
    streams: HashMap<u32, crate::stream::PageStream>,
    /// The stream that has the speaker to itself, if any.
    solo: Option<u32>,
    next_id: u32,
    events: EventSender,
}

fn session_path(id: u32) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("/org/doorphone/Media1/session/{id}"))
        .expect("a valid object path")
}

fn stream_path(id: u32) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("/org/doorphone/Media1/stream/{id}"))
        .expect("a valid object path")
}

fn session_id(path: &ObjectPath<'_>) -> Result<u32, Error> {
    path.as_str()
        .strip_prefix("/org/doorphone/Media1/session/")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::NotFound(format!("{path}: not a session")))
}

fn sdp_error(e: SdpError) -> Error {
    match e {
        SdpError::NoCommonCodec(m) => Error::NoCommonCodec(m),
        other => Error::InvalidSdp(other.to_string()),
    }
}

impl MediaService {
    pub fn new(
        options: Options,
        media: Arc<Mutex<Media>>,
        speaker: Arc<Speaker>,
        events: EventSender,
    ) -> MediaService {
        let bounds = media.lock().unwrap_or_else(|e| e.into_inner()).rtp_ports;
        MediaService {
            options,
            ports: (PortRange::new(bounds[0] as u16, bounds[1] as u16), bounds),
            media,
            speaker,
            sessions: HashMap::new(),
            streams: HashMap::new(),
            solo: None,
            next_id: 1,
            events,
        }
    }

    /// Binds a port pair from the configured range (which follows the config).
    fn bind_ports(&mut self) -> Result<crate::ports::PortPair, Error> {
        let bounds = self
            .media
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rtp_ports;
        if bounds != self.ports.1 {
            self.ports = (PortRange::new(bounds[0] as u16, bounds[1] as u16), bounds);
        }
        self.ports
            .0
            .bind()
            .map_err(|e| Error::Failed(e.to_string()))
    }

    fn caps(&self, options: &HashMap<String, OwnedVariant>) -> LocalCaps {
        let want_video = options
            .get("video")
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false);
        let media = self.media.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut caps = LocalCaps::from_config(&media, want_video);
        caps.audio.retain(|e| session::supported(*e));
        caps.video.retain(|e| session::supported(*e));
        if caps.video.is_empty() || self.options.camera.is_none() {
            caps.want_video = false;
        }
        caps
    }

    fn transport(
        &self,
        options: &HashMap<String, OwnedVariant>,
        port: u16,
        video_port: Option<u16>,
    ) -> LocalTransport {
        let address = options
            .get("address")
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
            .and_then(|a| a.parse().ok())
            .unwrap_or(self.options.address);
        LocalTransport {
            address,
            audio_port: port,
            video_port,
        }
    }

    fn session(&self, path: &ObjectPath<'_>) -> Result<(u32, Arc<Mutex<Session>>), Error> {
        let id = session_id(path)?;
        self.sessions
            .get(&id)
            .cloned()
            .map(|s| (id, s))
            .ok_or_else(|| Error::NotFound(format!("{path}: no such session")))
    }

    /// Builds and starts the session's pipeline off the caller's path, once
    /// `replied` resolves (the reply carrying the SDP has gone out), so building
    /// never competes with the answer. A pipeline that will not start is
    /// reported as a failed session.
    fn launch(
        &self,
        id: u32,
        handle: &Arc<Mutex<Session>>,
        replied: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let (stream, ports, video_parts) = {
            let mut s = lock(handle);
            let stream = s
                .negotiated
                .as_ref()
                .and_then(|n| n.audio.clone())
                .ok_or_else(|| Error::InvalidSdp("no audio stream was negotiated".into()))?;
            let ports = s
                .ports
                .take()
                .ok_or_else(|| Error::Failed("the session has no ports".into()))?;
            let video = s.negotiated.as_ref().and_then(|n| n.video.clone());
            (stream, ports, video.zip(s.video_ports.take()))
        };
        let handle = handle.clone();
        let camera = self.options.camera.clone();
        let mic = self.options.audio_source.clone();
        let tone = self.options.test_tone;
        let rtp_timeout = self.options.rtp_timeout;
        let speaker = self.speaker.clone();
        let events = self.events.clone();
        let build = move || {
            let report = events.clone();
            let result = (|| {
                let video = match (video_parts, camera) {
                    (Some((stream, ports)), Some(camera)) if stream.direction.sends() => {
                        let feed = camera.h264_feed(stream.codec.pt)?;
                        Some(session::VideoLeg {
                            stream,
                            ports,
                            feed,
                        })
                    }
                    _ => None,
                };
                CallPipeline::start(
                    &stream,
                    ports,
                    session::CallIo {
                        mic: &mic,
                        tone,
                        speaker: &speaker,
                        rtp_timeout,
                    },
                    video,
                    move |event| {
                        let _ = events.send((id, event));
                    },
                )
            })();
            let mut s = lock(&handle);
            match result {
                // Stopped while starting: the pipeline goes with this scope.
                Ok(_) if s.state == state::STOPPED => {}
                Ok(pipeline) => {
                    pipeline.set_sending(stream.direction.sends() && !s.held);
                    s.pipeline = Some(Arc::new(pipeline));
                    if s.state == state::PREPARED {
                        s.state = state::ACTIVE;
                    }
                }
                Err(e) => {
                    let _ = report.send((id, Event::Failed(e)));
                }
            }
            s.started.notify_all();
        };
        tokio::spawn(async move {
            replied.await;
            let _ = tokio::task::spawn_blocking(build).await;
        });
        Ok(())
    }

    async fn add_session(
        &mut self,
        server: &zbus::ObjectServer,
        session: Session,
    ) -> Result<(u32, OwnedObjectPath, Arc<Mutex<Session>>), Error> {
        let id = self.next_id;
        self.next_id += 1;
        let session = Arc::new(Mutex::new(session));
        let path = session_path(id);
        server
            .at(
                &path,
                SessionObject {
                    session: session.clone(),
                },
            )
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        self.sessions.insert(id, session.clone());
        Ok((id, path, session))
    }

    /// Ends a session: pipeline stopped, ports freed, object removed.
    pub async fn end(&mut self, server: &zbus::ObjectServer, id: u32) -> bool {
        let Some(session) = self.sessions.remove(&id) else {
            return false;
        };
        let pipeline = {
            let mut s = lock(&session);
            s.state = state::STOPPED;
            s.started.notify_all();
            s.ports = None;
            s.video_ports = None;
            s.pipeline.take()
        };
        if let Some(p) = pipeline {
            // Stopping waits for streaming threads: not on the bus's thread.
            let _ = tokio::task::spawn_blocking(move || drop(p)).await;
        }
        let _ = server.remove::<SessionObject, _>(&session_path(id)).await;
        true
    }
}

#[interface(name = "org.doorphone.Media1")]
impl MediaService {
    /// A new session and our SDP offer. Options: `video` (b), `address` (s).
    #[zbus(out_args("session", "sdp"))]
    async fn create_offer(
        &mut self,
        options: HashMap<String, OwnedVariant>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<(OwnedObjectPath, String), Error> {
        let caps = self.caps(&options);
        let ports = self.bind_ports()?;
        let video_ports = if caps.want_video {
            Some(self.bind_ports()?)
        } else {
            None
        };
        let transport = self.transport(&options, ports.port, video_ports.as_ref().map(|p| p.port));
        let (local, text) = sdp::Local::offer(&caps, &transport);
        let (_, path, _) = self
            .add_session(
                server,
                Session {
                    local,
                    negotiated: None,
                    pipeline: None,
                    ports: Some(ports),
                    video_ports,
                    state: state::PREPARED,
                    held: false,
                    started: Arc::default(),
                    local_rtp: transport,
                },
            )
            .await?;
        Ok((path, text))
    }

    /// A new session answering `offer`. Options as for `CreateOffer`.
    #[zbus(out_args("session", "sdp"))]
    async fn create_answer(
        &mut self,
        offer: &str,
        options: HashMap<String, OwnedVariant>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<(OwnedObjectPath, String), Error> {
        let remote = sdp::parse(offer).map_err(sdp_error)?;
        let caps = self.caps(&options);
        let ports = self.bind_ports()?;
        let video_ports = if caps.want_video && remote.has_video() {
            Some(self.bind_ports()?)
        } else {
            None
        };
        let transport = self.transport(&options, ports.port, video_ports.as_ref().map(|p| p.port));
        let (local, negotiated, text) =
            sdp::Local::answer(&caps, &transport, &remote).map_err(sdp_error)?;
        let session = Session {
            local,
            negotiated: Some(negotiated),
            pipeline: None,
            ports: Some(ports),
            video_ports,
            state: state::PREPARED,
            held: false,
            started: Arc::default(),
            local_rtp: transport,
        };
        let (id, path, handle) = self.add_session(server, session).await?;
        // The reply would be a struct if it went through a dispatch notifier, so
        // the media starts at once, in parallel with the reply.
        if let Err(e) = self.launch(id, &handle, std::future::ready(())) {
            self.end(server, id).await;
            return Err(e);
        }
        Ok((path, text))
    }

    /// Gives a session the remote description: the answer to our offer (returns an
    /// empty string) or a re-offer (returns our answer).
    #[zbus(out_args("answer"))]
    async fn set_remote(
        &mut self,
        session: ObjectPath<'_>,
        sdp: &str,
    ) -> Result<ResponseDispatchNotifier<String>, Error> {
        let (id, handle) = self.session(&session)?;
        let remote = sdp::parse(sdp).map_err(sdp_error)?;
        let mut s = lock(&handle);
        if s.local.awaiting_answer() {
            let negotiated = s.local.accept_answer(&remote).map_err(sdp_error)?;
            let first = s.negotiated.is_none();
            s.negotiated = Some(negotiated);
            drop(s);
            let (reply, replied) = ResponseDispatchNotifier::new(String::new());
            if first {
                self.launch(id, &handle, replied)?;
            }
            return Ok(reply);
        }
        let held = s.held;
        let (negotiated, text) = s.local.reanswer(&remote, held).map_err(sdp_error)?;
        let sends = negotiated
            .audio
            .as_ref()
            .is_some_and(|a| a.direction.sends());
        if let (Some(p), Some(audio)) = (&s.pipeline, &negotiated.audio) {
            p.set_sending(sends && !held);
            // An old-style hold (c=0.0.0.0) keeps the address media already has.
            if !audio.remote_rtp.ip().is_unspecified() {
                p.set_remote(audio.remote_rtp, audio.remote_rtcp);
            }
        }
        s.negotiated = Some(negotiated);
        Ok(ResponseDispatchNotifier::new(text).0)
    }

    /// Holds the session; returns the re-offer to send.
    #[zbus(out_args("offer"))]
    async fn hold(&mut self, session: ObjectPath<'_>) -> Result<String, Error> {
        let (_, handle) = self.session(&session)?;
        let mut s = lock(&handle);
        s.held = true;
        s.state = state::HELD;
        if let Some(p) = &s.pipeline {
            p.set_sending(false);
        }
        Ok(s.local.reoffer(true))
    }

    /// Resumes a held session; returns the re-offer to send.
    #[zbus(out_args("offer"))]
    async fn resume(&mut self, session: ObjectPath<'_>) -> Result<String, Error> {
        let (_, handle) = self.session(&session)?;
        let mut s = lock(&handle);
        s.held = false;
        s.state = state::ACTIVE;
        if let Some(p) = &s.pipeline {
            p.set_sending(true);
        }
        Ok(s.local.reoffer(false))
    }

    /// Stops the session and frees its ports.
    async fn stop(
        &mut self,
        session: ObjectPath<'_>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let id = session_id(&session)?;
        if !self.end(server, id).await {
            return Err(Error::NotFound(format!("{session}: no such session")));
        }
        let _ = Self::session_state_changed(&emitter, session, state::STOPPED, "stopped").await;
        Ok(())
    }

    /// Plays an RTP stream (a page) arriving at `address`:`port` (a multicast group
    /// is joined on the configured interface) in `codec` (`PCMU`, `PCMA`, `G722`).
    /// Options: `solo` (b): only this stream is heard until it stops.
    #[zbus(out_args("stream"))]
    async fn play_stream(
        &mut self,
        address: &str,
        port: u16,
        codec: &str,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<OwnedObjectPath, Error> {
        let ip: IpAddr = address
            .parse()
            .map_err(|_| Error::Failed(format!("{address:?} is not an IP address")))?;
        if port == 0 {
            return Err(Error::Failed("port 0 is not a port".into()));
        }
        let stream = crate::stream::PageStream::start(
            ip,
            port,
            codec,
            self.options.multicast_iface.as_deref(),
            &self.speaker,
        )
        .map_err(Error::Failed)?;
        let solo = options
            .get("solo")
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false);
        let id = self.next_id;
        self.next_id += 1;
        if solo {
            stream.with_input(|input| self.speaker.solo(Some(input)));
            self.solo = Some(id);
        }
        self.streams.insert(id, stream);
        tracing::info!(stream = id, %address, port, codec, solo, "playing a stream");
        Ok(stream_path(id))
    }

    /// Stops a stream that `PlayStream` started.
    async fn stop_stream(&mut self, stream: ObjectPath<'_>) -> Result<(), Error> {
        let id = stream
            .as_str()
            .strip_prefix("/org/doorphone/Media1/stream/")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::NotFound(format!("{stream}: not a stream")))?;
        let playing = self
            .streams
            .remove(&id)
            .ok_or_else(|| Error::NotFound(format!("{stream}: no such stream")))?;
        if self.solo == Some(id) {
            self.solo = None;
            self.speaker.solo(None);
        }
        tokio::task::spawn_blocking(move || drop(playing))
            .await
            .map_err(|e| Error::Failed(e.to_string()))
    }

    /// The camera's current frame as a JPEG.
    #[zbus(out_args("jpeg"))]
    async fn snapshot(&self) -> Result<Vec<u8>, Error> {
        let camera = self
            .options
            .camera
            .clone()
            .ok_or_else(|| Error::Failed("this door phone has no camera".into()))?;
        tokio::task::spawn_blocking(move || camera.snapshot())
            .await
            .map_err(|e| Error::Failed(e.to_string()))?
            .map_err(Error::Failed)
    }

    /// Sends DTMF digits (`0-9`, `*`, `#`, `A-D`) as RFC 4733 events.
    async fn send_dtmf(&mut self, session: ObjectPath<'_>, digits: &str) -> Result<(), Error> {
        let (_, handle) = self.session(&session)?;
        if let Some(bad) = digits.chars().find(|d| crate::dtmf::event(*d).is_none()) {
            return Err(Error::Failed(format!("{bad:?} is not a DTMF digit")));
        }
        let pipeline = tokio::task::spawn_blocking(move || {
            // A session answered a moment ago may still be starting its media.
            let started = lock(&handle).started.clone();
            let (s, _) = started
                .wait_timeout_while(lock(&handle), Duration::from_secs(2), |s| {
                    s.pipeline.is_none() && s.state == state::PREPARED
                })
                .unwrap_or_else(|e| e.into_inner());
            s.pipeline.clone()
        })
        .await
        .map_err(|e| Error::Failed(e.to_string()))?
        .ok_or_else(|| Error::Failed("the session has no media".into()))?;
        let digits = digits.to_owned();
        tokio::task::spawn_blocking(move || {
            for d in digits.chars() {
                pipeline.send_digit(d, Duration::from_millis(250))?;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok::<(), String>(())
        })
        .await
        .map_err(|e| Error::Failed(e.to_string()))?
        .map_err(Error::Failed)
    }

    /// One DTMF digit received from the peer (RFC 4733), once per key press.
    #[zbus(signal)]
    pub async fn dtmf_received(
        emitter: &SignalEmitter<'_>,
        session: ObjectPath<'_>,
        digit: &str,
    ) -> zbus::Result<()>;

    /// A session changed state (`active`, `held`, `timeout`, `stopped`, `failed`).
    #[zbus(signal)]
    pub async fn session_state_changed(
        emitter: &SignalEmitter<'_>,
        session: ObjectPath<'_>,
        state: &str,
        reason: &str,
    ) -> zbus::Result<()>;
}

/// Turns sessions' events into signals; a failed session is stopped.
pub async fn forward_events(
    conn: zbus::Connection,
    mut events: tokio::sync::mpsc::UnboundedReceiver<(u32, Event)>,
) {
    let server = conn.object_server();
    while let Some((id, event)) = events.recv().await {
        let Ok(iface) = server
            .interface::<_, MediaService>(doorphone_interfaces::media::OBJECT_PATH)
            .await
        else {
            continue;
        };
        let path = session_path(id);
        let emitter = iface.signal_emitter();
        let result = match &event {
            Event::Dtmf(d) => {
                tracing::info!(session = id, digit = %d, "DTMF received");
                MediaService::dtmf_received(emitter, path.as_ref(), &d.to_string()).await
            }
            Event::Timeout => {
                tracing::warn!(session = id, "no RTP from the peer");
                set_state(&iface, id, state::TIMEOUT).await;
                MediaService::session_state_changed(
                    emitter,
                    path.as_ref(),
                    state::TIMEOUT,
                    "no RTP",
                )
                .await
            }
            Event::Flowing => {
                set_state(&iface, id, state::ACTIVE).await;
                MediaService::session_state_changed(emitter, path.as_ref(), state::ACTIVE, "RTP")
                    .await
            }
            Event::Failed(why) => {
                tracing::error!(session = id, "pipeline failed: {why}");
                iface.get_mut().await.end(server, id).await;
                MediaService::session_state_changed(emitter, path.as_ref(), state::FAILED, why)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::warn!("cannot emit a session signal: {e}");
        }
    }
}

async fn set_state(
    iface: &zbus::object_server::InterfaceRef<MediaService>,
    id: u32,
    new: &'static str,
) {
    if let Some(s) = iface.get().await.sessions.get(&id) {
        lock(s).state = new;
    }
}
