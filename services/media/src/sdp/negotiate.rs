//! Offer/answer (RFC 3264): our side of a session across offers and answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::*;

/// The codec and telephone-event agreed on one m-line, as we write them.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Agreed {
    pub(super) codec: Codec,
    pub(super) event: Option<(u8, u32)>,
    /// Our `a=crypto` line, for SRTP.
    pub(super) crypto: Option<Sdes>,
}

/// The result of answering one offer.
pub(super) struct Outcome {
    pub(super) lines: Vec<Line>,
    pub(super) agreed: Vec<Option<Agreed>>,
    pub(super) remote_direction: Vec<Option<Direction>>,
    pub(super) negotiated: Negotiated,
}

/// State of our side of one session across offers and answers: the session id, the
/// version (incremented whenever our description changes), the last description we
/// sent, and the codecs agreed.
#[derive(Clone, Debug)]
pub struct Local {
    pub(super) session_id: u64,
    pub(super) version: u64,
    pub(super) caps: LocalCaps,
    pub(super) transport: LocalTransport,
    /// The session's m-lines.
    pub(super) lines: Vec<Line>,
    /// Per m-line, what the last completed exchange agreed.
    pub(super) agreed: Vec<Option<Agreed>>,
    /// Per m-line, the far end's direction in the last completed exchange.
    pub(super) remote_direction: Vec<Option<Direction>>,
    pub(super) negotiated: Negotiated,
    /// Our offer that waits for its answer.
    pub(super) pending: Option<Vec<Line>>,
    /// The m-lines of the last description sent, and its text.
    pub(super) sent: Vec<Line>,
    pub(super) text: String,
}

impl Local {
    /// Answer a remote offer that opens a session (first INVITE).
    ///
    /// The answer has the offer's m-lines in the same order; a stream we do not take gets
    /// port 0. Audio takes the first codec of our preference order that the offer carries
    /// (among those for which the offer also has a telephone-event at the same clock rate,
    /// when it has telephone-event at all), on the offer's payload type. Video is taken
    /// only in audio+video mode with a video port. An offer whose audio has no codec in
    /// common is refused with [`SdpError::NoCommonCodec`].
    pub fn answer(
        caps: &LocalCaps,
        transport: &LocalTransport,
        offer: &Remote,
    ) -> Result<(Local, Negotiated, String), SdpError> {
        let outcome = answer_offer(caps, transport, offer, false, &[])?;
        let mut local = Local::new(caps, transport);
        let negotiated = local.settle(outcome);
        let text = local.describe(local.lines.clone());
        Ok((local, negotiated, text))
    }

    /// Make an offer for an outgoing call: every configured audio codec in preference
    /// order, a telephone-event for each of their clock rates, and H.264 video in
    /// audio+video mode when a video port is given.
    ///
    /// With no audio codec in `caps`, PCMU is offered. With encryption, every stream
    /// carries an `a=crypto` line for each suite, each with its own fresh key, on
    /// `RTP/SAVP` when encryption is mandatory and on `RTP/AVP` when it is optional.
    pub fn offer(
        caps: &LocalCaps,
        transport: &LocalTransport,
    ) -> Result<(Local, String), SdpError> {
        let proto = match caps.encryption {
            Encryption::Mandatory => "RTP/SAVP",
            _ => "RTP/AVP",
        };
        let offer_crypto = || -> Result<Vec<Sdes>, SdpError> {
            if caps.encryption == Encryption::Off {
                return Ok(Vec::new());
            }
            (1u32..)
                .zip(Suite::ALL)
                .map(|(tag, suite)| Sdes::fresh(tag, suite))
                .collect()
        };
        let mut audio = caps.audio();
        if audio.is_empty() {
            audio.push(Encoding::Pcmu);
        }
        let codecs: Vec<Codec> = audio
            .iter()
            .map(|&e| Codec::new(e, e.offer_pt(), offer_fmtp(e)))
            .collect();
        let mut events: Vec<(u8, u32)> = Vec::new();
        for codec in &codecs {
            if !events.iter().any(|(_, clock)| *clock == codec.clock_rate) {
                events.push((event_pt(codec.clock_rate), codec.clock_rate));
            }
        }
        let mut lines = vec![Line {
            media: MediaKind::Audio.as_str().to_string(),
            proto: proto.to_string(),
            port: transport.audio_port,
            off_format: codecs[0].pt.to_string(),
            codecs,
            events,
            direction: Direction::SendRecv,
            crypto: offer_crypto()?,
        }];
        let video = caps.video();
        if caps.want_video
            && let Some(port) = transport.video_port
            && !video.is_empty()
        {
            let codecs: Vec<Codec> = video
                .iter()
                .map(|&e| Codec::new(e, e.offer_pt(), offer_fmtp(e)))
                .collect();
            lines.push(Line {
                media: MediaKind::Video.as_str().to_string(),
                proto: proto.to_string(),
                port,
                off_format: codecs[0].pt.to_string(),
                codecs,
                events: Vec::new(),
                direction: Direction::SendRecv,
                crypto: offer_crypto()?,
            });
        }
        let mut local = Local::new(caps, transport);
        local.lines = lines.clone();
        local.agreed = vec![None; lines.len()];
        local.remote_direction = vec![None; lines.len()];
        local.pending = Some(lines.clone());
        let text = local.describe(lines);
        Ok((local, text))
    }

