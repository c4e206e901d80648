//! SIPp (Debian's `sip-tester`) as the far end of SIP calls: callers, callees and
//! registrars, each a scenario built here, run as a child process on loopback.
//! Each run keeps SIPp's message trace, with timestamps, so tests can say what was
//! sent and received, and when.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A UDP and TCP port free on loopback (the SIP agent binds both).
pub fn free_port() -> u16 {
    free_port_at(LOOPBACK)
}

/// A UDP and TCP port free on `ip` (any 127.0.0.0/8 address binds without
/// set-up), and never one this process was given before: the probe's sockets
/// close at once, so the kernel can offer the same port again before whoever
/// asked binds it (a web rig's HTTPS and HTTP ports once came out equal).
pub fn free_port_at(ip: IpAddr) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<(IpAddr, u16)>> = std::sync::Mutex::new(Vec::new());
    loop {
        let udp = UdpSocket::bind((ip, 0)).expect("a free UDP port");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((ip, port)).is_ok() {
            let mut given = GIVEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !given.contains(&(ip, port)) {
                given.push((ip, port));
                return port;
            }
        }
    }
}

/// An SDP offer as SIPp sends it: audio PCMU, and H.264 video when `video`.
fn sdp(video: bool) -> String {
    let mut s = String::from(
        "v=0\n\
         o=sipp 1 1 IN IP4 [local_ip]\n\
         s=-\n\
         c=IN IP4 [local_ip]\n\
         t=0 0\n\
         m=audio [auto_media_port] RTP/AVP 0 101\n\
         a=rtpmap:0 PCMU/8000\n\
         a=rtpmap:101 telephone-event/8000\n\
         a=sendrecv\n",
    );
    if video {
        s.push_str(
            "m=video [auto_media_port+2] RTP/AVP 96\n\
             a=rtpmap:96 H264/90000\n\
             a=fmtp:96 packetization-mode=1\n\
             a=sendrecv\n",
        );
    }
    s
}

const HEAD: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="door phone test">
"#;

fn invite(user: &str, from_user: &str, video: bool) -> String {
    format!(
        r#"  <send retrans="500" start_rtd="1">
    <![CDATA[
      INVITE sip:{user}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{from_user}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{user}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{from_user}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

{sdp}
    ]]>
  </send>
"#,
        sdp = sdp(video)
    )
}

