//! SDES (RFC 4568) lines and SRTP negotiation.

use super::*;

/// 30 bytes 0..30 in base64.
const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";
/// 30 bytes of 0xff.
const KEY_B: &str = "////////////////////////////////////////";

fn body(proto: &str, extra: &[&str]) -> String {
    let mut lines = vec![
        "v=0".to_string(),
        "o=- 1 1 IN IP4 192.0.2.1".to_string(),
        "s=-".to_string(),
        "c=IN IP4 192.0.2.1".to_string(),
        "t=0 0".to_string(),
        format!("m=audio 4000 {proto} 0 101"),
        "a=rtpmap:101 telephone-event/8000".to_string(),
    ];
    lines.extend(extra.iter().map(|l| l.to_string()));
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}

fn caps(encryption: Encryption) -> LocalCaps {
    let mut caps = LocalCaps::from_config(&Media::default(), false);
    caps.encryption = encryption;
    caps
}

fn transport() -> LocalTransport {
    LocalTransport {
        address: "192.0.2.10".parse().unwrap(),
        audio_port: 10000,
        video_port: None,
    }
}

fn key_bytes(b64: &str) -> [u8; KEY_LEN] {
    parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{b64}"))
        .unwrap()
        .key
        .bytes()
        .to_owned()
}

/// The `a=crypto` values of a description we wrote.
fn crypto_lines(text: &str) -> Vec<Sdes> {
    text.lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| parse_crypto(v).expect("our own a=crypto line reads"))
        .collect()
}

#[test]
fn a_line_reads_with_and_without_lifetime() {
    let line = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}")).unwrap();
    assert_eq!(line.tag, 1);
    assert_eq!(line.suite, Suite::AesCm128HmacSha1_80);
    let expected: Vec<u8> = (0u8..30).collect();
    assert_eq!(line.key.bytes().as_slice(), expected.as_slice());
    let line = parse_crypto(&format!("7 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}|2^31")).unwrap();
    assert_eq!(line.tag, 7);
    assert_eq!(line.suite, Suite::AesCm128HmacSha1_32);
    assert_eq!(line.key.bytes(), &[0xff; KEY_LEN]);
    assert!(parse_crypto(&format!("2 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}|1048576")).is_ok());
}

#[test]
fn hostile_lines_are_refused_without_showing_the_key() {
    let long_key = "A".repeat(60);
    let cases = [
        String::new(),
        "x AES_CM_128_HMAC_SHA1_80 inline:AAAA".to_string(),
        "1234567890 AES_CM_128_HMAC_SHA1_80 inline:AAAA".to_string(),
        "-1 AES_CM_128_HMAC_SHA1_80 inline:AAAA".to_string(),
        "1".to_string(),
        "1 AES_CM_128_HMAC_SHA1_80".to_string(),
        format!("1 AES_256_CM_HMAC_SHA1_80 inline:{KEY_A}"),
        format!("1 F8_128_HMAC_SHA1_80 inline:{KEY_A}"),
        format!("1 aes_cm_128_hmac_sha1_80 inline:{KEY_A}"),
        "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64!".to_string(),
        "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA".to_string(),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{long_key}"),
        "1 AES_CM_128_HMAC_SHA1_80 inline:".to_string(),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^20|1:4"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|1:4"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^99"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|x"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^20|2^20"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A};inline:{KEY_B}"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A} UNENCRYPTED_SRTP"),
        format!("1 AES_CM_128_HMAC_SHA1_80 uri:{KEY_A}"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}=="),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", "\u{e9}".repeat(40)),
    ];
    for value in &cases {
        let why = parse_crypto(value).expect_err(value);
        assert!(
            !why.contains(KEY_A) && !why.contains(KEY_B) && !why.contains("AAAA"),
            "{value:?}: {why}"
        );
    }
}

#[test]
fn keys_never_show_in_debug() {
    let key = Key::random().unwrap();
    assert_eq!(format!("{key:?}"), "Key(..)");
    let crypto = Crypto {
        suite: Suite::AesCm128HmacSha1_80,
        send: key.clone(),
        receive: key,
    };
    let shown = format!("{crypto:?}");
    assert!(
        !shown.contains(&format!("{:?}", crypto.send.bytes())),
        "{shown}"
    );
}

