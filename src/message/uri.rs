//! URIs (RFC 3261 §19.1, §25.1; RFC 3966 for `tel:`): parsed lazily from a header value or the
//! Request-URI, borrowing from the message. `%HH` escapes stay in the raw parts and are decoded once,
//! on request ([`SipUri::user_decoded`]).

use super::error::ValueError;
use super::lex::{byte_table, find_byte};
use super::params::{ParamSyntax, Params};
use nom::bytes::complete::{tag, take_while1};
use nom::IResult;
use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host: domain name, IPv4 address or IPv6 reference (RFC 3261 §25.1 `host`). Text is kept as
/// written; [`Host::ip`] converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A domain name such as `example.com`.
    Domain(&'a str),
    /// A dotted-quad IPv4 address.
    Ipv4(&'a str),
    /// An IPv6 address, without the brackets of its reference form.
    Ipv6(&'a str),
}

/// A SIP or SIPS URI (RFC 3261 §19.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SipUri<'a> {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, still escaped; `None` when there is no `@`.
    pub user: Option<&'a str>,
    /// The password, still escaped.
    pub password: Option<&'a str>,
    /// The host.
    pub host: Host<'a>,
    /// The port, if written.
    pub port: Option<u16>,
    /// `uri-parameters`.
    pub params: Params<'a>,
    /// `headers` after `?`, without the `?`.
    pub headers: Option<&'a str>,
}

/// A `tel:` URI (RFC 3966): the number and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TelUri<'a> {
    /// The telephone-subscriber number, e.g. `+1-201-555-0123`.
    pub number: &'a str,
    /// Parameters such as `phone-context`.
    pub params: Params<'a>,
}

/// Any URI: SIP/SIPS, tel, or another absolute URI kept opaque (RFC 4475 §3.3.2-3.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:`.
    Tel(TelUri<'a>),
    /// Another scheme, e.g. `http:` or `soap.beep:`.
    Other {
        /// The scheme, as written.
        scheme: &'a str,
        /// Everything after the colon.
        rest: &'a str,
    },
}

// ===== impl Host =====

impl<'a> Host<'a> {
    /// The host as an IP address, if it is one. Tolerates the `:::` of the RFC 3261 ABNF bug
    /// (RFC 5118 §4.10) by reading it as `::`.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::Ipv4(s) => s.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            Host::Ipv6(s) => s.parse::<Ipv6Addr>().ok().or_else(|| s.replacen(":::", "::", 1).parse().ok()).map(IpAddr::V6),
        }
    }

    /// The text without brackets.
    pub fn as_str(&self) -> &'a str {
        match self {
            Host::Domain(s) | Host::Ipv4(s) | Host::Ipv6(s) => s,
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ipv6(s) => write!(f, "[{s}]"),
            Host::Domain(s) | Host::Ipv4(s) => f.write_str(s),
        }
    }
}

/// `alphanum / "-" / "." / "_"`: the characters a hostname or IPv4 address is made of.
#[inline]
fn is_hostname_byte(b: u8) -> bool {
    HOSTNAME[usize::from(b)]
}

static HOSTNAME: [bool; 256] = byte_table!(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');

fn is_ipv6_char(c: char) -> bool {
    c.is_ascii_hexdigit() || c == ':' || c == '.'
}

/// `host`: `"[" IPv6address "]"` / IPv4address / hostname.
fn host(i: &str) -> IResult<&str, Host<'_>, ()> {
    if let Some(rest) = i.strip_prefix('[') {
        let (rest, addr) = take_while1(is_ipv6_char)(rest)?;
        let (rest, _) = tag("]")(rest)?;
        return Ok((rest, Host::Ipv6(addr)));
    }
    // `take_while1(is_hostname_char)`, scanned as bytes (every hostname character is ASCII, so the
    // split point is a char boundary), telling an IPv4address from a hostname on the way:
    // `1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT`.
    let b = i.as_bytes();
    let (mut n, mut dots, mut run, mut v4) = (0, 0, 0, true);
    while n < b.len() && is_hostname_byte(b[n]) {
        if v4 {
            if b[n] == b'.' {
                v4 = run > 0;
                dots += 1;
                run = 0;
            } else {
                v4 = b[n].is_ascii_digit() && run < 3;
                run += 1;
            }
        }
        n += 1;
    }
    if n == 0 {
        return Err(nom::Err::Error(()));
    }
    let (name, rest) = i.split_at(n);
    Ok((rest, if v4 && dots == 3 && run > 0 { Host::Ipv4(name) } else { Host::Domain(name) }))
}

