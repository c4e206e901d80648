//! The URLs and `host[:port]` values of the configuration, parsed in one place
//! for the config service, which refuses what cannot be used, and the SIP
//! agent, which uses them: `actions.ftp.url` ([`ftp_url`]),
//! `buttons[].no_answer.http_url` ([`http_url`]), `actions.email.smtp` and the
//! SIP servers ([`host_port`]).
//!
//! The [`url`] crate parses. A value is parsed under the scheme `door-<scheme>`,
//! one without the web's special rules, so its host stays as written: no IPv4
//! shorthand (`10.1` for 10.0.0.1, `010.1.1.1` in octal), no IDNA mapping, and
//! `ftp:///dir` has no host instead of the host `dir`. A host is then an IPv4
//! address, a bracketed IPv6 address or a host name (labels of letters, digits
//! and `-`). Port 0 is refused; without a port the default of the use applies.
//!
//! An error's text names the value and the rule; the caller puts the field path
//! in front (`actions.ftp.url: "http://h/" is not a ftp:// URL with a host`).

use std::fmt;
use std::net::Ipv4Addr;

use percent_encoding::percent_decode_str;
use url::Url;

pub use url::Host;

/// The scheme prefix that keeps a value out of the web's special URL rules.
const PLAIN: &str = "door-";

/// A refused URL or `host:port`: the value and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

/// A server to connect to: host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: Host,
    pub port: u16,
}

impl HostPort {
    /// The host without brackets (`::1`, `192.0.2.1`, `mail.example.com`), as a
    /// TLS server name or an SMTP relay wants it.
    pub fn name(&self) -> String {
        match &self.host {
            Host::Ipv6(a) => a.to_string(),
            host => host.to_string(),
        }
    }
}

/// `host:port`, IPv6 in brackets, as `connect` takes it.
impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What `ftp://host[:port]/dir/...` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpTarget {
    /// Port 21 unless the URL gives one.
    pub server: HostPort,
    /// Directories to enter in turn, percent-decoded, relative to the login
    /// directory (RFC 1738); an absolute path (`ftp://host//srv`) starts with `/`.
    pub dirs: Vec<String>,
}

/// What `http://host[:port]/path?query` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// Port 80 unless the URL gives one.
    pub server: HostPort,
    /// The request line's target: path and query, without the fragment,
    /// percent-encoded where a request line needs it.
    pub target: String,
    /// The `Host` header's value: the host, and the port unless it is 80.
    pub host_header: String,
}

/// A host name as the door phone accepts it: at most 253 characters, labels of
/// 1-63 letters, digits and `-`, not starting or ending with `-`, the last not
/// all digits (no top-level domain is: `1.2.3` and `0x7f.1` are malformed IPv4
/// addresses, and a resolver may read the second as 127.0.0.1).
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && !s
            .rsplit('.')
            .next()
            .is_some_and(|last| last.chars().all(|c| c.is_ascii_digit()))
}

/// The host of an opaque (non-special) parse, checked.
fn checked_host(host: Host<&str>) -> Result<Host, HostProblem> {
    match host {
        Host::Domain("") => Err(HostProblem::Missing),
        Host::Domain(d) => match d.parse::<Ipv4Addr>() {
            Ok(a) => Ok(Host::Ipv4(a)),
            Err(_) if is_host_name(d) => Ok(Host::Domain(d.to_owned())),
            Err(_) => Err(HostProblem::Bad(d.to_owned())),
        },
        host => Ok(host.to_owned()),
    }
}

enum HostProblem {
    Missing,
    Bad(String),
}

/// A bare host: a host name, an IPv4 address or a bracketed IPv6 address.
pub fn host(value: &str) -> Option<Host> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let parsed = Host::parse_opaque(value).ok()?;
    let borrowed = match &parsed {
        Host::Domain(d) => Host::Domain(d.as_str()),
        Host::Ipv4(a) => Host::Ipv4(*a),
        Host::Ipv6(a) => Host::Ipv6(*a),
    };
    checked_host(borrowed).ok()
}