#[test]
fn fresh_keys_differ() {
    let a = Key::random().unwrap();
    let b = Key::random().unwrap();
    assert_ne!(a, b);
    assert_ne!(a.bytes(), &[0; KEY_LEN]);
}

#[test]
fn offers_carry_both_suites_with_their_own_keys() {
    let (_, plain) = Local::offer(&caps(Encryption::Off), &transport()).unwrap();
    assert!(plain.contains("m=audio 10000 RTP/AVP "), "{plain}");
    assert!(!plain.contains("a=crypto"), "{plain}");

    let (_, optional) = Local::offer(&caps(Encryption::Optional), &transport()).unwrap();
    assert!(optional.contains("m=audio 10000 RTP/AVP "), "{optional}");
    let (_, mandatory) = Local::offer(&caps(Encryption::Mandatory), &transport()).unwrap();
    assert!(mandatory.contains("m=audio 10000 RTP/SAVP "), "{mandatory}");
    for text in [&optional, &mandatory] {
        let lines = crypto_lines(text);
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            (lines[0].tag, lines[0].suite),
            (1, Suite::AesCm128HmacSha1_80)
        );
        assert_eq!(
            (lines[1].tag, lines[1].suite),
            (2, Suite::AesCm128HmacSha1_32)
        );
        assert_ne!(lines[0].key, lines[1].key);
        // What we write, our parser reads back.
        let remote = parse(text).unwrap();
        assert_eq!(remote.media[0].crypto, lines);
    }
    assert_ne!(
        crypto_lines(&optional)[0].key,
        crypto_lines(&mandatory)[0].key
    );
}

#[test]
fn an_answer_takes_the_first_suite_we_speak_with_a_fresh_key() {
    let offer = body(
        "RTP/SAVP",
        &[
            &format!("a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{KEY_A}{KEY_A}"),
            &format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_A}"),
            &format!("a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}"),
        ],
    );
    for encryption in [Encryption::Optional, Encryption::Mandatory] {
        let remote = parse(&offer).unwrap();
        let (_, negotiated, text) =
            Local::answer(&caps(encryption), &transport(), &remote).unwrap();
        assert!(text.contains("m=audio 10000 RTP/SAVP 0 101\r\n"), "{text}");
        let ours = crypto_lines(&text);
        assert_eq!(ours.len(), 1, "{text}");
        assert_eq!(
            (ours[0].tag, ours[0].suite),
            (2, Suite::AesCm128HmacSha1_32)
        );
        let crypto = negotiated.audio.unwrap().crypto.unwrap();
        assert_eq!(crypto.suite, Suite::AesCm128HmacSha1_32);
        assert_eq!(crypto.receive.bytes(), &key_bytes(KEY_A));
        assert_eq!(crypto.send, ours[0].key);
        assert_ne!(crypto.send, crypto.receive);
    }
}

#[test]
fn optional_takes_srtp_on_avp_and_plain_rtp() {
    let offer = body(
        "RTP/AVP",
        &[&format!(
            "a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"
        )],
    );
    let (_, negotiated, text) = Local::answer(
        &caps(Encryption::Optional),
        &transport(),
        &parse(&offer).unwrap(),
    )
    .unwrap();
    assert!(text.contains("m=audio 10000 RTP/AVP 0 101\r\n"), "{text}");
    assert_eq!(crypto_lines(&text)[0].tag, 5);
    assert!(negotiated.audio.unwrap().crypto.is_some());

    let (_, negotiated, text) = Local::answer(
        &caps(Encryption::Optional),
        &transport(),
        &parse(&body("RTP/AVP", &[])).unwrap(),
    )
    .unwrap();
    assert!(!text.contains("a=crypto"), "{text}");
    assert!(negotiated.audio.unwrap().crypto.is_none());

    // Encryption off: the keys are ignored, the call is plain.
    let (_, negotiated, text) = Local::answer(
        &caps(Encryption::Off),
        &transport(),
        &parse(&offer).unwrap(),
    )
    .unwrap();
    assert!(!text.contains("a=crypto"), "{text}");
    assert!(negotiated.audio.unwrap().crypto.is_none());
}

