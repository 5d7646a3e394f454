//! `name-addr / addr-spec` with header parameters: the shape of From, To, Contact, Route and
//! Record-Route (RFC 3261 §20.10, §20.20, §20.30, §20.34, §20.39, §25.1).
//!
//! ```text
//! name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
//! display-name = *(token LWS) / quoted-string
//! ```
//! A display name written straight against `<` is accepted (RFC 4475 §3.1.1.6). An `addr-spec`
//! outside `<>` ends at the first `;` or LWS, and may not carry `?headers` (§20.10, RFC 4475 §3.1.2.13).

use crate::message::error::ValueError;
use crate::message::lex::{is_lws, is_token_char, quoted_len, trim_end, trim_start, unquote};
use crate::message::params::{ParamSyntax, Params};
use crate::message::uri::Uri;
use std::borrow::Cow;
use std::fmt;

/// An address with an optional display name and header parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written (quoted form keeps its quotes); see [`NameAddr::display_name`].
    pub display: Option<&'a str>,
    /// The URI.
    pub uri: Uri<'a>,
    /// The URI text exactly as written.
    pub uri_text: &'a str,
    /// Whether the URI was enclosed in `<>`.
    pub angle: bool,
    /// Header parameters after the address (`tag`, `expires`, `q`, ...).
    pub params: Params<'a>,
}

/// Whether an `addr-spec` without `<>` is allowed (From, To, Contact) or not (Route, Record-Route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrForm {
    NameAddrOrAddrSpec,
    NameAddrOnly,
}

// ===== impl NameAddr =====

impl<'a> NameAddr<'a> {
    /// Parses one address with its parameters; `s` holds exactly that element.
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, ValueError> {
        Self::parse_form(s, AddrForm::NameAddrOrAddrSpec)
    }

    /// Parses a `name-addr` only (Route, Record-Route): the URI must be in `<>`.
    pub fn parse_name_addr(s: &'a str) -> Result<NameAddr<'a>, ValueError> {
        Self::parse_form(s, AddrForm::NameAddrOnly)
    }

    pub(crate) fn parse_form(s: &'a str, form: AddrForm) -> Result<NameAddr<'a>, ValueError> {
        let b = s.as_bytes();
        let start = s.len() - trim_start(s).len();
        let mut i = start;
        let mut display = None;
        if b.get(i) == Some(&b'"') {
            let n = quoted_len(&b[i..]).ok_or(ValueError::at(i))?;
            display = Some(&s[i..i + n]);
            i += n;
            while i < b.len() && is_lws(b[i]) {
                i += 1;
            }
            if b.get(i) != Some(&b'<') {
                return Err(ValueError::at(i));
            }
        } else {
            // Tokens and LWS up to '<' make a display name; anything else means an addr-spec.
            let mut j = i;
            while j < b.len() && (is_token_char(b[j]) || is_lws(b[j])) {
                j += 1;
            }
            if b.get(j) == Some(&b'<') {
                let d = trim_end(&s[i..j]);
                display = (!d.is_empty()).then_some(d);
                i = j;
            }
        }
        let (uri_text, angle, rest_at) = if b.get(i) == Some(&b'<') {
            let close = memchr::memchr(b'>', &b[i..]).ok_or(ValueError::at(i))? + i;
            (&s[i + 1..close], true, close + 1)
        } else {
            if form == AddrForm::NameAddrOnly {
                return Err(ValueError::at(i));
            }
            let end = b[i..].iter().position(|&c| c == b';' || is_lws(c)).map_or(b.len(), |p| p + i);
            let text = &s[i..end];
            // RFC 3261 §20.10: a URI with ',' '?' or ';' must be enclosed in <>.
            if let Some(p) = text.bytes().position(|c| c == b'?' || c == b',') {
                return Err(ValueError::at(i + p));
            }
            (text, false, end)
        };
        let uri_at = if angle { i + 1 } else { i };
        let uri = Uri::parse(uri_text).map_err(|e| ValueError::at(uri_at + e.offset))?;
        let rest = &s[rest_at..];
        let (params, tail) = Params::parse(rest, ParamSyntax::Header).map_err(|e| ValueError::at(rest_at + e.offset))?;
        if !tail.bytes().all(is_lws) {
            return Err(ValueError::at(s.len() - tail.len()));
        }
        Ok(NameAddr { display, uri, uri_text, angle, params })
    }

    /// The display name, quotes and quoted-pairs removed.
    pub fn display_name(&self) -> Option<Cow<'a, str>> {
        self.display.map(unquote)
    }

    /// The `tag` parameter (From/To, RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.value("tag")
    }

    /// The `expires` parameter (Contact), in seconds. Values beyond u32 saturate.
    pub fn expires(&self) -> Option<u32> {
        let v = self.params.value("expires")?;
        v.bytes().all(|b| b.is_ascii_digit()).then(|| v.parse::<u64>().map_or(u32::MAX, |n| n.min(u32::MAX as u64) as u32))
    }

    /// The `q` parameter (Contact) in thousandths: `q=0.7` is 700. `None` if absent or malformed.
    pub fn q_millis(&self) -> Option<u16> {
        let v = self.params.value("q")?;
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let whole: u16 = match int {
            "0" => 0,
            "1" => 1,
            _ => return None,
        };
        let mut f: u16 = 0;
        for d in frac.bytes().chain(std::iter::repeat(b'0')).take(3) {
            f = f * 10 + u16::from(d - b'0');
        }
        let q = whole * 1000 + f;
        (q <= 1000).then_some(q)
    }
}

impl fmt::Display for NameAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = self.display {
            write!(f, "{d} ")?;
        }
        if self.angle {
            write!(f, "<{}>", self.uri_text)?;
        } else {
            f.write_str(self.uri_text)?;
        }
        self.params.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = NameAddr::parse("\"Bob \\\"B\\\"\" <sip:bob@biloxi.com>;tag=a6c85cf").unwrap();
        assert_eq!(a.display_name().as_deref(), Some("Bob \"B\""));
        assert_eq!(a.tag(), Some("a6c85cf"));
        let b = NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert!(!b.angle);
        assert_eq!(b.tag(), Some("1918181833n"));
        let c = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(c.display, Some("caller"));
        let d = NameAddr::parse("token1~` token2'+_ <sip:m@example.com>").unwrap();
        assert_eq!(d.display, Some("token1~` token2'+_"));
    }

    #[test]
    fn contact_params() {
        let a = NameAddr::parse("<sip:a@b>;q=0.7;expires=3600").unwrap();
        assert_eq!(a.q_millis(), Some(700));
        assert_eq!(a.expires(), Some(3600));
        assert_eq!(NameAddr::parse("<sip:a@b>;q=1").unwrap().q_millis(), Some(1000));
        assert_eq!(NameAddr::parse("<sip:a@b>;q=1.5").unwrap().q_millis(), None);
    }

    #[test]
    fn bad() {
        for s in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b>;;",
            "<sip:a@b> junk",
        ] {
            assert!(NameAddr::parse(s).is_err(), "{s}");
        }
        assert!(NameAddr::parse_form("sip:a@b", AddrForm::NameAddrOnly).is_err());
    }

    #[test]
    fn round_trip() {
        for s in ["\"A\" <sip:a@b;lr>;tag=1", "<sip:a@b>;expires=60", "sip:a@b;tag=x", "<tel:+123>"] {
            let a = NameAddr::parse(s).unwrap();
            assert_eq!(a.to_string(), s);
            assert_eq!(NameAddr::parse(&a.to_string()).unwrap(), a);
        }
    }
}