    /// Take the remote answer to our offer (from [`Local::offer`] or [`Local::reoffer`]).
    ///
    /// The answer must have our m-lines in our order; of each stream we use the first
    /// codec of the answer that we offered, on the answer's payload type. An answer that
    /// refuses the audio stream or has no audio codec we offered is refused with
    /// [`SdpError::NoCommonCodec`]; the state is then unchanged.
    ///
    /// A stream we offered with `a=crypto` gets SRTP when the answer takes one of our
    /// lines (same tag and suite) with its own key. An answer whose audio is plain is
    /// refused with [`SdpError::Encryption`] when encryption is mandatory, or when it
    /// carries `a=crypto` lines we cannot use (we could not read its media).
    pub fn accept_answer(&mut self, answer: &Remote) -> Result<Negotiated, SdpError> {
        let Some(offer) = self.pending.clone() else {
            return Err(SdpError::WrongState(
                "no offer of ours is waiting for an answer".to_string(),
            ));
        };
        if answer.media.len() != offer.len() {
            return Err(malformed(format!(
                "the answer has {} m-lines, our offer had {}",
                answer.media.len(),
                offer.len()
            )));
        }
        let mut lines = offer.clone();
        let mut agreed = vec![None; offer.len()];
        let mut remote_direction = vec![None; offer.len()];
        let mut negotiated = Negotiated::default();
        for (i, (ours, theirs)) in offer.iter().zip(&answer.media).enumerate() {
            if !theirs.media.eq_ignore_ascii_case(&ours.media) {
                return Err(malformed(format!(
                    "m-line {}: the answer has m={} where our offer had m={}",
                    i + 1,
                    theirs.media,
                    ours.media
                )));
            }
            let Some(kind) = ours.kind() else {
                continue;
            };
            if ours.port == 0 {
                continue;
            }
            let slot = match kind {
                MediaKind::Audio => &mut negotiated.audio,
                MediaKind::Video => &mut negotiated.video,
            };
            if theirs.port == 0 || slot.is_some() {
                lines[i].disable();
                continue;
            }
            let found = theirs.pts.iter().find_map(|&pt| match theirs.classify(pt) {
                Format::Codec(e) => ours
                    .codecs
                    .iter()
                    .find(|c| c.encoding == e)
                    .map(|c| (pt, c.clone())),
                _ => None,
            });
            let Some((pt, our_codec)) = found else {
                if kind == MediaKind::Audio {
                    return Err(SdpError::NoCommonCodec(format!(
                        "no common audio codec: answer has {}, we offered {}",
                        theirs.labels(),
                        names(ours.codecs.iter().map(|c| c.encoding))
                    )));
                }
                lines[i].disable();
                continue;
            };
            let clock = our_codec.clock_rate;
            let event = match kind {
                MediaKind::Audio => theirs.event_for(clock),
                MediaKind::Video => None,
            };
            let crypto = match accepted_crypto(self.caps.encryption, ours, theirs) {
                Ok(crypto) => crypto,
                Err(e) if kind == MediaKind::Audio => return Err(e),
                Err(_) => {
                    lines[i].disable();
                    continue;
                }
            };
            lines[i].crypto = crypto.iter().map(|(o, _)| o.clone()).collect();
            let remote = theirs.effective_direction();
            let direction = remote.reversed().intersect(ours.direction);
            *slot = Some(Stream {
                codec: Codec::new(our_codec.encoding, pt, theirs.fmtp(pt).map(str::to_string)),
                telephone_event: event,
                remote_rtp: theirs.rtp_addr(),
                remote_rtcp: theirs.rtcp_addr(),
                direction,
                local_port: ours.port,
                crypto: crypto.as_ref().map(|(o, t)| Crypto {
                    suite: o.suite,
                    send: o.key.clone(),
                    receive: t.key.clone(),
                }),
            });
            agreed[i] = Some(Agreed {
                codec: Codec { pt, ..our_codec },
                event: event.map(|pt| (pt, clock)),
                crypto: crypto.map(|(o, _)| o),
            });
            remote_direction[i] = Some(remote);
        }
        if negotiated.audio.is_none() {
            return Err(SdpError::NoCommonCodec(
                "the answer refuses the audio stream (port 0)".to_string(),
            ));
        }
        same_protection(&self.negotiated, &negotiated)?;
        self.lines = lines;
        self.agreed = agreed;
        self.remote_direction = remote_direction;
        self.negotiated = negotiated.clone();
        self.pending = None;
        Ok(negotiated)
    }

