//! The digest computation itself (RFC 7616 §3.4.1-§3.4.3, RFC 2069 §2.1.2 for the no-qop form),
//! with the algorithm tokens SIP uses (RFC 8760 §2).

use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::str::FromStr;

/// A digest hash algorithm (RFC 7616 §3.3 `algorithm`, RFC 8760 §2 for SIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`: the RFC 3261 §22.4 default, kept for old clients.
    Md5,
    /// `SHA-256`: preferred (RFC 8760 §2.4).
    Sha256,
}

/// Why an `algorithm` token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlgorithmError {
    /// A `-sess` variant (RFC 7616 §3.4.2): valid, but this stack does not implement session HA1.
    Session,
    /// Any other token, e.g. `SHA-512-256`.
    Unknown,
}

/// A quality of protection (RFC 7616 §3.3 `qop`). Only `auth` is supported: `auth-int` would need the
/// body hash, which SIP clients rarely offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Qop {
    /// `auth`: authentication only, with nonce-count and client nonce.
    Auth,
}

// ===== impl Algorithm =====

impl Algorithm {
    /// Every supported algorithm, in the order a challenge offers them (RFC 8760 §2.4: SHA-256 first).
    pub const PREFERENCE: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// The token as written in headers: `MD5` or `SHA-256`.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// `H(data)` as lowercase hex (RFC 7616 §3.3: 32 characters for MD5, 64 for SHA-256).
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data)),
            Algorithm::Sha256 => hex(&Sha256::digest(data)),
        }
    }

    /// `H(p1 ":" p2 ":" ...)` without building the joined string.
    fn hash_joined(self, parts: &[&str]) -> String {
        fn feed<D: sha2::Digest>(mut d: D, parts: &[&str]) -> String {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 => feed(Md5::new(), parts),
            Algorithm::Sha256 => feed(Sha256::new(), parts),
        }
    }
}

impl FromStr for Algorithm {
    type Err = AlgorithmError;

    /// Reads an `algorithm` value, ASCII case-insensitively (RFC 7616 §3.3).
    fn from_str(s: &str) -> Result<Algorithm, AlgorithmError> {
        if s.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else if s.len() > 5 && s.get(s.len() - 5..).is_some_and(|t| t.eq_ignore_ascii_case("-sess")) {
            Err(AlgorithmError::Session)
        } else {
            Err(AlgorithmError::Unknown)
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

impl fmt::Display for AlgorithmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlgorithmError::Session => "session (-sess) digest algorithms are not supported",
            AlgorithmError::Unknown => "unknown digest algorithm",
        })
    }
}

impl std::error::Error for AlgorithmError {}

// ===== impl Qop =====

impl Qop {
    /// The token: `auth`.
    pub fn token(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
        }
    }
}

// ===== functions =====

/// `HA1 = H(username ":" realm ":" password)` (RFC 7616 §3.4.2, non-session form), lowercase hex.
/// Store this instead of the password: it is all [`response`] needs.
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> String {
    alg.hash_joined(&[user, realm, password])
}

/// The `response` parameter (RFC 7616 §3.4.1, RFC 3261 §22.4):
///
/// - with `qop = Some(Qop::Auth)`: `KD(HA1, nonce ":" nc ":" cnonce ":" qop ":" HA2)`;
/// - with `qop = None` (RFC 2069 §2.1.2): `KD(HA1, nonce ":" HA2)`, and `nc` and `cnonce` are unused;
///
/// where `HA2 = H(method ":" uri)` and `KD(secret, data) = H(secret ":" data)`. `nc` is the eight hex
/// digits as sent on the wire, and `uri` is the digest `uri` parameter, not the Request-URI.
#[allow(clippy::too_many_arguments)] // one argument per term of the RFC 7616 §3.4.1 formula
pub fn response(alg: Algorithm, ha1: &str, nonce: &str, nc: &str, cnonce: &str, qop: Option<Qop>, method: &str, uri: &str) -> String {
    response_with_ha2(alg, ha1, nonce, nc, cnonce, qop, &ha2(alg, method, uri))
}

/// `HA2 = H(method ":" uri)` of [`response`].
pub(crate) fn ha2(alg: Algorithm, method: &str, uri: &str) -> String {
    alg.hash_joined(&[method, uri])
}

/// [`response`] with its `HA2` already computed (see [`ha2`]).
pub(crate) fn response_with_ha2(alg: Algorithm, ha1: &str, nonce: &str, nc: &str, cnonce: &str, qop: Option<Qop>, ha2: &str) -> String {
    match qop {
        Some(q) => alg.hash_joined(&[ha1, nonce, nc, cnonce, q.token(), ha2]),
        None => alg.hash_joined(&[ha1, nonce, ha2]),
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)]);
        s.push(DIGITS[usize::from(b & 0x0f)]);
    }
    // Invariant: only hex digits were written.
    String::from_utf8(s).expect("hex digits are ASCII")
}

/// Equality whose running time depends on the lengths only, not on where the inputs differ, so a
/// response cannot be guessed byte by byte from timing. ASCII case is ignored (hex digits).
pub(crate) fn ct_eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())) == 0
}

/// `s` as a `quoted-string` (RFC 3261 §25.1): `"` and `\` escaped, CR and LF dropped so a value can
/// never end the header line.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_tokens() {
        for (s, want) in [
            ("MD5", Ok(Algorithm::Md5)),
            ("md5", Ok(Algorithm::Md5)),
            ("SHA-256", Ok(Algorithm::Sha256)),
            ("sha-256", Ok(Algorithm::Sha256)),
            ("MD5-sess", Err(AlgorithmError::Session)),
            ("SHA-256-SESS", Err(AlgorithmError::Session)),
            ("SHA-512-256", Err(AlgorithmError::Unknown)),
            ("-sess", Err(AlgorithmError::Unknown)),
            ("", Err(AlgorithmError::Unknown)),
            ("é-sess", Err(AlgorithmError::Session)),
        ] {
            assert_eq!(s.parse::<Algorithm>(), want, "{s}");
        }
        assert_eq!(Algorithm::Sha256.to_string(), "SHA-256");
    }

    #[test]
    fn hash_lengths_and_known_values() {
        assert_eq!(Algorithm::Md5.hash_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(Algorithm::Sha256.hash_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(ha1(Algorithm::Md5, "a", "b", "c"), Algorithm::Md5.hash_hex(b"a:b:c"));
    }

    #[test]
    fn rfc2069_form() {
        let ha1 = ha1(Algorithm::Md5, "u", "r", "p");
        let ha2 = Algorithm::Md5.hash_hex(b"REGISTER:sip:r");
        let want = Algorithm::Md5.hash_hex(format!("{ha1}:n:{ha2}").as_bytes());
        assert_eq!(response(Algorithm::Md5, &ha1, "n", "ignored", "ignored", None, "REGISTER", "sip:r"), want);
    }

    #[test]
    fn helpers() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert!(ct_eq_ignore_case(b"abCD", b"ABcd"));
        assert!(!ct_eq_ignore_case(b"abcd", b"abce"));
        assert!(!ct_eq_ignore_case(b"abc", b"abcd"));
        assert_eq!(quote("a\"b\\c\r\nd"), "\"a\\\"b\\\\cd\"");
    }
}
