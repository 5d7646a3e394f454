//! `*( SEMI generic-param )` lists, for header parameters (RFC 3261 §25.1 `generic-param`) and
//! URI parameters (§19.1.1 `uri-parameters`). Validated once when parsed, then read lazily without
//! allocation.

use super::error::ValueError;
use super::lex::{byte_table, eq_ic, find_either, is_lws, is_token_char, quoted_len, token_char_rule, trim, unquote};
use std::borrow::Cow;
use std::fmt;

/// Which grammar the parameter values follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamSyntax {
    /// Header parameters: `token [ EQUAL ( token / host / quoted-string ) ]`, LWS around `;` and `=`.
    /// Values also accept `:` `[` `]` so bare or bracketed IPv6 `received=` values parse (RFC 5118 §4.5).
    Header,
    /// URI parameters: `pname [ "=" pvalue ]`, `paramchar` only, no LWS.
    Uri,
}

/// A validated parameter list, read on demand. `as_str` is the raw text, leading `;` included.
/// Two lists are equal when they hold the same `(name, value)` pairs in the same order, whatever LWS
/// the raw text had around `;` and `=`.
#[derive(Clone, Copy, Default)]
pub struct Params<'a> {
    raw: &'a str,
}

/// `param-unreserved / unreserved / escaped` (RFC 3261 §25.1 `paramchar`).
#[inline]
fn is_uri_param_char(b: u8) -> bool {
    URI_PARAM[usize::from(b)]
}

static URI_PARAM: [bool; 256] = byte_table!(|b| b.is_ascii_alphanumeric()
    || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' | b'%'));

/// A header parameter value without quotes: `token / host`, so also `:` `[` `]`.
#[inline]
fn is_header_value_char(b: u8) -> bool {
    HEADER_VALUE[usize::from(b)]
}

static HEADER_VALUE: [bool; 256] = byte_table!(|b| token_char_rule(b) || matches!(b, b':' | b'[' | b']'));

/// Where the `*( SEMI param )` list at the start of `b` ends. `HEADER` selects header parameters
/// (LWS allowed around `;` and `=`, quoted values) over URI parameters.
#[inline]
fn list_end<const HEADER: bool>(b: &[u8]) -> Result<usize, ValueError> {
    let lws = |mut i: usize| {
        if HEADER {
            while i < b.len() && is_lws(b[i]) {
                i += 1;
            }
        }
        i
    };
    let name_ok = |c: u8| if HEADER { is_token_char(c) } else { is_uri_param_char(c) };
    let value_ok = |c: u8| if HEADER { is_header_value_char(c) } else { is_uri_param_char(c) };
    let mut end = 0;
    loop {
        let mut j = lws(end);
        if b.get(j) != Some(&b';') {
            return Ok(end);
        }
        j = lws(j + 1);
        let name_start = j;
        while j < b.len() && name_ok(b[j]) {
            j += 1;
        }
        if j == name_start {
            return Err(ValueError::at(j));
        }
        end = j;
        let mut k = lws(j);
        if b.get(k) == Some(&b'=') {
            k = lws(k + 1);
            let vstart = k;
            if HEADER && b.get(k) == Some(&b'"') {
                k += quoted_len(&b[k..]).ok_or(ValueError::at(k))?;
            } else {
                while k < b.len() && value_ok(b[k]) {
                    k += 1;
                }
            }
            if k == vstart {
                return Err(ValueError::at(k));
            }
            end = k;
        }
    }
}

// ===== impl Params =====

impl<'a> Params<'a> {
    /// An empty list.
    pub const EMPTY: Params<'static> = Params { raw: "" };

    /// Parses `*( SEMI param )` at the start of `s`, returning the list and the rest (which starts at
    /// the first byte that cannot continue the list, e.g. `,` or `?` or the end).
    pub(crate) fn parse(s: &'a str, syntax: ParamSyntax) -> Result<(Params<'a>, &'a str), ValueError> {
        // One copy of the scanner per syntax, so the character tests are not re-decided per byte.
        let end = match syntax {
            ParamSyntax::Header => list_end::<true>(s.as_bytes())?,
            ParamSyntax::Uri => list_end::<false>(s.as_bytes())?,
        };
        Ok((Params { raw: &s[..end] }, &s[end..]))
    }

    /// A list already checked by [`Params::parse`]: `raw` is exactly the list that parse returned
    /// (a kept top Via hands its parameters back this way).
    pub(crate) fn from_checked(raw: &'a str) -> Params<'a> {
        Params { raw }
    }

    /// The raw text, leading `;` included; empty when there are no parameters.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Iterates `(name, value)` pairs in order; `value` is `None` for a flag like `;lr`. Quoted values
    /// keep their quotes (see [`Params::get_unquoted`]).
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }

    /// The parameter `name` (ASCII case-insensitive): `None` if absent, `Some(None)` for a flag,
    /// `Some(Some(value))` otherwise.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter().find(|(n, _)| eq_ic(n, name)).map(|(_, v)| v)
    }

    /// The value of `name`, if present with a value.
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.get(name).flatten()
    }

    /// The value of `name` with quotes and quoted-pairs removed.
    pub fn get_unquoted(&self, name: &str) -> Option<Cow<'a, str>> {
        self.value(name).map(unquote)
    }

    /// True when `name` is present (flag or with value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl PartialEq for Params<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Params<'_> {}