    /// Answer a re-offer within this session (the far end holds, resumes, or refreshes).
    ///
    /// The codecs agreed before are kept when the re-offer still carries them. `hold`: we
    /// are holding the call, so our direction is at most sendonly. The version goes up
    /// when the answer differs from our last description.
    pub fn reanswer(
        &mut self,
        offer: &Remote,
        hold: bool,
    ) -> Result<(Negotiated, String), SdpError> {
        if self.pending.is_some() {
            return Err(SdpError::WrongState(
                "an offer of ours is waiting for its answer (glare)".to_string(),
            ));
        }
        if offer.media.len() < self.lines.len() {
            return Err(malformed(format!(
                "the re-offer has {} m-lines, the session has {}",
                offer.media.len(),
                self.lines.len()
            )));
        }
        let outcome = answer_offer(&self.caps, &self.transport, offer, hold, &self.agreed)?;
        same_protection(&self.negotiated, &outcome.negotiated)?;
        let negotiated = self.settle(outcome);
        let text = self.describe(self.lines.clone());
        Ok((negotiated, text))
    }

    /// A re-offer of our own with a new direction, keeping the agreed codecs: hold is
    /// sendonly, or inactive when the far end was already only sending (it holds us);
    /// resume is sendrecv. The answer goes to [`Local::accept_answer`].
    pub fn reoffer(&mut self, hold: bool) -> String {
        let lines: Vec<Line> = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let mut line = line.clone();
                if line.port == 0 {
                    return line;
                }
                if let Some(Some(agreed)) = self.agreed.get(i) {
                    line.codecs = vec![agreed.codec.clone()];
                    line.events = agreed.event.into_iter().collect();
                }
                line.direction = if !hold {
                    Direction::SendRecv
                } else {
                    match self.remote_direction.get(i).copied().flatten() {
                        Some(remote) if !remote.receives() => Direction::Inactive,
                        _ => Direction::SendOnly,
                    }
                };
                line
            })
            .collect();
        self.pending = Some(lines.clone());
        self.describe(lines)
    }

    /// Forget our offer that waits for an answer (the far end refused it); the session
    /// goes on as agreed before.
    pub fn cancel_offer(&mut self) {
        self.pending = None;
    }

    /// Whether an offer of ours waits for its answer.
    pub fn awaiting_answer(&self) -> bool {
        self.pending.is_some()
    }

    /// The last description we sent.
    pub fn sdp(&self) -> &str {
        &self.text
    }

    /// What the last completed exchange agreed.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The `o=` session id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The `o=` version of the last description we sent.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn new(caps: &LocalCaps, transport: &LocalTransport) -> Local {
        Local {
            session_id: new_session_id(),
            version: 1,
            caps: caps.clone(),
            transport: *transport,
            lines: Vec::new(),
            agreed: Vec::new(),
            remote_direction: Vec::new(),
            negotiated: Negotiated::default(),
            pending: None,
            sent: Vec::new(),
            text: String::new(),
        }
    }

    fn settle(&mut self, outcome: Outcome) -> Negotiated {
        self.lines = outcome.lines;
        self.agreed = outcome.agreed;
        self.remote_direction = outcome.remote_direction;
        self.negotiated = outcome.negotiated.clone();
        outcome.negotiated
    }

    /// The text of a new description; the version goes up when it differs from the last
    /// one sent (RFC 3264 §8).
    fn describe(&mut self, lines: Vec<Line>) -> String {
        if !self.text.is_empty() {
            if lines == self.sent {
                return self.text.clone();
            }
            self.version += 1;
        }
        self.text = render(
            self.session_id,
            self.version,
            self.transport.address,
            &lines,
        );
        self.sent = lines;
        self.text.clone()
    }
}