/// `host` or `host:port` (`[v6]:port` for IPv6), with `default_port` when no
/// port is given. No user, path, query or empty port (`pbx:`).
pub fn host_port(value: &str, default_port: u16) -> Result<HostPort, UrlError> {
    let refused = || UrlError(format!("{value:?} is not host or host:port"));
    if value.is_empty()
        || value.ends_with(':')
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(refused());
    }
    let url = Url::parse(&format!("{PLAIN}host://{value}")).map_err(|_| refused())?;
    if !url.username().is_empty()
        || url.password().is_some()
        || !url.path().is_empty()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(refused());
    }
    let host = url.host().ok_or_else(refused)?;
    let host = checked_host(host).map_err(|_| refused())?;
    let port = match url.port() {
        Some(0) => return Err(refused()),
        Some(port) => port,
        None => default_port,
    };
    Ok(HostPort { host, port })
}

/// Parses `value` as a `scheme://` URL with a host; the server's port is
/// `default_port` unless the URL gives one.
fn parse(value: &str, scheme: &str, default_port: u16) -> Result<(Url, HostPort), UrlError> {
    let not_url = || {
        let note = if scheme == "http" && value.starts_with("https:") {
            " (https is not supported)"
        } else {
            ""
        };
        UrlError(format!(
            "{value:?} is not a {scheme}:// URL with a host{note}"
        ))
    };
    if value.chars().any(char::is_control) {
        return Err(UrlError(format!(
            "{value:?}: control characters are not allowed"
        )));
    }
    if value.trim() != value {
        return Err(UrlError(format!(
            "{value:?}: spaces at the start or the end are not allowed"
        )));
    }
    let url = match Url::parse(&format!("{PLAIN}{value}")) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) | Err(url::ParseError::EmptyHost) => {
            return Err(not_url());
        }
        Err(e) => return Err(UrlError(format!("{value:?}: {e}"))),
    };
    if url.scheme().strip_prefix(PLAIN) != Some(scheme) {
        return Err(not_url());
    }
    let host = match checked_host(url.host().ok_or_else(not_url)?) {
        Ok(host) => host,
        Err(HostProblem::Missing) => return Err(not_url()),
        Err(HostProblem::Bad(host)) => {
            return Err(UrlError(format!(
                "{value:?}: {host:?} is not a host name or an IP address"
            )));
        }
    };
    let port = match url.port() {
        Some(0) => return Err(UrlError(format!("{value:?}: port 0 is not allowed"))),
        Some(port) => port,
        None => default_port,
    };
    Ok((url, HostPort { host, port }))
}

/// `ftp://[user@]host[:port]/dir/...`. A user and password in the URL are
/// ignored (the login is `actions.ftp.user` and `password`); a query or a
/// fragment is refused, and so is a directory that percent-decodes to a control
/// character (it would end the FTP command) or to text that is not UTF-8.
pub fn ftp_url(value: &str) -> Result<FtpTarget, UrlError> {
    let (url, server) = parse(value, "ftp", 21)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlError(format!(
            "{value:?}: an ftp:// URL has no query or fragment (write ? as %3F and # as %23)"
        )));
    }
    let path = url.path().strip_prefix('/').unwrap_or_default();
    let mut dirs = Vec::new();
    if path.starts_with('/') {
        dirs.push("/".to_owned());
    }
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let dir = percent_decode_str(segment).decode_utf8().map_err(|_| {
            UrlError(format!(
                "{value:?}: directory {segment:?} is not UTF-8 when decoded"
            ))
        })?;
        if dir.chars().any(char::is_control) {
            return Err(UrlError(format!(
                "{value:?}: directory {segment:?} holds a control character when decoded"
            )));
        }
        dirs.push(dir.into_owned());
    }
    Ok(FtpTarget { server, dirs })
}

