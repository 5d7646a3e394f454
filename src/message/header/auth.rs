//! Authentication headers (RFC 3261 §20.7, §20.27, §20.28, §20.44; digest params RFC 7616/8760):
//! `auth-scheme LWS auth-param *(COMMA auth-param)`. Any scheme parses (RFC 4475 §3.3.7); digest
//! parameters are read by name.

use crate::message::error::ValueError;
use crate::message::lex::{eq_ic, is_lws, is_token, is_token_char, quoted_len, trim, trim_start, unquote, ListIter};
use std::borrow::Cow;
use std::fmt;

/// A challenge (WWW-/Proxy-Authenticate) or credentials (Authorization / Proxy-Authorization).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthHeader<'a> {
    /// The scheme, e.g. `Digest`.
    pub scheme: &'a str,
    /// The parameter list as written after the scheme.
    params: &'a str,
}

impl<'a> AuthHeader<'a> {
    /// Parses `scheme LWS auth-param *(COMMA auth-param)`, where
    /// `auth-param = token EQUAL ( token / quoted-string )`. Unknown schemes may carry any token68-like
    /// text after the scheme, which is kept.
    pub fn parse(s: &'a str) -> Result<AuthHeader<'a>, ValueError> {
        Self::parse_each(s, |_, _| {})
    }

    /// [`AuthHeader::parse`], handing each `(name, raw value)` to `each` as it is checked (what
    /// [`AuthHeader::params`] would give, when the whole header parses): one pass over the list
    /// for a reader that wants several parameters.
    pub(crate) fn parse_each(s: &'a str, mut each: impl FnMut(&'a str, &'a str)) -> Result<AuthHeader<'a>, ValueError> {
        let t = trim(s);
        let lead = s.len() - trim_start(s).len();
        let end = t.bytes().position(|b| !is_token_char(b)).unwrap_or(t.len());
        let scheme = &t[..end];
        if scheme.is_empty() {
            return Err(ValueError::at(lead));
        }
        let params = trim(&t[end..]);
        if end < t.len() && !is_lws(t.as_bytes()[end]) {
            return Err(ValueError::at(lead + end));
        }
        let header = AuthHeader { scheme, params };
        for item in ListIter::new(params) {
            let (p, at) = item.map_err(|e| ValueError::at(lead + end + e.offset))?;
            // `split_once('=')` by memchr: the char searcher's set-up cost more than these short scans.
            let Some(eq) = memchr::memchr(b'=', p.as_bytes()) else {
                return Err(ValueError::at(lead + end + at));
            };
            let (name, value) = (&p[..eq], &p[eq + 1..]);
            let (name, value) = (trim(name), trim(value));
            let value_ok = if value.starts_with('"') {
                quoted_len(value.as_bytes()) == Some(value.len())
            } else {
                is_token(value) || is_token68(value)
            };
            if !is_token(name) || !value_ok {
                return Err(ValueError::at(lead + end + at));
            }
            each(name, value);
        }
        Ok(header)
    }

    /// Whether the scheme is `Digest`.
    pub fn is_digest(&self) -> bool {
        eq_ic(self.scheme, "Digest")
    }

    /// Iterates `(name, raw value)` pairs; quoted values keep their quotes.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        ListIter::new(self.params).filter_map(|r| r.ok()).filter_map(|(p, _)| p.split_once('=')).map(|(n, v)| (trim(n), trim(v)))
    }

    /// The raw value of `name` (ASCII case-insensitive), quotes kept.
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.params().find(|(n, _)| eq_ic(n, name)).map(|(_, v)| v)
    }

    /// The value of `name` with quotes removed.
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        self.raw(name).map(unquote)
    }
}

/// token68-ish text some schemes use as a value (base64 with `=` padding and `/`).
fn is_token68(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| is_token_char(b) || b == b'/' || b == b'=')
}

impl fmt::Display for AuthHeader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme)?;
        for (i, (n, v)) in self.params().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            write!(f, "{n}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_credentials() {
        let s = "Digest username=\"bob\", realm=\"atlanta.example.com\",\r\n nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\", opaque=\"\",\r\n uri=\"sips:ss2.biloxi.example.com\", response=\"dfe56131d1958046689d83306477ecc\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", algorithm=SHA-256";
        let a = AuthHeader::parse(s).unwrap();
        assert!(a.is_digest());
        assert_eq!(a.get("USERNAME").as_deref(), Some("bob"));
        assert_eq!(a.raw("qop"), Some("auth"));
        assert_eq!(a.get("opaque").as_deref(), Some(""));
        assert_eq!(a.get("algorithm").as_deref(), Some("SHA-256"));
        let again = a.to_string();
        assert_eq!(AuthHeader::parse(&again).unwrap().params().collect::<Vec<_>>(), a.params().collect::<Vec<_>>());
    }

    #[test]
    fn unknown_scheme_and_errors() {
        let a = AuthHeader::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(a.scheme, "NoOneKnowsThisScheme");
        assert!(AuthHeader::parse("Digest realm").is_err());
        assert!(AuthHeader::parse("Digest realm=\"x").is_err());
        assert!(AuthHeader::parse("").is_err());
    }
}