/// Answer an offer: one answer m-line per offered m-line.
pub(super) fn answer_offer(
    caps: &LocalCaps,
    transport: &LocalTransport,
    offer: &Remote,
    hold: bool,
    keep: &[Option<Agreed>],
) -> Result<Outcome, SdpError> {
    let audio_prefs = caps.audio();
    let video_prefs = caps.video();
    let limit = if hold {
        Direction::SendOnly
    } else {
        Direction::SendRecv
    };
    let count = offer.media.len();
    let mut outcome = Outcome {
        lines: Vec::with_capacity(count),
        agreed: vec![None; count],
        remote_direction: vec![None; count],
        negotiated: Negotiated::default(),
    };
    let mut audio_problem: Option<SdpError> = None;
    for (i, m) in offer.media.iter().enumerate() {
        let off_format = m.formats.first().map(String::as_str).unwrap_or("0");
        let kept = keep
            .get(i)
            .and_then(Option::as_ref)
            .map(|a| a.codec.encoding);
        let taken: Option<(MediaKind, u16, &[Encoding])> = match m.kind() {
            Some(MediaKind::Audio) if outcome.negotiated.audio.is_none() => {
                if m.port == 0 {
                    audio_problem.get_or_insert_with(|| {
                        SdpError::Unsupported(
                            "the offer disables its audio stream (port 0)".to_string(),
                        )
                    });
                    None
                } else if !carried(caps.encryption, m) {
                    audio_problem.get_or_insert_with(|| {
                        SdpError::Unsupported(if m.secure_rtp() {
                            format!(
                                "the offer's audio stream uses {}; media encryption is off for this call",
                                m.proto
                            )
                        } else {
                            format!(
                                "the offer's audio stream uses {}; this door phone speaks RTP/AVP and RTP/SAVP",
                                m.proto
                            )
                        })
                    });
                    None
                } else {
                    Some((
                        MediaKind::Audio,
                        transport.audio_port,
                        audio_prefs.as_slice(),
                    ))
                }
            }
            Some(MediaKind::Video)
                if outcome.negotiated.video.is_none()
                    && caps.want_video
                    && m.port != 0
                    && carried(caps.encryption, m) =>
            {
                transport
                    .video_port
                    .map(|port| (MediaKind::Video, port, video_prefs.as_slice()))
            }
            _ => None,
        };
        let Some((kind, port, prefs)) = taken else {
            outcome
                .lines
                .push(Line::disabled(&m.media, &m.proto, off_format));
            continue;
        };
        let Some((pt, encoding, event)) = choose(prefs, kind, m, kept) else {
            if kind == MediaKind::Audio {
                audio_problem.get_or_insert_with(|| {
                    SdpError::NoCommonCodec(format!(
                        "no common audio codec: offer has {}, we take {}",
                        m.labels(),
                        names(prefs.iter().copied())
                    ))
                });
            }
            outcome
                .lines
                .push(Line::disabled(&m.media, &m.proto, off_format));
            continue;
        };
        let kept_crypto = keep
            .get(i)
            .and_then(Option::as_ref)
            .and_then(|a| a.crypto.as_ref());
        let crypto = match offered_crypto(caps.encryption, m, kept_crypto) {
            Ok(crypto) => crypto,
            Err(e) => {
                if kind == MediaKind::Audio {
                    audio_problem.get_or_insert(e);
                }
                outcome
                    .lines
                    .push(Line::disabled(&m.media, &m.proto, off_format));
                continue;
            }
        };
        let remote = m.effective_direction();
        let direction = remote.reversed().intersect(limit);
        let their_fmtp = m.fmtp(pt).map(str::to_string);
        let ours = Codec::new(encoding, pt, answer_fmtp(encoding, their_fmtp.as_deref()));
        let events: Vec<(u8, u32)> = event.map(|e| (e, ours.clock_rate)).into_iter().collect();
        outcome.lines.push(Line {
            media: m.media.clone(),
            proto: m.proto.clone(),
            port,
            off_format: pt.to_string(),
            codecs: vec![ours.clone()],
            events: events.clone(),
            direction,
            crypto: crypto.iter().map(|(_, o)| o.clone()).collect(),
        });
        let stream = Stream {
            codec: Codec::new(encoding, pt, their_fmtp),
            telephone_event: event,
            remote_rtp: m.rtp_addr(),
            remote_rtcp: m.rtcp_addr(),
            direction,
            local_port: port,
            crypto: crypto.as_ref().map(|(t, o)| Crypto {
                suite: o.suite,
                send: o.key.clone(),
                receive: t.key.clone(),
            }),
        };
        match kind {
            MediaKind::Audio => outcome.negotiated.audio = Some(stream),
            MediaKind::Video => outcome.negotiated.video = Some(stream),
        }
        outcome.agreed[i] = Some(Agreed {
            codec: ours,
            event: events.first().copied(),
            crypto: crypto.map(|(_, o)| o),
        });
        outcome.remote_direction[i] = Some(remote);
    }
    if outcome.negotiated.audio.is_none() {
        return Err(audio_problem.unwrap_or_else(|| malformed("no audio stream (m=audio)")));
    }
    Ok(outcome)
}

