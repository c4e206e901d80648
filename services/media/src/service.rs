//! `org.doorphone.Media1` and its session objects.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use doorphone_interfaces::config::document::Media;
use doorphone_interfaces::media::{Error, state};
use zbus::object_server::{ResponseDispatchNotifier, SignalEmitter};
use zbus::{ObjectPath, OwnedObjectPath, OwnedVariant, interface};

use crate::devices::{AudioSource, Speaker};
use crate::ports::{PortPair, PortRange};
use crate::sdp::{self, Encoding, LocalCaps, LocalTransport, Negotiated, SdpError};
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
    ports: Option<PortPair>,
    /// Or the prepared session that will carry the call, holding the ports.
    prepared: Option<Ready>,
    /// The call's pipeline's event routing and generation, so that the
    /// pipeline (the prepared session's, or one built for the call) can serve
    /// the next call once this one ends.
    reusable: Option<(Tag, u64)>,
    /// The video stream's ports, when video was offered or accepted.
    video_ports: Option<crate::ports::PortPair>,
    state: &'static str,
    held: bool,
    /// Our address and ports, as the SDP gives them.
    local_rtp: LocalTransport,
    /// Signalled when the pipeline is up (or will never be).
    started: Arc<std::sync::Condvar>,
    /// The bus connection that made the session: when it goes, so does the session.
    owner: Option<String>,
    /// Held while digits go out, so two `SendDtmf` calls on one session send
    /// theirs one after the other.
    dialling: Arc<tokio::sync::Mutex<()>>,
}

/// The session object at `/org/doorphone/Media1/session/N`.
pub struct SessionObject {
    session: Arc<Mutex<Session>>,
}

/// How long a new session waits for a preparation under way before it builds
/// a pipeline of its own: longer than making a pipeline ready again takes, on a
/// busy board too.
const PREPARATION_WAIT: Duration = Duration::from_millis(250);

/// Where the service's own object is.
pub const MEDIA_PATH: &str = doorphone_interfaces::media::OBJECT_PATH;

/// The unique bus name of a call's sender.
fn sender(header: &zbus::message::Header<'_>) -> Option<String> {
    header.sender().map(|s| s.to_string())
}

/// Locks a mutex, carrying on with the data if a thread panicked while it held it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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

    /// RTP and RTCP packets dropped because they came from another source than
    /// the call's peer (its described address, or the latched one).
    #[zbus(property)]
    async fn packets_rejected(&self) -> u64 {
        self.counter(|c| c.packets_rejected.load(Ordering::Relaxed))
    }

    /// Packets from the peer that never arrived (RTCP statistics).
    #[zbus(property)]
    async fn packets_lost(&self) -> i64 {
        self.reception().1
    }
}

/// A session made ahead of the next call: a port pair bound and the pipeline of
/// the preferred audio codec built and paused, sending nothing. It is no
/// session object until a call takes it; once the call ends, the pipeline
/// waits for the next call again.
struct Ready {
    pipeline: CallPipeline,
    tag: Tag,
    /// The settings' generation it was built in.
    generation: u64,
}

/// Where a prepared pipeline's events go.
struct Tag {
    /// The session its events go to once a call takes it (0 until then).
    id: Arc<AtomicU32>,
    /// Set when the pipeline failed while it waited.
    broken: Arc<AtomicBool>,
}

impl Ready {
    fn usable(&self) -> bool {
        !self.tag.broken.load(Ordering::SeqCst)
    }

    fn port(&self) -> u16 {
        self.pipeline.port()
    }
}

#[derive(Default)]
struct Slot {
    ready: Option<Ready>,
    /// The generation of the preparation under way, if one is.
    building: Option<u64>,
    /// Goes up whenever what a session is prepared from changes (the `media`
    /// settings) and when the service stops: older preparations are discarded.
    generation: u64,
    closed: bool,
}

/// Makes the prepared session, off the callers' path, and keeps it.
#[derive(Clone)]
struct Preparer {
    slot: Arc<Mutex<Slot>>,
    /// Wakes whoever waits for a preparation to end.
    done: Arc<tokio::sync::Notify>,
    media: Arc<Mutex<Media>>,
    /// The range and the configured bounds it was made from.
    ports: Arc<Mutex<(PortRange, [u32; 2])>>,
    mic: AudioSource,
    tone: f64,
    rtp_timeout: Duration,
    speaker: Arc<Speaker>,
    events: EventSender,
    /// Wakes the task that announces `PreparedPorts`' changes.
    changed: Arc<tokio::sync::Notify>,
}

