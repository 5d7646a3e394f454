//! Digest credentials as a client sends them in Authorization / Proxy-Authorization
//! (RFC 3261 §22.4, §25.1 `digest-response`; RFC 7616 §3.4).

use super::digest::{Algorithm, AlgorithmError, Qop};
use crate::message::{unquote, AuthHeader};
use std::borrow::Cow;
use std::fmt;

/// The parameters of one `Digest` credentials header, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// `username`.
    pub username: Cow<'a, str>,
    /// `realm`.
    pub realm: Cow<'a, str>,
    /// `nonce`, as the server issued it.
    pub nonce: Cow<'a, str>,
    /// `uri` (`digest-uri`): the Request-URI the client signed.
    pub uri: Cow<'a, str>,
    /// `response`: lowercase hex (RFC 7616 §3.4.1).
    pub response: Cow<'a, str>,
    /// `algorithm`; `MD5` when absent (RFC 3261 §22.4, RFC 7616 §3.3).
    pub algorithm: Algorithm,
    /// `qop`, `nc` and `cnonce` together; `None` for the RFC 2069 form.
    pub qop: Option<QopParams<'a>>,
    /// `opaque`, echoed from the challenge.
    pub opaque: Option<Cow<'a, str>>,
}

/// The `qop=auth` parameters of credentials (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QopParams<'a> {
    /// The quality of protection chosen.
    pub qop: Qop,
    /// `nc` exactly as written (8 hex digits): the digest is computed over this text.
    pub nc_text: Cow<'a, str>,
    /// `nc` as a number.
    pub nc: u32,
    /// `cnonce`.
    pub cnonce: Cow<'a, str>,
}

/// Why credentials could not be read. Each is a 400 Bad Request for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The scheme is not `Digest`.
    NotDigest,
    /// A required parameter is missing; the name is given.
    Missing(&'static str),
    /// The `algorithm` is not supported.
    Algorithm(AlgorithmError),
    /// A `qop` other than `auth` (e.g. `auth-int`, which this stack never offers).
    Qop,
    /// `nc` is not 8 hex digits (RFC 7616 §3.4 `nc-value = 8LHEX`).
    NonceCount,
}

// ===== impl Credentials =====

impl<'a> Credentials<'a> {
    /// Reads digest credentials. `username`, `realm`, `nonce`, `uri` and `response` are required;
    /// with `qop`, so are `nc` and `cnonce` (RFC 7616 §3.4). Parameter names are case-insensitive;
    /// a parameter written twice counts with its first value.
    pub fn parse(h: &AuthHeader<'a>) -> Result<Credentials<'a>, CredentialsError> {
        if !h.is_digest() {
            return Err(CredentialsError::NotDigest);
        }
        Credentials::from_fields(&Fields::of(h))
    }

    /// [`Credentials::parse`] of the parameters [`Fields::of`] read (the scheme checked already).
    pub(crate) fn from_fields(f: &Fields<'a>) -> Result<Credentials<'a>, CredentialsError> {
        let need = |value: Option<&'a str>, name: &'static str| value.map(unquote).ok_or(CredentialsError::Missing(name));
        let algorithm = match f.algorithm.map(unquote) {
            None => Algorithm::Md5,
            Some(a) => a.parse().map_err(CredentialsError::Algorithm)?,
        };
        let qop = match f.qop.map(unquote) {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc_text = need(f.nc, "nc")?;
                let nc = parse_nc(&nc_text).ok_or(CredentialsError::NonceCount)?;
                Some(QopParams { qop: Qop::Auth, nc_text, nc, cnonce: need(f.cnonce, "cnonce")? })
            }
            Some(_) => return Err(CredentialsError::Qop),
        };
        Ok(Credentials {
            username: need(f.username, "username")?,
            realm: need(f.realm, "realm")?,
            nonce: need(f.nonce, "nonce")?,
            uri: need(f.uri, "uri")?,
            response: need(f.response, "response")?,
            algorithm,
            qop,
            opaque: f.opaque.map(unquote),
        })
    }
}

/// The raw values (quotes kept) of the digest parameters a server reads, gathered in one pass
/// over the header's list: [`AuthHeader::get`] per name walks the list again each time, and a
/// server asks for eleven names (issue 16: that was a quarter of a registration's instructions).
/// The first occurrence of a name counts, as with [`AuthHeader::raw`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub(crate) username: Option<&'a str>,
    pub(crate) realm: Option<&'a str>,
    pub(crate) nonce: Option<&'a str>,
    pub(crate) uri: Option<&'a str>,
    pub(crate) response: Option<&'a str>,
    pub(crate) algorithm: Option<&'a str>,
    pub(crate) qop: Option<&'a str>,
    pub(crate) nc: Option<&'a str>,
    pub(crate) cnonce: Option<&'a str>,
    pub(crate) opaque: Option<&'a str>,
}

