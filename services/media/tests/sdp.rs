//! SDP negotiation against descriptions written the way real phones, soft phones and
//! servers write them (tests/sdp/*.sdp), offer/answer round trips between two door
//! phones, hold and resume, and refusal of malformed bodies.

use std::net::SocketAddr;

use doorphone_interfaces::config::document::{AudioCodec, Media};
use doorphone_media::sdp::{
    Direction, Encoding, Local, LocalCaps, LocalTransport, Negotiated, SdpError, parse,
};

const BARESIP: &str = include_str!("sdp/baresip.sdp");
const LINPHONE: &str = include_str!("sdp/linphone.sdp");
const LINPHONE_HOLD: &str = include_str!("sdp/linphone-hold.sdp");
const YEALINK: &str = include_str!("sdp/yealink.sdp");
const YEALINK_HOLD: &str = include_str!("sdp/yealink-hold.sdp");
const AKUVOX: &str = include_str!("sdp/akuvox.sdp");
const ASTERISK: &str = include_str!("sdp/asterisk.sdp");
const ASTERISK_STATIC: &str = include_str!("sdp/asterisk-static.sdp");
const KAMAILIO: &str = include_str!("sdp/kamailio-rtpengine.sdp");
const KAMAILIO_IPV6: &str = include_str!("sdp/kamailio-ipv6.sdp");
const HOLD_INACTIVE: &str = include_str!("sdp/hold-inactive.sdp");
const HOLD_OLD_STYLE: &str = include_str!("sdp/hold-old-style.sdp");
const HOLD_SESSION_LEVEL: &str = include_str!("sdp/hold-session-level.sdp");
const G729_ONLY: &str = include_str!("sdp/g729-only.sdp");
const SRTP_ONLY: &str = include_str!("sdp/srtp-only.sdp");
const EXTRA_STREAMS: &str = include_str!("sdp/extra-streams.sdp");

const ALL: &[(&str, &str)] = &[
    ("baresip", BARESIP),
    ("linphone", LINPHONE),
    ("linphone-hold", LINPHONE_HOLD),
    ("yealink", YEALINK),
    ("yealink-hold", YEALINK_HOLD),
    ("akuvox", AKUVOX),
    ("asterisk", ASTERISK),
    ("asterisk-static", ASTERISK_STATIC),
    ("kamailio", KAMAILIO),
    ("kamailio-ipv6", KAMAILIO_IPV6),
    ("hold-inactive", HOLD_INACTIVE),
    ("hold-old-style", HOLD_OLD_STYLE),
    ("hold-session-level", HOLD_SESSION_LEVEL),
    ("g729-only", G729_ONLY),
    ("srtp-only", SRTP_ONLY),
    ("extra-streams", EXTRA_STREAMS),
];

/// SIP carries SDP with CRLF line ends.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn transport() -> LocalTransport {
    LocalTransport {
        address: "192.168.1.200".parse().unwrap(),
        audio_port: 10000,
        video_port: Some(10002),
    }
}

fn caps(audio: &[AudioCodec], want_video: bool) -> LocalCaps {
    let media = if audio.is_empty() {
        Media::default()
    } else {
        Media {
            audio_codecs: audio.to_vec(),
            ..Media::default()
        }
    };
    LocalCaps::from_config(&media, want_video)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An m-line of a description we wrote, read back by plain text handling.
#[derive(Debug)]
struct MLine {
    media: String,
    port: u16,
    formats: Vec<String>,
    attributes: Vec<String>,
}

fn mlines(text: &str) -> Vec<MLine> {
    let mut out: Vec<MLine> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            let f: Vec<&str> = m.split(' ').collect();
            out.push(MLine {
                media: f[0].to_string(),
                port: f[1].parse().unwrap(),
                formats: f[3..].iter().map(|s| s.to_string()).collect(),
                attributes: Vec::new(),
            });
        } else if let (Some(a), Some(last)) = (line.strip_prefix("a="), out.last_mut()) {
            last.attributes.push(a.to_string());
        }
    }
    out
}

fn has_attribute(m: &MLine, attribute: &str) -> bool {
    m.attributes.iter().any(|a| a == attribute)
}

/// Rules every description we write follows.
fn check_ours(text: &str) {
    assert!(text.starts_with("v=0\r\no=- "), "{text}");
    assert!(text.contains("\r\ns=-\r\n"), "{text}");
    assert!(text.contains("\r\nt=0 0\r\n"), "{text}");
    assert!(!text.contains("rtcp-mux"), "{text}");
    assert!(!text.contains("0.0.0.0"), "{text}");
    let lower = text.to_ascii_lowercase();
    for word in ["doorphone", "gstreamer", "version"] {
        assert!(!lower.contains(word), "{word} in {text}");
    }
    assert!(text.ends_with("\r\n"));
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "bare LF in {text}"
    );
    // What we write, we read.
    parse(text).unwrap_or_else(|e| panic!("our own SDP is refused: {e}\n{text}"));
}

/// RFC 3264 §6: the answer has the offer's m-lines in order, lists only offered formats,
/// keeps the offer's payload type numbers.
fn check_answer_fits_offer(offer: &str, answer: &str) {
    let offered = mlines(offer);
    let answered = mlines(answer);
    assert_eq!(offered.len(), answered.len(), "m-line count\n{answer}");
    for (o, a) in offered.iter().zip(&answered) {
        assert_eq!(o.media, a.media);
        assert!(!a.formats.is_empty());
        for f in &a.formats {
            assert!(o.formats.contains(f), "format {f} not offered\n{answer}");
        }
        if a.port != 0 {
            // Each rtpmap we write names the same codec the offer gave that number.
            for attr in a.attributes.iter().filter(|a| a.starts_with("rtpmap:")) {
                let pt = attr["rtpmap:".len()..].split(' ').next().unwrap();
                if let Some(theirs) = o
                    .attributes
                    .iter()
                    .find(|x| x.starts_with(&format!("rtpmap:{pt} ")))
                {
                    let ours_name = attr.split(' ').nth(1).unwrap().to_ascii_lowercase();
                    let their_name = theirs.split(' ').nth(1).unwrap().to_ascii_lowercase();
                    assert_eq!(
                        ours_name, their_name,
                        "PT {pt} renamed\n{answer}\n---\n{offer}"
                    );
                }
            }
        }
    }
}

