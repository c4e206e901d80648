use doorphone_interfaces::config::document::AudioCodec;

use super::*;

fn body(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}

fn minimal(media: &[&str]) -> String {
    let mut lines = vec![
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
    ];
    lines.extend_from_slice(media);
    body(&lines)
}

fn caps() -> LocalCaps {
    LocalCaps::from_config(&Media::default(), false)
}

fn transport() -> LocalTransport {
    LocalTransport {
        address: "192.0.2.10".parse().unwrap(),
        audio_port: 10000,
        video_port: Some(10002),
    }
}

#[test]
fn directions() {
    use Direction::*;
    assert_eq!(SendOnly.reversed(), RecvOnly);
    assert_eq!(RecvOnly.reversed(), SendOnly);
    assert_eq!(SendRecv.reversed(), SendRecv);
    assert_eq!(Inactive.reversed(), Inactive);
    assert!(SendRecv.sends() && SendRecv.receives());
    assert!(SendOnly.sends() && !SendOnly.receives());
    assert!(!RecvOnly.sends() && RecvOnly.receives());
    assert!(!Inactive.sends() && !Inactive.receives());
    assert_eq!(SendRecv.intersect(SendOnly), SendOnly);
    assert_eq!(RecvOnly.intersect(SendOnly), Inactive);
    for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
        assert_eq!(Direction::from_attribute(d.as_str()), Some(d));
        assert_eq!(Direction::from_flags(d.sends(), d.receives()), d);
    }
}

#[test]
fn encodings() {
    let names: Vec<&str> = [
        Encoding::Pcmu,
        Encoding::Pcma,
        Encoding::G722,
        Encoding::Opus,
        Encoding::H264,
    ]
    .iter()
    .map(|e| e.name())
    .collect();
    assert_eq!(names, ["PCMU", "PCMA", "G722", "opus", "H264"]);
    assert_eq!(Encoding::G722.clock_rate(), 8000);
    assert_eq!(Encoding::Opus.clock_rate(), 48000);
    assert_eq!(Encoding::H264.kind(), MediaKind::Video);
    assert_eq!(
        Encoding::from_rtpmap("OPUS", 48000, Some(2)),
        Some(Encoding::Opus)
    );
    assert_eq!(Encoding::from_rtpmap("opus", 48000, Some(1)), None);
    assert_eq!(Encoding::from_rtpmap("G722", 16000, None), None);
    assert_eq!(
        Encoding::from_rtpmap("pcmu", 8000, Some(1)),
        Some(Encoding::Pcmu)
    );
}

#[test]
fn config_order_is_kept() {
    let media = Media {
        audio_codecs: vec![AudioCodec::Opus, AudioCodec::Pcma, AudioCodec::Opus],
        ..Media::default()
    };
    let caps = LocalCaps::from_config(&media, true);
    assert_eq!(caps.audio, [Encoding::Opus, Encoding::Pcma]);
    assert_eq!(caps.video, [Encoding::H264]);
    assert!(caps.want_video);
}

#[test]
fn fmtp_parameters() {
    let f = "profile-level-id=42801F; packetization-mode=1";
    assert_eq!(fmtp_param(f, "PACKETIZATION-MODE"), Some("1"));
    assert_eq!(fmtp_param(f, "profile-level-id"), Some("42801F"));
    assert!(h264_mode_1(Some(f)));
    assert!(!h264_mode_1(Some("profile-level-id=42801F")));
    assert!(!h264_mode_1(None));
}

#[test]
fn static_payload_types_without_rtpmap() {
    let remote = parse(&minimal(&["m=audio 4000 RTP/AVP 8 0 18"])).unwrap();
    let m = &remote.media[0];
    assert_eq!(m.classify(8), Format::Codec(Encoding::Pcma));
    assert_eq!(m.classify(0), Format::Codec(Encoding::Pcmu));
    assert_eq!(m.classify(18), Format::Other);
    assert_eq!(m.label(18), "G729");
}

#[test]
fn dynamic_codecs_need_dynamic_payload_types() {
    let remote = parse(&minimal(&[
        "m=audio 4000 RTP/AVP 40 96 120 0",
        "a=rtpmap:40 opus/48000/2",
        "a=rtpmap:96 telephone-event/8000",
        "a=rtpmap:120 PCMU/8000",
        "a=rtpmap:0 PCMA/8000",
    ]))
    .unwrap();
    let m = &remote.media[0];
    assert_eq!(m.classify(40), Format::Other);
    assert_eq!(m.classify(96), Format::Event(8000));
    assert_eq!(m.classify(120), Format::Codec(Encoding::Pcmu));
    // A static payload type whose rtpmap says something else is not trusted.
    assert_eq!(m.classify(0), Format::Other);
}

#[test]
fn scan_reports_the_line() {
    let err = parse(&minimal(&["m=audio 4000 RTP/AVP 0", "junk"])).unwrap_err();
    assert_eq!(
        err,
        SdpError::Malformed("line 7 is not an SDP line: \"junk\"".to_string())
    );
    let err = parse("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n")
        .unwrap_err();
    assert!(err.to_string().contains("t="), "{err}");
}

