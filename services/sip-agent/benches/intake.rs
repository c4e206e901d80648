//! What the door phone spends deciding on an incoming INVITE before any bus
//! call: the UDP guard's screening, who the caller is, and the policy (with a
//! full phone book of 1000 contacts and the whitelist guarding).
//!
//! `cargo bench -p doorphone-sip --bench intake` (`cargo xtask bench` runs it).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use doorphone_interfaces::config::Document;
use doorphone_interfaces::config::document::{Account, Contact};
use doorphone_sip::identity::{Claims, Trust, Whitelist};
use doorphone_sip::policy::{self, State};
use doorphone_sip::stack::guard::screen;

fn doc() -> Document {
    Document {
        accounts: vec![Account {
            id: 1,
            enabled: true,
            user: "1001".into(),
            server: "192.0.2.1:5060".into(),
            prevent_sip_hacking: true,
            trusted_proxies: vec!["198.51.100.0/24".into(), "203.0.113.7".into()],
            ..Account::default()
        }],
        contacts: (0..1000)
            .map(|n| Contact {
                id: n,
                number: if n % 2 == 0 {
                    format!("{}", 2000 + n)
                } else {
                    format!("10.0.{}.{}", n / 250, n % 250)
                },
                whitelist: true,
                ..Contact::default()
            })
            .collect(),
        ..Document::default()
    }
}

const INVITE: &[u8] = b"INVITE sip:1001@192.0.2.9:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: <sip:1001@192.0.2.9>\r\n\
From: \"Resident\" <sip:2998@192.0.2.1>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@192.0.2.1\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:2998@192.0.2.1:5060>\r\n\
P-Asserted-Identity: <sip:2998@pbx.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 131\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

fn claims(source: &str, from: &str) -> Claims {
    Claims {
        source: source.parse().unwrap(),
        from_uri: format!("sip:{from}@pbx.example.com"),
        from_user: from.into(),
        request_user: "1001".into(),
        to_user: "1001".into(),
        asserted: None,
    }
}

fn intake(c: &mut Criterion) {
    let doc = doc();
    let servers: HashMap<u32, Vec<std::net::IpAddr>> = [(1, vec!["192.0.2.1".parse().unwrap()])]
        .into_iter()
        .collect();
    let trust = Trust::new(&doc, &servers);
    let whitelist = Whitelist::new(&doc);
    c.bench_function("guard screens an INVITE", |b| {
        b.iter(|| screen(black_box(INVITE)))
    });
    let resident = claims("192.0.2.1:5060", "2998");
    let stranger = claims("192.0.2.66:5060", "2998");
    c.bench_function(
        "identity and policy: the resident through the server",
        |b| {
            b.iter(|| {
                let (via, who) = trust.classify(black_box(&resident));
                policy::decide(&doc, &whitelist, via, &who, State::default())
            })
        },
    );
    c.bench_function("identity and policy: a stranger", |b| {
        b.iter(|| {
            let (via, who) = trust.classify(black_box(&stranger));
            policy::decide(&doc, &whitelist, via, &who, State::default())
        })
    });
}

criterion_group!(benches, intake);
criterion_main!(benches);
