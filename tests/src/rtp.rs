//! RTP plumbing for far ends played by `gst-launch-1.0`.
//!
//! A phone sends its RTP from the port its SDP names (symmetric RTP), and the door
//! takes RTP only from there. `gst-launch-1.0` cannot hand one socket to both its
//! `udpsrc` and its `udpsink`, so the test holds the peer's socket and relays: what
//! arrives there goes on to the peer's receiving pipeline, and what the peer's
//! sending pipeline sends to a local inlet leaves from that socket.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;

/// How often a relay thread looks whether it should stop.
const POLL: Duration = Duration::from_millis(50);

/// A relay thread, stopped when dropped.
pub struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The local port a sending pipeline sends to (for [`Relay::send_from`]).
    pub inlet: u16,
}

impl Relay {
    fn spawn(inlet: u16, from: UdpSocket, out: UdpSocket, to: SocketAddr) -> Result<Relay> {
        from.set_read_timeout(Some(POLL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stopping.load(Ordering::Relaxed) {
                if let Ok(n) = from.recv(&mut buf) {
                    let _ = out.send_to(&buf[..n], to);
                }
            }
        });
        Ok(Relay {
            stop,
            thread: Some(thread),
            inlet,
        })
    }

    /// Sends what arrives at [`Relay::inlet`] on to `to`, from `socket`.
    pub fn send_from(socket: &UdpSocket, to: SocketAddr) -> Result<Relay> {
        let inlet = UdpSocket::bind("127.0.0.1:0")?;
        let port = inlet.local_addr()?.port();
        Relay::spawn(port, inlet, socket.try_clone()?, to)
    }

    /// Hands what `socket` receives to the receiving pipeline at 127.0.0.1:`outlet`.
    pub fn deliver(socket: &UdpSocket, outlet: u16) -> Result<Relay> {
        let out = UdpSocket::bind("127.0.0.1:0")?;
        Relay::spawn(
            0,
            socket.try_clone()?,
            out,
            SocketAddr::from(([127, 0, 0, 1], outlet)),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A port nobody listens on now, for a pipeline to bind.
pub fn unused_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}