/// `hostport = host [ ":" port ]`.
pub(crate) fn hostport(i: &str) -> IResult<&str, (Host<'_>, Option<u16>), ()> {
    let (rest, h) = host(i)?;
    // `opt(preceded(tag(":"), digit1))` and the u16 conversion, scanned by hand on this hot path: a
    // ':' without digits is left in `rest`; a port above 65535 fails.
    let b = rest.as_bytes();
    if b.first() != Some(&b':') {
        return Ok((rest, (h, None)));
    }
    let (mut n, mut port) = (1, 0u32);
    while n < b.len() && b[n].is_ascii_digit() {
        // Saturates above 65535, so any number of digits is safe.
        port = (port * 10 + u32::from(b[n] - b'0')).min(1 << 16);
        n += 1;
    }
    if n == 1 {
        return Ok((rest, (h, None)));
    }
    let port = u16::try_from(port).map_err(|_| nom::Err::Error(()))?;
    Ok((&rest[n..], (h, Some(port))))
}

// ===== impl Uri =====

fn is_scheme_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.'
}

/// Characters allowed in a user or password part: unreserved, escaped and `&=+$,;?/` (§25.1).
#[inline]
fn is_userinfo_char(b: u8) -> bool {
    USERINFO[usize::from(b)]
}

static USERINFO: [bool; 256] = byte_table!(|b| b.is_ascii_alphanumeric()
    || matches!(
        b,
        b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' | b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/' | b':'
    ));

impl<'a> Uri<'a> {
    /// Parses a whole URI. `s` must hold the URI and nothing else.
    pub fn parse(s: &'a str) -> Result<Uri<'a>, ValueError> {
        // `take_while1(is_scheme_char)` as a byte scan (scheme characters are ASCII).
        let n = s.bytes().position(|c| !is_scheme_byte(c)).unwrap_or(s.len());
        if n == 0 {
            return Err(ValueError::at(0));
        }
        let (scheme, rest) = s.split_at(n);
        let rest = rest.strip_prefix(':').ok_or(ValueError::at(scheme.len()))?;
        let base = scheme.len() + 1;
        if !scheme.as_bytes()[0].is_ascii_alphabetic() {
            return Err(ValueError::at(0));
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            let secure = scheme.len() == 4;
            SipUri::parse_after_scheme(rest, secure).map(Uri::Sip).map_err(|e| ValueError::at(base + e.offset))
        } else if scheme.eq_ignore_ascii_case("tel") {
            let end = rest.find(';').unwrap_or(rest.len());
            let number = &rest[..end];
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.()*#".contains(&b)) {
                return Err(ValueError::at(base));
            }
            let (params, tail) = Params::parse(&rest[end..], ParamSyntax::Uri).map_err(|e| ValueError::at(base + end + e.offset))?;
            if !tail.is_empty() {
                return Err(ValueError::at(s.len() - tail.len()));
            }
            Ok(Uri::Tel(TelUri { number, params }))
        } else {
            if let Some(p) = rest.bytes().position(|b| b.is_ascii_whitespace() || b"<>\"".contains(&b) || b < 0x20) {
                return Err(ValueError::at(base + p));
            }
            Ok(Uri::Other { scheme, rest })
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The scheme as written (`sip`, `sips`, `tel`, ...).
    pub fn scheme(&self) -> &'a str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(t) => write!(f, "tel:{}{}", t.number, t.params.as_str()),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

// ===== impl SipUri =====

impl<'a> SipUri<'a> {
    /// Parses `[userinfo "@"] hostport uri-parameters [headers]` (after `sip:` / `sips:`).
    fn parse_after_scheme(s: &'a str, secure: bool) -> Result<SipUri<'a>, ValueError> {
        // '@' cannot appear unescaped after the userinfo, so the first one ends it (RFC 4475 §3.1.1.9:
        // a ';' before it belongs to the user part).
        let (user, password, hp_start) = match find_byte(s.as_bytes(), 0, b'@') {
            Some(at) => {
                let info = &s[..at];
                if let Some(p) = info.bytes().position(|b| !is_userinfo_char(b)) {
                    return Err(ValueError::at(p));
                }
                let (user, password) = match info.bytes().position(|b| b == b':') {
                    Some(c) => (&info[..c], Some(&info[c + 1..])),
                    None => (info, None),
                };
                (Some(user), password, at + 1)
            }
            None => (None, None, 0),
        };
        let hp = &s[hp_start..];
        let (rest, (host, port)) = hostport(hp).map_err(|_| ValueError::at(hp_start))?;
        let off = s.len() - rest.len();
        let (params, rest) = Params::parse(rest, ParamSyntax::Uri).map_err(|e| ValueError::at(off + e.offset))?;
        let headers = match rest.strip_prefix('?') {
            Some(h) => {
                if let Some(p) = h.bytes().position(|b| !(is_userinfo_char(b) || b == b'[' || b == b']' || b == b'@')) {
                    return Err(ValueError::at(s.len() - h.len() + p));
                }
                Some(h)
            }
            None if rest.is_empty() => None,
            None => return Err(ValueError::at(s.len() - rest.len())),
        };
        Ok(SipUri { secure, user, password, host, port, params, headers })
    }

    /// The user part with `%HH` escapes decoded exactly once (RFC 4475 §3.1.1.3). Bytes, since an
    /// escape may produce any octet (`%00` included, §3.1.1.4).
    pub fn user_decoded(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(percent_decode)
    }

    /// The `transport` parameter, if any.
    pub fn transport(&self) -> Option<&'a str> {
        self.params.value("transport")
    }

    /// Whether the `lr` (loose routing) parameter is present.
    pub fn is_loose_route(&self) -> bool {
        self.params.contains("lr")
    }
}

impl fmt::Display for SipUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = self.user {
            f.write_str(u)?;
            if let Some(p) = self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(self.params.as_str())?;
        if let Some(h) = self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// Decodes `%HH` escapes once. Malformed escapes stay literal.
pub fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    #[test]
    fn full_sip_uri() {
        let u = sip("sip:alice:secret@[2001:db8::10]:5070;transport=udp;lr?Subject=hi");
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::Ipv6("2001:db8::10"));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport(), Some("udp"));
        assert!(u.is_loose_route());
        assert_eq!(u.headers, Some("Subject=hi"));
        assert_eq!(u.to_string(), "sip:alice:secret@[2001:db8::10]:5070;transport=udp;lr?Subject=hi");
    }

    #[test]
    fn escapes_decode_once() {
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(&*u.user_decoded().unwrap(), b"sips:user@example.com");
        assert_eq!(&*percent_decode("v%61lue%25%34%31"), b"value%41");
        assert_eq!(&*sip("sip:null-%00-null@example.com").user_decoded().unwrap(), b"null-\0-null");
    }

    #[test]
    fn semicolon_in_user_part() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert!(u.params.is_empty());
    }