impl std::hash::Hash for Params<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for pair in self.iter() {
            pair.hash(state);
        }
    }
}

impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Normalised form: `;name=value` with the LWS of folded input removed.
        for (n, v) in self.iter() {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// Iterator over a validated [`Params`] list.
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest.as_bytes();
        // Skip to the next ';' (validated input: only LWS precedes it). Parameters are short, so
        // plain scans beat `memchr`'s per-call set-up here.
        let start = b.iter().position(|&c| c == b';')? + 1;
        // Find the end of this param: next ';' outside a quoted string.
        let mut from = start;
        let end = loop {
            match find_either(b, from, b';', b'"') {
                Some(at) if b[at] == b'"' => from = at + quoted_len(&b[at..]).unwrap_or(b.len() - at),
                Some(at) => break at,
                None => break b.len(),
            }
        };
        let item = &self.rest[start..end];
        self.rest = &self.rest[end..];
        Some(match item.bytes().position(|c| c == b'=') {
            Some(eq) => (trim(&item[..eq]), Some(trim(&item[eq + 1..]))),
            None => (trim(item), None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_params_with_lws_and_quotes() {
        let (p, rest) = Params::parse(" ;   tag    = 1918181833n ;x=\"a;b\";lr, next", ParamSyntax::Header).unwrap();
        assert_eq!(rest, ", next");
        assert_eq!(p.value("TAG"), Some("1918181833n"));
        assert_eq!(p.get_unquoted("x").as_deref(), Some("a;b"));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.get("nope"), None);
        assert_eq!(p.to_string(), ";tag=1918181833n;x=\"a;b\";lr");
    }

    #[test]
    fn received_ipv6_values() {
        let (p, _) = Params::parse(";received=[2001:db8::9:255];branch=z9hG4bKas", ParamSyntax::Header).unwrap();
        assert_eq!(p.value("received"), Some("[2001:db8::9:255]"));
        let (p, _) = Params::parse(";received=2001:db8::9:255;branch=z9hG4bKas", ParamSyntax::Header).unwrap();
        assert_eq!(p.value("branch"), Some("z9hG4bKas"));
    }

    #[test]
    fn stray_separators_are_errors() {
        assert!(Params::parse(";;", ParamSyntax::Header).is_err());
        assert!(Params::parse(";a=", ParamSyntax::Header).is_err());
        assert!(Params::parse(";a=\"open", ParamSyntax::Header).is_err());
    }

    #[test]
    fn uri_params_stop_at_headers() {
        let (p, rest) = Params::parse(";transport=udp;lr?Subject=x", ParamSyntax::Uri).unwrap();
        assert_eq!(rest, "?Subject=x");
        assert_eq!(p.value("transport"), Some("udp"));
        assert!(p.contains("lr"));
    }
}