impl<'a> Fields<'a> {
    pub(crate) fn of(h: &AuthHeader<'a>) -> Fields<'a> {
        let mut f = Fields::default();
        for (name, value) in h.params() {
            f.take(name, value);
        }
        f
    }

    /// Keeps `value` if `name` is one of the fields and the first of its name.
    pub(crate) fn take(&mut self, name: &'a str, value: &'a str) {
        let f = self;
        let slot = match name.len() {
            2 if name.eq_ignore_ascii_case("nc") => &mut f.nc,
            3 if name.eq_ignore_ascii_case("uri") => &mut f.uri,
            3 if name.eq_ignore_ascii_case("qop") => &mut f.qop,
            5 if name.eq_ignore_ascii_case("realm") => &mut f.realm,
            5 if name.eq_ignore_ascii_case("nonce") => &mut f.nonce,
            6 if name.eq_ignore_ascii_case("cnonce") => &mut f.cnonce,
            6 if name.eq_ignore_ascii_case("opaque") => &mut f.opaque,
            8 if name.eq_ignore_ascii_case("username") => &mut f.username,
            8 if name.eq_ignore_ascii_case("response") => &mut f.response,
            9 if name.eq_ignore_ascii_case("algorithm") => &mut f.algorithm,
            _ => return,
        };
        slot.get_or_insert(value);
    }
}

/// `nc-value = 8LHEX` (uppercase tolerated).
fn parse_nc(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::NotDigest => f.write_str("not Digest credentials"),
            CredentialsError::Missing(name) => write!(f, "digest parameter `{name}` missing"),
            CredentialsError::Algorithm(e) => e.fmt(f),
            CredentialsError::Qop => f.write_str("unsupported qop"),
            CredentialsError::NonceCount => f.write_str("nc is not 8 hex digits"),
        }
    }
}

impl std::error::Error for CredentialsError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Credentials<'_>, CredentialsError> {
        Credentials::parse(&AuthHeader::parse(s).expect("header syntax"))
    }

    #[test]
    fn table() {
        let base = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"0a\"";
        let plain = format!("Digest {base}");
        let c = parse(&plain).expect("no-qop credentials");
        assert_eq!((c.algorithm, c.qop, c.opaque), (Algorithm::Md5, None, None));
        let with_qop = format!("digest {base}, qop=\"auth\", nc=0000000A, cnonce=\"c\", algorithm=sha-256");
        let c = parse(&with_qop).expect("qop");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.qop.as_ref().map(|q| (q.nc, q.nc_text.as_ref(), q.cnonce.as_ref())), Some((10, "0000000A", "c")));
        for (s, want) in [
            ("Basic realm=\"r\"", CredentialsError::NotDigest),
            ("Digest realm=\"r\"", CredentialsError::Missing("username")),
            (&format!("Digest {base}, qop=auth, cnonce=\"c\""), CredentialsError::Missing("nc")),
            (&format!("Digest {base}, qop=auth, nc=00000001"), CredentialsError::Missing("cnonce")),
            (&format!("Digest {base}, qop=auth, nc=1, cnonce=\"c\""), CredentialsError::NonceCount),
            (&format!("Digest {base}, qop=auth, nc=+0000001, cnonce=\"c\""), CredentialsError::NonceCount),
            (&format!("Digest {base}, qop=auth-int, nc=00000001, cnonce=\"c\""), CredentialsError::Qop),
            (&format!("Digest {base}, algorithm=MD5-sess"), CredentialsError::Algorithm(AlgorithmError::Session)),
            (&format!("Digest {base}, algorithm=SHA-512-256"), CredentialsError::Algorithm(AlgorithmError::Unknown)),
        ] {
            assert_eq!(parse(s), Err(want), "{s}");
        }
    }

    #[test]
    fn one_pass_reads_as_get_does() {
        // Names in any case, unknown ones skipped, the first of a repeated name counts (as
        // `AuthHeader::get` finds it).
        let s = "Digest USERNAME=\"u\", x-other=1, Realm=r, username=\"v\", nonce=\"n\", URI=\"sip:r\", response=0a, \
                 Opaque=\"o\", qop=auth, NC=00000002, cnonce=\"c\\\"d\", nonce=\"m\"";
        let h = AuthHeader::parse(s).expect("header syntax");
        let c = Credentials::parse(&h).expect("credentials");
        for (name, got) in [
            ("username", c.username.as_ref()),
            ("realm", &c.realm),
            ("nonce", &c.nonce),
            ("uri", &c.uri),
            ("response", &c.response),
            ("opaque", c.opaque.as_deref().unwrap_or_default()),
        ] {
            assert_eq!(h.get(name).as_deref(), Some(got), "{name}");
        }
        let q = c.qop.expect("qop");
        assert_eq!((q.nc, q.nc_text.as_ref(), q.cnonce.as_ref()), (2, "00000002", "c\"d"));
    }
}