#[derive(Debug)]
struct Want {
    encoding: Encoding,
    pt: u8,
    event: Option<u8>,
    direction: Direction,
    rtp: &'static str,
    rtcp: &'static str,
}

#[derive(Debug)]
struct WantVideo {
    pt: u8,
    fmtp: &'static str,
    direction: Direction,
    rtcp: &'static str,
}

enum Expect {
    Ok {
        audio: Want,
        video: Option<WantVideo>,
    },
    NoCommonCodec(&'static str),
    Unsupported,
}

struct Case {
    name: &'static str,
    offer: &'static str,
    audio: &'static [AudioCodec],
    want_video: bool,
    expect: Expect,
}

fn audio(
    encoding: Encoding,
    pt: u8,
    event: Option<u8>,
    direction: Direction,
    rtp: &'static str,
    rtcp: &'static str,
) -> Want {
    Want {
        encoding,
        pt,
        event,
        direction,
        rtp,
        rtcp,
    }
}

fn cases() -> Vec<Case> {
    use AudioCodec::*;
    use Direction::*;
    use Encoding as E;
    vec![
        Case {
            name: "baresip, default order: PCMU on its PT, telephone-event 101",
            offer: BARESIP,
            audio: &[],
            want_video: false,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(101),
                    SendRecv,
                    "192.168.1.35:11234",
                    "192.168.1.35:11235",
                ),
                video: None,
            },
        },
        Case {
            name: "baresip, opus first: opus has no telephone-event/48000, so G722 with DTMF",
            offer: BARESIP,
            audio: &[Opus, G722, Pcmu],
            want_video: false,
            expect: Expect::Ok {
                audio: audio(
                    E::G722,
                    9,
                    Some(101),
                    SendRecv,
                    "192.168.1.35:11234",
                    "192.168.1.35:11235",
                ),
                video: None,
            },
        },
        Case {
            name: "baresip, opus only: opus without telephone-event",
            offer: BARESIP,
            audio: &[Opus],
            want_video: true,
            expect: Expect::Ok {
                audio: audio(
                    E::Opus,
                    96,
                    None,
                    SendRecv,
                    "192.168.1.35:11234",
                    "192.168.1.35:11235",
                ),
                video: None,
            },
        },
        Case {
            name: "linphone audio mode: PCMU, telephone-event/8000 on 100, video refused",
            offer: LINPHONE,
            audio: &[],
            want_video: false,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(100),
                    SendRecv,
                    "192.168.0.23:7078",
                    "192.168.0.23:7079",
                ),
                video: None,
            },
        },
        Case {
            name: "linphone video mode: H264 PT 97 with its profile, VP8 left out",
            offer: LINPHONE,
            audio: &[],
            want_video: true,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(100),
                    SendRecv,
                    "192.168.0.23:7078",
                    "192.168.0.23:7079",
                ),
                video: Some(WantVideo {
                    pt: 97,
                    fmtp: "profile-level-id=42801F;packetization-mode=1",
                    direction: SendRecv,
                    rtcp: "192.168.0.23:9079",
                }),
            },
        },
        Case {
            name: "linphone, opus first: opus with telephone-event/48000 on 101",
            offer: LINPHONE,
            audio: &[Opus, Pcmu],
            want_video: false,
            expect: Expect::Ok {
                audio: audio(
                    E::Opus,
                    96,
                    Some(101),
                    SendRecv,
                    "192.168.0.23:7078",
                    "192.168.0.23:7079",
                ),
                video: None,
            },
        },
        Case {
            name: "linphone puts us on hold: we only receive",
            offer: LINPHONE_HOLD,
            audio: &[],
            want_video: true,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(100),
                    RecvOnly,
                    "192.168.0.23:7078",
                    "192.168.0.23:7079",
                ),
                video: Some(WantVideo {
                    pt: 97,
                    fmtp: "profile-level-id=42801F;packetization-mode=1",
                    direction: RecvOnly,
                    rtcp: "192.168.0.23:9079",
                }),
            },
        },
        Case {
            name: "yealink video mode: PCMU and H264 99",
            offer: YEALINK,
            audio: &[],
            want_video: true,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(101),
                    SendRecv,
                    "192.168.1.50:11780",
                    "192.168.1.50:11781",
                ),
                video: Some(WantVideo {
                    pt: 99,
                    fmtp: "profile-level-id=42801F; packetization-mode=1; max-br=2048",
                    direction: SendRecv,
                    rtcp: "192.168.1.50:11783",
                }),
            },
        },
        Case {
            name: "yealink audio mode: video refused",
            offer: YEALINK,
            audio: &[Pcma, Pcmu],
            want_video: false,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcma,
                    8,
                    Some(101),
                    SendRecv,
                    "192.168.1.50:11780",
                    "192.168.1.50:11781",
                ),
                video: None,
            },
        },
        Case {
            name: "yealink offers on hold: sendonly -> recvonly",
            offer: YEALINK_HOLD,
            audio: &[],
            want_video: true,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(101),
                    RecvOnly,
                    "192.168.1.50:11780",
                    "192.168.1.50:11781",
                ),
                video: Some(WantVideo {
                    pt: 99,
                    fmtp: "profile-level-id=42801F; packetization-mode=1; max-br=2048",
                    direction: RecvOnly,
                    rtcp: "192.168.1.50:11783",
                }),
            },
        },
        Case {
            name: "akuvox: G722 first, H264 only on the packetization-mode=1 PT",
            offer: AKUVOX,
            audio: &[G722, Pcmu],
            want_video: true,
            expect: Expect::Ok {
                audio: audio(
                    E::G722,
                    9,
                    Some(101),
                    SendRecv,
                    "192.168.1.88:11800",
                    "192.168.1.88:11801",
                ),
                video: Some(WantVideo {
                    pt: 103,
                    fmtp: "profile-level-id=42e01f;packetization-mode=1",
                    direction: SendRecv,
                    rtcp: "192.168.1.88:11803",
                }),
            },
        },
        Case {
            name: "asterisk: our order wins over theirs (G722 listed first)",
            offer: ASTERISK,
            audio: &[],
            want_video: true,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(101),
                    SendRecv,
                    "10.0.0.5:16384",
                    "10.0.0.5:16385",
                ),
                video: None,
            },
        },
        Case {
            name: "asterisk with static payload types and no rtpmap",
            offer: ASTERISK_STATIC,
            audio: &[G722, Pcma, Pcmu],
            want_video: false,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcma,
                    8,
                    Some(101),
                    SendRecv,
                    "10.0.0.5:17002",
                    "10.0.0.5:17003",
                ),
                video: None,
            },
        },
        Case {
            name: "kamailio + rtpengine: ICE candidates ignored, a=rtcp honoured",
            offer: KAMAILIO,
            audio: &[],
            want_video: false,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(101),
                    SendRecv,
                    "203.0.113.10:30172",
                    "203.0.113.10:30173",
                ),
                video: None,
            },
        },
        Case {
            name: "kamailio over IPv6: media-level c=, a=rtcp with its own address, rtcp-mux not taken",
            offer: KAMAILIO_IPV6,
            audio: &[],
            want_video: false,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(101),
                    SendRecv,
                    "[2001:db8:10::5]:40010",
                    "[2001:db8:10::6]:40111",
                ),
                video: None,
            },
        },
        Case {
            name: "inactive offer -> inactive",
            offer: HOLD_INACTIVE,
            audio: &[],
            want_video: false,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(101),
                    Inactive,
                    "10.0.0.5:16384",
                    "10.0.0.5:16385",
                ),
                video: None,
            },
        },
        Case {
            name: "old-style hold with c=0.0.0.0: we do not send",
            offer: HOLD_OLD_STYLE,
            audio: &[],
            want_video: false,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(101),
                    RecvOnly,
                    "0.0.0.0:18774",
                    "0.0.0.0:18775",
                ),
                video: None,
            },
        },
        Case {
            name: "session-level sendonly applies to audio; video's own sendrecv wins",
            offer: HOLD_SESSION_LEVEL,
            audio: &[],
            want_video: true,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(101),
                    RecvOnly,
                    "192.168.1.60:5004",
                    "192.168.1.60:5005",
                ),
                video: Some(WantVideo {
                    pt: 96,
                    fmtp: "packetization-mode=1",
                    direction: SendRecv,
                    rtcp: "192.168.1.60:5007",
                }),
            },
        },
        Case {
            name: "disabled video, audio second, BFCP and T.38 refused",
            offer: EXTRA_STREAMS,
            audio: &[],
            want_video: true,
            expect: Expect::Ok {
                audio: audio(
                    E::Pcmu,
                    0,
                    Some(101),
                    SendRecv,
                    "192.168.1.90:20000",
                    "192.168.1.90:20001",
                ),
                video: None,
            },
        },
        Case {
            name: "G.729 only: nothing in common",
            offer: G729_ONLY,
            audio: &[Pcmu, Pcma],
            want_video: false,
            expect: Expect::NoCommonCodec(
                "no common audio codec: offer has G729, we take PCMU, PCMA",
            ),
        },
        Case {
            name: "linphone with a codec list we do not share",
            offer: LINPHONE,
            audio: &[G722],
            want_video: true,
            expect: Expect::NoCommonCodec(
                "no common audio codec: offer has opus, speex, PCMU, PCMA, G729, we take G722",
            ),
        },
        Case {
            name: "SRTP only: refused",
            offer: SRTP_ONLY,
            audio: &[],
            want_video: false,
            expect: Expect::Unsupported,
        },
    ]
}