#[test]
fn mandatory_refuses_a_plain_offer_and_off_refuses_savp() {
    let plain = parse(&body("RTP/AVP", &[])).unwrap();
    let err = Local::answer(&caps(Encryption::Mandatory), &transport(), &plain).unwrap_err();
    assert!(matches!(err, SdpError::Encryption(_)), "{err:?}");
    assert!(err.to_string().contains("not encrypted"), "{err}");
    // The same offer is fine when encryption is off.
    assert!(Local::answer(&caps(Encryption::Off), &transport(), &plain).is_ok());

    let savp = parse(&body(
        "RTP/SAVP",
        &[&format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"
        )],
    ))
    .unwrap();
    let err = Local::answer(&caps(Encryption::Off), &transport(), &savp).unwrap_err();
    assert!(matches!(err, SdpError::Unsupported(_)), "{err:?}");
}

#[test]
fn offers_with_only_unusable_keys_are_refused() {
    let hostile = [
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:%%%%".to_string(),
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA".to_string(),
        format!("a=crypto:1 NULL_HMAC_SHA1_80 inline:{KEY_A}"),
        format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^20|1:32"),
        format!("a=crypto:99999999999 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"),
        "a=crypto:".to_string(),
        "a=crypto".to_string(),
    ];
    for line in &hostile {
        for (proto, encryption) in [
            ("RTP/SAVP", Encryption::Optional),
            ("RTP/SAVP", Encryption::Mandatory),
            ("RTP/AVP", Encryption::Mandatory),
        ] {
            let remote = parse(&body(proto, &[line])).unwrap();
            let err = Local::answer(&caps(encryption), &transport(), &remote).unwrap_err();
            assert!(
                matches!(err, SdpError::Encryption(_)),
                "{line} {proto}: {err:?}"
            );
            assert!(!err.to_string().contains(KEY_A), "{err}");
        }
        // Optional and RTP/AVP: the unusable key is not taken, the call is plain.
        let remote = parse(&body("RTP/AVP", &[line])).unwrap();
        let (_, n, _) = Local::answer(&caps(Encryption::Optional), &transport(), &remote).unwrap();
        assert!(n.audio.unwrap().crypto.is_none(), "{line}");
    }
    // A usable line after an unusable one is taken.
    let remote = parse(&body(
        "RTP/SAVP",
        &[
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
            &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"),
        ],
    ))
    .unwrap();
    let (_, n, _) = Local::answer(&caps(Encryption::Mandatory), &transport(), &remote).unwrap();
    assert!(n.audio.unwrap().crypto.is_some());
}

/// The far end's answer to our offer, with its `a=crypto` lines.
fn answer_to(proto: &str, crypto: &[String]) -> Remote {
    let lines: Vec<&str> = crypto.iter().map(String::as_str).collect();
    parse(&body(proto, &lines)).unwrap()
}

#[test]
fn an_answer_must_take_one_of_our_lines() {
    let (mut local, offer) = Local::offer(&caps(Encryption::Mandatory), &transport()).unwrap();
    let ours = crypto_lines(&offer);
    // Plain: refused, the offer still waits.
    let err = local.accept_answer(&answer_to("RTP/AVP", &[])).unwrap_err();
    assert!(matches!(err, SdpError::Encryption(_)), "{err:?}");
    // A tag we did not offer, or our tag with another suite: refused.
    for line in [
        format!("a=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}"),
        format!("a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}"),
    ] {
        let err = local
            .accept_answer(&answer_to("RTP/SAVP", &[line]))
            .unwrap_err();
        assert!(matches!(err, SdpError::Encryption(_)), "{err:?}");
    }
    let n = local
        .accept_answer(&answer_to(
            "RTP/SAVP",
            &[format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}")],
        ))
        .unwrap();
    let crypto = n.audio.unwrap().crypto.unwrap();
    assert_eq!(crypto.suite, Suite::AesCm128HmacSha1_32);
    assert_eq!(crypto.send, ours[1].key);
    assert_eq!(crypto.receive.bytes(), &[0xff; KEY_LEN]);
    // Our re-offer (hold) carries only the agreed line, with the same key.
    let hold = local.reoffer(true);
    let again = crypto_lines(&hold);
    assert_eq!(again, vec![ours[1].clone()], "{hold}");
}

