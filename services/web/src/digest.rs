//! HTTP Digest authentication (RFC 7616) with SHA-256 and `qop=auth`: the
//! server's nonces, each with an expiry and the highest nonce count it saw,
//! and the check of a client's response against a user's stored HA1.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a nonce is good for; a client then gets `stale=true` and retries.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Nonces kept at most: the oldest goes first, so unauthenticated requests
/// cannot exhaust memory.
const MAX_NONCES: usize = 4096;

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `Authorization: Digest ...` parameters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

impl Credentials {
    /// Reads the parameters after `Digest `; `None` for a malformed header or
    /// one without the parameters RFC 7616 requires.
    pub fn parse(params: &str) -> Option<Credentials> {
        let mut c = Credentials::default();
        let (mut username, mut realm, mut nonce, mut uri, mut response) =
            (None, None, None, None, None);
        for (key, value) in parameters(params)? {
            match key.to_ascii_lowercase().as_str() {
                "username" => username = Some(value),
                "realm" => realm = Some(value),
                "nonce" => nonce = Some(value),
                "uri" => uri = Some(value),
                "response" => response = Some(value),
                "algorithm" => c.algorithm = Some(value),
                "qop" => c.qop = Some(value),
                "nc" => c.nc = Some(value),
                "cnonce" => c.cnonce = Some(value),
                _ => {}
            }
        }
        c.username = username?;
        c.realm = realm?;
        c.nonce = nonce?;
        c.uri = uri?;
        c.response = response?;
        Some(c)
    }

    /// The response a client knowing the password behind `ha1` sends for
    /// `method` (`qop=auth` only: the body is not covered).
    pub fn expected_response(&self, ha1: &str, method: &str) -> Option<String> {
        let ha2 = sha256_hex(format!("{method}:{}", self.uri).as_bytes());
        let (nc, cnonce, qop) = (self.nc.as_ref()?, self.cnonce.as_ref()?, self.qop.as_ref()?);
        Some(sha256_hex(
            format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", self.nonce).as_bytes(),
        ))
    }
}

/// `key=value` or `key="quoted, \"value\""` pairs separated by commas.
fn parameters(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        chars.next()?; // '='
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
        if out.len() > 32 {
            return None;
        }
    }
}

/// Why a Digest response was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not this realm, algorithm or qop, or no nc/cnonce.
    Malformed,
    /// The response does not match the password.
    Wrong,
    /// Right password, but the nonce expired or is unknown: the client retries
    /// with a fresh one (`stale=true`).
    Stale,
    /// The nonce count did not grow: a replay.
    Replayed,
}

struct Nonce {
    issued: Instant,
    highest_nc: u32,
}

#[derive(Default)]
pub struct Nonces {
    issued: HashMap<String, Nonce>,
}

impl Nonces {
    /// A fresh nonce from the operating system's random source.
    pub fn issue(&mut self, now: Instant) -> String {
        let mut bytes = [0u8; 18];
        getrandom::getrandom(&mut bytes).expect("the operating system's random source");
        let nonce = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
        if self.issued.len() >= MAX_NONCES {
            self.issued
                .retain(|_, n| now.duration_since(n.issued) < NONCE_LIFETIME);
            while self.issued.len() >= MAX_NONCES {
                let oldest = self
                    .issued
                    .iter()
                    .min_by_key(|(_, n)| n.issued)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => self.issued.remove(&k),
                    None => break,
                };
            }
        }
        self.issued.insert(
            nonce.clone(),
            Nonce {
                issued: now,
                highest_nc: 0,
            },
        );
        nonce
    }

    /// Checks `c` for a request of `method` against `ha1` (the user's stored
    /// HA1). The request's own target must be what `c.uri` names; the caller
    /// checks that.
    pub fn verify(
        &mut self,
        c: &Credentials,
        realm: &str,
        ha1: &str,
        method: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        let algorithm_ok = c
            .algorithm
            .as_deref()
            .is_none_or(|a| a.eq_ignore_ascii_case("SHA-256"));
        if c.realm != realm || !algorithm_ok || c.qop.as_deref() != Some("auth") {
            return Err(Refusal::Malformed);
        }
        let nc =
            c.nc.as_deref()
                .filter(|nc| nc.len() == 8)
                .and_then(|nc| u32::from_str_radix(nc, 16).ok())
                .ok_or(Refusal::Malformed)?;
        let expected = c.expected_response(ha1, method).ok_or(Refusal::Malformed)?;
        if !equal(
            expected.as_bytes(),
            c.response.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(Refusal::Wrong);
        }
        let Some(nonce) = self.issued.get_mut(&c.nonce) else {
            return Err(Refusal::Stale);
        };
        if now.duration_since(nonce.issued) >= NONCE_LIFETIME {
            self.issued.remove(&c.nonce);
            return Err(Refusal::Stale);
        }
        if nc <= nonce.highest_nc {
            return Err(Refusal::Replayed);
        }
        nonce.highest_nc = nc;
        Ok(())
    }
}

