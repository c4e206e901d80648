//! `doorphone-web` under hostile input: garbage instead of TLS, malformed
//! credentials, oversized heads and bodies, odd paths. Each is refused or
//! ignored; the service keeps serving the legitimate client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use doorphone_system_tests::web::{ADMIN, USER, WebRig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_malformed_requests_are_refused_and_the_service_keeps_serving() {
    let rig = WebRig::start(true).await.unwrap();
    let port = rig.api.port;

    // Not TLS at all, and random bytes: the connection is closed.
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3][..],
        &[0u8; 4096][..],
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = stream.write_all(junk);
        let mut buf = [0u8; 256];
        let read = stream.read(&mut buf);
        assert!(
            !matches!(read, Ok(n) if n > 0 && buf[..n].starts_with(b"HTTP/1.1 200")),
            "{read:?}"
        );
    }

    let status = rig.api.url("/api/v1/status");
    for header in [
        "Authorization: Basic !!!not-base64!!!",
        "Authorization: Basic ",
        "Authorization: Digest username=\"installer\", realm=\"doorphone\", nonce=\"x\", uri=\"/api/v1/status\", response=\"00\", qop=auth, nc=zz, cnonce=\"c\"",
        "Authorization: Digest username=\"unterminated",
        "Authorization: Bearer abc",
    ] {
        let reply = rig.api.curl(&["-H", header, &status]).await.unwrap();
        assert_eq!(reply.status, 401, "{header}: {reply:?}");
    }

    // An oversized head and an oversized body are refused.
    let head = rig.dir.path().join("head.txt");
    std::fs::write(&head, format!("X-Junk: {}\n", "a".repeat(200_000))).unwrap();
    let huge = format!("@{}", head.display());
    let reply = rig.api.curl(&["-H", &huge, &status]).await.unwrap();
    assert!(
        [0, 400, 431].contains(&reply.status),
        "an oversized head: {reply:?}"
    );
    let body = rig.dir.path().join("body.json");
    std::fs::write(&body, vec![b' '; 3 * 1024 * 1024]).unwrap();
    let data = format!("@{}", body.display());
    let reply = rig
        .api
        .curl_as(
            ADMIN,
            &[
                "-X",
                "PUT",
                // curl asks before it sends a large body; waiting for the
                // answer (however loaded the machine) means the refusal is
                // read before the body is written into a closed connection.
                "-H",
                "Expect: 100-continue",
                "--expect100-timeout",
                "60",
                "--data-binary",
                &data,
                &rig.api.url("/api/v1/config"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 413, "{reply:?}");

    // Odd paths and bodies.
    for (method, path, body, expected) in [
        ("POST", "/api/v1/doors/..%2F..%2Fetc/open", "", 404),
        ("POST", "/api/v1/doors/A/open/extra", "", 404),
        ("DELETE", "/api/v1/calls/99999999999999999999", "", 404),
        ("POST", "/api/v1/calls", "{\"number\": 5}", 400),
        ("POST", "/api/v1/calls", "[", 400),
        ("PATCH", "/api/v1/config/a..b", "1", 404),
        ("PUT", "/api/v1/config", "[]", 400),
    ] {
        let reply = rig
            .api
            .curl_as(
                ADMIN,
                &["-X", method, "--data-binary", body, &rig.api.url(path)],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, expected, "{method} {path} {body}: {reply:?}");
        assert!(reply.json()["error"].is_string(), "{reply:?}");
    }

    // Still serving, still alive.
    let reply = rig
        .api
        .curl_as(USER, &["-X", "POST", &rig.api.url("/api/v1/doors/A/open")])
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    let pid = rig.api.web.pid().expect("started");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
    assert!(
        state.is_some_and(|s| s != 'Z'),
        "the web service still runs\n{}",
        rig.api.web.log()
    );
}
