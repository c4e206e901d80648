//! One call's pipeline: the microphone encoded and sent as RTP, the peer's RTP
//! decoded into the speaker, RFC 4733 DTMF both ways, RTCP, through `rtpbin`.
//!
//! The RTP and RTCP sockets are bound before the SDP offers them and are shared by
//! `udpsrc` and `udpsink`, so the peer's packets and ours use the same ports
//! (symmetric RTP, which NATs and SBCs expect).
//!
//! With SRTP (a negotiated [`Crypto`]), rtpbin asks for an encoder and a decoder per
//! session: `srtpenc` after the payloaders and the DTMF mux (RTP and RTCP out),
//! `srtpdec` between the sockets and the RTP session (RTP and RTCP in), so the jitter
//! buffer, the depayloaders and the DTMF detector only see what the peer's key
//! authenticated. The source gate stays on the sockets, before `srtpdec`.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::devices::{self, AudioSource, Speaker, SpeakerInput};
use crate::dtmf;
use crate::ports::PortPair;
use crate::sdp::{Crypto, Encoding, Stream};
use crate::silence::{Silence, Watcher};
use crate::trust::{self, Gate};

/// What a session reports from GStreamer's threads.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Dtmf(char),
    /// No RTP from the peer for the RTP timeout.
    Timeout,
    /// RTP arrives again after a timeout.
    Flowing,
    Failed(String),
}

/// Packet and byte counters, updated by pad probes.
#[derive(Debug, Default)]
pub struct Counters {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// RTP and RTCP from other sources than the call's peer, dropped.
    pub packets_rejected: AtomicU64,
}

impl Counters {
    fn reset(&self) {
        for counter in [
            &self.packets_sent,
            &self.bytes_sent,
            &self.packets_received,
            &self.bytes_received,
            &self.packets_rejected,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// What the pipeline added for one of the peer's streams (an SSRC and payload
/// type that `rtpbin` demultiplexed): played or discarded.
struct Received {
    session: u32,
    ssrc: u32,
    elements: Vec<gst::Element>,
}

/// Encodings this build can carry (H.264 from the camera, audio through `elements`).
pub fn supported(encoding: Encoding) -> bool {
    encoding == Encoding::H264 || elements(encoding).is_some()
}

/// Loads the plugins a call uses, so the first call does not pay for it.
/// Plugins that no call uses stay unloaded.
pub fn preload() {
    let mut factories = vec![
        "rtpbin",
        "udpsrc",
        "udpsink",
        "rtpdtmfmux",
        "rtpdtmfsrc",
        "audioconvert",
        "audioresample",
        "capsfilter",
        "appsink",
    ];
    for encoding in [
        Encoding::Pcmu,
        Encoding::Pcma,
        Encoding::G722,
        Encoding::Opus,
    ] {
        if let Some(els) = elements(encoding) {
            factories.extend([els.encoder, els.payloader, els.depayloader, els.decoder]);
        }
    }
    for name in factories {
        if gst::ElementFactory::find(name)
            .and_then(|f| f.load().ok())
            .is_none()
        {
            tracing::warn!("the GStreamer element {name} is not installed");
        }
    }
}

/// The video half of a call: the camera's H.264 sent to the peer.
pub struct VideoLeg {
    pub stream: Stream,
    pub ports: PortPair,
    pub feed: crate::camera::VideoFeed,
}

struct Elements {
    encoder: &'static str,
    payloader: &'static str,
    depayloader: &'static str,
    decoder: &'static str,
}

fn elements(encoding: Encoding) -> Option<Elements> {
    Some(match encoding {
        Encoding::Pcmu => Elements {
            encoder: "mulawenc",
            payloader: "rtppcmupay",
            depayloader: "rtppcmudepay",
            decoder: "mulawdec",
        },
        Encoding::Pcma => Elements {
            encoder: "alawenc",
            payloader: "rtppcmapay",
            depayloader: "rtppcmadepay",
            decoder: "alawdec",
        },
        Encoding::G722 => Elements {
            encoder: crate::g722::ENCODER_NAME,
            payloader: "rtpg722pay",
            depayloader: "rtpg722depay",
            decoder: crate::g722::DECODER_NAME,
        },
        Encoding::Opus => Elements {
            encoder: "opusenc",
            payloader: "rtpopuspay",
            depayloader: "rtpopusdepay",
            decoder: "opusdec",
        },
        _ => return None,
    })
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| format!("{factory}: {e}"))
}

fn gio_socket(socket: &std::net::UdpSocket) -> Result<gio::Socket, String> {
    let fd: OwnedFd = socket
        .try_clone()
        .map_err(|e| format!("socket: {e}"))?
        .into();
    gio::Socket::from_fd(fd).map_err(|e| format!("socket: {e}"))
}

/// The caps of the peer's RTP for payload type `pt`.
fn rtp_caps(stream: &Stream, pt: u8) -> gst::Caps {
    if Some(pt) == stream.telephone_event {
        return gst::Caps::builder("application/x-rtp")
            .field("media", "audio")
            .field("payload", i32::from(pt))
            .field("clock-rate", stream.codec.clock_rate as i32)
            .field("encoding-name", "TELEPHONE-EVENT")
            .build();
    }
    let name = match stream.codec.encoding {
        Encoding::Opus => "OPUS",
        other => other.name(),
    };
    gst::Caps::builder("application/x-rtp")
        .field("media", "audio")
        .field("payload", i32::from(stream.codec.pt))
        .field("clock-rate", stream.codec.clock_rate as i32)
        .field("encoding-name", name)
        .build()
}

/// rtpbin's sessions that SRTP can protect: 0 is audio, 1 is video.
const SESSIONS: usize = 2;

/// A call's SRTP: each session's negotiated crypto and the `srtpenc`/`srtpdec`
/// made for it when rtpbin asked (the same element serves RTP and RTCP).
#[derive(Default)]
struct Srtp {
    crypto: [Option<Crypto>; SESSIONS],
    encoders: [Option<gst::Element>; SESSIONS],
    decoders: [Option<gst::Element>; SESSIONS],
}

type SharedSrtp = Arc<Mutex<Srtp>>;

/// Reads the audio session's RFC 4733 digits from a (decrypted) RTP packet.
type DtmfReader = Arc<dyn Fn(&gst::BufferRef) + Send + Sync>;

fn key_buffer(key: &crate::sdp::Key) -> gst::Buffer {
    gst::Buffer::from_slice(key.bytes().to_vec())
}

fn set_encoder_keys(encoder: &gst::Element, crypto: &Crypto) {
    encoder.set_property("key", key_buffer(&crypto.send));
    encoder.set_property_from_str("rtp-cipher", crypto.suite.cipher());
    encoder.set_property_from_str("rtp-auth", crypto.suite.rtp_auth());
    encoder.set_property_from_str("rtcp-cipher", crypto.suite.cipher());
    encoder.set_property_from_str("rtcp-auth", crypto.suite.rtcp_auth());
}

/// The peer's key for one session, as `srtpdec` asks for it per SSRC.
fn receive_caps(crypto: &Crypto) -> gst::Caps {
    gst::Caps::builder("application/x-srtp")
        .field("srtp-key", key_buffer(&crypto.receive))
        .field("srtp-cipher", crypto.suite.cipher())
        .field("srtp-auth", crypto.suite.rtp_auth())
        .field("srtcp-cipher", crypto.suite.cipher())
        .field("srtcp-auth", crypto.suite.rtcp_auth())
        .build()
}

/// The `srtpenc` or `srtpdec` of `session`, made at rtpbin's first request; none
/// when the session is plain RTP. rtpbin takes the encoder's pads for the session
/// as it finds them: its RTP (`rtcp`: RTCP) sink pad is requested here.
fn srtp_element(
    srtp: &SharedSrtp,
    session: usize,
    encoder: bool,
    rtcp: bool,
    dtmf: &DtmfReader,
) -> Result<Option<gst::Element>, String> {
    let mut s = srtp.lock().unwrap_or_else(|e| e.into_inner());
    let Some(crypto) = s.crypto.get(session).cloned().flatten() else {
        return Ok(None);
    };
    let slot = if encoder {
        &mut s.encoders[session]
    } else {
        &mut s.decoders[session]
    };
    let element = if let Some(element) = slot {
        element.clone()
    } else if encoder {
        let element = make("srtpenc")?;
        set_encoder_keys(&element, &crypto);
        element
    } else {
        let element = make("srtpdec")?;
        let weak = Arc::downgrade(srtp);
        element.connect("request-key", false, move |_| {
            let caps = weak.upgrade().and_then(|srtp| {
                let s = srtp.lock().unwrap_or_else(|e| e.into_inner());
                s.crypto[session].as_ref().map(receive_caps)
            });
            Some(caps.to_value())
        });
        if session == 0 {
            let dtmf = dtmf.clone();
            element
                .static_pad("rtp_src")
                .ok_or("srtpdec has no rtp_src pad")?
                .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if let Some(buffer) = info.buffer() {
                        dtmf(buffer);
                    }
                    gst::PadProbeReturn::Ok
                });
        }
        element
    };
    *slot = Some(element.clone());
    if encoder {
        let pad = format!("{}_sink_{session}", if rtcp { "rtcp" } else { "rtp" });
        if element.static_pad(&pad).is_none() {
            element
                .request_pad_simple(&pad)
                .ok_or_else(|| format!("srtpenc gives no {pad} pad"))?;
        }
    }
    Ok(Some(element))
}