fn in_dialog(method: &str, user: &str, from_user: &str, cseq: u32) -> String {
    let retrans = if method == "ACK" {
        ""
    } else {
        r#" retrans="500""#
    };
    format!(
        r#"  <send{retrans}>
    <![CDATA[
      {method} sip:{user}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{from_user}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{user}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:{from_user}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"#
    )
}

fn respond(code: &str, sdp_body: bool) -> String {
    let body = if sdp_body {
        format!(
            "Content-Type: application/sdp\n      Content-Length: [len]\n\n{}",
            sdp(false)
        )
    } else {
        "Content-Length: 0".to_owned()
    };
    format!(
        r#"  <send>
    <![CDATA[
      SIP/2.0 {code}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      {body}
    ]]>
  </send>
"#
    )
}

/// What a caller scenario expects of the door phone.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A final refusal with exactly this code (acknowledged).
    Refused(u16),
    /// 200 OK; the caller hangs up after this long.
    Answered { hang_up_after: Duration },
    /// 200 OK; the caller waits for the door phone's BYE and answers it.
    AnsweredUntilBye,
    /// 200 OK, never acknowledged: the caller goes away.
    AnsweredWithoutAck,
    /// 200 OK; after `wait` the caller presses `rtp` as RFC 4733 events and
    /// sends `info` as SIP INFO, then waits for the door phone's BYE.
    DigitsLater {
        wait: Duration,
        rtp: &'static str,
        info: &'static str,
    },
    /// 200 OK; the caller presses `rtp` as RFC 4733 events (`0-9*#A-D`), then
    /// `info` as SIP INFO `application/dtmf-relay`;
    /// then hangs up itself (`hang_up`) or waits for the door phone's BYE.
    Digits {
        rtp: &'static str,
        info: &'static str,
        hang_up: bool,
    },
}

/// A caller's scenario: INVITE `user` at the door phone as `from_user`.
pub fn caller(user: &str, from_user: &str, video: bool, expect: &Caller) -> String {
    let mut s = String::from(HEAD);
    s += &invite(user, from_user, video);
    s += r#"  <recv response="100" optional="true"/>
"#;
    match expect {
        Caller::Refused(code) => {
            s += r#"  <recv response="180" optional="true"/>
"#;
            s += &format!("  <recv response=\"{code}\" rtd=\"1\"/>\n");
            s += &in_dialog("ACK", user, from_user, 1);
        }
        Caller::Answered { hang_up_after } => {
            s += r#"  <recv response="180" optional="true"/>
  <recv response="200" rtd="1"/>
"#;
            s += &in_dialog("ACK", user, from_user, 1);
            s += &pause(*hang_up_after);
            s += &in_dialog("BYE", user, from_user, 2);
            s += r#"  <recv response="200"/>
"#;
        }
        Caller::Digits { rtp, info, hang_up } => {
            s += r#"  <recv response="180" optional="true"/>
  <recv response="200" rtd="1"/>
"#;
            s += &in_dialog("ACK", user, from_user, 1);
            for digit in rtp.chars() {
                s += &format!(
                    "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n  <pause milliseconds=\"400\"/>\n",
                    dtmf_pcap_name(digit)
                );
            }
            let last = info.chars().count().saturating_sub(1);
            for (n, digit) in info.chars().enumerate() {
                let body = format!("Signal={digit}\nDuration=160\n");
                s += &in_dialog("INFO", user, from_user, 2 + n as u32)
                    .replace(
                        "Content-Length: 0",
                        &format!("Content-Type: application/dtmf-relay\n      Content-Length: [len]\n\n{body}"),
                    );
                // The last digit may end the call: the door phone's BYE can
                // overtake the 200 to that INFO.
                s += if n == last && !hang_up {
                    "  <recv response=\"200\" optional=\"true\"/>\n"
                } else {
                    "  <recv response=\"200\"/>\n"
                };
            }
            if *hang_up {
                s += "  <pause milliseconds=\"1500\"/>\n";
                s += &in_dialog("BYE", user, from_user, 10);
                s += r#"  <recv response="200"/>
"#;
            } else {
                s += r#"  <recv request="BYE"/>
"#;
                s += &respond("200 OK", false).replace(";tag=[pid]SIPpTag01[call_number]", "");
            }
        }
        Caller::DigitsLater { wait, rtp, info } => {
            s += r#"  <recv response="180" optional="true"/>
  <recv response="200" rtd="1"/>
"#;
            s += &in_dialog("ACK", user, from_user, 1);
            s += &pause(*wait);
            for digit in rtp.chars() {
                s += &format!(
                    "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n  <pause milliseconds=\"400\"/>\n",
                    dtmf_pcap_name(digit)
                );
            }
            let last = info.chars().count().saturating_sub(1);
            for (n, digit) in info.chars().enumerate() {
                let body = format!("Signal={digit}\nDuration=160\n");
                s += &in_dialog("INFO", user, from_user, 2 + n as u32).replace(
                    "Content-Length: 0",
                    &format!("Content-Type: application/dtmf-relay\n      Content-Length: [len]\n\n{body}"),
                );
                s += if n == last {
                    "  <recv response=\"200\" optional=\"true\"/>\n"
                } else {
                    "  <recv response=\"200\"/>\n"
                };
            }
            s += r#"  <recv request="BYE"/>
"#;
            s += &respond("200 OK", false).replace(";tag=[pid]SIPpTag01[call_number]", "");
        }
        Caller::AnsweredWithoutAck => {
            s += r#"  <recv response="180" optional="true"/>
  <recv response="200" rtd="1"/>
"#;
        }
        Caller::AnsweredUntilBye => {
            s += r#"  <recv response="180" optional="true"/>
  <recv response="200" rtd="1"/>
"#;
            s += &in_dialog("ACK", user, from_user, 1);
            s += r#"  <recv request="BYE"/>
"#;
            s += &respond("200 OK", false).replace(";tag=[pid]SIPpTag01[call_number]", "");
        }
    }
    s += "</scenario>\n";
    s
}

/// `scenario` with `headers` added to its INVITE (`P-Asserted-Identity: ...`).
pub fn with_headers(scenario: &str, headers: &[&str]) -> String {
    let at = scenario
        .find("      Max-Forwards: 70\n")
        .expect("a scenario with an INVITE");
    let mut lines = String::new();
    for h in headers {
        lines.push_str("      ");
        lines.push_str(h);
        lines.push('\n');
    }
    format!("{}{lines}{}", &scenario[..at], &scenario[at..])
}

/// `scenario` with its From URIs claiming to be `uri` (`sip:friend@pbx`),
/// tags kept: a header anyone can write.
pub fn from_as(scenario: &str, from_user: &str, uri: &str) -> String {
    scenario.replace(
        &format!("From: <sip:{from_user}@[local_ip]:[local_port]>"),
        &format!("From: <{uri}>"),
    )
}

/// A caller's `scenario` sent through a proxy that challenges INVITEs (407)
/// and record-routes: an INVITE without credentials first, its 407
/// acknowledged, then the scenario's own INVITE with a digest for
/// `user`/`password` in `Proxy-Authorization`; each later request one CSeq
/// higher, and the in-dialog ones sent to the callee's Contact along the
/// proxy's Record-Route.
pub fn through_proxy(scenario: &str, user: &str, password: &str) -> String {
    let start = scenario
        .find("  <send retrans=\"500\" start_rtd=\"1\">")
        .expect("a caller's scenario");
    let end = start
        + scenario[start..]
            .find("  </send>\n")
            .expect("the INVITE's end")
        + "  </send>\n".len();
    let invite = &scenario[start..end];
    let (head, rest) = (&scenario[..start], &scenario[end..]);
    let uri = invite
        .lines()
        .find_map(|l| l.trim().strip_prefix("INVITE "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the INVITE's Request-URI");
    let mut out = String::from(head);
    out.push_str(invite);
    out.push_str(&format!(
        r#"  <recv response="100" optional="true"/>
  <recv response="407" auth="true"/>
  <send>
    <![CDATA[
      ACK {uri} SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"#
    ));
    out.push_str(
        &invite
            .replace(" start_rtd=\"1\"", "")
            .replace(
                "      Max-Forwards: 70\n",
                &format!(
                    "      [authentication username={user} password={password}]\n      Max-Forwards: 70\n"
                ),
            )
            .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE"),
    );
    for line in rest.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some((n, method)) = trimmed
            .strip_prefix("CSeq: ")
            .and_then(|c| c.split_once(' '))
            .and_then(|(n, m)| Some((n.parse::<u32>().ok()?, m)))
        {
            out.push_str(&format!("{indent}CSeq: {} {method}", n + 1));
        } else if trimmed.contains(&format!(" {uri} SIP/2.0")) {
            let method = trimmed.split_whitespace().next().unwrap_or_default();
            out.push_str(&format!(
                "{indent}{method} [next_url] SIP/2.0\n{indent}[routes]\n"
            ));
        } else {
            out.push_str(&line.replace(
                "<recv response=\"200\" rtd=\"1\"/>",
                "<recv response=\"200\" rtd=\"1\" rrs=\"true\"/>",
            ));
        }
    }
    out
}

/// A caller whose INVITE carries no SDP (RFC 3261's late offer, as some PBXes
/// and SBCs send it): the door phone's 200 must hold an offer; the caller's
/// answer goes in the ACK, with its RTP at `media_port`; it hangs up after
/// `hang_up_after`.
pub fn late_offer_caller(
    user: &str,
    from_user: &str,
    media_port: u16,
    hang_up_after: Duration,
) -> String {
    let mut s = String::from(HEAD);
    s += &invite(user, from_user, false)
        .replace("      Content-Type: application/sdp\n", "")
        .replace(
            &format!("Content-Length: [len]\n\n{}", sdp(false)),
            "Content-Length: 0\n",
        );
    s += r#"  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="1">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="offer"/>
    </action>
  </recv>
  <Reference variables="offer"/>
"#;
    s += &in_dialog("ACK", user, from_user, 1).replace(
        "Content-Length: 0",
        &format!(
            "Content-Type: application/sdp\n      Content-Length: [len]\n\n{}",
            sdp(false).replace("[auto_media_port]", &media_port.to_string())
        ),
    );
    s += &pause(hang_up_after);
    s += &in_dialog("BYE", user, from_user, 2);
    s += r#"  <recv response="200"/>
</scenario>
"#;
    s
}

/// A caller whose call starts with its RTP at `first_port`, then sends a
/// re-INVITE without SDP: the door phone's 200 must hold an offer, and the
/// caller's answer in the ACK moves its RTP to `second_port`; it hangs up
/// after `hang_up_after`.
pub fn empty_reinvite_caller(
    user: &str,
    from_user: &str,
    first_port: u16,
    second_port: u16,
    hang_up_after: Duration,
) -> String {
    let mut s = String::from(HEAD);
    s += &invite(user, from_user, false).replace("[auto_media_port]", &first_port.to_string());
    s += r#"  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="1"/>
"#;
    s += &in_dialog("ACK", user, from_user, 1);
    s += &in_dialog("INVITE", user, from_user, 2);
    s += r#"  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="offer"/>
    </action>
  </recv>
  <Reference variables="offer"/>
"#;
    s += &in_dialog("ACK", user, from_user, 2).replace(
        "Content-Length: 0",
        &format!(
            "Content-Type: application/sdp\n      Content-Length: [len]\n\n{}",
            sdp(false).replace("[auto_media_port]", &second_port.to_string())
        ),
    );
    s += &pause(hang_up_after);
    s += &in_dialog("BYE", user, from_user, 3);
    s += r#"  <recv response="200"/>
</scenario>
"#;
    s
}

/// A request line of the caller's making (`FROBNICATE sip:door@... SIP/2.0`,
/// `OPTIONS ... SIP/7.0`) that must get the final answer `expect`.
pub fn odd_request(method: &str, version: &str, user: &str, expect: u16) -> String {
    let mut s = String::from(HEAD);
    s += &format!(
        r#"  <send retrans="500">
    <![CDATA[
      {method} sip:{user}@[remote_ip]:[remote_port] {version}
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{user}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 {method}
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="{expect}"/>
</scenario>
"#
    );
    s
}

/// A caller whose call the door phone holds and resumes (a page barging in):
/// after the answer it accepts `holds` pairs of re-INVITEs, the first of each
/// answered `recvonly` and the second `sendrecv`, then hangs up after
/// `hang_up_after`. Any other request fails the scenario.
pub fn held_caller(user: &str, from_user: &str, holds: usize, hang_up_after: Duration) -> String {
    let reanswer = |direction: &str| {
        respond("200 OK", true)
            .replace(";tag=[pid]SIPpTag01[call_number]", "")
            .replace("a=sendrecv", &format!("a={direction}"))
    };
    let mut s = String::from(HEAD);
    s += &invite(user, from_user, false);
    s += r#"  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="1"/>
"#;
    s += &in_dialog("ACK", user, from_user, 1);
    for _ in 0..holds {
        for direction in ["recvonly", "sendrecv"] {
            s += r#"  <recv request="INVITE"/>
"#;
            s += &reanswer(direction);
            s += r#"  <recv request="ACK"/>
"#;
        }
    }
    s += &pause(hang_up_after);
    s += &in_dialog("BYE", user, from_user, 2);
    s += r#"  <recv response="200"/>
</scenario>
"#;
    s
}

/// What a callee scenario does with the door phone's INVITE.
#[derive(Debug, Clone)]
pub enum Callee {
    /// Rings, answers after this long, then waits for the BYE.
    Answer { after: Duration },
    /// Rings until the door phone cancels.
    RingUntilCancel,
    /// Refuses at once with this status line (`486 Busy Here`).
    Refuse(&'static str),
}

/// A callee's scenario.
/// A scenario's pause, none for a zero duration: SIPp puts even a zero pause
/// on its timer wheel, and once its call slept there until the next message
/// came (the door's CANCEL, ten seconds on).
fn pause(duration: Duration) -> String {
    if duration.is_zero() {
        String::new()
    } else {
        format!("  <pause milliseconds=\"{}\"/>\n", duration.as_millis())
    }
}

pub fn callee(behaviour: &Callee) -> String {
    let mut s = String::from(HEAD);
    s += r#"  <recv request="INVITE" crlf="true"/>
"#;
    match behaviour {
        Callee::Answer { after } => {
            s += &respond("180 Ringing", false);
            s += &pause(*after);
            s += &respond("200 OK", true).replace("<send>", "<send retrans=\"500\">");
            s += r#"  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
"#;
            s += &respond("200 OK", false);
        }
        Callee::RingUntilCancel => {
            s += &respond("180 Ringing", false);
            s += r#"  <recv request="CANCEL"/>
"#;
            s += &respond("200 OK", false);
            s += r#"  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [last_cseq_number] INVITE
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
"#;
        }
        Callee::Refuse(status) => {
            s += &respond(status, false);
            s += r#"  <recv request="ACK"/>
"#;
        }
    }
    s += "</scenario>\n";
    s
}

/// A registrar that challenges every REGISTER with 401 and accepts a correct
/// digest for `user`/`password`, granting `expires` seconds; `rounds`
/// registrations (the first and its refreshes) end the scenario. A wrong digest
/// gets 403.
pub fn registrar(user: &str, password: &str, expires: u32, rounds: u32) -> String {
    let mut s = String::from(HEAD);
    for round in 0..rounds {
        s += r#"  <recv request="REGISTER"/>
  <send>
    <![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="door.test", nonce="[pid][call_number]n"#;
        s += &round.to_string();
        s += &format!(
            r#"", algorithm=MD5
      Content-Length: 0
    ]]>
  </send>
  <recv request="REGISTER">
    <action>
      <verifyauth assign_to="authvalid{round}" username="{user}" password="{password}"/>
    </action>
  </recv>
  <nop hide="true" test="authvalid{round}" next="good{round}"/>
  <send>
    <![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <recv request="REGISTER" next="bad"/>
  <label id="good{round}"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires={expires}
      Expires: {expires}
      Content-Length: 0
    ]]>
  </send>
"#
        );
    }
    s += r#"  <label id="bad"/>
</scenario>
"#;
    s
}

/// The RFC 4733 event code of a DTMF digit.
fn dtmf_event(digit: char) -> Option<u8> {
    "0123456789*#ABCD"
        .find(digit.to_ascii_uppercase())
        .map(|n| n as u8)
}

fn dtmf_pcap_name(digit: char) -> String {
    format!("dtmf-{}.pcap", dtmf_event(digit).expect("a DTMF digit"))
}

/// SIPp's recording of an RFC 4733 `1` (Debian's sip-tester ships digits 0-9
/// only), rewritten for every digit: the event code of each packet changed and
/// the UDP checksum left out (optional over IPv4). Written into `dir` as
/// `dtmf-<event>.pcap` for the scenarios run there.
fn write_dtmf_pcaps(dir: &Path) -> Result<()> {
    let source = "/usr/share/sip-tester/dtmf_2833_1.pcap";
    let pcap =
        std::fs::read(source).with_context(|| format!("{source} (Debian package sip-tester)"))?;
    for digit in "0123456789*#ABCD".chars() {
        let event = dtmf_event(digit).expect("a DTMF digit");
        let mut out = pcap.clone();
        let mut at = 24;
        while at + 16 <= out.len() {
            let len = u32::from_le_bytes(out[at + 8..at + 12].try_into()?) as usize;
            let packet = at + 16;
            // Ethernet, then IPv4 (its header length), UDP and a 12-byte RTP header.
            let udp = packet + 14 + usize::from(out[packet + 14] & 0x0f) * 4;
            let payload = udp + 8 + 12;
            if payload < packet + len {
                out[udp + 6] = 0;
                out[udp + 7] = 0;
                out[payload] = event;
            }
            at = packet + len;
        }
        std::fs::write(dir.join(dtmf_pcap_name(digit)), out)?;
    }
    Ok(())
}

/// One SIP message in SIPp's trace.
#[derive(Debug, Clone)]
pub struct Traced {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// Sent by SIPp (else received).
    pub sent: bool,
    pub text: String,
}

impl Traced {
    /// The start line: `INVITE sip:...` or `SIP/2.0 200 OK`.
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    pub fn is_request(&self, method: &str) -> bool {
        self.first_line().starts_with(&format!("{method} "))
    }

    pub fn is_response(&self, code: u16) -> bool {
        self.first_line().starts_with(&format!("SIP/2.0 {code}"))
    }
}

/// Waits until `child` has a socket on `port` (UDP, or TCP listening), as the
/// kernel lists them in /proc/net; fails when it exits first or takes 20 s.
/// Polled every 5 ms: a process tells nobody when it has bound a socket.
fn wait_bound(child: &mut Child, port: u16, tcp: bool) -> Result<()> {
    let (tables, listening) = if tcp {
        (["/proc/net/tcp", "/proc/net/tcp6"], Some("0A"))
    } else {
        (["/proc/net/udp", "/proc/net/udp6"], None)
    };
    let wanted = format!(":{port:04X}");
    let bound = || {
        tables.iter().any(|table| {
            std::fs::read_to_string(table)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .any(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.len() > 3
                        && fields[1].ends_with(&wanted)
                        && listening.is_none_or(|state| fields[3] == state)
                })
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !bound() {
        if let Some(status) = child.try_wait()? {
            bail!("exited ({status}) before it had port {port}");
        }
        if std::time::Instant::now() > deadline {
            bail!("no socket on port {port} after 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// A SIPp instance.
pub struct Sipp {
    child: Option<Child>,
    trace: PathBuf,
    pub port: u16,
}

impl Sipp {
    /// Runs `scenario` from `port` on loopback; a caller when `target` is given,
    /// else it waits for requests. `name` names its files in `dir`.
    pub fn start(
        dir: &Path,
        name: &str,
        scenario: &str,
        port: u16,
        target: Option<SocketAddr>,
        extra: &[&str],
    ) -> Result<Sipp> {
        Sipp::spawn(dir, name, scenario, LOOPBACK, port, target, extra, true)
    }

    /// As `start`, from another loopback address (`127.0.0.2`, ...): another
    /// host, as the door phone sees it. Its RTP comes from there too.
    pub fn start_at(
        dir: &Path,
        name: &str,
        scenario: &str,
        ip: IpAddr,
        target: Option<SocketAddr>,
        extra: &[&str],
    ) -> Result<Sipp> {
        let port = free_port_at(ip);
        Sipp::spawn(dir, name, scenario, ip, port, target, extra, true)
    }

    /// As `start`, without the message trace (for runs of many calls).
    pub fn start_untraced(
        dir: &Path,
        name: &str,
        scenario: &str,
        port: u16,
        target: Option<SocketAddr>,
        extra: &[&str],
    ) -> Result<Sipp> {
        Sipp::spawn(dir, name, scenario, LOOPBACK, port, target, extra, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        dir: &Path,
        name: &str,
        scenario: &str,
        ip: IpAddr,
        port: u16,
        target: Option<SocketAddr>,
        extra: &[&str],
        traced: bool,
    ) -> Result<Sipp> {
        let file = dir.join(format!("{name}.xml"));
        std::fs::write(&file, scenario)?;
        if scenario.contains("play_pcap_audio") {
            write_dtmf_pcaps(dir)?;
        }
        let trace = dir.join(format!("{name}.msg"));
        let mut cmd = Command::new("sipp");
        let ip = ip.to_string();
        cmd.arg("-sf")
            .arg(&file)
            .args(["-i", &ip, "-mi", &ip, "-p"])
            .arg(port.to_string())
            .args(["-nostdin"])
            .args(["-timeout", "60", "-timeout_error", "-max_recv_loops", "100"]);
        if !extra.contains(&"-m") {
            cmd.args(["-m", "1"]);
        }
        if traced {
            cmd.args(["-trace_msg", "-message_file"]).arg(&trace);
        }
        cmd.args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.err")))?);
        if let Some(target) = target {
            cmd.arg(target.to_string());
        }
        let mut child = cmd.spawn().context("sipp (Debian package sip-tester)")?;
        if target.is_none() {
            // A request sent before SIPp has its socket is lost (an ICMP port
            // unreachable), and the sender's first retransmission, T1 later,
            // would be the first SIPp sees.
            let tcp = extra
                .windows(2)
                .any(|w| w[0] == "-t" && w[1].starts_with('t'));
            if let Err(e) = wait_bound(&mut child, port, tcp) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.context(format!(
                    "sipp {name}: {}",
                    std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default()
                )));
            }
        }
        Ok(Sipp {
            child: Some(child),
            trace,
            port,
        })
    }

    /// Waits for the scenario to end (at most `patience`) and returns its exit
    /// status: success when every step happened as scripted.
    pub async fn finish(&mut self, patience: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().context("already finished")?;
        let waited = tokio::time::timeout(
            patience,
            tokio::task::spawn_blocking(move || {
                let status = child.wait();
                (child, status)
            }),
        )
        .await;
        match waited {
            Ok(joined) => {
                let (_, status) = joined?;
                Ok(status?)
            }
            Err(_) => bail!(
                "sipp did not finish in {patience:?}; trace:\n{}",
                self.trace_text()
            ),
        }
    }

    /// Waits for success, failing with the trace otherwise.
    pub async fn succeeds(&mut self, patience: Duration) -> Result<()> {
        let status = self.finish(patience).await?;
        if !status.success() {
            bail!("sipp failed ({status}); trace:\n{}", self.trace_text());
        }
        Ok(())
    }

    /// The first message of the trace that `pred` picks, once SIPp has
    /// written it (within `patience`). SIPp tells nobody when it writes its
    /// trace, so the file is read every 10 ms.
    pub async fn wait_for(
        &self,
        patience: Duration,
        pred: impl Fn(&Traced) -> bool,
    ) -> Result<Traced> {
        let found = crate::eventually(patience, Duration::from_millis(10), || {
            self.messages().into_iter().find(|m| pred(m))
        })
        .await;
        found.map_err(|_| {
            anyhow::anyhow!(
                "not in SIPp's trace after {patience:?}:\n{}",
                self.trace_text()
            )
        })
    }

    pub fn trace_text(&self) -> String {
        std::fs::read_to_string(&self.trace).unwrap_or_default()
    }

    /// The messages of the trace, in order.
    pub fn messages(&self) -> Vec<Traced> {
        parse_trace(&self.trace_text())
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// SIPp's `-trace_msg` file: each message after a line of dashes ending in a
/// timestamp and a line saying whether it was sent or received.
fn parse_trace(text: &str) -> Vec<Traced> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.starts_with("----------") {
            continue;
        }
        let stamp = line.trim_start_matches('-').trim();
        let Some(at) = parse_stamp(stamp) else {
            continue;
        };
        let Some(kind) = lines.next() else { break };
        let sent = kind.contains("sent");
        if !sent && !kind.contains("received") {
            continue;
        }
        let mut body = Vec::new();
        while let Some(l) = lines.peek() {
            if l.starts_with("----------") {
                break;
            }
            body.push(*l);
            lines.next();
        }
        let text = body
            .iter()
            .skip_while(|l| l.trim().is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        out.push(Traced { at, sent, text });
    }
    out
}

/// `2026-11-26 23:59:59.123456` (local time, as SIPp prints it) to seconds;
/// only differences between stamps matter, so the zone is ignored.
fn parse_stamp(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec = t.next()?.parse::<f64>().ok()?;
    // Days since the epoch (civil calendar).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some((days * 86400 + h * 3600 + min * 60) as f64 + sec)
}

/// A SIP peer that writes its datagrams by hand, byte for byte: for requests
/// no real user agent would send (a NUL in the SDP, another SIP version, a
/// method nobody knows, a spoofed identity).
pub struct RawPeer {
    socket: tokio::net::UdpSocket,
}

impl RawPeer {
    /// Binds a free port on `ip` (any 127.0.0.0/8 address).
    pub async fn bind(ip: &str) -> Result<RawPeer> {
        Ok(RawPeer {
            socket: tokio::net::UdpSocket::bind((ip, 0)).await?,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("a bound socket")
    }

    pub async fn send(&self, to: SocketAddr, datagram: &[u8]) -> Result<()> {
        self.socket.send_to(datagram, to).await?;
        Ok(())
    }

    /// The next datagram that arrives within `patience`, as text.
    pub async fn receive(&self, patience: Duration) -> Option<String> {
        let mut buf = vec![0u8; 65536];
        let (len, _) = tokio::time::timeout(patience, self.socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// The next final response (provisional ones skipped) within `patience`.
    pub async fn final_response(&self, patience: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let text = self.receive(left).await?;
            if !text.starts_with("SIP/2.0 1") {
                return Some(text);
            }
        }
    }

    /// A request from this peer to `user` at `agent`, well formed but for
    /// what the caller puts in: `method`, the From user, extra header lines
    /// and the body (with its Content-Length).
    pub fn request(
        &self,
        method: &str,
        user: &str,
        agent: SocketAddr,
        from_user: &str,
        extra: &[&str],
        body: &[u8],
    ) -> Vec<u8> {
        let me = self.addr();
        let n = RAW_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut head = format!(
            "{method} sip:{user}@{agent} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-raw-{n}\r\n\
             From: <sip:{from_user}@{me}>;tag=raw{n}\r\n\
             To: <sip:{user}@{agent}>\r\n\
             Call-ID: raw-{n}@{me}\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:{from_user}@{me}>\r\n\
             Max-Forwards: 70\r\n"
        );
        for line in extra {
            head.push_str(line);
            head.push_str("\r\n");
        }
        if !body.is_empty() {
            head.push_str("Content-Type: application/sdp\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

static RAW_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// An SDP offer of PCMU from `ip`, port `port`, as a plain phone makes it.
pub fn plain_offer(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=raw 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// Starts the SIP agent on `bus` as its own user, listening on a free loopback
/// port, its call history in `dir/sip/` (made here); `extra` adds options.
/// Returns the running agent and its SIP port.
pub async fn start_agent(
    bus: &crate::Bus,
    dir: &Path,
    extra: &[String],
) -> Result<(crate::Service, u16)> {
    start_agent_env(bus, dir, extra, &[]).await
}

/// As [`start_agent`], with `env` added to the agent's environment.
pub async fn start_agent_env(
    bus: &crate::Bus,
    dir: &Path,
    extra: &[String],
    env: &[(&str, &str)],
) -> Result<(crate::Service, u16)> {
    let sip_dir = dir.join("sip");
    std::fs::create_dir_all(&sip_dir)?;
    crate::chown_to(&sip_dir, "doorphone-sip")?;
    let port = free_port();
    let mut args = vec![
        "--address".to_owned(),
        "127.0.0.1".to_owned(),
        "--port".to_owned(),
        port.to_string(),
        "--history".to_owned(),
        sip_dir.join("history.db").display().to_string(),
    ];
    args.extend_from_slice(extra);
    let agent = crate::start_service_env(
        bus,
        "doorphone-sip",
        "doorphone-sip",
        doorphone_interfaces::sip::BUS_NAME,
        &args,
        env,
        &dir.join("sip.log"),
    )
    .await?;
    Ok((agent, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_through_a_proxy_answers_the_challenge_and_follows_the_route() {
        let s = through_proxy(
            &caller(
                "1001",
                "resident",
                false,
                &Caller::Digits {
                    rtp: "",
                    info: "#",
                    hang_up: true,
                },
            ),
            "resident",
            "pw",
        );
        let invites: Vec<&str> = s
            .lines()
            .filter(|l| l.contains("CSeq: ") && l.contains(" INVITE"))
            .collect();
        assert_eq!(invites.len(), 2);
        assert!(invites[0].ends_with("CSeq: 1 INVITE") && invites[1].ends_with("CSeq: 2 INVITE"));
        assert!(s.contains("<recv response=\"407\" auth=\"true\"/>"));
        assert!(s.contains("[authentication username=resident password=pw]"));
        for (method, cseq) in [("ACK", 2), ("INFO", 3), ("BYE", 11)] {
            assert!(s.contains(&format!("{method} [next_url] SIP/2.0\n      [routes]\n")));
            assert!(s.contains(&format!("CSeq: {cseq} {method}")), "{method}");
        }
        assert!(s.contains("CSeq: 1 ACK"), "the 407's ACK");
        assert!(s.contains("rrs=\"true\""));
    }

    #[test]
    fn reads_sipp_traces() {
        let text = "----------------------------------------------- 2026-11-26 10:00:00.250000\n\
                    UDP message sent (10 bytes):\n\n\
                    INVITE sip:1@x SIP/2.0\nVia: x\n\n\
                    ----------------------------------------------- 2026-11-26 10:00:03.750000\n\
                    UDP message received [300] bytes :\n\n\
                    SIP/2.0 200 OK\nVia: x\n";
        let m = parse_trace(text);
        assert_eq!(m.len(), 2);
        assert!(m[0].sent && m[0].is_request("INVITE"));
        assert!(!m[1].sent && m[1].is_response(200));
        assert!((m[1].at - m[0].at - 3.5).abs() < 1e-6);
    }
}
