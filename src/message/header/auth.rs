//! Authentication headers (RFC 3261 §20.7, §20.27, §20.28, §20.44; digest params RFC 7616/8760):
//! `auth-scheme LWS auth-param *(COMMA auth-param)`. Any scheme parses (RFC 4475 §3.3.7); digest
//! parameters are read by name.

use crate::message::error::ValueError;
use crate::message::lex::{eq_ic, is_lws, is_token_char, quoted_len, trim, trim_start, unquote, ListIter};
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
        // One walk of the list, rule by rule: `auth-param *(COMMA auth-param)` with
        // `auth-param = token EQUAL ( token / token68 / quoted-string )` and LWS around the
        // separators (issue 16: the list split and the `=` search before, one `memchr` call per
        // element and per quote, cost as much again as the rules). The verdict is the split's
        // (`params_rule_matches_the_list_split`); an error points at the element it is in.
        let b = params.as_bytes();
        let skip = |mut i: usize| {
            while i < b.len() && is_lws(b[i]) {
                i += 1;
            }
            i
        };
        // Where the list starts in `s`, for the error offsets.
        let base = (params.as_ptr() as usize).wrapping_sub(s.as_ptr() as usize);
        let mut i = 0;
        loop {
            let at = i;
            let err = || ValueError::at(base + at);
            let name_start = skip(i);
            i = name_start;
            while i < b.len() && is_token_char(b[i]) {
                i += 1;
            }
            let name = &params[name_start..i];
            i = skip(i);
            if name.is_empty() || b.get(i) != Some(&b'=') {
                return Err(err());
            }
            let value_start = skip(i + 1);
            i = value_start;
            if b.get(i) == Some(&b'"') {
                i += quoted_len(&b[i..]).ok_or_else(err)?;
            } else {
                while i < b.len() && is_token68_char(b[i]) {
                    i += 1;
                }
                if i == value_start {
                    return Err(err());
                }
            }
            each(name, &params[value_start..i]);
            i = skip(i);
            match b.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => return Err(err()),
            }
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

/// A character of the token68-ish text some schemes use as a value (base64 with `=` padding
/// and `/`); `token` characters are among them.
fn is_token68_char(b: u8) -> bool {
    is_token_char(b) || b == b'/' || b == b'='
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

    /// The list as it was read before the one-walk rule: split at the commas outside quotes and
    /// angle brackets, each element split at its first `=`, the name a token and the value a
    /// whole quoted-string, token or token68.
    fn by_list_split(s: &str) -> Option<Vec<(&str, &str)>> {
        let t = trim(s);
        let end = t.bytes().position(|b| !is_token_char(b)).unwrap_or(t.len());
        if end == 0 || (end < t.len() && !is_lws(t.as_bytes()[end])) {
            return None;
        }
        let mut out = Vec::new();
        for item in ListIter::new(trim(&t[end..])) {
            let (p, _) = item.ok()?;
            let (name, value) = p.split_once('=')?;
            let (name, value) = (trim(name), trim(value));
            let value_ok = match value.starts_with('"') {
                true => quoted_len(value.as_bytes()) == Some(value.len()),
                false => !value.is_empty() && value.bytes().all(is_token68_char),
            };
            if name.is_empty() || !name.bytes().all(is_token_char) || !value_ok {
                return None;
            }
            out.push((name, value));
        }
        Some(out)
    }

    /// Every string of up to four pieces from a set of awkward ones: the one-walk rule gives the
    /// list split's verdict and the same pairs.
    #[test]
    fn params_rule_matches_the_list_split() {
        let pieces = [
            "Digest ",
            "Basic ",
            "a",
            "=",
            "\"x, y\"",
            "\"",
            ",",
            " , ",
            "b=1",
            "<",
            ">",
            "==",
            " ",
            "\r\n ",
            "c=\"q\\\"\"",
            "/",
            "@",
            "d",
            "\"\"",
        ];
        let mut checked = 0;
        let mut text = String::new();
        for a in 0..pieces.len() {
            for b in 0..=pieces.len() {
                for c in 0..=pieces.len() {
                    for d in 0..=pieces.len() {
                        text.clear();
                        text.push_str(pieces[a]);
                        for k in [b, c, d] {
                            if let Some(p) = pieces.get(k) {
                                text.push_str(p);
                            }
                        }
                        for head in ["", "Digest ", "Digest a=1, "] {
                            let s = format!("{head}{text}");
                            let mut pairs = Vec::new();
                            let new = AuthHeader::parse_each(&s, |n, v| pairs.push((n, v))).ok().map(|_| pairs);
                            assert_eq!(new, by_list_split(&s), "{s:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 100_000);
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