impl Preparer {
    /// Binds a port pair from the configured range (which follows the config).
    fn bind(&self) -> Result<PortPair, Error> {
        let bounds = self
            .media
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rtp_ports;
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        if bounds != ports.1 {
            *ports = (PortRange::new(bounds[0] as u16, bounds[1] as u16), bounds);
        }
        ports.0.bind().map_err(|e| Error::Failed(e.to_string()))
    }

    /// The first configured audio codec this build carries.
    fn preferred(&self) -> Option<Encoding> {
        let media = self.media.lock().unwrap_or_else(|e| e.into_inner()).clone();
        LocalCaps::from_config(&media, false)
            .audio
            .into_iter()
            .find(|e| session::supported(*e))
    }

    /// The prepared session's port and encoding, when one is ready.
    fn peek(&self) -> Option<(u16, Encoding)> {
        lock(&self.slot)
            .ready
            .as_ref()
            .filter(|r| r.usable())
            .map(|r| (r.port(), r.pipeline.encoding()))
    }

    /// Takes the prepared session, if one is ready and sound.
    fn take(&self) -> Option<Ready> {
        let taken = {
            let mut slot = lock(&self.slot);
            match slot.ready.take() {
                Some(r) if r.usable() => Some(r),
                Some(broken) => {
                    tracing::warn!("the prepared session broke while it waited");
                    discard(broken);
                    None
                }
                None => None,
            }
        };
        if taken.is_some() {
            self.announce();
        }
        taken
    }

    /// Prepares a session in the background unless one is ready or under way.
    fn ensure(&self) {
        let generation = {
            let mut slot = lock(&self.slot);
            if let Some(broken) = slot.ready.take_if(|r| !r.usable()) {
                tracing::warn!("the prepared session broke while it waited");
                discard(broken);
                self.announce();
            }
            if slot.closed || slot.ready.is_some() || slot.building.is_some() {
                return;
            }
            slot.building = Some(slot.generation);
            slot.generation
        };
        let this = self.clone();
        tokio::spawn(async move {
            let build = this.clone();
            let made = tokio::task::spawn_blocking(move || build.build(generation))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(e) = this.install(generation, made) {
                tracing::info!("no session prepared ahead of the next call: {e}");
            }
        });
    }

    /// Gives back the pipeline of a call that ended, or a prepared session no
    /// call started: it waits for the next call again (building and tearing
    /// down a pipeline costs a call most of its CPU). A pipeline that cannot
    /// serve again (another codec or settings, video, SRTP, a failure) goes, and
    /// another is prepared.
    fn give_back(&self, ready: Ready) {
        ready.tag.id.store(0, Ordering::SeqCst);
        let preferred = self.preferred();
        let generation = {
            let mut slot = lock(&self.slot);
            let fits = !slot.closed
                && slot.ready.is_none()
                && slot.building.is_none()
                && ready.generation == slot.generation
                && ready.usable()
                && preferred == Some(ready.pipeline.encoding());
            if fits {
                slot.building = Some(slot.generation);
            }
            fits.then_some(slot.generation)
        };
        let Some(generation) = generation else {
            let this = self.clone();
            tokio::spawn(async move {
                let _ = tokio::task::spawn_blocking(move || drop(ready)).await;
                this.ensure();
            });
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let made = tokio::task::spawn_blocking(move || {
                let mut ready = ready;
                ready.pipeline.recycle().map(|()| ready)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match this.install(generation, made) {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!("a call's pipeline is not reused: {e}");
                    this.ensure();
                }
            }
        });
    }

    /// Puts a session prepared in `generation` in the slot, unless the settings
    /// changed meanwhile or the service stops (then it goes).
    fn install(&self, generation: u64, made: Result<Ready, String>) -> Result<(), String> {
        let (result, stale) = {
            let mut slot = lock(&self.slot);
            if slot.building == Some(generation) {
                slot.building = None;
            }
            match made {
                Ok(ready) if slot.generation == generation && !slot.closed => {
                    tracing::debug!(port = ready.port(), "a session is prepared");
                    slot.ready = Some(ready);
                    (Ok(()), None)
                }
                Ok(ready) => (Ok(()), Some(ready)),
                Err(e) => (Err(e), None),
            }
        };
        self.done.notify_waiters();
        match stale {
            Some(stale) => discard(stale),
            None if result.is_ok() => self.announce(),
            None => {}
        }
        result
    }