#[test]
fn control_characters_and_huge_bodies_are_refused() {
    let nul = minimal(&["m=audio 4000 RTP/AVP 0", "a=x\u{0}y"]);
    assert!(matches!(parse(&nul), Err(SdpError::Malformed(_))));
    let long = format!("a={}", "x".repeat(MAX_LINE));
    let text = minimal(&["m=audio 4000 RTP/AVP 0", &long]);
    assert!(matches!(parse(&text), Err(SdpError::Malformed(_))));
    let huge = minimal(&["m=audio 4000 RTP/AVP 0"]) + &"a=x\r\n".repeat(MAX_BODY / 5 + 1);
    assert!(matches!(parse(&huge), Err(SdpError::Malformed(_))));
}

#[test]
fn rtcp_attribute_and_default() {
    let remote = parse(&minimal(&[
        "m=audio 4000 RTP/AVP 0",
        "a=rtcp:4555 IN IP4 198.51.100.7",
        "m=video 5000 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
    ]))
    .unwrap();
    assert_eq!(
        remote.media[0].rtcp_addr(),
        "198.51.100.7:4555".parse().unwrap()
    );
    assert_eq!(
        remote.media[1].rtcp_addr(),
        "192.0.2.1:5001".parse().unwrap()
    );
    let err = parse(&minimal(&["m=audio 65535 RTP/AVP 0"])).unwrap_err();
    assert!(err.to_string().contains("RTCP"), "{err}");
    let err = parse(&minimal(&["m=audio 4000 RTP/AVP 0", "a=rtcp:0"])).unwrap_err();
    assert!(matches!(err, SdpError::Malformed(_)));
}

#[test]
fn rendered_offer_is_exact() {
    let mut caps = caps();
    caps.want_video = true;
    let (local, text) = Local::offer(&caps, &transport()).unwrap();
    let id = local.session_id();
    assert!(id > 0 && id < 1 << 31);
    let expected = format!(
        "v=0\r\n\
         o=- {id} 1 IN IP4 192.0.2.10\r\n\
         s=-\r\n\
         c=IN IP4 192.0.2.10\r\n\
         t=0 0\r\n\
         m=audio 10000 RTP/AVP 0 8 9 96 101 102\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:9 G722/8000\r\n\
         a=rtpmap:96 opus/48000/2\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\n\
         a=rtpmap:102 telephone-event/48000\r\n\
         a=fmtp:102 0-15\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n\
         m=video 10002 RTP/AVP 97\r\n\
         a=rtpmap:97 H264/90000\r\n\
         a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n\
         a=sendrecv\r\n"
    );
    assert_eq!(text, expected);
    assert_eq!(local.sdp(), expected);
    assert!(local.awaiting_answer());
}

#[test]
fn ipv6_transport() {
    let t = LocalTransport {
        address: "2001:db8::10".parse().unwrap(),
        audio_port: 10000,
        video_port: None,
    };
    let (_, text) = Local::offer(&caps(), &t).unwrap();
    assert!(text.contains("IN IP6 2001:db8::10\r\n"));
    assert!(text.contains("c=IN IP6 2001:db8::10\r\n"));
    let remote = parse(&text).unwrap();
    assert_eq!(remote.media_count(), 1);
    assert_eq!(remote.media[0].address, Some(t.address));
}

#[test]
fn session_ids_differ() {
    let a = Local::offer(&caps(), &transport()).unwrap().0.session_id();
    let b = Local::offer(&caps(), &transport()).unwrap().0.session_id();
    assert_ne!(a, b);
}

#[test]
fn unchanged_descriptions_keep_their_version() {
    let offer = parse(&minimal(&[
        "m=audio 4000 RTP/AVP 0 101",
        "a=rtpmap:101 telephone-event/8000",
    ]))
    .unwrap();
    let (mut local, _, first) = Local::answer(&caps(), &transport(), &offer).unwrap();
    assert_eq!(local.version(), 1);
    let (_, again) = local.reanswer(&offer, false).unwrap();
    assert_eq!(again, first);
    assert_eq!(local.version(), 1);
    let (_, held) = local.reanswer(&offer, true).unwrap();
    assert_eq!(local.version(), 2);
    assert!(held.contains("a=sendonly"));
    assert!(held.contains(&format!("o=- {} 2 IN IP4", local.session_id())));
}

#[test]
fn answers_without_a_pending_offer_are_refused() {
    let offer = parse(&minimal(&["m=audio 4000 RTP/AVP 0"])).unwrap();
    let (mut local, _, _) = Local::answer(&caps(), &transport(), &offer).unwrap();
    assert!(matches!(
        local.accept_answer(&offer),
        Err(SdpError::WrongState(_))
    ));
    local.reoffer(true);
    assert!(matches!(
        local.reanswer(&offer, false),
        Err(SdpError::WrongState(_))
    ));
    local.cancel_offer();
    assert!(local.reanswer(&offer, false).is_ok());
}