/// Hands rtpbin the SRTP elements of the sessions that have a crypto.
fn connect_srtp(rtpbin: &gst::Element, srtp: &SharedSrtp, dtmf: &DtmfReader) {
    for (signal, encoder, rtcp) in [
        ("request-rtp-encoder", true, false),
        ("request-rtcp-encoder", true, true),
        ("request-rtp-decoder", false, false),
        ("request-rtcp-decoder", false, true),
    ] {
        let (srtp, dtmf) = (srtp.clone(), dtmf.clone());
        rtpbin.connect(signal, false, move |args| {
            let session = args[1].get::<u32>().ok().map_or(usize::MAX, |s| s as usize);
            let element = match srtp_element(&srtp, session, encoder, rtcp, &dtmf) {
                Ok(element) => element,
                Err(e) => {
                    tracing::warn!("SRTP: {e}");
                    None
                }
            };
            Some(element.to_value())
        });
    }
}

/// The caps of what the peer sends on a session's RTP or RTCP socket.
fn incoming_caps(caps: gst::Caps, encrypted: bool) -> gst::Caps {
    if !encrypted {
        return caps;
    }
    let mut caps = caps;
    if let Some(s) = caps.make_mut().structure_mut(0) {
        match s.name().as_str() {
            "application/x-rtcp" => s.set_name("application/x-srtcp"),
            _ => s.set_name("application/x-srtp"),
        }
    }
    caps
}

pub struct CallPipeline {
    pipeline: gst::Pipeline,
    rtpbin: gst::Element,
    /// Where audio RTP and RTCP go; a re-offer may move them.
    audio_out: (gst::Element, gst::Element),
    /// The peer's audio RTP in (its caps name the payload type).
    audio_in: gst::Element,
    payloader: gst::Element,
    encoding: Encoding,
    clock_rate: u32,
    /// Whether the microphone's packets go out (hold and resume); a probe on
    /// the payloader's output drops them otherwise.
    sending: Arc<AtomicBool>,
    dtmf_src: Option<gst::Element>,
    /// The negotiated stream, as the pipeline's callbacks read it: a prepared
    /// pipeline learns it when a call takes it.
    stream: Arc<Mutex<Stream>>,
    port: u16,
    pub counters: Arc<Counters>,
    /// Which sources the peer's audio RTP and RTCP may come from.
    gate: Arc<Gate>,
    /// `media.rtp_latching`, for the video stream's gate.
    latching: bool,
    /// SRTP keys and elements; the audio session is encrypted when `encrypted`.
    srtp: SharedSrtp,
    encrypted: bool,
    speaker_input: Arc<Mutex<Option<SpeakerInput>>>,
    /// Held while the pipeline lives; given back by [`CallPipeline::release`].
    ports: Option<PortPair>,
    video: Option<(PortPair, crate::camera::VideoFeed)>,
    /// The peer's streams, as they came.
    received: Arc<Mutex<Vec<Received>>>,
    /// The peer's silence, counted while a call has the pipeline.
    silence: Watcher,
    /// Set once the pipeline reported an error or an end of stream.
    faulted: Arc<AtomicBool>,
}

/// The devices a call uses and how long the peer may stay silent.
pub struct CallIo<'a> {
    pub mic: &'a AudioSource,
    pub tone: f64,
    pub speaker: &'a Speaker,
    pub rtp_timeout: std::time::Duration,
    /// `media.rtp_latching`: take the peer's packets from where they come from.
    pub latching: bool,
}

/// A stand-in for the stream a prepared pipeline will carry: `encoding` on its
/// usual payload type with telephone-event, to nowhere until a call takes it.
pub fn template(encoding: Encoding, local_port: u16) -> Stream {
    let nowhere = std::net::SocketAddr::from(([0, 0, 0, 0], 9));
    Stream {
        codec: crate::sdp::Codec {
            encoding,
            pt: encoding.static_pt().unwrap_or(96),
            clock_rate: encoding.clock_rate(),
            channels: encoding.channels(),
            fmtp: None,
        },
        telephone_event: Some(101),
        remote_rtp: nowhere,
        remote_rtcp: nowhere,
        direction: crate::sdp::Direction::SendRecv,
        local_port,
        crypto: None,
    }
}

