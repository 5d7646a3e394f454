//! The SDP parser (RFC 4566 §5, §9): lines are split by hand, each line's
//! value is parsed with `nom`, and every text field is sliced, not copied,
//! out of the body's [`Bytes`].

use bytes::Bytes;
use nom::bytes::complete::take_while1;
use nom::character::complete::{char, digit1, space0, space1};
use nom::combinator::{all_consuming, map_res, opt};
use nom::multi::many0;
use nom::sequence::{preceded, terminated};
use nom::{IResult, Parser};

use super::attr::valid_media_attribute;
use super::error::{SdpError, SdpErrorKind};
use super::{Attribute, Bandwidth, Connection, MediaDescription, Origin, SessionDescription, Text, Timing};

type NomError<'a> = nom::error::Error<&'a str>;

/// Runs `parser` over all of `input`, allowing trailing blanks.
pub(super) fn full<'a, O, P>(parser: P, input: &'a str) -> Option<O>
where
    P: Parser<&'a str, Output = O, Error = NomError<'a>>,
{
    all_consuming(terminated(parser, space0)).parse(input).ok().map(|(_, out)| out)
}

/// A decimal number that fits in `T`.
pub(super) fn num<T: std::str::FromStr>(i: &str) -> IResult<&str, T> {
    map_res(digit1, |d: &str| d.parse::<T>()).parse(i)
}

/// A run of characters other than blanks (RFC 4566 §9 `token`, leniently).
fn token(i: &str) -> IResult<&str, &str> {
    take_while1(|c: char| c != ' ' && c != '\t').parse(i)
}

/// `<nettype> <addrtype> <connection-address>` (RFC 4566 §5.7), the value
/// of `c=` and the tail of `a=rtcp`.
pub(super) fn connection_value(src: &Bytes, value: &str) -> Option<Connection> {
    let address = take_while1(|c: char| c != ' ' && c != '\t' && c != '/');
    let parser = (
        token,
        preceded(space1, token),
        preceded(space1, address),
        opt(preceded(char('/'), num::<u32>)),
        opt(preceded(char('/'), num::<u32>)),
    );
    let (net_type, addr_type, address, first, second) = full(parser, value)?;
    let (ttl, num_addresses) = if addr_type.eq_ignore_ascii_case("IP6") {
        // IPv6 multicast has no TTL: the only suffix is the number.
        if second.is_some() {
            return None;
        }
        (None, first)
    } else {
        let ttl = match first {
            Some(t) => Some(u8::try_from(t).ok()?),
            None => None,
        };
        (ttl, second)
    };
    Some(Connection {
        net_type: Text::slice_of(src, net_type),
        addr_type: Text::slice_of(src, addr_type),
        address: Text::slice_of(src, address),
        ttl,
        num_addresses,
    })
}

fn origin_value(src: &Bytes, value: &str) -> Option<Origin> {
    let parser = (
        token,
        preceded(space1, token),
        preceded(space1, num::<u64>),
        preceded(space1, token),
        preceded(space1, token),
        preceded(space1, token),
    );
    let (username, session_id, session_version, net_type, addr_type, address) = full(parser, value)?;
    Some(Origin {
        username: Text::slice_of(src, username),
        session_id: Text::slice_of(src, session_id),
        session_version,
        net_type: Text::slice_of(src, net_type),
        addr_type: Text::slice_of(src, addr_type),
        unicast_address: Text::slice_of(src, address),
    })
}

fn bandwidth_value(src: &Bytes, value: &str) -> Option<Bandwidth> {
    let bwtype = take_while1(|c: char| c != ':' && c != ' ' && c != '\t');
    let (bwtype, bandwidth) = full((bwtype, preceded(char(':'), num::<u64>)), value)?;
    Some(Bandwidth { bwtype: Text::slice_of(src, bwtype), bandwidth })
}

fn timing_value(value: &str) -> Option<Timing> {
    let (start, stop) = full((num::<u64>, preceded(space1, num::<u64>)), value)?;
    Some(Timing::new(start, stop))
}