fn check_stream_fields(name: &str, negotiated: &Negotiated, want: &Want) {
    let a = negotiated
        .audio
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no audio"));
    assert_eq!(a.codec.encoding, want.encoding, "{name}");
    assert_eq!(a.codec.pt, want.pt, "{name}");
    assert_eq!(a.codec.clock_rate, want.encoding.clock_rate(), "{name}");
    assert_eq!(a.telephone_event, want.event, "{name}");
    assert_eq!(a.direction, want.direction, "{name}");
    assert_eq!(a.remote_rtp, addr(want.rtp), "{name}");
    assert_eq!(a.remote_rtcp, addr(want.rtcp), "{name}");
    assert_eq!(a.local_port, 10000, "{name}");
}

#[test]
fn answers_to_real_offers() {
    for case in cases() {
        for text in [crlf(case.offer), case.offer.replace("\r\n", "\n")] {
            let name = case.name;
            let offer = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let caps = caps(case.audio, case.want_video);
            let result = Local::answer(&caps, &transport(), &offer);
            match (&case.expect, result) {
                (Expect::Ok { audio, video }, Ok((local, negotiated, answer))) => {
                    check_ours(&answer);
                    check_answer_fits_offer(&text, &answer);
                    check_stream_fields(name, &negotiated, audio);
                    assert_eq!(local.negotiated(), &negotiated);
                    assert_eq!(local.sdp(), answer);
                    assert!(!local.awaiting_answer());

                    let lines = mlines(&answer);
                    let audio_line = lines
                        .iter()
                        .find(|m| m.media == "audio" && m.port != 0)
                        .unwrap();
                    assert_eq!(audio_line.port, 10000, "{name}");
                    let mut formats = vec![audio.pt.to_string()];
                    formats.extend(audio.event.map(|e| e.to_string()));
                    assert_eq!(audio_line.formats, formats, "{name}\n{answer}");
                    assert!(
                        has_attribute(audio_line, audio.direction.as_str()),
                        "{name}\n{answer}"
                    );
                    if let Some(te) = audio.event {
                        let rate = audio.encoding.clock_rate();
                        assert!(
                            has_attribute(
                                audio_line,
                                &format!("rtpmap:{te} telephone-event/{rate}")
                            ),
                            "{name}\n{answer}"
                        );
                        assert!(has_attribute(audio_line, &format!("fmtp:{te} 0-15")));
                    }
                    assert!(has_attribute(audio_line, "ptime:20"), "{name}");

                    match (video, &negotiated.video) {
                        (None, None) => {
                            for m in lines.iter().filter(|m| m.media == "video") {
                                assert_eq!(m.port, 0, "{name}: video must be refused\n{answer}");
                            }
                        }
                        (Some(want), Some(v)) => {
                            assert!(case.want_video);
                            assert_eq!(v.codec.encoding, Encoding::H264, "{name}");
                            assert_eq!(v.codec.pt, want.pt, "{name}");
                            assert_eq!(v.codec.clock_rate, 90000);
                            assert_eq!(v.codec.fmtp.as_deref(), Some(want.fmtp), "{name}");
                            assert_eq!(v.direction, want.direction, "{name}");
                            assert_eq!(v.remote_rtcp, addr(want.rtcp), "{name}");
                            assert_eq!(v.telephone_event, None);
                            assert_eq!(v.local_port, 10002);
                            let video_line = lines.iter().find(|m| m.port == 10002).unwrap();
                            assert_eq!(video_line.media, "video");
                            assert_eq!(video_line.formats, [want.pt.to_string()]);
                            assert!(
                                video_line
                                    .attributes
                                    .iter()
                                    .any(|a| a.starts_with(&format!("fmtp:{} ", want.pt))
                                        && a.ends_with("packetization-mode=1")),
                                "{name}\n{answer}"
                            );
                        }
                        (want, got) => panic!("{name}: video {want:?} expected, got {got:?}"),
                    }
                    if !case.want_video {
                        assert!(negotiated.video.is_none(), "{name}");
                    }
                }
                (Expect::NoCommonCodec(message), Err(SdpError::NoCommonCodec(got))) => {
                    assert_eq!(&got, message, "{name}");
                }
                (Expect::Unsupported, Err(SdpError::Unsupported(got))) => {
                    assert!(got.contains("RTP/SAVP"), "{name}: {got}");
                }
                (_, Ok((_, _, answer))) => panic!("{name}: answered\n{answer}"),
                (_, Err(e)) => panic!("{name}: unexpected error {e:?}"),
            }
        }
    }
}