#[test]
fn an_optional_offer_accepts_a_plain_answer() {
    let (mut local, _) = Local::offer(&caps(Encryption::Optional), &transport()).unwrap();
    let n = local.accept_answer(&answer_to("RTP/AVP", &[])).unwrap();
    assert!(n.audio.unwrap().crypto.is_none());
    assert!(!local.reoffer(true).contains("a=crypto"));
}

#[test]
fn a_reoffer_with_a_new_key_rekeys_and_ours_stays() {
    let first = body(
        "RTP/SAVP",
        &[&format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"
        )],
    );
    let (mut local, n, text) = Local::answer(
        &caps(Encryption::Mandatory),
        &transport(),
        &parse(&first).unwrap(),
    )
    .unwrap();
    let before = n.audio.unwrap().crypto.unwrap();
    let rekeyed = body(
        "RTP/SAVP",
        &[&format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}"
        )],
    )
    .replace("o=- 1 1", "o=- 1 2");
    let (n, again) = local.reanswer(&parse(&rekeyed).unwrap(), false).unwrap();
    let after = n.audio.unwrap().crypto.unwrap();
    assert_eq!(after.receive.bytes(), &[0xff; KEY_LEN]);
    assert_eq!(after.send, before.send);
    assert_eq!(crypto_lines(&again), crypto_lines(&text));
    // The call cannot turn plain.
    let err = local
        .reanswer(&parse(&body("RTP/AVP", &[])).unwrap(), false)
        .unwrap_err();
    assert!(matches!(err, SdpError::Encryption(_)), "{err:?}");
}

#[test]
fn video_rides_in_srtp_with_keys_of_its_own() {
    let mut caps = LocalCaps::from_config(&Media::default(), true);
    caps.encryption = Encryption::Mandatory;
    let transport = LocalTransport {
        video_port: Some(10002),
        ..transport()
    };
    let (_, offer) = Local::offer(&caps, &transport).unwrap();
    assert!(offer.contains("m=video 10002 RTP/SAVP "), "{offer}");
    let lines = crypto_lines(&offer);
    assert_eq!(lines.len(), 4, "{offer}");
    for (i, a) in lines.iter().enumerate() {
        for b in &lines[i + 1..] {
            assert_ne!(a.key, b.key);
        }
    }

    let video = |crypto: &str| {
        let mut text = body(
            "RTP/SAVP",
            &[&format!(
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"
            )],
        );
        text.push_str("m=video 4002 RTP/SAVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n");
        text.push_str(crypto);
        text
    };
    let keyed = video(&format!(
        "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}\r\n"
    ));
    let (_, n, answer) = Local::answer(&caps, &transport, &parse(&keyed).unwrap()).unwrap();
    let v = n.video.expect("video taken").crypto.expect("video in SRTP");
    assert_eq!(v.suite, Suite::AesCm128HmacSha1_32);
    assert_eq!(v.receive.bytes(), &[0xff; KEY_LEN]);
    let a = n.audio.unwrap().crypto.unwrap();
    assert_ne!(a.send, v.send);
    assert!(
        answer.contains("a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:"),
        "{answer}"
    );

    // Video without a key: refused alone, the audio goes on in SRTP.
    let (_, n, answer) = Local::answer(&caps, &transport, &parse(&video("")).unwrap()).unwrap();
    assert!(n.video.is_none());
    assert!(n.audio.unwrap().crypto.is_some());
    assert!(answer.contains("m=video 0 RTP/SAVP"), "{answer}");
}