impl CallPipeline {
    /// Builds and starts the pipeline for a negotiated audio stream, and the
    /// camera's video when `video` is given; audio goes out when `sending`.
    pub fn start(
        stream: &Stream,
        ports: PortPair,
        io: CallIo<'_>,
        video: Option<VideoLeg>,
        sending: bool,
        events: impl Fn(Event) + Send + Sync + Clone + 'static,
    ) -> Result<CallPipeline, String> {
        let mut pipeline = CallPipeline::prepare(stream, ports, io, events)?;
        pipeline.play(stream, video, sending)?;
        Ok(pipeline)
    }

    /// Builds the pipeline for `stream`'s codec on `ports` and takes it to PAUSED:
    /// sockets, microphone and speaker input ready, nothing sent.
    /// [`CallPipeline::play`] starts it for the stream a call negotiated, which
    /// may differ from `stream` in all but the encoding.
    pub fn prepare(
        stream: &Stream,
        ports: PortPair,
        io: CallIo<'_>,
        events: impl Fn(Event) + Send + Sync + Clone + 'static,
    ) -> Result<CallPipeline, String> {
        let CallIo {
            mic,
            tone,
            speaker,
            rtp_timeout,
            latching,
        } = io;
        let els = elements(stream.codec.encoding)
            .ok_or_else(|| format!("{} is not available", stream.codec.encoding.name()))?;
        let pipeline = gst::Pipeline::with_name("call");
        let rtpbin = gst::ElementFactory::make("rtpbin")
            .property("latency", 60u32)
            .build()
            .map_err(|e| format!("rtpbin: {e}"))?;
        let shared = Arc::new(Mutex::new(stream.clone()));
        let encrypted = stream.crypto.is_some();
        let srtp: SharedSrtp = Arc::default();
        srtp.lock().unwrap_or_else(|e| e.into_inner()).crypto[0] = stream.crypto.clone();
        let dtmf_reader: DtmfReader = {
            let negotiated = shared.clone();
            let dedup = Mutex::new(dtmf::Dedup::default());
            let on_digit = events.clone();
            Arc::new(move |buffer: &gst::BufferRef| {
                let te = negotiated
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .telephone_event;
                if let Some(pt) = te {
                    let digit = dedup
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .digit(buffer, pt);
                    if let Some(d) = digit {
                        on_digit(Event::Dtmf(d));
                    }
                }
            })
        };
        connect_srtp(&rtpbin, &srtp, &dtmf_reader);

        // Sending: microphone -> encoder -> payloader -> DTMF mux -> rtpbin,
        // through a probe that drops the packets while the call is on hold.
        let rate = match stream.codec.encoding {
            Encoding::Opus => 48000,
            Encoding::G722 => 16000,
            _ => 8000,
        };
        let mic = devices::microphone(mic, tone, rate).map_err(|e| format!("microphone: {e}"))?;
        let convert = make("audioconvert")?;
        let resample = make("audioresample")?;
        let mic_caps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("audio/x-raw")
                    .field("rate", rate)
                    .field("channels", 1)
                    .build(),
            )
            .build()
            .map_err(|e| e.to_string())?;
        let encoder = make(els.encoder)?;
        let payloader = gst::ElementFactory::make(els.payloader)
            .property("pt", u32::from(stream.codec.pt))
            .build()
            .map_err(|e| format!("{}: {e}", els.payloader))?;
        // The 20 ms packets the SDP promises (a=ptime:20), whatever block size
        // the microphone delivers.
        let ptime = 20_000_000i64;
        payloader.set_property("min-ptime", ptime);
        payloader.set_property("max-ptime", ptime);
        let mux = make("rtpdtmfmux")?;
        pipeline
            .add_many([
                &rtpbin, &mic, &convert, &resample, &mic_caps, &encoder, &payloader, &mux,
            ])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([&mic, &convert, &resample, &mic_caps, &encoder, &payloader])
            .map_err(|e| format!("send chain: {e}"))?;
        payloader
            .link_pads(Some("src"), &mux, Some("sink_0"))
            .map_err(|e| format!("mux: {e}"))?;
        // Not a `valve`: a valve asks every element before it to negotiate
        // again each time it opens or shuts, which is every call.
        let sending = Arc::new(AtomicBool::new(false));
        let open = sending.clone();
        payloader
            .static_pad("src")
            .expect("a payloader has a src pad")
            .add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                move |_, _| {
                    if open.load(Ordering::Relaxed) {
                        gst::PadProbeReturn::Ok
                    } else {
                        gst::PadProbeReturn::Drop
                    }
                },
            );
        let dtmf_src = match stream.telephone_event {
            Some(pt) => {
                let src = gst::ElementFactory::make("rtpdtmfsrc")
                    .property("pt", u32::from(pt))
                    .property("clock-rate", stream.codec.clock_rate)
                    .build()
                    .map_err(|e| format!("rtpdtmfsrc: {e}"))?;
                pipeline.add(&src).map_err(|e| e.to_string())?;
                src.link_pads(Some("src"), &mux, Some("priority_sink_0"))
                    .map_err(|e| format!("dtmf mux: {e}"))?;
                Some(src)
            }
            None => None,
        };
        mux.link_pads(Some("src"), &rtpbin, Some("send_rtp_sink_0"))
            .map_err(|e| format!("rtpbin send: {e}"))?;

        let rtp_socket = gio_socket(&ports.rtp)?;
        let rtcp_socket = gio_socket(&ports.rtcp)?;
        let rtp_out = udp_sink(&rtp_socket, stream.remote_rtp)?;
        let rtcp_out = udp_sink(&rtcp_socket, stream.remote_rtcp)?;
        pipeline
            .add_many([&rtp_out, &rtcp_out])
            .map_err(|e| e.to_string())?;
        rtpbin
            .link_pads(Some("send_rtp_src_0"), &rtp_out, Some("sink"))
            .map_err(|e| format!("rtp out: {e}"))?;
        let rtcp_src = rtpbin
            .request_pad_simple("send_rtcp_src_0")
            .ok_or("rtpbin gives no RTCP pad")?;
        rtcp_src
            .link(&rtp_out_sink(&rtcp_out))
            .map_err(|e| format!("rtcp out: {e:?}"))?;

        // Receiving: sockets -> rtpbin -> depayloader -> decoder -> speaker.
        let rtp_in = udp_src(
            &rtp_socket,
            &incoming_caps(rtp_caps(stream, stream.codec.pt), encrypted),
        )?;
        let rtcp_in = udp_src(
            &rtcp_socket,
            &incoming_caps(gst::Caps::new_empty_simple("application/x-rtcp"), encrypted),
        )?;
        pipeline
            .add_many([&rtp_in, &rtcp_in])
            .map_err(|e| e.to_string())?;
        rtp_in
            .link_pads(Some("src"), &rtpbin, Some("recv_rtp_sink_0"))
            .map_err(|e| format!("rtp in: {e}"))?;
        rtcp_in
            .link_pads(Some("src"), &rtpbin, Some("recv_rtcp_sink_0"))
            .map_err(|e| format!("rtcp in: {e}"))?;

        let stream_for_map = shared.clone();
        rtpbin.connect("request-pt-map", false, move |args| {
            let session = args[1].get::<u32>().ok()?;
            let pt = args[2].get::<u32>().ok()?;
            if session == 1 {
                return Some(
                    gst::Caps::builder("application/x-rtp")
                        .field("media", "video")
                        .field("payload", pt as i32)
                        .field("clock-rate", 90000i32)
                        .field("encoding-name", "H264")
                        .build()
                        .to_value(),
                );
            }
            let stream = stream_for_map.lock().unwrap_or_else(|e| e.into_inner());
            Some(rtp_caps(&stream, u8::try_from(pt).ok()?).to_value())
        });

        let counters = Arc::new(Counters::default());
        count(&rtp_out_sink(&rtp_out), &counters, true);
        let gate = Arc::new(Gate::new(latching));
        gate.expect(
            stream.remote_rtp,
            stream.remote_rtcp,
            &payload_types(stream),
        );
        // The peer's packets are let in where they enter `rtpbin`: its pads'
        // stream locks cover the gate's decision and the packet's way in (see
        // `recycle`).
        guard_rtcp(&rtpbin_entry(&rtpbin, "recv_rtcp_sink_0"), &gate, &counters);
        let admit = gate.clone();
        let answer_to = (rtp_out.downgrade(), rtcp_out.downgrade());
        let received = counters.clone();
        let on_silence = events.clone();
        let silence = Silence::spawn(rtp_timeout, move || on_silence(Event::Timeout))
            .map_err(|e| format!("the RTP timeout's thread: {e}"))?;
        let flowing = silence.watch();
        let on_packet = events.clone();
        let plain_dtmf = (!encrypted).then(|| dtmf_reader.clone());
        rtpbin_entry(&rtpbin, "recv_rtp_sink_0").add_probe(
            gst::PadProbeType::BUFFER,
            move |_, info| {
                if let Some(buffer) = info.buffer() {
                    // Before anything reads it: the jitter buffer, the DTMF detector.
                    if !admit.admit_rtp(trust::source(buffer), buffer) {
                        received.packets_rejected.fetch_add(1, Ordering::Relaxed);
                        return REFUSED;
                    }
                    if let (Some(to), Some(rtp), Some(rtcp)) = (
                        admit.newly_latched(),
                        answer_to.0.upgrade(),
                        answer_to.1.upgrade(),
                    ) {
                        let rtcp_to =
                            std::net::SocketAddr::new(to.ip(), to.port().saturating_add(1));
                        for (sink, to) in [(&rtp, to), (&rtcp, rtcp_to)] {
                            sink.set_property("host", to.ip().to_string());
                            sink.set_property("port", i32::from(to.port()));
                        }
                    }
                    if flowing.heard() {
                        on_packet(Event::Flowing);
                    }
                    received.packets_received.fetch_add(1, Ordering::Relaxed);
                    received
                        .bytes_received
                        .fetch_add(buffer.size() as u64, Ordering::Relaxed);
                    // SRTP: the digits are read after srtpdec, from what the
                    // peer's key authenticated.
                    if let Some(read) = &plain_dtmf {
                        read(buffer);
                    }
                }
                gst::PadProbeReturn::Ok
            },
        );

        let speaker_input = Arc::new(Mutex::new(Some(
            speaker.attach().map_err(|e| format!("speaker: {e}"))?,
        )));
        let appsrc = speaker_input
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|i| i.src.clone())
            .expect("attached");
        let playing = shared.clone();
        let pipeline_weak = pipeline.downgrade();
        let depayloader = els.depayloader;
        let decoder = els.decoder;
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let streams = received.clone();
        rtpbin.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline_weak.upgrade() else {
                return;
            };
            let name = pad.name();
            // recv_rtp_src_SESSION_SSRC_PT
            let Some([session, ssrc, pt]) = name.strip_prefix("recv_rtp_src_").and_then(|rest| {
                let mut parts = rest.split('_').map(|n| n.parse::<u32>().ok());
                Some([parts.next()??, parts.next()??, parts.next()??])
            }) else {
                return;
            };
            let codec_pt = playing.lock().unwrap_or_else(|e| e.into_inner()).codec.pt;
            let result = if session == 0 && pt == u32::from(codec_pt) {
                link_playback(&pipeline, pad, depayloader, decoder, &appsrc)
            } else {
                link_discard(&pipeline, pad)
            };
            match result {
                Ok(elements) => streams
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Received {
                        session,
                        ssrc,
                        elements,
                    }),
                Err(e) => tracing::warn!("cannot play the received stream: {e}"),
            }
        });

        let on_bus = events.clone();
        let faulted = Arc::new(AtomicBool::new(false));
        let fault = faulted.clone();
        let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
        bus.set_sync_handler(move |_, message| {
            match message.view() {
                gst::MessageView::Error(err) => {
                    fault.store(true, Ordering::SeqCst);
                    on_bus(Event::Failed(format!(
                        "{}: {}",
                        err.src().map(|s| s.name().to_string()).unwrap_or_default(),
                        err.error()
                    )));
                }
                // Live sources do not end: an end of stream means a device went away.
                gst::MessageView::Eos(_) => {
                    fault.store(true, Ordering::SeqCst);
                    on_bus(Event::Failed("the media ended (a device went away)".into()));
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });

        // Nothing leaves before a call has the pipeline: live sources produce
        // nothing before PLAYING, and nothing is sent besides. PAUSED has the
        // devices open and every element ready to run, so a call only starts
        // the clock.
        pipeline
            .set_state(gst::State::Paused)
            .map_err(|e| format!("the call pipeline does not get ready: {e}"))?;
        Ok(CallPipeline {
            pipeline,
            rtpbin,
            audio_out: (rtp_out, rtcp_out),
            audio_in: rtp_in,
            payloader,
            encoding: stream.codec.encoding,
            clock_rate: stream.codec.clock_rate,
            sending,
            dtmf_src,
            stream: shared,
            port: ports.port,
            counters,
            gate,
            latching,
            srtp,
            encrypted,
            speaker_input,
            ports: Some(ports),
            video: None,
            received,
            silence,
            faulted,
        })
    }

    /// The encoding the pipeline was built for.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The local RTP port (RTCP on the next one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts a prepared pipeline for `stream` (payload types, the peer's
    /// address), with the camera's video when `video` is given; audio goes out
    /// from the first packet when `sending`.
    pub fn play(
        &mut self,
        stream: &Stream,
        video: Option<VideoLeg>,
        sending: bool,
    ) -> Result<(), String> {
        if stream.codec.encoding != self.encoding {
            return Err(format!(
                "a pipeline for {} cannot carry {}",
                self.encoding.name(),
                stream.codec.encoding.name()
            ));
        }
        if stream.crypto.is_some() != self.encrypted {
            return Err("a pipeline cannot switch between RTP and SRTP".into());
        }
        *self.stream.lock().unwrap_or_else(|e| e.into_inner()) = stream.clone();
        // What the last call negotiated is kept as it is when this call agrees
        // with it: negotiating again costs more than the rest of the start.
        let pt = u32::from(stream.codec.pt);
        if self.payloader.property::<u32>("pt") != pt {
            self.payloader.set_property("pt", pt);
            // Its caps name the payload type: the chain negotiates them again.
            let src = self.payloader.static_pad("src").expect("payloader src");
            src.send_event(gst::event::Reconfigure::new());
        }
        if let (Some(src), Some(pt)) = (&self.dtmf_src, stream.telephone_event) {
            src.set_property("pt", u32::from(pt));
        }
        let caps = incoming_caps(rtp_caps(stream, stream.codec.pt), self.encrypted);
        if self.audio_in.property::<Option<gst::Caps>>("caps").as_ref() != Some(&caps) {
            self.audio_in.set_property("caps", caps);
        }
        self.set_remote(stream);
        if let Some(leg) = video {
            self.srtp.lock().unwrap_or_else(|e| e.into_inner()).crypto[1] =
                leg.stream.crypto.clone();
            add_video(
                &self.pipeline,
                &self.rtpbin,
                &leg,
                Gate::new(self.latching),
                &self.counters,
            )?;
            self.video = Some((leg.ports, leg.feed));
        }
        self.set_sending(sending);
        self.heard(true);
        if stream.direction.receives() {
            self.silence.start();
        } else {
            self.silence.rest();
        }
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("the call pipeline does not start: {e}"))?;
        Ok(())
    }

    /// The peer's interarrival jitter in milliseconds and its packets lost, as the
    /// audio session's RTP statistics (RFC 3550 §6.4) count them.
    pub fn reception(&self) -> (u32, i64) {
        let session: Option<gst::glib::Object> =
            self.rtpbin.emit_by_name("get-internal-session", &[&0u32]);
        let Some(stats) = session.map(|s| s.property::<gst::Structure>("stats")) else {
            return (0, 0);
        };
        let Ok(sources) = stats.get::<gst::glib::ValueArray>("source-stats") else {
            return (0, 0);
        };
        // This call's peer: a pipeline that served an earlier call may still
        // count that call's peer until its source times out.
        let current: Vec<u32> = self
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.session == 0)
            .map(|r| r.ssrc)
            .collect();
        let peer = sources
            .iter()
            .filter_map(|v| v.get::<gst::Structure>().ok())
            .find(|s| {
                s.get::<bool>("internal") == Ok(false)
                    && s.get::<bool>("is-sender") == Ok(true)
                    && s.get::<u32>("ssrc")
                        .is_ok_and(|ssrc| current.contains(&ssrc))
            });
        match peer {
            Some(s) => {
                let jitter = s.get::<u32>("jitter").unwrap_or(0);
                let lost = s.get::<i32>("packets-lost").unwrap_or(0);
                let ms = u64::from(jitter) * 1000 / u64::from(self.clock_rate.max(1));
                (ms as u32, i64::from(lost))
            }
            None => (0, 0),
        }
    }

    /// Sends audio RTP and RTCP to the peer's address, and takes them only from
    /// there (a re-offer may move them).
    pub fn set_remote(&self, stream: &Stream) {
        let (rtp, rtcp) = (stream.remote_rtp, stream.remote_rtcp);
        for (sink, to) in [(&self.audio_out.0, rtp), (&self.audio_out.1, rtcp)] {
            // Each of the two properties makes the sink forget its destination
            // and resolve the new one: not when the peer is where the last
            // call's was.
            let (host, port) = (to.ip().to_string(), i32::from(to.port()));
            if sink.property::<Option<String>>("host").as_deref() != Some(host.as_str())
                || sink.property::<i32>("port") != port
            {
                sink.set_property("host", host);
                sink.set_property("port", port);
            }
        }
        self.gate.expect(rtp, rtcp, &payload_types(stream));
        self.rekey(stream);
    }

    /// Takes the keys of a new description: the peer's new key (a re-INVITE that
    /// changed it) replaces the old one for every SSRC, and ours follows a new suite.
    fn rekey(&self, stream: &Stream) {
        let Some(crypto) = &stream.crypto else {
            return;
        };
        let mut s = self.srtp.lock().unwrap_or_else(|e| e.into_inner());
        let Some(before) = s.crypto[0].replace(crypto.clone()) else {
            return;
        };
        if before.send != crypto.send
            && let Some(encoder) = &s.encoders[0]
        {
            set_encoder_keys(encoder, crypto);
        }
        if (before.receive != crypto.receive || before.suite != crypto.suite)
            && let Some(decoder) = s.decoders[0].clone()
        {
            drop(s);
            // srtpdec asks for the key again at the next packet of each SSRC.
            decoder.emit_by_name::<()>("clear-keys", &[]);
            tracing::info!("SRTP: the peer's new key replaces the old one");
        }
    }

    /// Follows a new description of the call: the peer's address (an
    /// old-style hold, `c=0.0.0.0`, keeps the one media has) and whether the
    /// peer sends, for its silence counts only then (a call on hold, by either
    /// side, is not hung up for it).
    pub fn follow(&self, stream: &Stream) {
        if !stream.remote_rtp.ip().is_unspecified() {
            self.set_remote(stream);
        }
        self.silence.expect(stream.direction.receives());
    }

    /// Stops or restarts sending (hold and resume).
    pub fn set_sending(&self, sending: bool) {
        self.sending.store(sending, Ordering::Relaxed);
    }

    /// Sends one digit as an RFC 4733 event of `duration`.
    pub fn send_digit(&self, digit: char, duration: std::time::Duration) -> Result<(), String> {
        let negotiated = self
            .stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .telephone_event
            .is_some();
        let src = self
            .dtmf_src
            .as_ref()
            .filter(|_| negotiated)
            .ok_or("the peer did not negotiate telephone-event")?;
        let number = dtmf::event(digit).ok_or_else(|| format!("{digit:?} is not a DTMF digit"))?;
        let event = |start: bool| {
            gst::event::CustomUpstream::new(
                gst::Structure::builder("dtmf-event")
                    .field("type", 1i32)
                    .field("number", i32::from(number))
                    .field("volume", 25i32)
                    .field("start", start)
                    .build(),
            )
        };
        let pad = src.static_pad("src").expect("rtpdtmfsrc has a src pad");
        if !pad.send_event(event(true)) {
            return Err("the DTMF source refused the digit".into());
        }
        std::thread::sleep(duration);
        pad.send_event(event(false));
        Ok(())
    }

    /// Makes a pipeline whose call ended ready for the next call, as
    /// [`CallPipeline::prepare`] left it: paused, nothing sent, the speaker
    /// input no longer heard, what the last peer sent forgotten (its streams
    /// taken out of `rtpbin` and the elements that played them removed), the
    /// gate closed until the next peer is named, the counters at zero. A
    /// pipeline with video or SRTP, or one that failed, is not reused: the
    /// error says why.
    pub fn recycle(&mut self) -> Result<(), String> {
        if self.video.is_some() {
            return Err("the call had video".into());
        }
        if self.encrypted {
            return Err("the call was encrypted".into());
        }
        if self.faulted.load(Ordering::SeqCst) {
            return Err("the pipeline failed".into());
        }
        // Nothing more from the last peer: the gate closes, so its packets stop
        // where they enter `rtpbin`. The gate decides in a probe on the entry
        // pad, under the pad's stream lock, which a packet holds until it is
        // through: taking the lock once waits out a packet let in before the
        // gate closed, and none is then on its way into `rtpbin` (one that met
        // a stream being taken out would stop its socket's thread for good).
        // The sockets keep running: taking them through READY would have them
        // negotiate again at every call. Then the peer's streams out of
        // `rtpbin` while the pipeline still plays (paused, the elements that
        // played them would hold `rtpbin`'s threads waiting for their preroll).
        self.set_sending(false);
        self.gate.reset();
        for entry in ["recv_rtp_sink_0", "recv_rtcp_sink_0"] {
            drop(rtpbin_entry(&self.rtpbin, entry).stream_lock());
        }
        // A stream whose first packet was still in `rtpbin` may come out
        // while the streams are taken out: until none is left.
        loop {
            let received =
                std::mem::take(&mut *self.received.lock().unwrap_or_else(|e| e.into_inner()));
            if received.is_empty() {
                break;
            }
            for stream in received {
                self.rtpbin
                    .emit_by_name::<()>("clear-ssrc", &[&stream.session, &stream.ssrc]);
                for element in stream.elements {
                    let _ = element.set_state(gst::State::Null);
                    let _ = self.pipeline.remove(&element);
                }
            }
        }
        self.pipeline
            .set_state(gst::State::Paused)
            .map_err(|e| format!("the pipeline does not pause: {e}"))?;
        self.heard(false);
        self.counters.reset();
        self.silence.rest();
        Ok(())
    }

    /// Whether what the peer sends is heard on the speaker.
    fn heard(&self, heard: bool) {
        let mut input = self.speaker_input.lock().unwrap_or_else(|e| e.into_inner());
        match input.as_mut() {
            Some(input) if heard => input.play(),
            Some(input) => input.stop(),
            None => {}
        }
    }

    /// Stops the pipeline and gives its ports back, for a pipeline of another
    /// codec on the same ports.
    pub fn release(mut self) -> Option<PortPair> {
        self.stop();
        self.ports.take()
    }

    pub fn stop(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for CallPipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Receives on a socket that the session owns (and its `udpsink` shares).
fn udp_src(socket: &gio::Socket, caps: &gst::Caps) -> Result<gst::Element, String> {
    gst::ElementFactory::make("udpsrc")
        .property("socket", socket)
        .property("close-socket", false)
        .property("caps", caps)
        .build()
        .map_err(|e| format!("udpsrc: {e}"))
}

fn udp_sink(socket: &gio::Socket, to: std::net::SocketAddr) -> Result<gst::Element, String> {
    gst::ElementFactory::make("udpsink")
        .property("socket", socket)
        .property("close-socket", false)
        .property("host", to.ip().to_string())
        .property("port", i32::from(to.port()))
        .property("sync", false)
        .property("async", false)
        .build()
        .map_err(|e| format!("udpsink: {e}"))
}

/// rtpbin's second session: the camera's H.264 out, the peer's RTCP in. Video
/// from the peer is not shown (the door has no screen for it) and is discarded.
fn add_video(
    pipeline: &gst::Pipeline,
    rtpbin: &gst::Element,
    leg: &VideoLeg,
    gate: Gate,
    counters: &Arc<Counters>,
) -> Result<(), String> {
    let rtp_socket = gio_socket(&leg.ports.rtp)?;
    let rtcp_socket = gio_socket(&leg.ports.rtcp)?;
    pipeline
        .add_many(&leg.feed.elements)
        .map_err(|e| e.to_string())?;
    gst::Element::link_many(&leg.feed.elements).map_err(|e| format!("video chain: {e}"))?;
    let last = leg.feed.elements.last().ok_or("the video feed is empty")?;
    last.link_pads(Some("src"), rtpbin, Some("send_rtp_sink_1"))
        .map_err(|e| format!("rtpbin video: {e}"))?;
    let rtp_out = udp_sink(&rtp_socket, leg.stream.remote_rtp)?;
    let rtcp_out = udp_sink(&rtcp_socket, leg.stream.remote_rtcp)?;
    let encrypted = leg.stream.crypto.is_some();
    let rtp_in = udp_src(
        &rtp_socket,
        &incoming_caps(
            gst::Caps::builder("application/x-rtp")
                .field("media", "video")
                .field("clock-rate", 90000i32)
                .field("encoding-name", "H264")
                .build(),
            encrypted,
        ),
    )?;
    let rtcp_in = udp_src(
        &rtcp_socket,
        &incoming_caps(gst::Caps::new_empty_simple("application/x-rtcp"), encrypted),
    )?;
    gate.expect(
        leg.stream.remote_rtp,
        leg.stream.remote_rtcp,
        &payload_types(&leg.stream),
    );
    let gate = Arc::new(gate);
    guard_rtcp(
        &rtcp_in.static_pad("src").expect("udpsrc has a src pad"),
        &gate,
        counters,
    );
    let rejected = counters.clone();
    rtp_in
        .static_pad("src")
        .expect("udpsrc has a src pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            match info.buffer() {
                Some(buffer) if !gate.admit_rtp(trust::source(buffer), buffer) => {
                    rejected.packets_rejected.fetch_add(1, Ordering::Relaxed);
                    gst::PadProbeReturn::Drop
                }
                _ => gst::PadProbeReturn::Ok,
            }
        });
    pipeline
        .add_many([&rtp_out, &rtcp_out, &rtp_in, &rtcp_in])
        .map_err(|e| e.to_string())?;
    rtpbin
        .link_pads(Some("send_rtp_src_1"), &rtp_out, Some("sink"))
        .map_err(|e| format!("video out: {e}"))?;
    rtpbin
        .request_pad_simple("send_rtcp_src_1")
        .ok_or("rtpbin gives no video RTCP pad")?
        .link(&rtp_out_sink(&rtcp_out))
        .map_err(|e| format!("video rtcp out: {e:?}"))?;
    rtp_in
        .link_pads(Some("src"), rtpbin, Some("recv_rtp_sink_1"))
        .map_err(|e| format!("video in: {e}"))?;
    rtcp_in
        .link_pads(Some("src"), rtpbin, Some("recv_rtcp_sink_1"))
        .map_err(|e| format!("video rtcp in: {e}"))?;
    Ok(())
}