    #[test]
    fn hosts() {
        assert_eq!(sip("sip:192.0.2.1").host, Host::Ipv4("192.0.2.1"));
        assert_eq!(sip("sip:example.com:5060").port, Some(5060));
        assert_eq!(sip("sip:[2001:db8:::192.0.2.1]").host.ip(), "2001:db8::192.0.2.1".parse().ok());
        assert!(Uri::parse("sip:user@2001:db8::10").is_err());
        assert!(Uri::parse("sip:host:99999").is_err());
    }

    #[test]
    fn ports_and_ipv4_detection() {
        assert_eq!(hostport("h:65535;x"), Ok((";x", (Host::Domain("h"), Some(65535)))));
        assert_eq!(hostport("h:0000000000005060"), Ok(("", (Host::Domain("h"), Some(5060)))));
        assert!(hostport("h:65536").is_err());
        assert!(hostport("h:99999999999999999999").is_err());
        assert_eq!(hostport("h:;x"), Ok((":;x", (Host::Domain("h"), None))));
        for (s, v4) in [
            ("1.2.3.4", true),
            ("255.255.255.255", true),
            ("01.02.03.004", true),
            ("1.2.3", false),
            ("1.2.3.4.5", false),
            ("1234.1.1.1", false),
            ("1..2.3", false),
            (".1.2.3", false),
            ("1.2.3.", false),
            ("1.2.3.a", false),
            ("1-2.3.4.5", false),
        ] {
            let (_, (h, _)) = hostport(s).unwrap();
            assert_eq!(matches!(h, Host::Ipv4(_)), v4, "{s}");
            assert_eq!(h.as_str(), s);
        }
    }

    #[test]
    fn other_schemes() {
        assert_eq!(Uri::parse("tel:+1-201-555-0123;phone-context=x").unwrap().scheme(), "tel");
        assert!(matches!(Uri::parse("soap.beep://192.0.2.103:3002").unwrap(), Uri::Other { .. }));
        assert!(Uri::parse("<sip:a@b>").is_err());
        assert!(Uri::parse("sip:a@b; lr").is_err());
        assert!(Uri::parse("sip:").is_err());
    }
}
