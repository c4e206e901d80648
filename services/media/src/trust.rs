//! Who may speak in a call: which packets a session takes, by their source.
//!
//! A session takes RTP and RTCP only from where the peer's description says it is
//! (`c=` and `m=`, `a=rtcp`, following re-offers that move it). With
//! `media.rtp_latching`, for peers behind NAT whose packets come from another port
//! than their description gives, it latches to the source of the first RTP packet
//! that carries a negotiated payload type (and, once a source was latched, the SSRC
//! seen from it), and then takes RTP only from that source and RTCP only from its
//! address. Everything else is dropped where it arrives, before the jitter buffer
//! and the DTMF detector: a third party cannot speak, nor dial the door's codes,
//! in someone else's call.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use gstreamer as gst;
use gstreamer_net as gst_net;
use gstreamer_rtp as gst_rtp;

/// The admission rule of one stream (audio or video) of a session.
pub struct Gate {
    admission: Mutex<Admission>,
    /// Whether a refusal was logged yet (once per session: a flood must not flood the log).
    told: AtomicBool,
    /// Whether a peer is named: what a closed gate refuses is not logged (the
    /// last peer's packets still on their way when its call ended).
    named: AtomicBool,
}

struct Admission {
    latching: bool,
    /// The peer's RTP and RTCP addresses as its description gives them.
    rtp: SocketAddr,
    rtcp: SocketAddr,
    /// The payload types negotiated for the stream (codec and telephone-event).
    payload_types: Vec<u8>,
    latched: Option<Latched>,
    /// The SSRC of the source latched before: a new latch must carry it too.
    ssrc: Option<u32>,
    /// A latch that [`Gate::newly_latched`] has not reported yet.
    unreported: Option<SocketAddr>,
}

struct Latched {
    rtp: SocketAddr,
    /// The peer's RTCP source, once a packet from the latched address came.
    rtcp: Option<SocketAddr>,
}

/// Where a packet came from, as `udpsrc` recorded it.
pub fn source(buffer: &gst::BufferRef) -> Option<SocketAddr> {
    use gst::prelude::Cast;
    let meta = buffer.meta::<gst_net::NetAddressMeta>()?;
    let address = meta.addr().downcast::<gio::InetSocketAddress>().ok()?;
    Some(address.into())
}

/// IPv4 peers as IPv4, whichever socket family received them.
fn canonical(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => address,
        },
        v4 => v4,
    }
}

impl Gate {
    /// A gate that takes nothing until [`Gate::expect`] names the peer.
    pub fn new(latching: bool) -> Gate {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        Gate {
            admission: Mutex::new(Admission {
                latching,
                rtp: nowhere,
                rtcp: nowhere,
                payload_types: Vec::new(),
                latched: None,
                ssrc: None,
                unreported: None,
            }),
            told: AtomicBool::new(false),
            named: AtomicBool::new(false),
        }
    }

    /// Back to a gate that takes nothing, forgetting any latch: the peer of a
    /// call that ended has no say in the next one.
    pub fn reset(&self) {
        let mut admission = self.admission();
        *admission = Gate::new(admission.latching)
            .admission
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        self.told.store(false, Ordering::Relaxed);
        self.named.store(false, Ordering::Relaxed);
    }