    /// Builds a prepared session (on a blocking thread).
    fn build(&self, generation: u64) -> Result<Ready, String> {
        let encoding = self
            .preferred()
            .ok_or("no configured audio codec is available")?;
        let ports = self.bind().map_err(|e| e.to_string())?;
        let (tag, events) = self.tagged(0);
        let stream = session::template(encoding, ports.port);
        let pipeline = CallPipeline::prepare(
            &stream,
            ports,
            session::CallIo {
                mic: &self.mic,
                tone: self.tone,
                speaker: &self.speaker,
                rtp_timeout: self.rtp_timeout,
                latching: lock(&self.media).rtp_latching,
            },
            events,
        )?;
        Ok(Ready {
            pipeline,
            tag,
            generation,
        })
    }

    /// The event routing of a pipeline that can wait for a call between calls:
    /// its events go to session `id` (0 while it waits, when a failure marks it
    /// broken), and the tag moves them to the next call's session.
    fn tagged(&self, id: u32) -> (Tag, impl Fn(Event) + Send + Sync + Clone + 'static) {
        let id = Arc::new(AtomicU32::new(id));
        let broken = Arc::new(AtomicBool::new(false));
        let (tag, flag, events) = (id.clone(), broken.clone(), self.events.clone());
        let route = move |event| match tag.load(Ordering::SeqCst) {
            0 => {
                if let Event::Failed(why) = event {
                    tracing::warn!("the prepared session failed: {why}");
                    flag.store(true, Ordering::SeqCst);
                }
            }
            id => {
                let _ = events.send((id, event));
            }
        };
        (Tag { id, broken }, route)
    }

    /// The settings' generation now.
    fn generation(&self) -> u64 {
        lock(&self.slot).generation
    }

    /// Discards the prepared session and any under way; with `again`, prepares
    /// another once the old one has let its ports go, else prepares no more
    /// (the service stops).
    fn renew(&self, again: bool) -> tokio::task::JoinHandle<()> {
        let old = {
            let mut slot = lock(&self.slot);
            slot.generation += 1;
            slot.building = None;
            slot.closed = !again;
            slot.ready.take()
        };
        self.done.notify_waiters();
        let this = self.clone();
        tokio::spawn(async move {
            if let Some(old) = old {
                let _ = tokio::task::spawn_blocking(move || drop(old)).await;
                this.announce();
            }
            if again {
                this.ensure();
            }
        })
    }

    /// Waits until the preparation under way (if any) has ended, for at most
    /// `patience`; returns whether one was under way.
    async fn wait_for_preparation(&self, patience: Duration) -> bool {
        let ended = self.done.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if lock(&self.slot).building.is_none() {
            return false;
        }
        let _ = tokio::time::timeout(patience, ended).await;
        true
    }

    /// Has `PreparedPorts`' change announced.
    fn announce(&self) {
        self.changed.notify_one();
    }

    /// The ports of the prepared session, for `PreparedPorts`.
    fn ports_now(&self) -> Vec<u16> {
        lock(&self.slot).ready.iter().map(Ready::port).collect()
    }
}

/// Emits `PropertiesChanged` for `PreparedPorts` whenever it may have changed,
/// one change after the other (so the last one is the state), without the
/// object server's locks: a method call in progress may be adding a session
/// object.
async fn announce_prepared(preparer: Preparer, conn: zbus::Connection) {
    let interface = zbus::names::InterfaceName::from_static_str_unchecked(
        doorphone_interfaces::media::INTERFACE,
    );
    let Ok(emitter) = SignalEmitter::new(&conn, doorphone_interfaces::media::OBJECT_PATH) else {
        return;
    };
    let mut announced: Option<Vec<u16>> = None;
    loop {
        preparer.changed.notified().await;
        let now = preparer.ports_now();
        if announced.as_ref() == Some(&now) {
            continue;
        }
        let changed =
            HashMap::from([("PreparedPorts", zbus::zvariant::Variant::from(now.clone()))]);
        if let Err(e) = zbus::fdo::Properties::properties_changed(
            &emitter,
            interface.clone(),
            changed,
            std::borrow::Cow::Borrowed(&[]),
        )
        .await
        {
            tracing::warn!("cannot announce the prepared ports: {e}");
        }
        announced = Some(now);
    }
}