/// Compares in a time that does not depend on where the inputs differ.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616, section 3.9.1: the SHA-256 example.
    const RFC_HEADER: &str = r#"username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    fn rfc_ha1() -> String {
        sha256_hex(b"Mufasa:http-auth@example.org:Circle of Life")
    }

    #[test]
    fn the_rfc_example_verifies_once() {
        let c = Credentials::parse(RFC_HEADER).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.uri, "/dir/index.html");
        assert_eq!(
            c.expected_response(&rfc_ha1(), "GET").unwrap(),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let mut nonces = Nonces::default();
        let now = Instant::now();
        nonces.issued.insert(
            c.nonce.clone(),
            Nonce {
                issued: now,
                highest_nc: 0,
            },
        );
        let realm = "http-auth@example.org";
        assert_eq!(nonces.verify(&c, realm, &rfc_ha1(), "GET", now), Ok(()));
        assert_eq!(
            nonces.verify(&c, realm, &rfc_ha1(), "GET", now),
            Err(Refusal::Replayed)
        );
        let wrong = sha256_hex(b"Mufasa:http-auth@example.org:Circle of Death");
        assert_eq!(
            nonces.verify(&c, realm, &wrong, "GET", now),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            nonces.verify(&c, realm, &rfc_ha1(), "POST", now),
            Err(Refusal::Wrong)
        );
    }

    #[test]
    fn an_unknown_or_expired_nonce_with_the_right_password_is_stale() {
        let c = Credentials::parse(RFC_HEADER).unwrap();
        let realm = "http-auth@example.org";
        let mut nonces = Nonces::default();
        let now = Instant::now();
        assert_eq!(
            nonces.verify(&c, realm, &rfc_ha1(), "GET", now),
            Err(Refusal::Stale)
        );
        nonces.issued.insert(
            c.nonce.clone(),
            Nonce {
                issued: now,
                highest_nc: 0,
            },
        );
        assert_eq!(
            nonces.verify(&c, realm, &rfc_ha1(), "GET", now + NONCE_LIFETIME),
            Err(Refusal::Stale)
        );
    }

    #[test]
    fn other_realms_algorithms_and_qops_are_refused() {
        let mut nonces = Nonces::default();
        let now = Instant::now();
        for header in [
            RFC_HEADER.replace("algorithm=SHA-256", "algorithm=MD5"),
            RFC_HEADER.replace("qop=auth", "qop=auth-int"),
            RFC_HEADER.replace(", nc=00000001", ""),
        ] {
            let c = Credentials::parse(&header).unwrap();
            assert_eq!(
                nonces.verify(&c, "http-auth@example.org", &rfc_ha1(), "GET", now),
                Err(Refusal::Malformed),
                "{header}"
            );
        }
        let c = Credentials::parse(RFC_HEADER).unwrap();
        assert_eq!(
            nonces.verify(&c, "doorphone", &rfc_ha1(), "GET", now),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn hostile_headers_are_refused_without_a_panic() {
        for header in [
            "",
            "username",
            "username=\"unterminated",
            "username=\"a\\",
            "=,=,=",
            &"a=b,".repeat(100),
        ] {
            let parsed = Credentials::parse(header);
            assert!(parsed.is_none(), "{header:?}: {parsed:?}");
        }
    }

    #[test]
    fn nonces_are_fresh_and_bounded() {
        let mut nonces = Nonces::default();
        let now = Instant::now();
        let a = nonces.issue(now);
        let b = nonces.issue(now);
        assert_ne!(a, b);
        for _ in 0..MAX_NONCES + 10 {
            nonces.issue(now);
        }
        assert!(nonces.issued.len() <= MAX_NONCES);
    }
}
