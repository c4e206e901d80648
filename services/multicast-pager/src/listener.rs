//! One listened group: a socket on the group's port (RTP) and one on the next
//! port (RTCP), each joined to the group on the paging interface.
//!
//! Media plays a page through its own socket on the same group and port, so the
//! pager's sockets must not take packets away from it: both sides bind with
//! `SO_REUSEADDR`, and Linux hands every multicast datagram to every socket bound
//! to its group and port. The pager only reads headers.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::arbiter::Group;
use crate::rtp::{Codec, Datagram, classify};

/// A page ends after this long without a packet.
pub const SILENCE: Duration = Duration::from_secs(2);

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// The first packet of a page.
    Started(Group, Codec),
    /// Silence for [`SILENCE`], or an RTCP BYE from the page's source.
    Ended(Group),
}

/// The interface index of `name` (`lo`, `eth0`).
pub fn interface_index(name: &str) -> io::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    std::fs::read_to_string(&path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("no network interface {name:?} ({path}: {e})"),
            )
        })?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))
}

/// Listens while it lives; dropping it leaves the group.
pub struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Joins `group` on the interface with index `iface` (0: the kernel's choice)
/// and reports what arrives to `heard`.
pub fn listen(
    group: Group,
    iface: u32,
    heard: mpsc::UnboundedSender<Heard>,
) -> io::Result<Listener> {
    let (address, port) = group;
    let rtp = join(address, port, iface)?;
    // Without RTCP a page still ends, after its silence: a port taken by another
    // program does not cost the group.
    let rtcp = join(address, port.wrapping_add(1), iface)
        .inspect_err(|e| {
            tracing::warn!(group = %SocketAddrV4::new(address, port), "no RTCP BYE: {e}");
        })
        .ok();
    Ok(Listener {
        task: tokio::spawn(follow(group, rtp, rtcp, heard)),
    })
}

fn join(address: Ipv4Addr, port: u16, iface: u32) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    // Bound to the group, the socket gets that group's datagrams and no others.
    socket.bind(&SocketAddrV4::new(address, port).into())?;
    socket.join_multicast_v4_n(&address, &InterfaceIndexOrAddress::Index(iface))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

async fn follow(
    group: Group,
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
    heard: mpsc::UnboundedSender<Heard>,
) {
    let mut page = Page::default();
    let (mut a, mut b) = ([0u8; 1500], [0u8; 1500]);
    loop {
        let datagram = tokio::select! {
            r = rtp.recv(&mut a) => r.map(|n| classify(&a[..n])),
            r = recv(rtcp.as_ref(), &mut b) => r.map(|n| classify(&b[..n])),
            () = tokio::time::sleep_until(page.deadline), if page.on => {
                page.on = false;
                if heard.send(Heard::Ended(group)).is_err() {
                    return;
                }
                continue;
            }
        };
        let event = match datagram {
            Ok(datagram) => page.on_datagram(datagram, Instant::now()),
            Err(e) => {
                tracing::warn!(group = %SocketAddrV4::new(group.0, group.1), "receiving: {e}");
                None
            }
        };
        let sent = match event {
            Some(Some(codec)) => heard.send(Heard::Started(group, codec)),
            Some(None) => heard.send(Heard::Ended(group)),
            None => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// A datagram from `socket`, or never when there is none.
async fn recv(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<usize> {
    match socket {
        Some(socket) => socket.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// A group's page as its packets tell it.
struct Page {
    on: bool,
    deadline: Instant,
    /// The source that said BYE: its late packets start no new page.
    gone: Option<u32>,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            on: false,
            deadline: Instant::now(),
            gone: None,
        }
    }
}

impl Page {
    /// `Some(Some(codec))` when a page starts, `Some(None)` when it ends.
    fn on_datagram(&mut self, datagram: Datagram, now: Instant) -> Option<Option<Codec>> {
        match datagram {
            Datagram::Rtp { codec, ssrc } if self.gone != Some(ssrc) => {
                self.deadline = now + SILENCE;
                let started = !self.on;
                self.on = true;
                self.gone = None;
                started.then_some(Some(codec))
            }
            Datagram::Bye { ssrc } if self.on => {
                self.on = false;
                self.gone = Some(ssrc);
                Some(None)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_to(group: Group, packets: &[&[u8]]) {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        socket.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
        let socket = std::net::UdpSocket::from(socket);
        for p in packets {
            socket
                .send_to(p, SocketAddrV4::new(group.0, group.1))
                .unwrap();
        }
    }

    const RTP: [u8; 20] = [
        0x80, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8,
    ];

    #[tokio::test]
    async fn a_page_starts_with_its_first_packet_and_ends_with_silence() {
        let group = (Ipv4Addr::new(239, 255, 41, 7), 47_310);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _listener = listen(group, interface_index("lo").unwrap(), tx).unwrap();
        send_to(group, &[b"junk", &RTP, &RTP]);
        assert_eq!(rx.recv().await, Some(Heard::Started(group, Codec::Pcma)));
        let waited = Instant::now();
        assert_eq!(rx.recv().await, Some(Heard::Ended(group)));
        assert!(waited.elapsed() >= SILENCE - Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_group_whose_rtcp_port_is_taken_is_still_listened_to() {
        let group = (Ipv4Addr::new(239, 255, 41, 8), 47_320);
        let _taken = std::net::UdpSocket::bind(("0.0.0.0", group.1 + 1)).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _listener = listen(group, interface_index("lo").unwrap(), tx).unwrap();
        send_to(group, &[&RTP]);
        assert_eq!(rx.recv().await, Some(Heard::Started(group, Codec::Pcma)));
    }

    #[test]
    fn a_bye_ends_the_page_and_its_sources_late_packets_start_none() {
        let mut page = Page::default();
        let now = Instant::now();
        let rtp = Datagram::Rtp {
            codec: Codec::Pcmu,
            ssrc: 9,
        };
        assert_eq!(page.on_datagram(rtp, now), Some(Some(Codec::Pcmu)));
        assert_eq!(
            page.on_datagram(
                Datagram::Rtp {
                    codec: Codec::Pcmu,
                    ssrc: 9
                },
                now
            ),
            None
        );
        assert_eq!(page.on_datagram(Datagram::Bye { ssrc: 9 }, now), Some(None));
        assert_eq!(
            page.on_datagram(
                Datagram::Rtp {
                    codec: Codec::Pcmu,
                    ssrc: 9
                },
                now
            ),
            None
        );
        assert_eq!(page.on_datagram(Datagram::Other, now), None);
        assert_eq!(
            page.on_datagram(
                Datagram::Rtp {
                    codec: Codec::G722,
                    ssrc: 10
                },
                now
            ),
            Some(Some(Codec::G722))
        );
    }
}