#[test]
fn refusal_messages_read_well() {
    let offer = parse(G729_ONLY).unwrap();
    let err = Local::answer(
        &caps(&[AudioCodec::Pcmu, AudioCodec::Pcma], false),
        &transport(),
        &offer,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no common audio codec: offer has G729, we take PCMU, PCMA"
    );
    let err = parse("m=audio 99999999 RTP/AVP 0").unwrap_err();
    assert!(err.to_string().starts_with("malformed SDP: "), "{err}");
}

/// Realistic offers made malformed in the ways a far end gets it wrong, with a part of
/// the message that says why.
fn malformed_bodies() -> Vec<(&'static str, String, &'static str)> {
    let b = crlf(BARESIP);
    let a = crlf(ASTERISK);
    let y = crlf(YEALINK);
    let k = crlf(KAMAILIO);
    let cut_at = |text: &str, marker: &str, keep: usize| {
        let at = text.find(marker).unwrap() + keep;
        text[..at].to_string()
    };
    let before_audio = a[..a.find("m=audio").unwrap()].to_string();
    let video_only = y[..y.find("m=audio").unwrap()].to_string() + &y[y.find("m=video").unwrap()..];
    vec![
        ("empty", String::new(), "empty"),
        ("blank lines", "\r\n\r\n  \r\n".to_string(), "empty"),
        (
            "not SDP",
            "hello, this is not a session description\r\n".to_string(),
            "v=0",
        ),
        (
            "HTML error page",
            "<html><body>502 Bad Gateway</body></html>".to_string(),
            "v=0",
        ),
        ("binary", "\u{1}\u{2}\u{3}v=0".to_string(), "v=0"),
        ("cut after o=", cut_at(&b, "s=-", 0), "no s= line"),
        (
            "cut before the m= line",
            cut_at(&b, "m=audio", 0),
            "no m= line",
        ),
        (
            "cut inside the m= line",
            cut_at(&b, "m=audio", "m=audio 11234 RTP/".len()),
            "incomplete",
        ),
        (
            "cut after the port",
            cut_at(&b, "m=audio", "m=audio 11234".len()),
            "incomplete",
        ),
        (
            "m= line without formats",
            a.replace("RTP/AVP 9 0 8 101", "RTP/AVP"),
            "incomplete",
        ),
        (
            "port 99999999",
            a.replace("m=audio 16384", "m=audio 99999999"),
            "port 99999999",
        ),
        (
            "port 65536",
            a.replace("m=audio 16384", "m=audio 65536"),
            "port 65536",
        ),
        (
            "negative port",
            a.replace("m=audio 16384", "m=audio -1"),
            "port -1",
        ),
        (
            "port not a number",
            a.replace("m=audio 16384", "m=audio http"),
            "port http",
        ),
        (
            "port pair",
            a.replace("m=audio 16384", "m=audio 16384/2"),
            "port ranges",
        ),
        (
            "payload type 999",
            a.replace("RTP/AVP 9 0 8 101", "RTP/AVP 999 0"),
            "payload type 999",
        ),
        (
            "payload type 128",
            a.replace("RTP/AVP 9 0 8 101", "RTP/AVP 0 128"),
            "payload type 128",
        ),
        (
            "payload type -1",
            a.replace("RTP/AVP 9 0 8 101", "RTP/AVP -1 0"),
            "payload type -1",
        ),
        (
            "payload type name",
            a.replace("RTP/AVP 9 0 8 101", "RTP/AVP PCMU"),
            "payload type PCMU",
        ),
        (
            "rtpmap payload type 300",
            a.replace("a=ptime:20", "a=rtpmap:300 PCMU/8000\r\na=ptime:20"),
            "a=rtpmap:300",
        ),
        (
            "rtpmap without clock",
            a.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU"),
            "no clock rate",
        ),
        (
            "rtpmap clock not a number",
            a.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/fast"),
            "clock rate is not a number",
        ),
        (
            "fmtp payload type 400",
            a.replace("a=fmtp:101 0-16", "a=fmtp:400 0-16"),
            "a=fmtp:400",
        ),
        (
            "no c= line",
            a.replace("c=IN IP4 10.0.0.5\r\n", ""),
            "no c= line",
        ),
        (
            "host name in c=",
            a.replace("c=IN IP4 10.0.0.5", "c=IN IP4 pbx.example.com"),
            "not an IP4 address",
        ),
        (
            "IPv6 address as IP4",
            a.replace("c=IN IP4 10.0.0.5", "c=IN IP4 2001:db8::5"),
            "not an IP4 address",
        ),
        (
            "IPv4 address as IP6",
            a.replace("c=IN IP4 10.0.0.5", "c=IN IP6 10.0.0.5"),
            "not an IP6 address",
        ),
        (
            "unknown address type",
            a.replace("c=IN IP4 10.0.0.5", "c=IN IPX 10.0.0.5"),
            "IP4 or IP6",
        ),
        (
            "unknown network type",
            a.replace("c=IN IP4 10.0.0.5", "c=ATM NSAP 47.0005.80.ffe100"),
            "network type must be IN",
        ),
        ("empty c=", a.replace("c=IN IP4 10.0.0.5", "c="), "c= needs"),
        (
            "bad media-level c=",
            y.replace("b=AS:2048", "c=IN IP4 999.1.1.1"),
            "m=video (m-line 2)",
        ),
        (
            "bad a=rtcp",
            k.replace("a=rtcp:30173", "a=rtcp:70000"),
            "a=rtcp:70000",
        ),
        (
            "a=rtcp not a number",
            k.replace("a=rtcp:30173", "a=rtcp:rtcp"),
            "a=rtcp:rtcp",
        ),
        (
            "port 65535 without a=rtcp",
            a.replace("m=audio 16384", "m=audio 65535"),
            "RTCP",
        ),
        ("SDP version 1", a.replace("v=0", "v=1"), "v=0"),
        ("no v=", a.replace("v=0\r\n", ""), "v=0"),
        (
            "no o=",
            a.replace("o=- 1689069001 1689069003 IN IP4 10.0.0.5\r\n", ""),
            "o=",
        ),
        (
            "short o=",
            a.replace(
                "o=- 1689069001 1689069003 IN IP4 10.0.0.5",
                "o=- 1689069001",
            ),
            "o= needs 6 fields",
        ),
        ("no s=", a.replace("s=Asterisk\r\n", ""), "s="),
        ("no t=", a.replace("t=0 0\r\n", ""), "t="),
        ("two v=", a.replace("t=0 0", "t=0 0\r\nv=0"), "second v="),
        (
            "line without =",
            a.replace("a=ptime:20", "ptime 20"),
            "not an SDP line",
        ),
        (
            "upper-case type",
            a.replace("a=ptime:20", "A=ptime:20"),
            "not an SDP line",
        ),
        (
            "control character",
            a.replace("a=ptime:20", "a=ptime:\u{7}20"),
            "control characters",
        ),
        ("video only", video_only, "no audio stream"),
        ("no m= at all", before_audio.clone(), "no m= line"),
        (
            "m=application only",
            before_audio + "m=application 9 UDP/BFCP *\r\n",
            "no audio stream",
        ),
    ]
}