/// Whether an offered m-line's transport is one we take: RTP/AVP always, RTP/SAVP
/// when encryption is on.
fn carried(encryption: Encryption, m: &RemoteMedia) -> bool {
    m.plain_rtp() || (m.secure_rtp() && encryption != Encryption::Off)
}

/// The SRTP of an offered m-line we answer: the first usable `a=crypto` line of the
/// offer (the far end's key) and ours with the same tag and suite. Our key is the one
/// agreed before in this session when the suite stays, else a fresh one. `None`:
/// plain RTP. Refused when encryption is mandatory or the offer is `RTP/SAVP` and no
/// line is usable.
fn offered_crypto(
    encryption: Encryption,
    m: &RemoteMedia,
    kept: Option<&Sdes>,
) -> Result<Option<(Sdes, Sdes)>, SdpError> {
    if encryption == Encryption::Off {
        return Ok(None);
    }
    let Some(theirs) = m.crypto.first() else {
        if encryption == Encryption::Mandatory || m.secure_rtp() {
            return Err(SdpError::Encryption(format!(
                "media encryption is {} and the offer's {} stream is not encrypted: {}",
                if m.secure_rtp() {
                    "required by RTP/SAVP"
                } else {
                    "mandatory"
                },
                m.media,
                m.no_crypto()
            )));
        }
        return Ok(None);
    };
    let key = match kept {
        Some(k) if k.suite == theirs.suite => k.key.clone(),
        _ => Key::random()?,
    };
    let ours = Sdes {
        tag: theirs.tag,
        suite: theirs.suite,
        key,
    };
    Ok(Some((theirs.clone(), ours)))
}

