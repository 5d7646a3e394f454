//! Headers with a short fixed grammar: CSeq (§20.16), numeric headers (Max-Forwards §20.22,
//! Expires §20.19, Min-Expires §20.23, Content-Length §20.14), Content-Type (§20.15), token lists
//! (Allow §20.5, Supported §20.37, Require §20.32, Unsupported §20.40), Session-Expires and Min-SE
//! (RFC 4028 §4-5), Reason (RFC 3326) and Date (§20.17, RFC 1123 in GMT).

use crate::message::error::ValueError;
use crate::message::lex::{is_lws, is_token, is_token_char, parse_u32, parse_u32_bytes, trim, trim_end, trim_lws, trim_start, ListIter};
use crate::message::method::Method;
use crate::message::params::{ParamSyntax, Params};
use std::fmt;

/// `CSeq = 1*DIGIT LWS Method` (32-bit sequence number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number.
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value. A number above 2^32-1 is an error (RFC 4475 §3.1.2.4).
    pub fn parse(s: &str) -> Result<CSeq, ValueError> {
        let t = trim_start(s);
        let lead = s.len() - t.len();
        let t = trim_end(t);
        let split = t.bytes().position(is_lws).ok_or(ValueError::at(lead + t.len()))?;
        let seq = parse_u32(&t[..split]).ok_or(ValueError::at(lead))?;
        let m = trim_start(&t[split..]);
        let method = Method::from_known_bytes(m.as_bytes()).or_else(|| Method::from_token(m)).ok_or(ValueError::at(lead + split))?;
        Ok(CSeq { seq, method })
    }
}

impl CSeq {
    /// [`CSeq::parse`] straight from the header bytes for the common case, a standard method: the
    /// value is then all ASCII, so no UTF-8 check is needed. `None` for anything else (extension
    /// methods, errors), which the caller sends through `CSeq::parse`.
    pub(crate) fn parse_known(v: &[u8]) -> Option<CSeq> {
        let t = trim_lws(v);
        let split = t.iter().position(|&b| is_lws(b))?;
        let seq = parse_u32_bytes(&t[..split])?;
        let method = Method::from_known_bytes(trim_lws(&t[split..]))?;
        Some(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Parses `1*DIGIT` surrounded by LWS into a u32 (delta-seconds, Max-Forwards, Content-Length).
pub fn parse_number(s: &str) -> Result<u32, ValueError> {
    parse_u32(trim(s)).ok_or(ValueError::at(0))
}

/// `media-type = m-type SLASH m-subtype *(SEMI m-parameter)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// Top-level type, e.g. `application`.
    pub kind: &'a str,
    /// Subtype, e.g. `sdp`.
    pub subtype: &'a str,
    /// Parameters such as `boundary`.
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    /// Parses a Content-Type value.
    pub fn parse(s: &'a str) -> Result<MediaType<'a>, ValueError> {
        let slash = s.find('/').ok_or(ValueError::at(0))?;
        let kind = trim(&s[..slash]);
        let rest = &s[slash + 1..];
        let t = trim_start(rest);
        let end = t.find(|c: char| c == ';' || (c.is_ascii() && is_lws(c as u8))).unwrap_or(t.len());
        let subtype = &t[..end];
        if !is_token(kind) || !is_token(subtype) {
            return Err(ValueError::at(0));
        }
        let off = s.len() - t.len() + end;
        let (params, tail) = Params::parse(&t[end..], ParamSyntax::Header).map_err(|e| ValueError::at(off + e.offset))?;
        if !tail.bytes().all(is_lws) {
            return Err(ValueError::at(s.len() - tail.len()));
        }
        Ok(MediaType { kind, subtype, params })
    }

    /// Case-insensitive `type/subtype` comparison, e.g. `is("application", "sdp")`.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

impl fmt::Display for MediaType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.kind, self.subtype, self.params)
    }
}

/// A comma-separated list of tokens (Allow, Supported, Require, Unsupported, Proxy-Require). May be
/// empty (`Supported:` with no value is legal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenList<'a> {
    raw: &'a str,
}

impl<'a> TokenList<'a> {
    /// Validates a token list.
    pub fn parse(s: &'a str) -> Result<TokenList<'a>, ValueError> {
        if trim(s).is_empty() {
            return Ok(TokenList { raw: "" });
        }
        if is_plain_token_list(s.as_bytes()) {
            return Ok(TokenList { raw: s });
        }
        // Not a plain list: the element split finds the error and its offset.
        for item in ListIter::new(s) {
            let (t, at) = item?;
            if !is_token(t) {
                return Err(ValueError::at(at));
            }
        }
        Ok(TokenList { raw: s })
    }

    /// The tokens in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let raw = self.raw;
        raw.split(',').map(trim).filter(|t| !t.is_empty())
    }

