//! The FTP client of the `ftp` no-answer action: plain FTP (RFC 959), login,
//! binary type, directories, and one upload over a passive data connection.
//! Only what the action needs, and nothing the server says is trusted further
//! than it must be:
//!
//! - a reply line is at most [`MAX_LINE`] bytes and a multi-line reply at most
//!   [`MAX_LINES`] lines; more is an error, not a growing buffer;
//! - the data connection goes to the control connection's address whatever
//!   address the server announces in its `227` reply (a server behind NAT
//!   announces a private one, and a hostile one could name another host); an
//!   IPv6 control connection uses `EPSV` (RFC 2428), which gives a port only;
//! - a command argument holding CR or LF is refused before anything is sent
//!   (it would end the command and start another);
//! - errors quote the server's reply and never the password.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The longest reply line read, CRLF included.
pub const MAX_LINE: usize = 2048;
/// The most lines one (multi-line) reply may have.
pub const MAX_LINES: usize = 64;

/// Why an FTP exchange failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The request cannot be sent as given (an argument holds CR or LF):
    /// trying again changes nothing.
    Argument(String),
    /// The connection failed, closed, or carried something that is not FTP.
    Io(String),
    /// The server answered with a code the step does not accept.
    Refused(Reply),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Argument(e) | Error::Io(e) => f.write_str(e),
            Error::Refused(reply) => write!(f, "the server answered {reply}"),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(e.to_string())
    }
}

/// A server reply: its code and the text of its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// 1yz: preliminary, another reply follows.
    fn preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }

    /// 2yz: done.
    fn completed(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text is the server's: shown without control characters and cut short.
        let text: String = self
            .text
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        if text.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {text}", self.code)
        }
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes, without its line end.
async fn line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<String, Error> {
    let mut buf = Vec::new();
    let read = (&mut *reader)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await?;
    if read == 0 {
        return Err(Error::Io("the server closed the connection".to_owned()));
    }
    if buf.last() != Some(&b'\n') {
        return Err(Error::Io(if read == MAX_LINE {
            format!("a reply line longer than {MAX_LINE} bytes")
        } else {
            "the server closed the connection inside a reply".to_owned()
        }));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The code of a reply's first line (`ddd` then a space, `-` or nothing).
fn code(line: &str) -> Option<(u16, u8)> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) || bytes[0] == b'0' {
        return None;
    }
    let separator = bytes.get(3).copied().unwrap_or(b' ');
    if separator != b' ' && separator != b'-' {
        return None;
    }
    Some((line[..3].parse().ok()?, separator))
}

/// Reads one reply, a multi-line one (`ddd-` … `ddd `) whole (RFC 959 4.2).
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, Error> {
    let first = line(reader).await?;
    let (code, separator) =
        self::code(&first).ok_or_else(|| Error::Io(format!("not an FTP reply: {first:.80?}")))?;
    let mut last = first;
    if separator == b'-' {
        let end = format!("{code} ");
        let mut lines = 1;
        loop {
            if lines == MAX_LINES {
                return Err(Error::Io(format!("a reply of more than {MAX_LINES} lines")));
            }
            last = line(reader).await?;
            lines += 1;
            if last.starts_with(&end) || last == end.trim_end() {
                break;
            }
        }
    }
    let text = last.get(4..).unwrap_or_default().to_owned();
    Ok(Reply { code, text })
}

/// The port of a `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` reply: the
/// first six comma-separated numbers of its text (RFC 1123 4.1.2.6: the
/// parentheses are not promised). The address is not used.
pub fn passive_port(text: &str) -> Option<u16> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let numbers: Vec<u8> = text[start..]
        .split(|c: char| !c.is_ascii_digit() && c != ',')
        .next()?
        .split(',')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let [_, _, _, _, high, low] = numbers[..] else {
        return None;
    };
    let port = u16::from(high) << 8 | u16::from(low);
    (port != 0).then_some(port)
}

/// The port of a `229 Entering Extended Passive Mode (|||port|)` reply.
pub fn extended_passive_port(text: &str) -> Option<u16> {
    let inside = &text[text.find('(')? + 1..];
    let inside = &inside[..inside.find(')')?];
    let delimiter = inside.chars().next()?;
    let fields: Vec<&str> = inside.split(delimiter).collect();
    // "", net-prt, net-addr, port, "": the first two given empty by the server.
    let [_, _, _, port, ""] = fields[..] else {
        return None;
    };
    port.parse().ok().filter(|p| *p != 0)
}

/// A logged-in control connection.
pub struct Session {
    control: BufReader<TcpStream>,
    peer: IpAddr,
}