/// Drops a prepared session off the async threads (stopping a pipeline waits).
fn discard(ready: Ready) {
    tokio::task::spawn_blocking(move || drop(ready));
}

/// Whether a session other than `id` has a pipeline that will wait for the
/// next call once its own ends. A call that comes in while the last one is
/// still being hung up builds its own pipeline; the last call's then serves
/// the next, so back-to-back calls alternate between two pipelines instead of
/// building one each.
fn comes_back(sessions: &Mutex<HashMap<u32, Arc<Mutex<Session>>>>, id: u32) -> bool {
    lock(sessions)
        .iter()
        .any(|(other, s)| *other != id && lock(s).reusable.is_some())
}

/// Where a new session's media comes from.
enum Claim {
    Prepared(Box<Ready>),
    Ports(PortPair),
}

impl Claim {
    fn port(&self) -> u16 {
        match self {
            Claim::Prepared(r) => r.port(),
            Claim::Ports(p) => p.port,
        }
    }

    fn into_parts(self) -> (Option<PortPair>, Option<Ready>) {
        match self {
            Claim::Prepared(r) => (None, Some(*r)),
            Claim::Ports(p) => (Some(p), None),
        }
    }
}

/// The service's object. Its methods take `&self` and the bus runs them side by
/// side: each session sits behind its own lock, held only for the moment a
/// method reads or changes it, so one session's slow work (a `SendDtmf` takes
/// about 350 ms a digit) never holds up another's set-up or end.
pub struct MediaService {
    options: Options,
    media: Arc<Mutex<Media>>,
    preparer: Preparer,
    speaker: Arc<Speaker>,
    sessions: Arc<Mutex<HashMap<u32, Arc<Mutex<Session>>>>>,
    pages: Mutex<Pages>,
    /// Session and stream numbers, never reused while the service runs.
    next_id: AtomicU32,
    events: EventSender,
}

/// The streams `PlayStream` started.
#[derive(Default)]
struct Pages {
    streams: HashMap<u32, crate::stream::PageStream>,
    /// The bus connection that started each stream.
    owners: HashMap<u32, String>,
    /// The stream that has the speaker to itself, if any.
    solo: Option<u32>,
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
        SdpError::Encryption(m) => Error::Encryption(m),
        other => Error::InvalidSdp(other.to_string()),
    }
}

impl MediaService {
    /// The service; `conn` (when given) is where it will be served, for the
    /// signals of its background work (it is then made in a tokio runtime).
    /// [`MediaService::prepare`] starts keeping a session prepared ahead of the
    /// next call.
    pub fn new(
        options: Options,
        media: Arc<Mutex<Media>>,
        speaker: Arc<Speaker>,
        events: EventSender,
        conn: Option<zbus::Connection>,
    ) -> MediaService {
        let bounds = media.lock().unwrap_or_else(|e| e.into_inner()).rtp_ports;
        let preparer = Preparer {
            slot: Arc::default(),
            done: Arc::default(),
            media: media.clone(),
            ports: Arc::new(Mutex::new((
                PortRange::new(bounds[0] as u16, bounds[1] as u16),
                bounds,
            ))),
            mic: options.audio_source.clone(),
            tone: options.test_tone,
            rtp_timeout: options.rtp_timeout,
            speaker: speaker.clone(),
            events: events.clone(),
            changed: Arc::default(),
        };
        if let Some(conn) = conn {
            tokio::spawn(announce_prepared(preparer.clone(), conn));
        }
        MediaService {
            options,
            preparer,
            media,
            speaker,
            sessions: Arc::default(),
            pages: Mutex::default(),
            next_id: AtomicU32::new(1),
            events,
        }
    }

    /// Binds a port pair from the configured range (which follows the config).
    fn bind_ports(&self) -> Result<PortPair, Error> {
        self.preparer.bind()
    }