#[test]
fn malformed_bodies_are_refused() {
    for (name, text, why) in malformed_bodies() {
        match parse(&text) {
            Err(SdpError::Malformed(message)) => {
                assert!(
                    message.contains(why),
                    "{name}: {message:?} does not say {why:?}"
                );
                let err = SdpError::Malformed(message);
                assert!(err.to_string().starts_with("malformed SDP: "));
            }
            Err(other) => panic!("{name}: wrong error {other:?}"),
            Ok(_) => panic!("{name}: accepted\n{text}"),
        }
    }
}

#[test]
fn truncated_bodies_never_crash_and_are_refused_before_the_first_m_line() {
    for (name, text) in ALL {
        let text = crlf(text);
        // Up to the first format of the first m= line, the body is incomplete.
        let first_m = text.find("\r\nm=").unwrap() + 2;
        let first_format = first_m
            + text[first_m..]
                .match_indices(' ')
                .nth(2)
                .map(|(i, _)| i + 1)
                .unwrap();
        for cut in 0..text.len() {
            let body = &text[..cut];
            let parsed = parse(body);
            if cut <= first_format {
                assert!(
                    matches!(parsed, Err(SdpError::Malformed(_))),
                    "{name} cut at {cut}: {parsed:?}"
                );
            }
            if let Ok(offer) = parsed {
                let caps = caps(&[], true);
                // Must answer or refuse, never panic.
                if let Ok((_, _, answer)) = Local::answer(&caps, &transport(), &offer) {
                    check_answer_fits_offer(body, &answer);
                }
            }
        }
    }
}