fn media_value(src: &Bytes, value: &str) -> Option<MediaDescription> {
    let media = take_while1(|c: char| c != ' ' && c != '\t');
    let parser = (
        media,
        preceded(space1, num::<u16>),
        opt(preceded(char('/'), num::<u16>)),
        preceded(space1, token),
        many0(preceded(space1, token)),
    );
    let (media, port, num_ports, proto, formats) = full(parser, value)?;
    let mut m = MediaDescription::new(
        Text::slice_of(src, media),
        port,
        Text::slice_of(src, proto),
        formats.into_iter().map(|f| Text::slice_of(src, f)),
    );
    m.num_ports = num_ports;
    Some(m)
}

/// `<attribute>` or `<attribute>:<value>` (RFC 4566 §5.13). The value is
/// kept verbatim; a property name loses trailing blanks.
fn attribute_value(src: &Bytes, value: &str) -> Option<Attribute> {
    let (name, value) = match value.split_once(':') {
        Some((name, v)) => (name, Some(Text::slice_of(src, v))),
        None => (value.trim_end_matches([' ', '\t']), None),
    };
    if name.is_empty() {
        return None;
    }
    Some(Attribute { name: Text::slice_of(src, name), value })
}

/// Splits one line into its type letter and value, rejecting lines that
/// are not `<letter>=<value>` or contain NUL or CR (RFC 4566 §5, §9).
fn split_line(number: usize, line: &str) -> Result<(char, &str), SdpError> {
    let malformed = SdpError::new(SdpErrorKind::Malformed, number);
    // Bytes, not chars: NUL and CR are ASCII, so no UTF-8 sequence holds them, and a byte scan
    // is what the char pattern search cost several times over (issue 16, the B2BUA parses two
    // descriptions a call).
    if line.bytes().any(|b| b == b'\0' || b == b'\r') {
        return Err(malformed);
    }
    let kind = match line.as_bytes() {
        [k, b'=', ..] if k.is_ascii() => char::from(*k),
        _ => {
            // A type that is no ASCII letter: refused below as unknown when `=` follows it.
            let mut chars = line.char_indices();
            let Some((_, c)) = chars.next() else { return Err(malformed) };
            return match chars.next() {
                Some((_, '=')) if !c.is_ascii() => Err(SdpError::new(SdpErrorKind::UnknownType(c), number)),
                _ => Err(malformed),
            };
        }
    };
    if !matches!(kind, 'v' | 'o' | 's' | 'i' | 'u' | 'e' | 'p' | 'c' | 'b' | 't' | 'r' | 'z' | 'k' | 'a' | 'm') {
        return Err(SdpError::new(SdpErrorKind::UnknownType(kind), number));
    }
    // The first two bytes are ASCII, so byte 2 starts a char.
    Ok((kind, line.get(2..).ok_or(malformed)?))
}

/// Sets a line that may appear only once in its section.
fn set_once<T>(slot: &mut Option<T>, value: T, kind: char, line: usize) -> Result<(), SdpError> {
    if slot.is_some() {
        return Err(SdpError::new(SdpErrorKind::Duplicate(kind), line));
    }
    *slot = Some(value);
    Ok(())
}

impl SessionDescription {
    /// Parses an SDP body (RFC 4566 §5) without copying its text.
    ///
    /// Accepts CRLF and bare LF line ends, a last line without a line end,
    /// and trailing empty lines. Requires `v=0`, `o=`, `s=` as the first
    /// three lines, at least one `t=` before the first `m=`, and no
    /// session-level lines after it. The values of `rtpmap`, `fmtp` (in RTP
    /// media), `ptime`, `maxptime` and `rtcp` attributes are checked.
    pub fn parse(body: &Bytes) -> Result<SessionDescription, SdpError> {
        let src = std::str::from_utf8(body).map_err(|e| {
            let valid = body.get(..e.valid_up_to()).unwrap_or_default();
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            SdpError::new(SdpErrorKind::NotUtf8, line)
        })?;
        let content = src.trim_end_matches(['\r', '\n']);
        let err = |kind, line| SdpError::new(kind, line);
        let mut lines = content.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).enumerate().map(|(i, l)| (i + 1, l));