    /// Starts keeping a session prepared ahead of the next call (in the
    /// background).
    pub fn prepare(&self) {
        self.preparer.ensure();
    }

    /// The `media` settings changed: the prepared session is discarded and one
    /// is prepared from the new settings.
    pub fn media_changed(&self) {
        self.preparer.renew(true);
    }

    /// The service stops: the prepared session goes, with its ports (when the
    /// returned task ends), and no other is prepared.
    pub fn close(&self) -> tokio::task::JoinHandle<()> {
        self.preparer.renew(false)
    }

    /// Media for a new session: a fresh port pair, or, when the range has none
    /// left, the prepared session's (waiting for a preparation under way to
    /// end); `launch` builds a pipeline for another codec on its ports.
    async fn claim(&self) -> Result<Claim, Error> {
        let mut waited = false;
        loop {
            let error = match self.bind_ports() {
                Ok(ports) => return Ok(Claim::Ports(ports)),
                Err(e) => e,
            };
            if let Some(ready) = self.preparer.take() {
                return Ok(Claim::Prepared(Box::new(ready)));
            }
            if waited
                || !self
                    .preparer
                    .wait_for_preparation(Duration::from_secs(2))
                    .await
            {
                return Err(error);
            }
            waited = true;
        }
    }

    fn caps(&self, options: &HashMap<String, OwnedVariant>) -> LocalCaps {
        let want_video = options
            .get("video")
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false);
        let media = self.media.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut caps = LocalCaps::from_config(&media, want_video);
        caps.encryption = sdp::Encryption::from_option(
            options
                .get("encryption")
                .and_then(|v| <&str>::try_from(v).ok()),
        );
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
        lock(&self.sessions)
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
        let (stream, ports, prepared, video_parts) = {
            let mut s = lock(handle);
            let stream = s
                .negotiated
                .as_ref()
                .and_then(|n| n.audio.clone())
                .ok_or_else(|| Error::InvalidSdp("no audio stream was negotiated".into()))?;
            let (ports, prepared) = (s.ports.take(), s.prepared.take());
            if ports.is_none() && prepared.is_none() {
                return Err(Error::Failed("the session has no ports".into()));
            }
            let video = s.negotiated.as_ref().and_then(|n| n.video.clone());
            (stream, ports, prepared, video.zip(s.video_ports.take()))
        };
        let handle = handle.clone();
        let camera = self.options.camera.clone();
        let mic = self.options.audio_source.clone();
        let tone = self.options.test_tone;
        let rtp_timeout = self.options.rtp_timeout;
        let latching = lock(&self.media).rtp_latching;
        let speaker = self.speaker.clone();
        let report = self.events.clone();
        // A pipeline built for this call can wait for the next one once the
        // call ends, as the prepared session does.
        let (tag, events) = self.preparer.tagged(id);
        let generation = self.preparer.generation();
        let build = move || {
            let sending = stream.direction.sends() && !lock(&handle).held;
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
                let ports = match prepared {
                    // The prepared session carries the call: it only starts.
                    Some(ready)
                        if ready.usable()
                            && ready.pipeline.encoding() == stream.codec.encoding
                            && stream.crypto.is_none() =>
                    {
                        ready.tag.id.store(id, Ordering::SeqCst);
                        let mut pipeline = ready.pipeline;
                        pipeline.play(&stream, video, sending)?;
                        tracing::debug!(session = id, "media from the prepared session");
                        return Ok((pipeline, (ready.tag, ready.generation), true));
                    }
                    // Another codec, SRTP (or a broken pipeline): its ports, a new pipeline.
                    Some(ready) => ready
                        .pipeline
                        .release()
                        .ok_or("the prepared session has no ports")?,
                    None => ports.ok_or("the session has no ports")?,
                };
                CallPipeline::start(
                    &stream,
                    ports,
                    session::CallIo {
                        mic: &mic,
                        tone,
                        speaker: &speaker,
                        rtp_timeout,
                        latching,
                    },
                    video,
                    sending,
                    events,
                )
                .map(|pipeline| (pipeline, (tag, generation), false))
            })();
            let mut s = lock(&handle);
            let prepared = match result {
                // Stopped while starting: the pipeline goes with this scope.
                Ok(_) if s.state == state::STOPPED => false,
                Ok((pipeline, reusable, prepared)) => {
                    // The description may have changed while the pipeline
                    // started (the answer to a re-offer, in the ACK of a
                    // re-INVITE that came at once): media follows the one the
                    // session has now, as `SetRemote` does for a running call.
                    let now = s.negotiated.as_ref().and_then(|n| n.audio.as_ref());
                    let now = now.unwrap_or(&stream);
                    if now != &stream {
                        pipeline.follow(now);
                    }
                    pipeline.set_sending(now.direction.sends() && !s.held);
                    s.pipeline = Some(Arc::new(pipeline));
                    s.reusable = Some(reusable);
                    if s.state == state::PREPARED {
                        s.state = state::ACTIVE;
                    }
                    prepared
                }
                Err(e) => {
                    let _ = report.send((id, Event::Failed(e)));
                    false
                }
            };
            s.started.notify_all();
            prepared
        };
        let preparer = self.preparer.clone();
        let sessions = self.sessions.clone();
        tokio::spawn(async move {
            replied.await;
            let prepared = tokio::task::spawn_blocking(build).await.unwrap_or(false);
            // The call's media first, then the next call's: a pipeline that
            // comes back when its call ends (this call's, or that of a call
            // still on), else a new one now.
            if !prepared && !comes_back(&sessions, id) {
                preparer.ensure();
            }
        });
        Ok(())
    }

    async fn add_session(
        &self,
        server: &zbus::ObjectServer,
        session: Session,
    ) -> Result<(u32, OwnedObjectPath, Arc<Mutex<Session>>), Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
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
        lock(&self.sessions).insert(id, session.clone());
        Ok((id, path, session))
    }

    /// Ends a session: pipeline stopped, ports freed, object removed.
    /// Stops stream `id`; false when there is none.
    async fn end_stream(&self, id: u32) -> bool {
        let playing = {
            let mut pages = lock(&self.pages);
            let Some(playing) = pages.streams.remove(&id) else {
                return false;
            };
            pages.owners.remove(&id);
            if pages.solo == Some(id) {
                pages.solo = None;
                self.speaker.solo(None);
            }
            playing
        };
        // Stopping waits for streaming threads: not on the bus's thread.
        let _ = tokio::task::spawn_blocking(move || drop(playing)).await;
        true
    }

    /// A bus connection went away (its service stopped or crashed): the
    /// sessions and streams it started stop, so no call keeps sending to a
    /// peer nobody speaks for, and no page keeps the speaker.
    pub async fn forget(&self, server: &zbus::ObjectServer, conn: &zbus::Connection, owner: &str) {
        let sessions: Vec<u32> = lock(&self.sessions)
            .iter()
            .filter(|(_, s)| lock(s).owner.as_deref() == Some(owner))
            .map(|(id, _)| *id)
            .collect();
        let streams: Vec<u32> = lock(&self.pages)
            .owners
            .iter()
            .filter(|(_, o)| o.as_str() == owner)
            .map(|(id, _)| *id)
            .collect();
        if sessions.is_empty() && streams.is_empty() {
            return;
        }
        tracing::info!(
            owner,
            ?sessions,
            ?streams,
            "their client left the bus: stopping"
        );
        // Streams first: once a session's end is signalled, nothing the client
        // started plays on.
        for id in streams {
            self.end_stream(id).await;
        }
        let emitter = SignalEmitter::new(conn, crate::service::MEDIA_PATH).ok();
        for id in sessions {
            self.end(server, id).await;
            if let Some(emitter) = &emitter {
                let _ = Self::session_state_changed(
                    emitter,
                    session_path(id).as_ref(),
                    state::STOPPED,
                    "its client left the bus",
                )
                .await;
            }
        }
    }

    pub async fn end(&self, server: &zbus::ObjectServer, id: u32) -> bool {
        let removed = lock(&self.sessions).remove(&id);
        let Some(session) = removed else {
            return false;
        };
        let (pipeline, prepared, reusable) = {
            let mut s = lock(&session);
            s.state = state::STOPPED;
            s.started.notify_all();
            s.ports = None;
            s.video_ports = None;
            (s.pipeline.take(), s.prepared.take(), s.reusable.take())
        };
        // The prepared pipeline that carried the call (unless a method still
        // holds it, as a `SendDtmf` under way does), or the one it was to start.
        let (reused, pipeline) = match (pipeline, reusable) {
            (Some(pipeline), Some((tag, generation))) => match Arc::try_unwrap(pipeline) {
                Ok(pipeline) => (
                    Some(Ready {
                        pipeline,
                        tag,
                        generation,
                    }),
                    None,
                ),
                Err(shared) => (None, Some(shared)),
            },
            (pipeline, _) => (prepared, pipeline),
        };
        if let Some(pipeline) = pipeline {
            // Stopping waits for streaming threads: not on the bus's thread.
            let _ = tokio::task::spawn_blocking(move || drop(pipeline)).await;
        }
        let _ = server.remove::<SessionObject, _>(&session_path(id)).await;
        match reused {
            Some(ready) => self.preparer.give_back(ready),
            // Ports and devices are free again: a preparation that found none
            // may succeed now.
            None => self.preparer.ensure(),
        }
        true
    }
}