#[test]
fn remote_accessors() {
    let offer = parse(YEALINK).unwrap();
    assert_eq!(offer.session_id(), "20045");
    assert_eq!(offer.version(), "20045");
    assert_eq!(offer.media_count(), 2);
    assert!(offer.has_video());
    assert!(!parse(BARESIP).unwrap().has_video());
    assert!(!parse(EXTRA_STREAMS).unwrap().has_video());
}

// ---------------------------------------------------------------------------------------
// Re-offers from the far end
// ---------------------------------------------------------------------------------------

#[test]
fn far_end_hold_and_resume() {
    let caps = caps(&[], true);
    let offer = parse(YEALINK).unwrap();
    let (mut local, first, answer) = Local::answer(&caps, &transport(), &offer).unwrap();
    assert_eq!(first.audio.as_ref().unwrap().direction, Direction::SendRecv);
    let id = local.session_id();
    assert!(answer.contains(&format!("o=- {id} 1 IN IP4 192.168.1.200\r\n")));

    // Hold: the phone sends sendonly, we answer recvonly, codecs kept, version + 1.
    let (held, text) = local
        .reanswer(&parse(YEALINK_HOLD).unwrap(), false)
        .unwrap();
    check_ours(&text);
    check_answer_fits_offer(YEALINK_HOLD, &text);
    let a = held.audio.as_ref().unwrap();
    assert_eq!(a.direction, Direction::RecvOnly);
    assert_eq!((a.codec.encoding, a.codec.pt), (Encoding::Pcmu, 0));
    assert_eq!(a.telephone_event, Some(101));
    assert_eq!(held.video.as_ref().unwrap().direction, Direction::RecvOnly);
    assert!(text.contains(&format!("o=- {id} 2 IN IP4 192.168.1.200\r\n")));
    assert!(text.contains("c=IN IP4 192.168.1.200\r\n"));
    for m in mlines(&text) {
        assert!(has_attribute(&m, "recvonly"), "{text}");
    }

    // Resume: sendrecv again.
    let resume = YEALINK.replace("20045 20045", "20045 20047");
    let (resumed, text) = local.reanswer(&parse(&resume).unwrap(), false).unwrap();
    assert_eq!(resumed, first);
    assert!(text.contains(&format!("o=- {id} 3 IN IP4")));
    assert_eq!(local.negotiated(), &first);
}

#[test]
fn re_offer_keeps_the_agreed_codec_while_it_is_offered() {
    let caps = caps(&[AudioCodec::Pcmu, AudioCodec::Opus], false);
    let (mut local, first, _) =
        Local::answer(&caps, &transport(), &parse(LINPHONE).unwrap()).unwrap();
    assert_eq!(first.audio.unwrap().codec.encoding, Encoding::Pcmu);

    // PCMU is no longer offered: the next of our order that is offered.
    let without_pcmu = LINPHONE
        .replace(
            "RTP/AVP 96 97 98 0 8 18 101 99 100",
            "RTP/AVP 96 97 98 8 18 101 99 100",
        )
        .replace("2093 1442", "2093 1443");
    let (n, _) = local
        .reanswer(&parse(&without_pcmu).unwrap(), false)
        .unwrap();
    let a = n.audio.unwrap();
    assert_eq!(
        (a.codec.encoding, a.codec.pt, a.telephone_event),
        (Encoding::Opus, 96, Some(101))
    );
    assert_eq!(a.codec.fmtp.as_deref(), Some("useinbandfec=1"));
    assert_eq!(a.codec.channels, 2);

    // PCMU is back, but opus is agreed and still offered: opus stays.
    let again = LINPHONE.replace("2093 1442", "2093 1444");
    let (n, text) = local.reanswer(&parse(&again).unwrap(), false).unwrap();
    assert_eq!(n.audio.unwrap().codec.encoding, Encoding::Opus);
    assert!(text.contains("m=audio 10000 RTP/AVP 96 101\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:96 opus/48000/2\r\n"));
    assert!(text.contains("a=rtpmap:101 telephone-event/48000\r\n"));
}

#[test]
fn we_hold_while_answering() {
    let caps = caps(&[], false);
    let (mut local, _, _) = Local::answer(&caps, &transport(), &parse(ASTERISK).unwrap()).unwrap();
    let refresh = ASTERISK.replace("1689069001 1689069003", "1689069001 1689069004");
    let (n, text) = local.reanswer(&parse(&refresh).unwrap(), true).unwrap();
    assert_eq!(n.audio.unwrap().direction, Direction::SendOnly);
    assert!(text.contains("a=sendonly\r\n"));
    // Both hold: inactive.
    let (n, text) = local
        .reanswer(&parse(HOLD_INACTIVE).unwrap(), true)
        .unwrap();
    assert_eq!(n.audio.unwrap().direction, Direction::Inactive);
    assert!(text.contains("a=inactive\r\n"));
    let held = refresh.replace("a=sendrecv", "a=sendonly");
    let (n, _) = local.reanswer(&parse(&held).unwrap(), true).unwrap();
    assert_eq!(n.audio.unwrap().direction, Direction::Inactive);
}

#[test]
fn re_offer_that_drops_m_lines_is_refused() {
    let caps = caps(&[], true);
    let (mut local, before, text) =
        Local::answer(&caps, &transport(), &parse(YEALINK).unwrap()).unwrap();
    let audio_only =
        YEALINK[..YEALINK.find("m=video").unwrap()].replace("20045 20045", "20045 20046");
    let err = local
        .reanswer(&parse(&audio_only).unwrap(), false)
        .unwrap_err();
    assert!(matches!(err, SdpError::Malformed(_)), "{err:?}");
    // Nothing changed.
    assert_eq!(local.negotiated(), &before);
    assert_eq!(local.sdp(), text);
}

#[test]
fn re_offer_without_common_codec_leaves_the_session_alone() {
    let caps = caps(&[], false);
    let (mut local, before, text) =
        Local::answer(&caps, &transport(), &parse(ASTERISK).unwrap()).unwrap();
    let err = local
        .reanswer(&parse(G729_ONLY).unwrap(), false)
        .unwrap_err();
    assert!(matches!(err, SdpError::NoCommonCodec(_)));
    assert_eq!(local.negotiated(), &before);
    assert_eq!(local.sdp(), text);
}