impl Session {
    /// Connects to `address` (`host:port`) and reads the greeting.
    pub async fn connect(address: &str) -> Result<Session, Error> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?.ip();
        let mut session = Session {
            control: BufReader::new(stream),
            peer,
        };
        let mut greeting = read_reply(&mut session.control).await?;
        // 120: "ready in nnn minutes", then 220.
        while greeting.preliminary() {
            greeting = read_reply(&mut session.control).await?;
        }
        if !greeting.completed() {
            return Err(Error::Refused(greeting));
        }
        Ok(session)
    }

    /// Sends `verb` with `argument` and reads the reply.
    async fn command(&mut self, verb: &str, argument: Option<&str>) -> Result<Reply, Error> {
        let mut request = verb.to_owned();
        if let Some(argument) = argument {
            if argument.contains(['\r', '\n']) {
                return Err(Error::Argument(format!(
                    "the argument of {verb} holds a line break"
                )));
            }
            request.push(' ');
            request.push_str(argument);
        }
        request.push_str("\r\n");
        self.control.get_mut().write_all(request.as_bytes()).await?;
        read_reply(&mut self.control).await
    }

    /// Sends a command that must complete (2yz).
    async fn complete(&mut self, verb: &str, argument: Option<&str>) -> Result<Reply, Error> {
        let reply = self.command(verb, argument).await?;
        if reply.completed() {
            Ok(reply)
        } else {
            Err(Error::Refused(reply))
        }
    }

    /// `USER`, and `PASS` when the server asks for one.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), Error> {
        if password.contains(['\r', '\n']) {
            return Err(Error::Argument(
                "the password holds a line break".to_owned(),
            ));
        }
        let reply = self.command("USER", Some(user)).await?;
        if reply.completed() {
            return Ok(());
        }
        if reply.code != 331 {
            return Err(Error::Refused(reply));
        }
        self.complete("PASS", Some(password)).await.map(drop)
    }

    /// `TYPE I`: the file's bytes as they are.
    pub async fn binary(&mut self) -> Result<(), Error> {
        self.complete("TYPE", Some("I")).await.map(drop)
    }

    /// `CWD dir`.
    pub async fn cwd(&mut self, dir: &str) -> Result<(), Error> {
        self.complete("CWD", Some(dir)).await.map(drop)
    }

    /// `MKD dir`.
    pub async fn mkdir(&mut self, dir: &str) -> Result<(), Error> {
        self.complete("MKD", Some(dir)).await.map(drop)
    }

    /// Stores `data` as `name` over a passive data connection; returns once
    /// the server confirmed the transfer.
    pub async fn store(&mut self, name: &str, data: &[u8]) -> Result<(), Error> {
        if name.contains(['\r', '\n']) {
            return Err(Error::Argument(
                "the file name holds a line break".to_owned(),
            ));
        }
        let port = if self.peer.is_ipv6() {
            let reply = self.complete("EPSV", None).await?;
            extended_passive_port(&reply.text)
                .ok_or_else(|| Error::Io(format!("no port in the EPSV reply {reply}")))?
        } else {
            let reply = self.complete("PASV", None).await?;
            passive_port(&reply.text)
                .ok_or_else(|| Error::Io(format!("no port in the PASV reply {reply}")))?
        };
        let mut data_stream = TcpStream::connect(SocketAddr::new(self.peer, port)).await?;
        let reply = self.command("STOR", Some(name)).await?;
        if !reply.preliminary() {
            return Err(Error::Refused(reply));
        }
        data_stream.write_all(data).await?;
        data_stream.shutdown().await?;
        drop(data_stream);
        let done = read_reply(&mut self.control).await?;
        if !done.completed() {
            return Err(Error::Refused(done));
        }
        Ok(())
    }

    /// `QUIT`.
    pub async fn quit(mut self) -> Result<(), Error> {
        self.complete("QUIT", None).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reply(text: &str) -> Result<Reply, Error> {
        read_reply(&mut text.as_bytes()).await
    }

    #[tokio::test]
    async fn replies_are_read_whole_and_bounded() {
        assert_eq!(
            reply("220 ready\r\n").await,
            Ok(Reply {
                code: 220,
                text: "ready".into()
            })
        );
        assert_eq!(reply("200\r\n").await.unwrap().code, 200);
        // A multi-line reply ends at the line with the code and a space.
        let multi = "230-Welcome\r\n 230 is not the end\r\n230-still not\r\n230 done\r\nrest";
        assert_eq!(
            reply(multi).await,
            Ok(Reply {
                code: 230,
                text: "done".into()
            })
        );
        let long = format!("220 {}\r\n", "x".repeat(MAX_LINE));
        assert!(matches!(reply(&long).await, Err(Error::Io(e)) if e.contains("longer")));
        let endless = format!("220-a\r\n{}", "more\r\n".repeat(MAX_LINES));
        assert!(matches!(reply(&endless).await, Err(Error::Io(e)) if e.contains("lines")));
        assert!(matches!(reply("220-cut").await, Err(Error::Io(_))));
        assert!(matches!(reply("").await, Err(Error::Io(e)) if e.contains("closed")));
        for junk in ["HTTP/1.1 200 OK\r\n", "22\r\n", "2200 x\r\n", "099 x\r\n"] {
            assert!(matches!(reply(junk).await, Err(Error::Io(_))), "{junk}");
        }
    }

    #[test]
    fn passive_replies_give_the_port_and_nothing_else() {
        assert_eq!(
            passive_port("Entering Passive Mode (10,0,0,7,195,80)."),
            Some(195 * 256 + 80)
        );
        assert_eq!(passive_port("=127,0,0,1,4,1"), Some(1025));
        for bad in [
            "Entering Passive Mode",
            "(127,0,0,1,4)",
            "(127,0,0,1,4,256)",
            "(127,0,0,1,0,0)",
            "(1,2,3,4,5,6,7)",
        ] {
            assert_eq!(passive_port(bad), None, "{bad}");
        }
        assert_eq!(
            extended_passive_port("Entering Extended Passive Mode (|||6446|)"),
            Some(6446)
        );
        for bad in ["(|||0|)", "(||::1|6446|x)", "(|||port|)", "no port"] {
            assert_eq!(extended_passive_port(bad), None, "{bad}");
        }
    }

    /// A scripted server on loopback: it sends `script`'s replies in turn,
    /// each after reading one command, and returns the commands read.
    async fn scripted(script: Vec<&'static str>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            let mut commands = Vec::new();
            let mut replies = script.into_iter();
            let greeting = replies.next().unwrap();
            stream
                .get_mut()
                .write_all(greeting.as_bytes())
                .await
                .unwrap();
            for reply in replies {
                let mut command = String::new();
                if stream.read_line(&mut command).await.unwrap() == 0 {
                    break;
                }
                commands.push(command.trim_end().to_owned());
                stream.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
            let mut rest = String::new();
            stream.read_to_string(&mut rest).await.unwrap();
            commands.extend(rest.lines().map(str::to_owned));
            commands
        });
        (address, server)
    }

    #[tokio::test]
    async fn a_line_break_in_an_argument_sends_nothing() {
        let (address, server) = scripted(vec!["220 hi\r\n", "230 in\r\n"]).await;
        let mut session = Session::connect(&address).await.unwrap();
        assert!(matches!(
            session.login("door", "pw\r\nDELE x").await,
            Err(Error::Argument(e)) if !e.contains("DELE")
        ));
        assert!(matches!(
            session.cwd("snapshots\r\nDELE x").await,
            Err(Error::Argument(_))
        ));
        assert!(matches!(
            session.store("a\nb.jpg", b"x").await,
            Err(Error::Argument(_))
        ));
        // The legitimate login still goes through, and it was the only command.
        session.login("door", "pw").await.unwrap();
        drop(session);
        assert_eq!(server.await.unwrap(), ["USER door"]);
    }

    #[tokio::test]
    async fn the_upload_goes_to_the_control_connections_address() {
        // The data port, announced behind a private address the door cannot reach.
        let data = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = data.local_addr().unwrap().port();
        let pasv: &'static str = format!(
            "227 Entering Passive Mode (10,9,9,9,{},{})\r\n",
            port >> 8,
            port & 0xff
        )
        .leak();
        let (address, server) = scripted(vec![
            "220-Welcome\r\n220 ready\r\n",
            "331 password please\r\n",
            "230 in\r\n",
            "200 binary\r\n",
            pasv,
            "150 go ahead\r\n226 stored\r\n",
            "221 bye\r\n",
        ])
        .await;
        let received = tokio::spawn(async move {
            let (mut stream, _) = data.accept().await.unwrap();
            let mut bytes = Vec::new();
            stream.read_to_end(&mut bytes).await.unwrap();
            bytes
        });
        let mut session = Session::connect(&address).await.unwrap();
        session.login("door", "pw").await.unwrap();
        session.binary().await.unwrap();
        let jpeg = b"\xff\xd8 a picture \r\n\xff\xd9";
        assert_eq!(session.store("door.jpg", jpeg).await, Ok(()));
        session.quit().await.unwrap();
        assert_eq!(received.await.unwrap(), jpeg);
        assert_eq!(
            server.await.unwrap(),
            [
                "USER door",
                "PASS pw",
                "TYPE I",
                "PASV",
                "STOR door.jpg",
                "QUIT"
            ]
        );
    }

    #[tokio::test]
    async fn a_refusal_names_the_servers_reply() {
        let (address, _server) =
            scripted(vec!["220 hi\r\n", "331 pw\r\n", "530 Login incorrect.\r\n"]).await;
        let mut session = Session::connect(&address).await.unwrap();
        let error = session.login("door", "secret").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the server answered 530 Login incorrect."
        );
    }

    #[test]
    fn a_reply_is_shown_without_the_servers_control_characters() {
        let reply = Reply {
            code: 550,
            text: format!("no\x1b[2J such file{}", "!".repeat(500)),
        };
        let shown = reply.to_string();
        assert!(shown.starts_with("550 no[2J such file!"), "{shown}");
        assert_eq!(shown.chars().count(), 4 + 200);
    }
}