    /// Whether `token` is in the list (ASCII case-insensitive).
    pub fn contains(&self, token: &str) -> bool {
        self.iter().any(|t| t.eq_ignore_ascii_case(token))
    }
}

/// Whether `s` is `token *(LWS* "," LWS* token)` with LWS allowed around it: the lists of Allow
/// and Supported as every peer writes them, checked in one pass. Such a value holds no quote, `<`
/// or empty element, so the general split ([`ListIter`]) would accept it too; anything else (an
/// error to report, with its offset) goes through that split. A 200's Allow of twelve methods
/// took about 3,300 instructions through it (BENCHMARKS.md "softphone load, the UA path").
fn is_plain_token_list(s: &[u8]) -> bool {
    #[derive(PartialEq)]
    enum At {
        /// At the start or after a comma: a token must come.
        Before,
        /// In a token.
        Token,
        /// In the LWS after a token: a comma or the end must come.
        After,
    }
    let mut at = At::Before;
    for &b in s {
        at = match (at, b) {
            (At::Before | At::Token, b) if is_token_char(b) => At::Token,
            (At::Before, b) if is_lws(b) => At::Before,
            (At::Token | At::After, b) if is_lws(b) => At::After,
            (At::Token | At::After, b',') => At::Before,
            _ => return false,
        };
    }
    at != At::Before
}

impl fmt::Display for TokenList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(t)?;
        }
        Ok(())
    }
}

/// `delta-seconds *(SEMI param)`: Session-Expires (RFC 4028 §4, with `refresher`) and Min-SE (§5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaWithParams<'a> {
    /// The interval in seconds.
    pub seconds: u32,
    /// Parameters.
    pub params: Params<'a>,
}

/// Who refreshes a session (RFC 4028 §4 `refresher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The UAC refreshes.
    Uac,
    /// The UAS refreshes.
    Uas,
}

impl<'a> DeltaWithParams<'a> {
    /// Parses `delta-seconds *(SEMI param)`.
    pub fn parse(s: &'a str) -> Result<DeltaWithParams<'a>, ValueError> {
        let t = trim_start(s);
        let lead = s.len() - t.len();
        let end = t.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(t.len());
        let seconds = parse_u32(&t[..end]).ok_or(ValueError::at(lead))?;
        let (params, tail) = Params::parse(&t[end..], ParamSyntax::Header).map_err(|e| ValueError::at(lead + end + e.offset))?;
        if !tail.bytes().all(is_lws) {
            return Err(ValueError::at(s.len() - tail.len()));
        }
        Ok(DeltaWithParams { seconds, params })
    }

    /// The `refresher` parameter of Session-Expires.
    pub fn refresher(&self) -> Option<Refresher> {
        match self.params.value("refresher")? {
            r if r.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            r if r.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            _ => None,
        }
    }
}

impl fmt::Display for DeltaWithParams<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.seconds, self.params)
    }
}

/// One Reason value (RFC 3326): `protocol *(SEMI reason-params)` with `cause` and `text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason<'a> {
    /// `SIP`, `Q.850` or another token.
    pub protocol: &'a str,
    /// `cause`, `text` and extensions.
    pub params: Params<'a>,
}

impl<'a> Reason<'a> {
    /// Parses one element of the Reason list.
    pub fn parse(s: &'a str) -> Result<Reason<'a>, ValueError> {
        let t = trim(s);
        let end = t.find(|c: char| c == ';' || (c.is_ascii() && is_lws(c as u8))).unwrap_or(t.len());
        let protocol = &t[..end];
        if !is_token(protocol) {
            return Err(ValueError::at(0));
        }
        let (params, tail) = Params::parse(&t[end..], ParamSyntax::Header).map_err(|e| ValueError::at(end + e.offset))?;
        if !tail.bytes().all(is_lws) {
            return Err(ValueError::at(s.len() - tail.len()));
        }
        Ok(Reason { protocol, params })
    }

    /// The `cause` code.
    pub fn cause(&self) -> Option<u16> {
        self.params.value("cause")?.parse().ok()
    }

    /// The `text`, unquoted.
    pub fn text(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.params.get_unquoted("text")
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.protocol, self.params)
    }
}