// ---------------------------------------------------------------------------------------
// Our offers, and two door phones talking to each other
// ---------------------------------------------------------------------------------------

fn other_transport() -> LocalTransport {
    LocalTransport {
        address: "192.168.1.201".parse().unwrap(),
        audio_port: 12000,
        video_port: Some(12002),
    }
}

#[test]
fn offer_lists_the_configured_codecs_in_order() {
    let (local, text) = Local::offer(
        &caps(&[AudioCodec::Opus, AudioCodec::Pcma], false),
        &transport(),
    )
    .unwrap();
    check_ours(&text);
    assert!(local.awaiting_answer());
    let lines = mlines(&text);
    assert_eq!(lines.len(), 1, "no video in audio mode\n{text}");
    assert_eq!(lines[0].formats, ["96", "8", "102", "101"]);
    assert!(has_attribute(&lines[0], "rtpmap:96 opus/48000/2"));
    assert!(has_attribute(&lines[0], "rtpmap:8 PCMA/8000"));
    assert!(has_attribute(&lines[0], "rtpmap:102 telephone-event/48000"));
    assert!(has_attribute(&lines[0], "rtpmap:101 telephone-event/8000"));
    assert!(has_attribute(&lines[0], "ptime:20"));
    assert!(has_attribute(&lines[0], "sendrecv"));

    // Video mode without a video port: no video.
    let t = LocalTransport {
        video_port: None,
        ..transport()
    };
    let (_, text) = Local::offer(&caps(&[], true), &t).unwrap();
    assert!(!text.contains("m=video"));
}

#[test]
fn two_door_phones_agree() {
    let (mut a, offer) = Local::offer(&caps(&[], true), &transport()).unwrap();
    let b_caps = caps(&[AudioCodec::Opus, AudioCodec::Pcmu], true);
    let (mut b, b_neg, answer) =
        Local::answer(&b_caps, &other_transport(), &parse(&offer).unwrap()).unwrap();
    check_ours(&answer);
    check_answer_fits_offer(&offer, &answer);
    let a_neg = a.accept_answer(&parse(&answer).unwrap()).unwrap();
    assert!(!a.awaiting_answer());

    let (aa, ba) = (a_neg.audio.as_ref().unwrap(), b_neg.audio.as_ref().unwrap());
    assert_eq!(aa.codec, ba.codec);
    assert_eq!(aa.codec.encoding, Encoding::Opus);
    assert_eq!(aa.codec.pt, 96);
    assert_eq!(aa.telephone_event, Some(102));
    assert_eq!(ba.telephone_event, Some(102));
    assert_eq!(aa.remote_rtp, addr("192.168.1.201:12000"));
    assert_eq!(aa.remote_rtcp, addr("192.168.1.201:12001"));
    assert_eq!(ba.remote_rtp, addr("192.168.1.200:10000"));
    assert_eq!(aa.local_port, 10000);
    assert_eq!(ba.local_port, 12000);
    assert_eq!(aa.direction, Direction::SendRecv);
    assert_eq!(ba.direction, Direction::SendRecv);

    let (av, bv) = (a_neg.video.as_ref().unwrap(), b_neg.video.as_ref().unwrap());
    assert_eq!(av.codec.pt, 97);
    assert_eq!(
        bv.codec.fmtp.as_deref(),
        Some("profile-level-id=42e01f;packetization-mode=1")
    );
    assert_eq!(
        av.codec.fmtp.as_deref(),
        Some("profile-level-id=42e01f;packetization-mode=1")
    );
    assert_eq!(av.remote_rtp, addr("192.168.1.201:12002"));
    assert_eq!(bv.remote_rtp, addr("192.168.1.200:10002"));

    // A holds: sendonly, B answers recvonly.
    let hold = a.reoffer(true);
    check_ours(&hold);
    assert!(a.awaiting_answer());
    assert_eq!(a.version(), 2);
    assert!(hold.contains("m=audio 10000 RTP/AVP 96 102\r\n"), "{hold}");
    assert!(hold.contains("m=video 10002 RTP/AVP 97\r\n"), "{hold}");
    assert!(hold.contains("c=IN IP4 192.168.1.200\r\n"));
    for m in mlines(&hold) {
        assert!(has_attribute(&m, "sendonly"), "{hold}");
    }
    let (b_neg, b_answer) = b.reanswer(&parse(&hold).unwrap(), false).unwrap();
    check_answer_fits_offer(&hold, &b_answer);
    assert_eq!(b_neg.audio.as_ref().unwrap().direction, Direction::RecvOnly);
    assert_eq!(b_neg.audio.as_ref().unwrap().codec.encoding, Encoding::Opus);
    let a_neg = a.accept_answer(&parse(&b_answer).unwrap()).unwrap();
    assert_eq!(a_neg.audio.as_ref().unwrap().direction, Direction::SendOnly);
    assert_eq!(a_neg.video.as_ref().unwrap().direction, Direction::SendOnly);

    // B holds too: B was only receiving, so its hold is inactive.
    let b_hold = b.reoffer(true);
    assert!(b_hold.contains("a=inactive\r\n"), "{b_hold}");
    assert!(!b_hold.contains("a=sendonly"));
    let (a_neg, a_answer) = a.reanswer(&parse(&b_hold).unwrap(), true).unwrap();
    assert_eq!(a_neg.audio.as_ref().unwrap().direction, Direction::Inactive);
    let b_neg = b.accept_answer(&parse(&a_answer).unwrap()).unwrap();
    assert_eq!(b_neg.audio.as_ref().unwrap().direction, Direction::Inactive);

    // Both resume.
    let b_resume = b.reoffer(false);
    let (_, a_answer) = a.reanswer(&parse(&b_resume).unwrap(), true).unwrap();
    let b_neg = b.accept_answer(&parse(&a_answer).unwrap()).unwrap();
    assert_eq!(b_neg.audio.as_ref().unwrap().direction, Direction::RecvOnly);
    let a_resume = a.reoffer(false);
    let (b_neg, b_answer) = b.reanswer(&parse(&a_resume).unwrap(), false).unwrap();
    assert_eq!(b_neg.audio.as_ref().unwrap().direction, Direction::SendRecv);
    let a_neg = a.accept_answer(&parse(&b_answer).unwrap()).unwrap();
    assert_eq!(a_neg.audio.as_ref().unwrap().direction, Direction::SendRecv);
    assert_eq!(a_neg.audio.as_ref().unwrap().codec.encoding, Encoding::Opus);
    assert_eq!(a_neg.video.as_ref().unwrap().direction, Direction::SendRecv);
}