        // v=, o=, s= must come first, in this order (RFC 4566 §5).
        let mut header = |expected: char, missing: SdpErrorKind, at: usize| match lines.next() {
            Some((n, l)) if !(content.is_empty() && n == 1) => {
                let (kind, value) = split_line(n, l)?;
                if kind == expected {
                    Ok((n, value))
                } else {
                    Err(err(missing, n))
                }
            }
            _ => Err(err(missing, at)),
        };
        let (n, version) = header('v', SdpErrorKind::MissingVersion, 1)?;
        if version.trim_end_matches([' ', '\t']) != "0" {
            return Err(err(SdpErrorKind::BadVersion, n));
        }
        let (n, origin) = header('o', SdpErrorKind::MissingOrigin, 2)?;
        let origin = origin_value(body, origin).ok_or(err(SdpErrorKind::BadOrigin, n))?;
        let (_, name) = header('s', SdpErrorKind::MissingSessionName, 3)?;

        let mut sdp = SessionDescription::new(origin, Text::slice_of(body, name), None);
        sdp.times.clear();
        let mut last = 3;
        let mut media: Option<MediaDescription> = None;
        for (n, line) in lines {
            last = n;
            let (kind, value) = split_line(n, line)?;
            if kind == 'm' {
                if sdp.times.is_empty() {
                    return Err(err(SdpErrorKind::MissingTiming, n));
                }
                let m = media_value(body, value).ok_or(err(SdpErrorKind::BadMedia, n))?;
                sdp.media.extend(media.replace(m));
                continue;
            }
            if let Some(m) = media.as_mut() {
                media_line(m, kind, value, body, n)?;
            } else {
                session_line(&mut sdp, kind, value, body, n)?;
            }
        }
        if sdp.times.is_empty() {
            return Err(err(SdpErrorKind::MissingTiming, last + 1));
        }
        sdp.media.extend(media);
        Ok(sdp)
    }
}

/// A session-level line after `s=` (RFC 4566 §5). Their relative order is
/// not enforced, except that `r=` needs a `t=` before it.
fn session_line(sdp: &mut SessionDescription, kind: char, value: &str, body: &Bytes, n: usize) -> Result<(), SdpError> {
    let err = |kind| SdpError::new(kind, n);
    let text = || Text::slice_of(body, value);
    match kind {
        'i' => set_once(&mut sdp.information, text(), kind, n)?,
        'u' => set_once(&mut sdp.uri, text(), kind, n)?,
        'e' => sdp.emails.push(text()),
        'p' => sdp.phones.push(text()),
        'c' => {
            let c = connection_value(body, value).ok_or(err(SdpErrorKind::BadConnection))?;
            set_once(&mut sdp.connection, c, kind, n)?;
        }
        'b' => {
            let b = bandwidth_value(body, value).ok_or(err(SdpErrorKind::BadBandwidth))?;
            sdp.bandwidths.push(b);
        }
        't' => {
            let t = timing_value(value).ok_or(err(SdpErrorKind::BadTiming))?;
            sdp.times.push(t);
        }
        'r' => match sdp.times.last_mut() {
            Some(t) => t.repeats.push(text()),
            None => return Err(err(SdpErrorKind::OutOfOrder('r'))),
        },
        'z' => set_once(&mut sdp.time_zones, text(), kind, n)?,
        'k' => set_once(&mut sdp.encryption_key, text(), kind, n)?,
        'a' => {
            let a = attribute_value(body, value).ok_or(err(SdpErrorKind::BadAttribute))?;
            sdp.attributes.push(a);
        }
        // v=, o=, s= again.
        _ => return Err(err(SdpErrorKind::Duplicate(kind))),
    }
    Ok(())
}