/// Checks a Date value: `wkday "," SP date1 SP time SP "GMT"` (RFC 3261 §20.17 requires GMT;
/// RFC 4475 §3.1.2.12 shows `EST`).
pub fn check_date(s: &str) -> Result<(), ValueError> {
    let t = trim(s);
    let b = t.as_bytes();
    // "Sat, 13 Nov 2010 23:29:00 GMT" is 29 bytes.
    let ok = b.len() == 29
        && [&b"Mon"[..], b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"].contains(&&b[..3])
        && &b[3..5] == b", "
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b' '
        && [&b"Jan"[..], b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"].contains(&&b[8..11])
        && b[11] == b' '
        && b[12..16].iter().all(u8::is_ascii_digit)
        && b[16] == b' '
        && b[17..19].iter().all(u8::is_ascii_digit)
        && b[19] == b':'
        && b[20..22].iter().all(u8::is_ascii_digit)
        && b[22] == b':'
        && b[23..25].iter().all(u8::is_ascii_digit)
        && &b[25..] == b" GMT";
    if ok {
        Ok(())
    } else {
        Err(ValueError::at(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass check accepts exactly what the general split accepts, and a value it does not
    /// take still gets the split's answer (the same error offset).
    #[test]
    fn token_list_fast_path_agrees_with_the_split() {
        let split = |s: &str| {
            ListIter::new(s)
                .map(|i| i.and_then(|(t, at)| if is_token(t) { Ok(()) } else { Err(ValueError::at(at)) }))
                .collect::<Result<Vec<()>, ValueError>>()
                .map(drop)
        };
        for s in [
            "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, MESSAGE, SUBSCRIBE, NOTIFY, REFER",
            "100rel",
            " timer ,\r\n 100rel\t",
            "a,b",
            "a,,b",
            "a, ,b",
            "a,",
            ",a",
            "a b",
            "a, b c",
            "\"a\"",
            "<a>, b",
            "a;b",
            "é",
            "a,\tb ",
        ] {
            let plain = is_plain_token_list(s.as_bytes());
            assert!(!plain || split(s).is_ok(), "{s:?}: the fast path took what the split refuses");
            if trim(s).is_empty() {
                continue;
            }
            assert_eq!(plain, split(s).is_ok(), "{s:?}: a plain list the fast path missed");
            assert_eq!(TokenList::parse(s).map(|t| t.raw), split(s).map(|()| s), "{s:?}");
        }
    }

    #[test]
    fn cseq() {
        let c = CSeq::parse(" 0009\r\n  INVITE").unwrap();
        assert_eq!((c.seq, &c.method), (9, &Method::Invite));
        assert_eq!(c.to_string(), "9 INVITE");
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("x INVITE").is_err());
        assert_eq!(CSeq::parse(&CSeq::parse("4294967295 OPTIONS").unwrap().to_string()).unwrap().seq, u32::MAX);
        // The byte fast path agrees with the text parser or declines.
        for v in [
            " 0009\r\n  INVITE ",
            "1 INVITE",
            "1\tBYE",
            "1 invite",
            "1 FOO",
            "1",
            "x INVITE",
            "1 INVITE x",
            "99999999999 ACK",
            "1  REGISTER\t",
        ] {
            match CSeq::parse_known(v.as_bytes()) {
                Some(c) => assert_eq!(Ok(c), CSeq::parse(v), "{v:?}"),
                None => assert!(CSeq::parse(v).map_or(true, |c| matches!(c.method, Method::Extension(_))), "{v:?}"),
            }
        }
    }

    #[test]
    fn media_type() {
        let m = MediaType::parse("multipart/mixed;boundary=7a9cbec02ceef655").unwrap();
        assert!(m.is("Multipart", "MIXED"));
        assert_eq!(m.params.value("boundary"), Some("7a9cbec02ceef655"));
        assert_eq!(MediaType::parse(&m.to_string()).unwrap(), m);
        assert!(MediaType::parse("application").is_err());
    }

    #[test]
    fn token_lists() {
        let t = TokenList::parse("INVITE, ACK ,BYE").unwrap();
        assert!(t.contains("bye"));
        assert_eq!(t.to_string(), "INVITE, ACK, BYE");
        assert_eq!(TokenList::parse("").unwrap().iter().count(), 0);
        assert!(TokenList::parse("a,,b").is_err());
        assert!(TokenList::parse("a b").is_err());
    }

    #[test]
    fn session_expires_and_reason() {
        let s = DeltaWithParams::parse("1800;refresher=uac").unwrap();
        assert_eq!((s.seconds, s.refresher()), (1800, Some(Refresher::Uac)));
        assert_eq!(s.to_string(), "1800;refresher=uac");
        let r = Reason::parse("SIP ;cause=200 ;text=\"Call completed elsewhere\"").unwrap();
        assert_eq!(r.cause(), Some(200));
        assert_eq!(r.text().as_deref(), Some("Call completed elsewhere"));
        assert_eq!(Reason::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn dates() {
        assert!(check_date("Sat, 13 Nov 2010 23:29:00 GMT").is_ok());
        assert!(check_date("Fri, 01 Jan 2010 16:00:00 EST").is_err());
    }
}