/// `http://host[:port][/path][?query][#fragment]`; `https://` and a user name
/// in the URL are refused. The fragment is not sent.
pub fn http_url(value: &str) -> Result<HttpTarget, UrlError> {
    let (url, server) = parse(value, "http", 80)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError(format!(
            "{value:?}: user names in the URL are not supported"
        )));
    }
    let mut target = String::from(if url.path().starts_with('/') { "" } else { "/" });
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    // The parser encodes spaces and non-ASCII; a request line also wants these
    // encoded (RFC 9112 takes RFC 3986's characters only).
    for b in url.path().bytes().chain(query.bytes()) {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            target.push(char::from(b));
        } else {
            target.push_str(&format!("%{b:02X}"));
        }
    }
    let host_header = if server.port == 80 {
        server.host.to_string()
    } else {
        server.to_string()
    };
    Ok(HttpTarget {
        server,
        target,
        host_header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn ftp(value: &str) -> (String, u16, Vec<String>) {
        let t = ftp_url(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        (t.server.host.to_string(), t.server.port, t.dirs)
    }

    fn http(value: &str) -> (String, u16, String, String) {
        let t = http_url(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        (
            t.server.host.to_string(),
            t.server.port,
            t.target,
            t.host_header,
        )
    }

    fn refused(result: Result<impl fmt::Debug, UrlError>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn ftp_urls() {
        assert_eq!(
            ftp("ftp://192.168.1.5/snapshots/"),
            ("192.168.1.5".into(), 21, vec!["snapshots".into()])
        );
        assert_eq!(ftp("ftp://host").2, Vec::<String>::new());
        assert_eq!(ftp("FTP://Host.Example:21/a/b").0, "Host.Example");
        assert_eq!(
            refused(ftp_url("http://127.0.0.1/")),
            "\"http://127.0.0.1/\" is not a ftp:// URL with a host"
        );
        assert_eq!(
            refused(ftp_url("ftp:///dir")),
            "\"ftp:///dir\" is not a ftp:// URL with a host"
        );
        assert!(refused(ftp_url("ftp:host/dir")).contains("is not a ftp:// URL"));
        assert!(refused(ftp_url("snapshots/")).contains("is not a ftp:// URL"));
        assert!(refused(ftp_url("ftp://h/dir?x")).contains("no query or fragment"));
    }

    #[test]
    fn ipv6_literals() {
        let t = ftp_url("ftp://[2001:db8::1]:2121/x").unwrap();
        assert_eq!(
            t.server.host,
            Host::<String>::Ipv6("2001:db8::1".parse::<Ipv6Addr>().unwrap())
        );
        assert_eq!(t.server.name(), "2001:db8::1");
        assert_eq!(t.server.to_string(), "[2001:db8::1]:2121");
        assert_eq!(
            http("http://[::1]/door"),
            ("[::1]".into(), 80, "/door".into(), "[::1]".into())
        );
        let smtp = host_port("[::1]:587", 25).unwrap();
        assert_eq!((smtp.name(), smtp.port), ("::1".into(), 587));
        assert_eq!(
            host("[::1]"),
            Some(Host::<String>::Ipv6(Ipv6Addr::LOCALHOST))
        );
        for bad in [
            "ftp://[::1/",
            "ftp://[::g]/",
            "ftp://::1/",
            "ftp://[fe80::1%25eth0]/",
        ] {
            assert!(ftp_url(bad).is_err(), "{bad}");
        }
        for bad in ["::1", "[::1", "[::1]:", "[::1]x"] {
            assert!(host_port(bad, 25).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(ftp("ftp://h:2121/").1, 2121);
        assert_eq!(ftp("ftp://h:21/").1, 21);
        assert_eq!(http("http://h:80/x").3, "h");
        assert_eq!(http("http://h:8080/x").3, "h:8080");
        assert_eq!(host_port("mail", 465).unwrap().port, 465);
        assert_eq!(host_port("mail:2525", 465).unwrap().port, 2525);
        assert_eq!(host_port("mail:25", 587).unwrap().port, 25);
        assert_eq!(
            refused(ftp_url("ftp://h:0/")),
            "\"ftp://h:0/\": port 0 is not allowed"
        );
        assert_eq!(
            refused(ftp_url("ftp://h:65536/")),
            "\"ftp://h:65536/\": invalid port number"
        );
        assert!(http_url("http://h:x/").is_err());
        for bad in ["pbx:", "pbx:0", "pbx:65536", "pbx:-1", "pbx:5060x", ""] {
            assert_eq!(
                refused(host_port(bad, 25)),
                format!("{bad:?} is not host or host:port")
            );
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host_port("192.0.2.1:25", 25).unwrap().host,
            Host::<String>::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
        );
        for bad in [
            "1.2.3",
            "10.1",
            "0x7f.1",
            "192.168.1.300",
            "-pbx",
            "pbx-",
            "a..b",
            "pb%78",
            "p b",
        ] {
            assert!(host_port(bad, 25).is_err(), "{bad}");
            assert!(ftp_url(&format!("ftp://{bad}/x")).is_err(), "{bad}");
        }
        for bad in ["pbx/", "pbx/x", "pbx?", "pbx#"] {
            assert!(host_port(bad, 25).is_err(), "{bad}");
        }
        assert_eq!(
            refused(ftp_url("ftp://-pbx/")),
            "\"ftp://-pbx/\": \"-pbx\" is not a host name or an IP address"
        );
        assert!(host("mail.example.com").is_some());
        assert!(host("bücher.example").is_none());
    }

    /// An international domain name is written in its ASCII (`xn--`) form,
    /// kept as written; its Unicode form is refused by every parser. No IDNA
    /// processing happens, so none is linked (see `idna_adapter` in the
    /// workspace's Cargo.toml).
    #[test]
    fn international_domain_names() {
        let ascii = "xn--bcher-kva.example";
        assert_eq!(host_port(ascii, 25).unwrap().host.to_string(), ascii);
        assert_eq!(ftp(&format!("ftp://{ascii}/x")).0, ascii);
        assert_eq!(http(&format!("http://{ascii}/")).0, ascii);
        for unicode in ["bücher.example", "BÜCHER.example", "xn--bcher-kva.exämple"] {
            assert!(host(unicode).is_none(), "{unicode}");
            assert!(
                host_port(&format!("{unicode}:25"), 25).is_err(),
                "{unicode}"
            );
            assert!(ftp_url(&format!("ftp://{unicode}/x")).is_err(), "{unicode}");
            assert!(
                http_url(&format!("http://{unicode}/")).is_err(),
                "{unicode}"
            );
        }
    }

    #[test]
    fn userinfo() {
        // The FTP login comes from the configuration; the URL's is ignored.
        assert_eq!(
            ftp("ftp://u:p@[::1]:2121//srv/door%20cam/"),
            (
                "[::1]".into(),
                2121,
                vec!["/".into(), "srv".into(), "door cam".into()]
            )
        );
        assert_eq!(ftp("ftp://door@nas/x").0, "nas");
        for bad in ["http://u@h/", "http://u:p@h/", "http://:p@h/"] {
            assert_eq!(
                refused(http_url(bad)),
                format!("{bad:?}: user names in the URL are not supported")
            );
        }
        assert!(host_port("u@mail:25", 25).is_err());
    }

    #[test]
    fn percent_encoded_paths() {
        assert_eq!(
            ftp("ftp://h/a%2Fb/%C3%A9t%C3%A9/%zz/"),
            (
                "h".into(),
                21,
                vec!["a/b".into(), "été".into(), "%zz".into()]
            )
        );
        assert_eq!(ftp("ftp://h/door cam/").2, vec!["door cam".to_owned()]);
        assert!(refused(ftp_url("ftp://h/a%0D%0ADELE%20x/")).contains("control character"));
        assert!(refused(ftp_url("ftp://h/%00/")).contains("control character"));
        assert!(refused(ftp_url("ftp://h/%FF/")).contains("not UTF-8"));
        assert_eq!(
            http("http://[::1]:8080/door bell?b=1#x"),
            (
                "[::1]".into(),
                8080,
                "/door%20bell?b=1".into(),
                "[::1]:8080".into()
            )
        );
        assert_eq!(http("http://h/a%20b?c=%2F").2, "/a%20b?c=%2F");
        assert_eq!(http("http://h/é|^?q={x}").2, "/%C3%A9%7C%5E?q=%7Bx%7D");
        assert_eq!(http("http://h?x").2, "/?x");
        assert_eq!(http("http://h").2, "/");
    }

    #[test]
    fn bad_schemes() {
        assert_eq!(
            refused(http_url("https://h/")),
            "\"https://h/\" is not a http:// URL with a host (https is not supported)"
        );
        for bad in [
            "ftp://h/", "htp://h/", "http:/h", "http:h", "//h/x", "h/x", "http//h",
        ] {
            assert_eq!(
                refused(http_url(bad)),
                format!("{bad:?} is not a http:// URL with a host"),
            );
        }
        assert!(refused(http_url(" http://h/")).contains("spaces at the start"));
        assert!(refused(http_url("http://h/\n")).contains("control characters"));
        assert!(refused(http_url("http://h/a\tb")).contains("control characters"));
        assert!(refused(ftp_url("door-ftp://h/")).contains("is not a ftp:// URL"));
    }
}