#[interface(name = "org.doorphone.Media1")]
impl MediaService {
    /// The RTP ports (RTCP on the next) of the session prepared ahead of the next
    /// call, its pipeline built and sending nothing; empty while none is ready.
    #[zbus(property)]
    async fn prepared_ports(&self) -> Vec<u16> {
        self.preparer.ports_now()
    }

    /// A new session and our SDP offer. Options: `video` (b), `address` (s),
    /// `encryption` (s): `optional` or `mandatory` SRTP with SDES keys, absent for
    /// plain RTP.
    #[zbus(out_args("session", "sdp"))]
    async fn create_offer(
        &self,
        options: HashMap<String, OwnedVariant>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<(OwnedObjectPath, String), Error> {
        let caps = self.caps(&options);
        // The prepared session when there is one: whether its codec is the one
        // the answer picks is known at `SetRemote`.
        self.preparer.wait_for_preparation(PREPARATION_WAIT).await;
        let claim = match self.preparer.take() {
            Some(ready) => Claim::Prepared(Box::new(ready)),
            None => self.claim().await?,
        };
        let video_ports = if caps.want_video {
            Some(self.bind_ports()?)
        } else {
            None
        };
        let transport =
            self.transport(&options, claim.port(), video_ports.as_ref().map(|p| p.port));
        let (local, text) = sdp::Local::offer(&caps, &transport).map_err(sdp_error)?;
        let (ports, prepared) = claim.into_parts();
        let (_, path, _) = self
            .add_session(
                server,
                Session {
                    local,
                    negotiated: None,
                    pipeline: None,
                    ports,
                    prepared,
                    reusable: None,
                    video_ports,
                    state: state::PREPARED,
                    held: false,
                    started: Arc::default(),
                    dialling: Arc::default(),
                    local_rtp: transport,
                    owner: sender(&header),
                },
            )
            .await?;
        Ok((path, text))
    }

    /// A new session answering `offer`. Options as for `CreateOffer`.
    #[zbus(out_args("session", "sdp"))]
    async fn create_answer(
        &self,
        offer: &str,
        options: HashMap<String, OwnedVariant>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<(OwnedObjectPath, String), Error> {
        let remote = sdp::parse(offer).map_err(sdp_error)?;
        let caps = self.caps(&options);
        let video_ports = if caps.want_video && remote.has_video() {
            Some(self.bind_ports()?)
        } else {
            None
        };
        let video_port = video_ports.as_ref().map(|p| p.port);
        // The prepared session serves the call when the call gets its codec.
        // One under way (often the last call's pipeline made ready again) is
        // sooner ready than a new pipeline.
        self.preparer.wait_for_preparation(PREPARATION_WAIT).await;
        let mut answered = None;
        if let Some((port, encoding)) = self.preparer.peek() {
            let transport = self.transport(&options, port, video_port);
            let (local, negotiated, text) =
                sdp::Local::answer(&caps, &transport, &remote).map_err(sdp_error)?;
            // The prepared pipeline is plain RTP: an SRTP call gets its own.
            let fits = negotiated
                .audio
                .as_ref()
                .is_some_and(|a| a.codec.encoding == encoding && a.crypto.is_none());
            if fits && let Some(ready) = self.preparer.take() {
                answered = Some((
                    Claim::Prepared(Box::new(ready)),
                    transport,
                    local,
                    negotiated,
                    text,
                ));
            }
        }
        let (claim, transport, local, negotiated, text) = match answered {
            Some(answered) => answered,
            None => {
                let claim = self.claim().await?;
                let transport = self.transport(&options, claim.port(), video_port);
                match sdp::Local::answer(&caps, &transport, &remote) {
                    Ok((local, negotiated, text)) => (claim, transport, local, negotiated, text),
                    Err(e) => {
                        if let Claim::Prepared(ready) = claim {
                            discard(*ready);
                        }
                        return Err(sdp_error(e));
                    }
                }
            }
        };
        let (ports, prepared) = claim.into_parts();
        let session = Session {
            local,
            negotiated: Some(negotiated),
            pipeline: None,
            ports,
            prepared,
            reusable: None,
            video_ports,
            state: state::PREPARED,
            held: false,
            started: Arc::default(),
            dialling: Arc::default(),
            local_rtp: transport,
            owner: sender(&header),
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
        &self,
        session: ObjectPath<'_>,
        sdp: &str,
    ) -> Result<ResponseDispatchNotifier<String>, Error> {
        let (id, handle) = self.session(&session)?;
        let remote = sdp::parse(sdp).map_err(sdp_error)?;
        let mut s = lock(&handle);
        if s.local.awaiting_answer() {
            let negotiated = s.local.accept_answer(&remote).map_err(sdp_error)?;
            let first = s.negotiated.is_none();
            // The answer to a re-offer may move the peer (a re-INVITE without
            // SDP, answered in its ACK): media follows it.
            if let (Some(p), Some(audio)) = (&s.pipeline, &negotiated.audio) {
                p.follow(audio);
            }
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
            p.follow(audio);
        }
        s.negotiated = Some(negotiated);
        Ok(ResponseDispatchNotifier::new(text).0)
    }

    /// Holds the session; returns the re-offer to send.
    #[zbus(out_args("offer"))]
    async fn hold(&self, session: ObjectPath<'_>) -> Result<String, Error> {
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
    async fn resume(&self, session: ObjectPath<'_>) -> Result<String, Error> {
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
        &self,
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
        &self,
        address: &str,
        port: u16,
        codec: &str,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] header: zbus::message::Header<'_>,
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut pages = lock(&self.pages);
            if solo {
                stream.with_input(|input| self.speaker.solo(Some(input)));
                pages.solo = Some(id);
            }
            pages.streams.insert(id, stream);
            if let Some(owner) = sender(&header) {
                pages.owners.insert(id, owner);
            }
        }
        tracing::info!(stream = id, %address, port, codec, solo, "playing a stream");
        Ok(stream_path(id))
    }

    /// Stops a stream that `PlayStream` started.
    async fn stop_stream(&self, stream: ObjectPath<'_>) -> Result<(), Error> {
        let id = stream
            .as_str()
            .strip_prefix("/org/doorphone/Media1/stream/")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::NotFound(format!("{stream}: not a stream")))?;
        if !self.end_stream(id).await {
            return Err(Error::NotFound(format!("{stream}: no such stream")));
        }
        Ok(())
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
    async fn send_dtmf(&self, session: ObjectPath<'_>, digits: &str) -> Result<(), Error> {
        let (_, handle) = self.session(&session)?;
        if let Some(bad) = digits.chars().find(|d| crate::dtmf::event(*d).is_none()) {
            return Err(Error::Failed(format!("{bad:?} is not a DTMF digit")));
        }
        let dialling = lock(&handle).dialling.clone();
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
        let _turn = dialling.lock().await;
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

/// Turns sessions' events into signals; a failed session is stopped. `iface`
/// is looked up once, before any call: `ObjectServer::interface` holds the
/// object tree while it waits for the service, which a call adding a session
/// object would wait for in turn.
pub async fn forward_events(
    conn: zbus::Connection,
    iface: zbus::object_server::InterfaceRef<MediaService>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<(u32, Event)>,
) {
    let server = conn.object_server();
    while let Some((id, event)) = events.recv().await {
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
                iface.get().await.end(server, id).await;
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
    let session = lock(&iface.get().await.sessions).get(&id).cloned();
    if let Some(s) = session {
        lock(&s).state = new;
    }
}