/// A line inside a media description (RFC 4566 §5.14): only `i=`, `c=`,
/// `b=`, `k=` and `a=` may appear there.
fn media_line(m: &mut MediaDescription, kind: char, value: &str, body: &Bytes, n: usize) -> Result<(), SdpError> {
    let err = |kind| SdpError::new(kind, n);
    match kind {
        'i' => set_once(&mut m.information, Text::slice_of(body, value), kind, n)?,
        'c' => {
            let c = connection_value(body, value).ok_or(err(SdpErrorKind::BadConnection))?;
            m.connections.push(c);
        }
        'b' => {
            let b = bandwidth_value(body, value).ok_or(err(SdpErrorKind::BadBandwidth))?;
            m.bandwidths.push(b);
        }
        'k' => set_once(&mut m.encryption_key, Text::slice_of(body, value), kind, n)?,
        'a' => {
            let a = attribute_value(body, value).ok_or(err(SdpErrorKind::BadAttribute))?;
            if !valid_media_attribute(m.is_rtp(), &a) {
                return Err(err(SdpErrorKind::BadAttributeValue));
            }
            m.attributes.push(a);
        }
        _ => return Err(err(SdpErrorKind::OutOfOrder(kind))),
    }
    Ok(())
}

impl std::str::FromStr for SessionDescription {
    type Err = SdpError;

    /// Parses a copy of `s`; prefer [`SessionDescription::parse`] on the
    /// received `Bytes` to avoid the copy.
    fn from_str(s: &str) -> Result<SessionDescription, SdpError> {
        SessionDescription::parse(&Bytes::copy_from_slice(s.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_line_cases() {
        assert_eq!(split_line(1, "a=x:y"), Ok(('a', "x:y")));
        assert_eq!(split_line(1, "s="), Ok(('s', "")));
        assert_eq!(split_line(1, "é=x").map_err(|e| e.kind), Err(SdpErrorKind::UnknownType('é')));
        assert_eq!(split_line(1, "==x").map_err(|e| e.kind), Err(SdpErrorKind::UnknownType('=')));
        assert_eq!(split_line(1, "X=").map_err(|e| e.kind), Err(SdpErrorKind::UnknownType('X')));
        for bad in ["", "a", "a x", "=a", "a=\0", "a=\r", "é", "éx", "aé=", "a\r=x"] {
            assert_eq!(split_line(3, bad), Err(SdpError::new(SdpErrorKind::Malformed, 3)), "{bad:?}");
        }
    }

    #[test]
    fn value_parsers() {
        let src = Bytes::new();
        let c = connection_value(&src, "IN IP4 224.2.1.1/127/3 ");
        assert_eq!(c.map(|c| (c.address, c.ttl, c.num_addresses)), Some(("224.2.1.1".into(), Some(127), Some(3))));
        assert!(connection_value(&src, "IN IP4 a b").is_none());
        assert!(connection_value(&src, "IN IP4 1.2.3.4/1/2/3").is_none());
        let o = origin_value(&src, "- 0 18446744073709551615 IN IP4 h");
        assert_eq!(o.map(|o| o.session_version), Some(u64::MAX));
        assert!(origin_value(&src, "- 0 18446744073709551616 IN IP4 h").is_none());
        assert_eq!(bandwidth_value(&src, "TIAS:64000").map(|b| b.bandwidth), Some(64000));
        assert_eq!(timing_value("1 2 "), Some(Timing::new(1, 2)));
        assert!(timing_value("1 -2").is_none());
        let m = media_value(&src, "audio 0 RTP/AVP");
        assert_eq!(m.map(|m| (m.port, m.formats.len())), Some((0, 0)));
        assert_eq!(attribute_value(&src, "sendonly  ").map(|a| a.name), Some("sendonly".into()));
        assert_eq!(attribute_value(&src, "x: v ").and_then(|a| a.value), Some(" v ".into()));
        assert!(attribute_value(&src, ":v").is_none());
    }
}
