//! Real servers on loopback for the door phone's actions: an FTP server
//! (pyftpdlib), an SMTP server (aiosmtpd) and an HTTP server (Python's
//! http.server), each a small Python script that prints what it received, so
//! tests wait for those lines, never for a fixed time.
//!
//! Needs Debian's python3-pyftpdlib and python3-aiosmtpd (`cargo xtask test`
//! installs them).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Debian's interpreter, which has the Debian packages (a `python3` first in
/// PATH may be another one).
pub const PYTHON: &str = "/usr/bin/python3";

/// How long a server may take to start or to report what it received.
pub const WAIT: Duration = Duration::from_secs(30);

pub const FTP_SERVER: &str = r#"
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

authorizer = DummyAuthorizer()
authorizer.add_user("door", "secret", sys.argv[1], perm="elradfmwMT")

class Handler(FTPHandler):
    def on_file_received(self, file):
        print("RECEIVED", file, flush=True)

Handler.authorizer = authorizer
Handler.passive_ports = None
server = FTPServer(("127.0.0.1", 0), Handler)
print("PORT", server.socket.getsockname()[1], flush=True)
server.serve_forever()
"#;

/// Saves each message, splits it with Python's e-mail parser and prints one JSON
/// line: envelope, headers, and each attachment's type and name, with its bytes
/// saved to a file.
pub const SMTP_SERVER: &str = r#"
import asyncio, email, email.policy, json, os, sys
from aiosmtpd.smtp import SMTP

out = sys.argv[1]
count = 0

class Handler:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        attachments = []
        for i, part in enumerate(message.iter_attachments()):
            path = os.path.join(out, f"message{count}-part{i}")
            with open(path, "wb") as f:
                f.write(part.get_payload(decode=True))
            attachments.append({"type": part.get_content_type(),
                                "name": part.get_filename(), "path": path})
        body = message.get_body(preferencelist=("plain",))
        print("RECEIVED", json.dumps({
            "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
            "from": str(message["From"]), "to": str(message["To"]),
            "subject": str(message["Subject"]), "date": str(message["Date"]),
            "text": body.get_content() if body is not None else "",
            "attachments": attachments}), flush=True)
        return "250 OK"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", 0)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"#;

pub const HTTP_SERVER: &str = r#"
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        print("GET", self.path, self.headers.get("Host"), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("PORT", server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A Python server and the lines it prints; killed when dropped.
pub struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub port: u16,
}

impl Server {
    pub fn start(script: &str, arg: &Path) -> Server {
        let mut child = Command::new(PYTHON)
            .arg("-c")
            .arg(script)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {PYTHON}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            port: 0,
        };
        let port = server.expect("PORT ");
        server.port = port.parse().expect("a port number");
        server
    }

    /// Waits for the next line starting with `prefix` and returns the rest.
    pub fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(e) => {
                    let status = self.child.try_wait();
                    panic!(
                        "no line {prefix:?} from the server ({e}; exit: {status:?}); \
                         are python3-pyftpdlib and python3-aiosmtpd installed?"
                    )
                }
            }
        }
    }

    /// Lines printed so far that start with `prefix`.
    pub fn printed(&self, prefix: &str) -> Vec<String> {
        self.lines
            .try_iter()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on: connections to it are refused.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