#[test]
fn answer_in_audio_mode_refuses_our_video() {
    let (mut a, offer) = Local::offer(&caps(&[], true), &transport()).unwrap();
    let (_, b_neg, answer) = Local::answer(
        &caps(&[], false),
        &other_transport(),
        &parse(&offer).unwrap(),
    )
    .unwrap();
    assert!(b_neg.video.is_none());
    assert!(answer.contains("m=video 0 RTP/AVP 97\r\n"), "{answer}");
    let a_neg = a.accept_answer(&parse(&answer).unwrap()).unwrap();
    assert!(a_neg.video.is_none());
    assert_eq!(a_neg.audio.unwrap().codec.encoding, Encoding::Pcmu);
    // The refused stream stays refused in our next offer.
    let hold = a.reoffer(true);
    assert!(hold.contains("m=video 0 RTP/AVP 97\r\n"), "{hold}");
    assert_eq!(mlines(&hold).len(), 2);
}

#[test]
fn peer_without_common_codec_refuses_our_offer() {
    let (_, offer) = Local::offer(&caps(&[AudioCodec::Pcma], false), &transport()).unwrap();
    let err = Local::answer(
        &caps(&[AudioCodec::Pcmu], false),
        &other_transport(),
        &parse(&offer).unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        SdpError::NoCommonCodec("no common audio codec: offer has PCMA, we take PCMU".into())
    );
}

#[test]
fn answers_from_other_implementations() {
    // An Asterisk-style answer to our offer: one codec, its own telephone-event fmtp.
    let (mut a, _) = Local::offer(&caps(&[], false), &transport()).unwrap();
    let answer = "v=0\r\no=- 4242 4242 IN IP4 10.0.0.5\r\ns=Asterisk\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
                  m=audio 16400 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
                  a=fmtp:101 0-16\r\na=ptime:20\r\na=maxptime:150\r\na=sendrecv\r\n";
    let n = a.accept_answer(&parse(answer).unwrap()).unwrap();
    let audio = n.audio.unwrap();
    assert_eq!(
        (audio.codec.encoding, audio.codec.pt, audio.telephone_event),
        (Encoding::Pcma, 8, Some(101))
    );
    assert_eq!(audio.remote_rtp, addr("10.0.0.5:16400"));
    // A second answer to the same offer is not expected.
    assert!(matches!(
        a.accept_answer(&parse(answer).unwrap()),
        Err(SdpError::WrongState(_))
    ));

    // An answer with a codec we never offered.
    let (mut a, _) = Local::offer(&caps(&[AudioCodec::Pcmu], false), &transport()).unwrap();
    let g729 = answer
        .replace("RTP/AVP 8 101", "RTP/AVP 18 101")
        .replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:18 G729/8000");
    let err = a.accept_answer(&parse(&g729).unwrap()).unwrap_err();
    assert!(matches!(err, SdpError::NoCommonCodec(_)), "{err:?}");
    assert!(a.awaiting_answer(), "a refused answer changes nothing");

    // An answer that refuses audio.
    let refused = answer.replace("m=audio 16400", "m=audio 0");
    let err = a.accept_answer(&parse(&refused).unwrap()).unwrap_err();
    assert!(matches!(err, SdpError::NoCommonCodec(_)), "{err:?}");

    // An answer with a different number of m-lines.
    let (mut a, _) = Local::offer(&caps(&[], true), &transport()).unwrap();
    let err = a.accept_answer(&parse(answer).unwrap()).unwrap_err();
    assert!(matches!(err, SdpError::Malformed(_)), "{err:?}");

    // A recvonly answer (the far end holds from the start): we only send.
    let (mut a, _) = Local::offer(&caps(&[], false), &transport()).unwrap();
    let recvonly = answer.replace("a=sendrecv", "a=recvonly");
    let n = a.accept_answer(&parse(&recvonly).unwrap()).unwrap();
    assert_eq!(n.audio.unwrap().direction, Direction::SendOnly);
    // Our hold is then sendonly (the far end receives only, it does not hold us).
    assert!(a.reoffer(true).contains("a=sendonly\r\n"));
}

#[test]
fn a_refused_re_offer_can_be_withdrawn() {
    let (mut a, offer) = Local::offer(&caps(&[], false), &transport()).unwrap();
    let (mut b, _, answer) = Local::answer(
        &caps(&[], false),
        &other_transport(),
        &parse(&offer).unwrap(),
    )
    .unwrap();
    a.accept_answer(&parse(&answer).unwrap()).unwrap();
    let before = a.negotiated().clone();
    let hold = a.reoffer(true);
    assert_eq!(a.version(), 2);
    a.cancel_offer();
    assert!(!a.awaiting_answer());
    assert_eq!(a.negotiated(), &before);
    // The next description still gets a new version.
    let (_, again) = a
        .reanswer(&parse(&b.reoffer(false)).unwrap(), false)
        .unwrap();
    assert_ne!(again, hold);
    assert_eq!(a.version(), 3);
}