/// The SRTP of an answered m-line: our offered line the answer took (same tag and
/// suite) and the answer's. `None`: plain RTP.
fn accepted_crypto(
    encryption: Encryption,
    ours: &Line,
    theirs: &RemoteMedia,
) -> Result<Option<(Sdes, Sdes)>, SdpError> {
    let refuse = |why: String| {
        Err(SdpError::Encryption(format!(
            "the answer's {} stream {why}",
            theirs.media
        )))
    };
    if ours.crypto.is_empty() {
        if theirs.secure_rtp() {
            return refuse(format!("uses {} to a plain offer", theirs.proto));
        }
        return Ok(None);
    }
    let found = theirs.crypto.iter().find_map(|t| {
        ours.crypto
            .iter()
            .find(|o| o.tag == t.tag && o.suite == t.suite)
            .map(|o| (o.clone(), t.clone()))
    });
    match found {
        Some(pair) => Ok(Some(pair)),
        None if !theirs.crypto.is_empty() => {
            refuse("takes none of our a=crypto lines (tag and suite)".to_string())
        }
        None if encryption == Encryption::Mandatory
            || theirs.secure_rtp()
            || theirs.crypto_refused.is_some() =>
        {
            refuse(format!("is not encrypted: {}", theirs.no_crypto()))
        }
        None => Ok(None),
    }
}

/// A call stays on SRTP or on plain RTP: its pipeline cannot switch.
fn same_protection(before: &Negotiated, after: &Negotiated) -> Result<(), SdpError> {
    let (Some(a), Some(b)) = (&before.audio, &after.audio) else {
        return Ok(());
    };
    match (a.crypto.is_some(), b.crypto.is_some()) {
        (true, false) => Err(SdpError::Encryption(
            "the call's media is SRTP and the new description is plain RTP".to_string(),
        )),
        (false, true) => Err(SdpError::Encryption(
            "the call's media is plain RTP and the new description asks for SRTP".to_string(),
        )),
        _ => Ok(()),
    }
}

/// The codec to take from an offered m-line: the one agreed before if it is still
/// offered, else the first of our preference order that is offered, preferring those
/// that have a telephone-event at their clock rate when the offer has telephone-event.
/// Returns the offer's payload type, the codec and the telephone-event payload type.
pub(super) fn choose(
    prefs: &[Encoding],
    kind: MediaKind,
    m: &RemoteMedia,
    keep: Option<Encoding>,
) -> Option<(u8, Encoding, Option<u8>)> {
    let offered: Vec<(u8, Encoding)> = m
        .pts
        .iter()
        .filter_map(|&pt| match m.classify(pt) {
            Format::Codec(e) if e.kind() == kind => Some((pt, e)),
            _ => None,
        })
        .collect();
    let pt_of = |e: Encoding| offered.iter().find(|(_, x)| *x == e).map(|(pt, _)| *pt);
    let event = |e: Encoding| match kind {
        MediaKind::Audio => m.event_for(e.clock_rate()),
        MediaKind::Video => None,
    };
    if let Some(k) = keep
        && prefs.contains(&k)
        && let Some(pt) = pt_of(k)
    {
        return Some((pt, k, event(k)));
    }
    let candidates: Vec<(u8, Encoding)> = prefs
        .iter()
        .filter_map(|&e| pt_of(e).map(|pt| (pt, e)))
        .collect();
    let with_event = if kind == MediaKind::Audio && m.has_events() {
        candidates.iter().find(|(_, e)| event(*e).is_some())
    } else {
        None
    };
    with_event
        .or(candidates.first())
        .map(|&(pt, e)| (pt, e, event(e)))
}

/// A session id: a number below 2^31, as some stacks read `o=` fields as 32-bit.
pub(super) fn new_session_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x % 0x7FFF_FFFE) + 1
}
