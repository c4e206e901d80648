//! SRTP keys in SDP: SDES (RFC 4568) `a=crypto` lines.
//!
//! A line reads `a=crypto:<tag> <suite> inline:<key||salt>[|<lifetime>][|<MKI>:<length>]`.
//! This door phone speaks the suites `AES_CM_128_HMAC_SHA1_80` and
//! `AES_CM_128_HMAC_SHA1_32`: 30 bytes of master key and salt, in base64 (40
//! characters). Lines with another suite, a key of another length, an MKI, several
//! keys or session parameters are not used; a stream that has no usable line is not
//! encrypted. Key material never appears in a message or a log: [`Key`] prints as
//! `Key(..)`, and refusals name the tag and the fault, never the key.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::SdpError;

/// Master key (16 bytes) and master salt (14 bytes).
pub const KEY_LEN: usize = 30;
/// Largest tag: RFC 4568 allows 1 to 9 digits.
const MAX_TAG: u32 = 999_999_999;

/// An SRTP crypto suite this door phone speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES counter mode, 128-bit key, HMAC-SHA1 with an 80-bit tag.
    AesCm128HmacSha1_80,
    /// The same with a 32-bit tag on SRTP (SRTCP keeps its 80-bit tag, RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
}

impl Suite {
    /// Every suite, in our order of preference.
    pub const ALL: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32];

    /// The SDP name.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The SRTP authentication, as GStreamer's `srtpenc`/`srtpdec` name it.
    pub fn rtp_auth(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "hmac-sha1-80",
            Suite::AesCm128HmacSha1_32 => "hmac-sha1-32",
        }
    }

    /// The SRTCP authentication: an 80-bit tag for both suites.
    pub fn rtcp_auth(self) -> &'static str {
        "hmac-sha1-80"
    }

    /// The cipher for SRTP and SRTCP, as GStreamer names it.
    pub fn cipher(self) -> &'static str {
        "aes-128-icm"
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A master key and salt. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A fresh key from the operating system's CSPRNG.
    pub fn random() -> Result<Key, SdpError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| SdpError::Encryption(format!("no random numbers for an SRTP key: {e}")))?;
        Ok(Key(bytes))
    }

    /// The key and salt, for the SRTP elements.
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn inline(&self) -> String {
        STANDARD.encode(self.0)
    }
}

/// One `a=crypto` line: ours or the far end's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Sdes {
    pub(super) tag: u32,
    pub(super) suite: Suite,
    pub(super) key: Key,
}

impl Sdes {
    /// A line of ours with a fresh key.
    pub(super) fn fresh(tag: u32, suite: Suite) -> Result<Sdes, SdpError> {
        Ok(Sdes {
            tag,
            suite,
            key: Key::random()?,
        })
    }

    /// The attribute value (after `a=crypto:`).
    pub(super) fn render(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            self.key.inline()
        )
    }
}

/// The SRTP of one negotiated stream: the suite, the key we encrypt with (the one our
/// description carries) and the key the far end encrypts with (the one its
/// description carries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crypto {
    pub suite: Suite,
    pub send: Key,
    pub receive: Key,
}

/// Reads the value of an `a=crypto` attribute. The error says why the line cannot be
/// used, without its key.
pub(super) fn parse_crypto(value: &str) -> Result<Sdes, String> {
    let mut fields = value.split_ascii_whitespace();
    let tag_text = fields.next().unwrap_or("");
    let tag = (!tag_text.is_empty() && tag_text.len() <= 9)
        .then_some(tag_text)
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u32>().ok())
        .filter(|t| *t <= MAX_TAG)
        .ok_or_else(|| "a=crypto: the tag is not a number of 1 to 9 digits".to_string())?;
    let place = format!("a=crypto tag {tag}");
    let suite_name = fields
        .next()
        .ok_or_else(|| format!("{place}: no crypto suite"))?;
    let suite = Suite::from_name(suite_name).ok_or_else(|| {
        let shown: String = suite_name.chars().take(40).collect();
        format!("{place}: the suite {shown:?} is not one this door phone speaks")
    })?;
    let params = fields
        .next()
        .ok_or_else(|| format!("{place}: no key parameters"))?;
    if fields.next().is_some() {
        return Err(format!("{place}: session parameters are not supported"));
    }
    if params.contains(';') {
        return Err(format!("{place}: more than one key is not supported"));
    }
    let inline = params
        .strip_prefix("inline:")
        .ok_or_else(|| format!("{place}: the key method is not inline"))?;
    let mut parts = inline.split('|');
    let encoded = parts.next().unwrap_or("");
    let mut lifetime_seen = false;
    for part in parts {
        if part.contains(':') {
            return Err(format!("{place}: an MKI is not supported"));
        }
        if lifetime_seen || !valid_lifetime(part) {
            return Err(format!("{place}: the key lifetime is not valid"));
        }
        lifetime_seen = true;
    }
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| format!("{place}: the key is not base64"))?;
    let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "{place}: the key and salt are {} bytes, not {KEY_LEN}",
            b.len()
        )
    })?;
    Ok(Sdes {
        tag,
        suite,
        key: Key(key),
    })
}

/// `<digits>` or `2^<digits>`, at most 2^48 (the SRTP limit).
fn valid_lifetime(text: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.len() <= 15 && t.bytes().all(|b| b.is_ascii_digit());
    match text.strip_prefix("2^") {
        Some(exp) => digits(exp) && exp.parse::<u32>().is_ok_and(|e| (1..=48).contains(&e)),
        None => digits(text),
    }
}