/// The payload types a stream negotiated: its codec and telephone-event.
fn payload_types(stream: &Stream) -> Vec<u8> {
    std::iter::once(stream.codec.pt)
        .chain(stream.telephone_event)
        .collect()
}

/// Drops RTCP from other sources than the peer's before rtpbin reads it.
fn guard_rtcp(rtcp_in: &gst::Pad, gate: &Arc<Gate>, counters: &Arc<Counters>) {
    let (gate, rejected) = (gate.clone(), counters.clone());
    rtcp_in.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        match info.buffer() {
            Some(buffer) if !gate.admit_rtcp(trust::source(buffer)) => {
                rejected.packets_rejected.fetch_add(1, Ordering::Relaxed);
                REFUSED
            }
            _ => gst::PadProbeReturn::Ok,
        }
    });
}

/// What a probe on a sink pad returns for a packet it keeps out: the probe
/// owns the packet and lets it go itself. (`Drop` there would have GStreamer
/// 1.22 release a packet the bindings already took, with a critical warning
/// for every refused packet.)
const REFUSED: gst::PadProbeReturn = gst::PadProbeReturn::Handled;

/// One of `rtpbin`'s pads that the peer's packets enter by, once linked.
fn rtpbin_entry(rtpbin: &gst::Element, name: &str) -> gst::Pad {
    rtpbin
        .static_pad(name)
        .unwrap_or_else(|| panic!("rtpbin's {name} is linked"))
}

