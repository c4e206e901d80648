//! RTP/RTCP port pairs from the configured range: an even port for RTP and the
//! next for RTCP, both bound before they are offered, released when dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Mutex;

/// A bound RTP socket and its RTCP companion.
#[derive(Debug)]
pub struct PortPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub port: u16,
}

#[derive(Debug)]
pub struct PortRange {
    first: u16,
    last: u16,
    /// Where the next search starts, so a port just freed is not reused at once.
    next: Mutex<u16>,
}

impl PortRange {
    pub fn new(first: u16, last: u16) -> PortRange {
        let first = first + first % 2;
        PortRange {
            first,
            last,
            next: Mutex::new(first),
        }
    }

    /// Binds the next free pair on all addresses.
    pub fn bind(&self) -> std::io::Result<PortPair> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let pairs = (u32::from(self.last) + 1 - u32::from(self.first)) / 2;
        for _ in 0..pairs {
            let port = *next;
            *next = if port + 3 > self.last {
                self.first
            } else {
                port + 2
            };
            let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            let Ok(rtp) = UdpSocket::bind(SocketAddr::new(any, port)) else {
                continue;
            };
            let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(any, port + 1)) else {
                continue;
            };
            return Ok(PortPair { rtp, rtcp, port });
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("no free RTP port pair in {}-{}", self.first, self.last),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_distinct_and_come_back_when_freed() {
        let range = PortRange::new(41000, 41007);
        let a = range.bind().unwrap();
        let b = range.bind().unwrap();
        assert_eq!(a.port % 2, 0);
        assert_ne!(a.port, b.port);
        let c = range.bind().unwrap();
        let d = range.bind().unwrap();
        assert!(range.bind().is_err(), "four pairs fit in 41000-41007");
        drop((a, b, c));
        assert!(range.bind().is_ok());
        drop(d);
    }
}