    fn admission(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.admission.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer's description (first or a re-offer) names its addresses and the
    /// negotiated payload types. A peer that moved is latched anew.
    pub fn expect(&self, rtp: SocketAddr, rtcp: SocketAddr, payload_types: &[u8]) {
        let mut a = self.admission();
        let (rtp, rtcp) = (canonical(rtp), canonical(rtcp));
        if a.rtp != rtp || a.rtcp != rtcp {
            a.latched = None;
        }
        a.rtp = rtp;
        a.rtcp = rtcp;
        a.payload_types = payload_types.to_vec();
        self.named.store(true, Ordering::Relaxed);
    }

    /// Whether an RTP packet from `from` belongs to the call.
    pub fn admit_rtp(&self, from: Option<SocketAddr>, packet: &gst::BufferRef) -> bool {
        let from = from.map(canonical);
        let admitted = from.is_some_and(|from| {
            let mut a = self.admission();
            if !a.latching {
                return from == a.rtp;
            }
            if let Some(latched) = &a.latched {
                return from == latched.rtp;
            }
            let Ok(rtp) = gst_rtp::RTPBuffer::from_buffer_readable(packet) else {
                return false;
            };
            let (pt, ssrc) = (rtp.payload_type(), rtp.ssrc());
            if !a.payload_types.contains(&pt) || a.ssrc.is_some_and(|known| known != ssrc) {
                return false;
            }
            if from != a.rtp {
                tracing::info!(%from, described = %a.rtp, "RTP latched to the peer's source");
            }
            a.latched = Some(Latched {
                rtp: from,
                rtcp: None,
            });
            a.ssrc = Some(ssrc);
            a.unreported = Some(from);
            true
        });
        if !admitted {
            self.refused("RTP", from);
        }
        admitted
    }

    /// Whether an RTCP packet from `from` belongs to the call.
    pub fn admit_rtcp(&self, from: Option<SocketAddr>) -> bool {
        let from = from.map(canonical);
        let admitted = from.is_some_and(|from| {
            let mut a = self.admission();
            let described = a.rtcp;
            match &mut a.latched {
                Some(latched) => match latched.rtcp {
                    Some(rtcp) => from == rtcp,
                    None if from.ip() == latched.rtp.ip() => {
                        latched.rtcp = Some(from);
                        true
                    }
                    None => false,
                },
                None => from == described,
            }
        });
        if !admitted {
            self.refused("RTCP", from);
        }
        admitted
    }

    /// The source RTP was latched to since the last call, once: the session then
    /// sends there too, as the peer behind its NAT receives where it sends from.
    pub fn newly_latched(&self) -> Option<SocketAddr> {
        self.admission().unreported.take()
    }

    fn refused(&self, what: &str, from: Option<SocketAddr>) {
        if self.named.load(Ordering::Relaxed) && !self.told.swap(true, Ordering::Relaxed) {
            let from = from.map_or("an unknown source".to_string(), |f| f.to_string());
            tracing::warn!("{what} from {from} dropped: not the call's peer (told once a session)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst_rtp::prelude::*;

    fn packet(pt: u8, ssrc: u32) -> gst::Buffer {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new_rtp_with_sizes(4, 0, 0).unwrap();
        {
            let mut rtp =
                gst_rtp::RTPBuffer::from_buffer_writable(buffer.get_mut().unwrap()).unwrap();
            rtp.set_payload_type(pt);
            rtp.set_ssrc(ssrc);
        }
        buffer
    }

    fn at(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn only_the_described_addresses_speak() {
        let gate = Gate::new(false);
        let p = packet(0, 1);
        assert!(
            !gate.admit_rtp(at("192.0.2.1:4000"), &p),
            "nothing before a description"
        );
        gate.expect(
            "192.0.2.1:4000".parse().unwrap(),
            "192.0.2.1:4001".parse().unwrap(),
            &[0, 101],
        );
        assert!(gate.admit_rtp(at("192.0.2.1:4000"), &p));
        assert!(!gate.admit_rtp(at("192.0.2.1:4002"), &p), "another port");
        assert!(!gate.admit_rtp(at("192.0.2.9:4000"), &p), "another host");
        assert!(!gate.admit_rtp(None, &p), "no known source");
        assert!(gate.admit_rtcp(at("192.0.2.1:4001")));
        assert!(!gate.admit_rtcp(at("192.0.2.1:4000")));
        assert!(
            gate.admit_rtp(at("[::ffff:192.0.2.1]:4000"), &p),
            "IPv4 as mapped IPv6"
        );
        // A re-offer moves the peer: the old port is refused from then on.
        gate.expect(
            "192.0.2.1:5000".parse().unwrap(),
            "192.0.2.1:5001".parse().unwrap(),
            &[0, 101],
        );
        assert!(!gate.admit_rtp(at("192.0.2.1:4000"), &p));
        assert!(gate.admit_rtp(at("192.0.2.1:5000"), &p));
    }

    #[test]
    fn latching_takes_the_first_source_with_a_negotiated_payload_type() {
        let gate = Gate::new(true);
        gate.expect(
            "10.0.0.5:4000".parse().unwrap(),
            "10.0.0.5:4001".parse().unwrap(),
            &[8, 101],
        );
        // A payload type the call did not negotiate latches nothing.
        assert!(!gate.admit_rtp(at("198.51.100.7:31000"), &packet(0, 7)));
        assert_eq!(gate.newly_latched(), None);
        assert!(gate.admit_rtp(at("198.51.100.7:31000"), &packet(8, 7)));
        assert_eq!(gate.newly_latched(), at("198.51.100.7:31000"));
        assert_eq!(gate.newly_latched(), None, "reported once");
        assert!(gate.admit_rtp(at("198.51.100.7:31000"), &packet(101, 7)));
        assert!(!gate.admit_rtp(at("198.51.100.8:31000"), &packet(8, 7)));
        assert!(
            !gate.admit_rtp(at("10.0.0.5:4000"), &packet(8, 7)),
            "latched away"
        );
        // RTCP: from the latched host, then only that source.
        assert!(!gate.admit_rtcp(at("203.0.113.1:31001")));
        assert!(gate.admit_rtcp(at("198.51.100.7:31001")));
        assert!(!gate.admit_rtcp(at("198.51.100.7:31005")));
        // The peer moves with a re-offer: latched anew, to its own SSRC only.
        gate.expect(
            "10.0.0.5:6000".parse().unwrap(),
            "10.0.0.5:6001".parse().unwrap(),
            &[8, 101],
        );
        assert!(!gate.admit_rtp(at("203.0.113.1:6000"), &packet(8, 99)));
        assert!(gate.admit_rtp(at("198.51.100.7:32000"), &packet(8, 7)));
    }
}
