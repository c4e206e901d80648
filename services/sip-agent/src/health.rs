//! The SIP agent's part of the watchdog's health check: its own SIP socket
//! answers an OPTIONS from this host. The answer goes through everything an
//! INVITE goes through before it rings (the guard, the transaction layer,
//! the agent's trust and policy locks), so an agent wedged anywhere there
//! stops pinging the watchdog and systemd restarts it. Any final answer
//! counts: a guarded door phone answers a stranger's OPTIONS 403, and this
//! host may be a stranger to it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;

/// Where the probe goes for a stack listening at `listen`: the wildcard
/// address is reached on loopback.
pub fn probe_target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Sends one OPTIONS to `target` and waits up to `limit` for its final
/// answer.
pub async fn sip_loop_answers(target: SocketAddr, limit: Duration) -> Result<(), String> {
    let socket = UdpSocket::bind(SocketAddr::new(target.ip(), 0))
        .await
        .map_err(|e| format!("no socket for the SIP health probe: {e}"))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let call_id = format!(
        "health-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    let request = options(local, target, &call_id);
    socket
        .send_to(request.as_bytes(), target)
        .await
        .map_err(|e| format!("the SIP health probe cannot be sent: {e}"))?;
    let answered = async {
        let mut buf = vec![0; 4096];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await?;
            if from == target && is_final_answer(&buf[..n], &call_id) {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    match tokio::time::timeout(limit, answered).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the SIP health probe: {e}")),
        Err(_) => Err(format!(
            "the SIP socket did not answer an OPTIONS within {limit:?}"
        )),
    }
}

fn options(local: SocketAddr, target: SocketAddr, call_id: &str) -> String {
    format!(
        "OPTIONS sip:door@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:watchdog@{local}>;tag={call_id}\r\n\
         To: <sip:door@{target}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A final response (2xx to 6xx) to the probe named by `call_id`.
fn is_final_answer(datagram: &[u8], call_id: &str) -> bool {
    let Ok(text) = std::str::from_utf8(datagram) else {
        return false;
    };
    let Some(code) = text
        .strip_prefix("SIP/2.0 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
    else {
        return false;
    };
    (200..700).contains(&code)
        && text.lines().any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                (name.eq_ignore_ascii_case("call-id") || name == "i") && value.trim() == call_id
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wildcard_is_probed_on_loopback() {
        assert_eq!(
            probe_target("0.0.0.0:5060".parse().unwrap()),
            "127.0.0.1:5060".parse().unwrap()
        );
        assert_eq!(
            probe_target("192.0.2.7:5070".parse().unwrap()),
            "192.0.2.7:5070".parse().unwrap()
        );
    }

    #[test]
    fn only_a_final_answer_to_the_probe_counts() {
        let answer = |status: &str, call_id: &str| {
            format!("SIP/2.0 {status}\r\nCall-ID: {call_id}\r\nContent-Length: 0\r\n\r\n")
        };
        assert!(is_final_answer(answer("200 OK", "p1").as_bytes(), "p1"));
        assert!(is_final_answer(
            answer("403 Forbidden", "p1").as_bytes(),
            "p1"
        ));
        assert!(!is_final_answer(
            answer("100 Trying", "p1").as_bytes(),
            "p1"
        ));
        assert!(!is_final_answer(answer("200 OK", "other").as_bytes(), "p1"));
        assert!(!is_final_answer(b"OPTIONS sip:x SIP/2.0\r\n", "p1"));
        assert!(!is_final_answer(&[0xff, 0xfe], "p1"));
    }

    #[tokio::test]
    async fn a_socket_that_answers_passes_and_a_silent_one_fails() {
        let door = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = door.local_addr().unwrap();
        let answering = tokio::spawn(async move {
            let mut buf = vec![0; 4096];
            let (n, from) = door.recv_from(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let call_id = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .unwrap()
                .to_owned();
            let reply = format!("SIP/2.0 200 OK\r\nCall-ID: {call_id}\r\n\r\n");
            door.send_to(reply.as_bytes(), from).await.unwrap();
            door
        });
        sip_loop_answers(target, Duration::from_secs(10))
            .await
            .unwrap();
        let silent = answering.await.unwrap();
        let failed =
            sip_loop_answers(silent.local_addr().unwrap(), Duration::from_millis(50)).await;
        assert!(failed.unwrap_err().contains("did not answer"));
    }
}