fn rtp_out_sink(sink: &gst::Element) -> gst::Pad {
    sink.static_pad("sink").expect("udpsink has a sink pad")
}

fn count(pad: &gst::Pad, counters: &Arc<Counters>, sent: bool) {
    let counters = counters.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            let (packets, bytes) = if sent {
                (&counters.packets_sent, &counters.bytes_sent)
            } else {
                (&counters.packets_received, &counters.bytes_received)
            };
            packets.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(buffer.size() as u64, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
}

fn link_playback(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    depayloader: &str,
    decoder: &str,
    appsrc: &gst_app::AppSrc,
) -> Result<Vec<gst::Element>, String> {
    let chain = devices::decode_to_speaker(depayloader, decoder, appsrc)?;
    pipeline.add_many(&chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(&chain).map_err(|e| format!("playback chain: {e}"))?;
    for el in &chain {
        el.sync_state_with_parent().map_err(|e| e.to_string())?;
    }
    let depay = &chain[0];
    pad.link(
        &depay
            .static_pad("sink")
            .expect("depayloader has a sink pad"),
    )
    .map_err(|e| format!("{e:?}"))?;
    Ok(chain)
}

fn link_discard(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<Vec<gst::Element>, String> {
    let sink = gst::ElementFactory::make("fakesink")
        .property("async", false)
        .property("sync", false)
        .build()
        .map_err(|e| e.to_string())?;
    pipeline.add(&sink).map_err(|e| e.to_string())?;
    sink.sync_state_with_parent().map_err(|e| e.to_string())?;
    pad.link(&sink.static_pad("sink").expect("fakesink has a sink pad"))
        .map_err(|e| format!("{e:?}"))?;
    Ok(vec![sink])
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::devices::AudioSink;
    use crate::ports::PortRange;
    use crate::sdp::{Key, Suite};

    /// Two call pipelines on loopback, each the other's peer.
    fn pair(
        a_keys: Option<Crypto>,
        b_keys: Option<Crypto>,
    ) -> (CallPipeline, CallPipeline, mpsc::Receiver<Event>) {
        init();
        let range = PortRange::new(42000, 42999);
        let (pa, pb) = (range.bind().unwrap(), range.bind().unwrap());
        let at = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = |to: u16, local: u16, crypto: Option<Crypto>| Stream {
            remote_rtp: at(to),
            remote_rtcp: at(to + 1),
            crypto,
            ..template(Encoding::Pcmu, local)
        };
        let (sa, sb) = (
            stream(pb.port, pa.port, a_keys),
            stream(pa.port, pb.port, b_keys),
        );
        let speaker = Box::leak(Box::new(Speaker::new(&AudioSink::Fake).unwrap()));
        let io = |tone| CallIo {
            mic: &AudioSource::Test,
            tone,
            speaker,
            rtp_timeout: Duration::from_secs(30),
            latching: false,
        };
        let a = CallPipeline::start(&sa, pa, io(440.0), None, true, |_| {}).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Arc::new(Mutex::new(tx));
        let b = CallPipeline::start(&sb, pb, io(1000.0), None, true, move |e| {
            let _ = tx.lock().unwrap().send(e);
        })
        .unwrap();
        (a, b, rx)
    }

    /// How long a test waits for what a busy machine may take a while to do.
    const PATIENCE: Duration = Duration::from_secs(20);

    /// The next digit received `within` the given time.
    fn digit(rx: &mpsc::Receiver<Event>, within: Duration) -> Option<char> {
        let deadline = std::time::Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(Event::Dtmf(d)) => return Some(d),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    #[test]
    fn srtp_carries_digits_with_the_right_key_only() {
        let (ka, kb) = (Key::random().unwrap(), Key::random().unwrap());
        let keys = |send: &Key, receive: &Key, suite| Crypto {
            suite,
            send: send.clone(),
            receive: receive.clone(),
        };
        for suite in Suite::ALL {
            let (a, b, rx) = pair(Some(keys(&ka, &kb, suite)), Some(keys(&kb, &ka, suite)));
            a.send_digit('5', Duration::from_millis(200)).unwrap();
            assert_eq!(digit(&rx, PATIENCE), Some('5'), "{suite}");
            assert!(b.counters.packets_received.load(Ordering::Relaxed) > 0);
            drop((a, b));
        }
        // B expects another key: what A sends does not authenticate.
        let other = Key::random().unwrap();
        let (a, b, rx) = pair(
            Some(keys(&ka, &kb, Suite::AesCm128HmacSha1_80)),
            Some(keys(&kb, &other, Suite::AesCm128HmacSha1_80)),
        );
        a.send_digit('7', Duration::from_millis(200)).unwrap();
        // A digit that got through would have come in far less.
        assert_eq!(digit(&rx, Duration::from_secs(5)), None);
        assert!(b.counters.packets_received.load(Ordering::Relaxed) > 0);
        // A re-key to the right key lets the digits through.
        let mut rekeyed = b.stream.lock().unwrap().clone();
        rekeyed.crypto = Some(keys(&kb, &ka, Suite::AesCm128HmacSha1_80));
        b.set_remote(&rekeyed);
        a.send_digit('9', Duration::from_millis(200)).unwrap();
        assert_eq!(digit(&rx, PATIENCE), Some('9'));
    }

    fn at(port: u16) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// GStreamer for these tests, with its critical warnings fatal: each one
    /// is a misuse of its API, which the service must not commit on any path
    /// (a refused packet's among them).
    fn init() {
        gst::init().unwrap();
        gst::glib::log_set_always_fatal(gst::glib::LogLevels::LEVEL_CRITICAL);
    }

    /// Every element of the pipeline, `rtpbin`'s own ones included.
    fn elements(pipeline: &CallPipeline) -> usize {
        pipeline.pipeline.iterate_recurse().into_iter().count()
    }

    #[test]
    fn a_pipeline_whose_call_ended_serves_the_next_caller_and_forgets_the_last() {
        init();
        let range = PortRange::new(44000, 44999);
        // The door and its callers each have their own speaker; the door's
        // rests as soon as a call ends.
        let speaker = Box::leak(Box::new(
            Speaker::resting_after(&AudioSink::Fake, Duration::ZERO).unwrap(),
        ));
        let theirs = Box::leak(Box::new(Speaker::new(&AudioSink::Fake).unwrap()));
        let io = |tone, speaker| CallIo {
            mic: &AudioSource::Test,
            tone,
            speaker,
            rtp_timeout: Duration::from_secs(30),
            latching: false,
        };
        let ports = range.bind().unwrap();
        let door_port = ports.port;
        let (tx, rx) = mpsc::channel();
        let tx = Arc::new(Mutex::new(tx));
        let mut door = CallPipeline::prepare(
            &template(Encoding::Pcmu, door_port),
            ports,
            io(440.0, speaker),
            move |e| {
                let _ = tx.lock().unwrap().send(e);
            },
        )
        .unwrap();
        let prepared = elements(&door);
        // Each stream of the peer's audio that `rtpbin` hands out (after the
        // pipeline's own handler has played or discarded it).
        let (pads, streams) = mpsc::channel();
        let pads = Mutex::new(pads);
        door.rtpbin.connect_pad_added(move |_, pad| {
            if pad.name().starts_with("recv_rtp_src_0_") {
                let _ = pads.lock().unwrap().send(());
            }
        });
        let mut last: Option<CallPipeline> = None;
        for (call, key) in ['1', '2', '3'].into_iter().enumerate() {
            // A caller on other ports (and with its own SSRC) each time.
            let caller_ports = range.bind().unwrap();
            let caller_port = caller_ports.port;
            let caller = CallPipeline::start(
                &Stream {
                    remote_rtp: at(door_port),
                    remote_rtcp: at(door_port + 1),
                    ..template(Encoding::Pcmu, caller_port)
                },
                caller_ports,
                io(1000.0, theirs),
                None,
                true,
                |_| {},
            )
            .unwrap();
            let towards = Stream {
                remote_rtp: at(caller_port),
                remote_rtcp: at(caller_port + 1),
                ..template(Encoding::Pcmu, door_port)
            };
            while streams.try_recv().is_ok() {}
            door.play(&towards, None, true).unwrap();
            assert!(speaker.running(), "call {call}: the speaker is off");
            // The last caller, still sending to the door's port, has no say:
            // its digit is dropped, the new caller's is taken.
            if let Some(last) = &last {
                last.send_digit('9', Duration::from_millis(120)).unwrap();
            }
            caller.send_digit(key, Duration::from_millis(120)).unwrap();
            assert_eq!(
                digit(&rx, PATIENCE),
                Some(key),
                "call {call}: received {}, rejected {}, the caller sent {}",
                door.counters.packets_received.load(Ordering::Relaxed),
                door.counters.packets_rejected.load(Ordering::Relaxed),
                caller.counters.packets_sent.load(Ordering::Relaxed),
            );
            // The door's one socket read the last caller's digit before the
            // new caller's: it was refused by then.
            if last.is_some() {
                assert!(door.counters.packets_rejected.load(Ordering::Relaxed) > 0);
            }
            assert!(
                streams.recv_timeout(PATIENCE).is_ok(),
                "call {call}: the caller's audio never reached rtpbin's output"
            );
            assert!(!door.received.lock().unwrap().is_empty());

            door.recycle().unwrap();
            assert!(!speaker.running(), "call {call}: the speaker runs on");
            assert_eq!(
                elements(&door),
                prepared,
                "call {call} left elements behind"
            );
            assert_eq!(door.counters.packets_received.load(Ordering::Relaxed), 0);
            assert_eq!(door.counters.packets_sent.load(Ordering::Relaxed), 0);
            last = Some(caller);
        }
    }

    #[test]
    fn a_pipeline_with_video_or_srtp_or_a_failure_is_not_reused() {
        init();
        let range = PortRange::new(44000, 44999);
        let speaker = Box::leak(Box::new(Speaker::new(&AudioSink::Fake).unwrap()));
        let io = || CallIo {
            mic: &AudioSource::Test,
            tone: 440.0,
            speaker,
            rtp_timeout: Duration::from_secs(30),
            latching: false,
        };
        let ports = range.bind().unwrap();
        let key = crate::sdp::Key::random().unwrap();
        let crypto = Crypto {
            suite: crate::sdp::Suite::ALL[0],
            send: key.clone(),
            receive: key,
        };
        let stream = Stream {
            crypto: Some(crypto),
            ..template(Encoding::Pcmu, ports.port)
        };
        let mut srtp = CallPipeline::start(&stream, ports, io(), None, true, |_| {}).unwrap();
        assert_eq!(srtp.recycle(), Err("the call was encrypted".into()));

        let ports = range.bind().unwrap();
        let stream = template(Encoding::Pcmu, ports.port);
        let mut failed = CallPipeline::start(&stream, ports, io(), None, true, |_| {}).unwrap();
        failed.faulted.store(true, Ordering::SeqCst);
        assert_eq!(failed.recycle(), Err("the pipeline failed".into()));
    }
}
