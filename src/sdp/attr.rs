//! Typed views of the attributes RFC 4566 §6 (and RFC 3605) define for
//! media: `rtpmap`, `fmtp`, `ptime`, `maxptime`, the direction attributes
//! and `rtcp`.
//!
//! Attributes are stored raw ([`Attribute`]); the accessors here parse them
//! on demand, sharing the attribute's buffer, and skip values that do not
//! follow their grammar (the parser already rejects those in `RTP` media).

use std::fmt;

use nom::bytes::complete::take_while1;
use nom::character::complete::{char, space0, space1};
use nom::combinator::{opt, rest, verify};
use nom::sequence::preceded;
use nom::Parser;

use super::parse::{connection_value, full, num};
use super::{Attribute, Connection, MediaDescription, Text};

/// A media direction attribute (RFC 4566 §6; RFC 3264 §5.1, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv`: send and receive; the default.
    #[default]
    SendRecv,
    /// `a=sendonly`: send only (e.g. when putting the peer on hold).
    SendOnly,
    /// `a=recvonly`: receive only.
    RecvOnly,
    /// `a=inactive`: neither send nor receive.
    Inactive,
}

impl Direction {
    /// The attribute name: `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction named by an attribute name, if it is one.
    pub fn from_name(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction seen from the other side: `sendonly` and `recvonly`
    /// swap. This is the direction an answer mirrors (RFC 3264 §6.1).
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether media is sent in this direction (`sendrecv` or `sendonly`).
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether media is received (`sendrecv` or `recvonly`).
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Direction> for Attribute {
    fn from(d: Direction) -> Attribute {
        Attribute::property(d.as_str())
    }
}

pub(super) fn find_direction(attributes: &[Attribute]) -> Option<Direction> {
    attributes.iter().find_map(|a| Direction::from_name(&a.name))
}

/// Replaces the first direction attribute in place, drops the others, or
/// appends one if there was none.
pub(super) fn set_direction(attributes: &mut Vec<Attribute>, direction: Direction) {
    let mut placed = false;
    attributes.retain_mut(|a| {
        if Direction::from_name(&a.name).is_none() {
            return true;
        }
        if placed {
            return false;
        }
        *a = direction.into();
        placed = true;
        true
    });
    if !placed {
        attributes.push(direction.into());
    }
}

/// An `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding
/// parameters>]` attribute (RFC 4566 §6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtpMap {
    /// The RTP payload type, 0–127.
    pub payload_type: u8,
    /// The encoding name, e.g. `PCMU`, `telephone-event`.
    pub encoding_name: Text,
    /// The RTP clock rate in Hz.
    pub clock_rate: u32,
    /// The encoding parameters: the number of channels for audio.
    pub channels: Option<u16>,
}

impl RtpMap {
    /// An rtpmap for `payload_type`.
    pub fn new(payload_type: u8, encoding_name: impl Into<Text>, clock_rate: u32, channels: Option<u16>) -> RtpMap {
        RtpMap { payload_type, encoding_name: encoding_name.into(), clock_rate, channels }
    }

    /// Parses an rtpmap attribute value, sharing its buffer.
    pub fn parse(value: &Text) -> Option<RtpMap> {
        let name = take_while1(|c: char| c != '/' && c != ' ' && c != '\t');
        let parser =
            (preceded(space0, payload_type), preceded(space1, name), preceded(char('/'), num::<u32>), opt(preceded(char('/'), num::<u16>)));
        let (payload_type, name, clock_rate, channels) = full(parser, value)?;
        Some(RtpMap { payload_type, encoding_name: value.sub(name), clock_rate, channels })
    }

    /// The mapping of a static RTP/AVP payload type (RFC 3551 §6, tables 4
    /// and 5), which needs no `a=rtpmap` line.
    pub fn static_payload(payload_type: u8) -> Option<RtpMap> {
        let (name, rate, channels): (&'static str, u32, Option<u16>) = match payload_type {
            0 => ("PCMU", 8000, None),
            3 => ("GSM", 8000, None),
            4 => ("G723", 8000, None),
            5 => ("DVI4", 8000, None),
            6 => ("DVI4", 16000, None),
            7 => ("LPC", 8000, None),
            8 => ("PCMA", 8000, None),
            9 => ("G722", 8000, None),
            10 => ("L16", 44100, Some(2)),
            11 => ("L16", 44100, None),
            12 => ("QCELP", 8000, None),
            13 => ("CN", 8000, None),
            14 => ("MPA", 90000, None),
            15 => ("G728", 8000, None),
            16 => ("DVI4", 11025, None),
            17 => ("DVI4", 22050, None),
            18 => ("G729", 8000, None),
            25 => ("CelB", 90000, None),
            26 => ("JPEG", 90000, None),
            28 => ("nv", 90000, None),
            31 => ("H261", 90000, None),
            32 => ("MPV", 90000, None),
            33 => ("MP2T", 90000, None),
            34 => ("H263", 90000, None),
            _ => return None,
        };
        Some(RtpMap::new(payload_type, name, rate, channels))
    }
}

impl fmt::Display for RtpMap {
    /// Writes the attribute value, e.g. `0 PCMU/8000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.payload_type, self.encoding_name, self.clock_rate)?;
        if let Some(channels) = self.channels {
            write!(f, "/{channels}")?;
        }
        Ok(())
    }
}

impl From<RtpMap> for Attribute {
    fn from(r: RtpMap) -> Attribute {
        Attribute::new("rtpmap", r.to_string())
    }
}

/// An `a=fmtp:<payload type> <format specific parameters>` attribute
/// (RFC 4566 §6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fmtp {
    /// The RTP payload type, 0–127.
    pub payload_type: u8,
    /// The parameters, uninterpreted (e.g. `0-16` for telephone-event).
    pub params: Text,
}

impl Fmtp {
    /// An fmtp for `payload_type`.
    pub fn new(payload_type: u8, params: impl Into<Text>) -> Fmtp {
        Fmtp { payload_type, params: params.into() }
    }

    /// Parses an fmtp attribute value, sharing its buffer.
    pub fn parse(value: &Text) -> Option<Fmtp> {
        let parser = (preceded(space0, payload_type), opt(preceded(space1, rest)));
        let (payload_type, params) = nom::combinator::all_consuming(parser).parse(value.as_str()).ok()?.1;
        Some(Fmtp { payload_type, params: params.map_or_else(Text::new, |p| value.sub(p)) })
    }
}

impl fmt::Display for Fmtp {
    /// Writes the attribute value, e.g. `101 0-16`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.payload_type)?;
        if !self.params.is_empty() {
            write!(f, " {}", self.params)?;
        }
        Ok(())
    }
}

impl From<Fmtp> for Attribute {
    fn from(fmtp: Fmtp) -> Attribute {
        Attribute::new("fmtp", fmtp.to_string())
    }
}

/// An `a=rtcp:<port> [<nettype> <addrtype> <connection-address>]`
/// attribute (RFC 3605 §2.1): where RTCP goes when not to port + 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rtcp {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address, if it differs from the media's.
    pub connection: Option<Connection>,
}

impl Rtcp {
    /// Parses an rtcp attribute value, sharing its buffer.
    pub fn parse(value: &Text) -> Option<Rtcp> {
        let (port, address) = full((preceded(space0, num::<u16>), opt(preceded(space1, rest))), value)?;
        let connection = match address {
            Some(a) => Some(connection_value(value.bytes(), a)?),
            None => None,
        };
        Some(Rtcp { port, connection })
    }
}

impl fmt::Display for Rtcp {
    /// Writes the attribute value, e.g. `53020 IN IP4 192.0.2.4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some(c) = &self.connection {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

impl From<Rtcp> for Attribute {
    fn from(rtcp: Rtcp) -> Attribute {
        Attribute::new("rtcp", rtcp.to_string())
    }
}

fn payload_type(i: &str) -> nom::IResult<&str, u8> {
    verify(num::<u8>, |pt: &u8| *pt <= 127).parse(i)
}

fn parse_u32(value: &str) -> Option<u32> {
    full(preceded(space0, num::<u32>), value)
}

/// Whether `attribute`, found in a media section whose proto is RTP-based
/// (`rtp`), follows the grammar of its name, for the attributes this module
/// knows. Unknown attributes always pass.
pub(super) fn valid_media_attribute(rtp: bool, attribute: &Attribute) -> bool {
    let value = attribute.value.as_ref();
    match attribute.name.as_str() {
        "rtpmap" if rtp => value.and_then(RtpMap::parse).is_some(),
        "fmtp" if rtp => value.and_then(Fmtp::parse).is_some(),
        "ptime" | "maxptime" => value.and_then(|v| parse_u32(v)).is_some(),
        "rtcp" => value.and_then(Rtcp::parse).is_some(),
        _ => true,
    }
}

/// Typed attribute accessors (RFC 4566 §6).
impl MediaDescription {
    /// Whether the transport is RTP based (`RTP/AVP`, `RTP/SAVP`,
    /// `UDP/TLS/RTP/SAVPF`, ...), so that formats are payload types.
    pub fn is_rtp(&self) -> bool {
        self.proto.contains("RTP/")
    }

    /// The formats as RTP payload type numbers (RFC 4566 §5.14), for RTP
    /// transports; formats that are not numbers 0–127 are skipped.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        let rtp = self.is_rtp();
        self.formats.iter().filter(move |_| rtp).filter_map(|f| full(payload_type, f))
    }

    /// The valid `a=rtpmap` attributes, in order.
    pub fn rtpmaps(&self) -> impl Iterator<Item = RtpMap> + '_ {
        self.attributes_named("rtpmap").filter_map(|a| a.value.as_ref().and_then(RtpMap::parse))
    }

    /// The `a=rtpmap` for `payload_type`.
    pub fn rtpmap(&self, payload_type: u8) -> Option<RtpMap> {
        self.rtpmaps().find(|r| r.payload_type == payload_type)
    }

    /// The codec of `payload_type`: its `a=rtpmap`, else the static
    /// RTP/AVP assignment (RFC 3551 §6).
    pub fn codec(&self, payload_type: u8) -> Option<RtpMap> {
        self.rtpmap(payload_type).or_else(|| RtpMap::static_payload(payload_type))
    }

    /// The valid `a=fmtp` attributes, in order.
    pub fn fmtps(&self) -> impl Iterator<Item = Fmtp> + '_ {
        self.attributes_named("fmtp").filter_map(|a| a.value.as_ref().and_then(Fmtp::parse))
    }

    /// The `a=fmtp` for `payload_type`.
    pub fn fmtp(&self, payload_type: u8) -> Option<Fmtp> {
        self.fmtps().find(|f| f.payload_type == payload_type)
    }

    /// `a=ptime`: the packet duration in milliseconds.
    pub fn ptime(&self) -> Option<u32> {
        self.attributes_named("ptime").find_map(|a| a.value.as_deref().and_then(parse_u32))
    }

    /// Sets `a=ptime`, replacing the first one or appending it.
    pub fn set_ptime(&mut self, ptime: u32) {
        let attribute = Attribute::new("ptime", ptime.to_string());
        match self.attributes.iter_mut().find(|a| a.name == "ptime") {
            Some(a) => *a = attribute,
            None => self.attributes.push(attribute),
        }
    }

    /// `a=maxptime`: the maximum packet duration in milliseconds.
    pub fn maxptime(&self) -> Option<u32> {
        self.attributes_named("maxptime").find_map(|a| a.value.as_deref().and_then(parse_u32))
    }

    /// `a=rtcp` (RFC 3605).
    pub fn rtcp(&self) -> Option<Rtcp> {
        self.attributes_named("rtcp").find_map(|a| a.value.as_ref().and_then(Rtcp::parse))
    }

    /// The port of `a=rtcp` (RFC 3605), if present.
    pub fn rtcp_port(&self) -> Option<u16> {
        self.rtcp().map(|r| r.port)
    }

    /// Adds a codec: its payload type to the formats (if not there yet) and
    /// its `a=rtpmap` attribute.
    pub fn push_codec(&mut self, rtpmap: RtpMap) {
        let pt = rtpmap.payload_type.to_string();
        if !self.formats.iter().any(|f| *f == pt) {
            self.formats.push(Text::from(pt));
        }
        self.attributes.push(rtpmap.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtpmap_parse_and_display() {
        let v = Text::from("101 telephone-event/8000");
        let r = RtpMap::parse(&v);
        assert_eq!(r, Some(RtpMap::new(101, "telephone-event", 8000, None)));
        let v = Text::from("97 opus/48000/2");
        let r = RtpMap::parse(&v);
        assert_eq!(r.as_ref().map(|r| r.channels), Some(Some(2)));
        assert_eq!(r.map(|r| r.to_string()), Some("97 opus/48000/2".into()));
        for bad in ["128 X/8000", "0 PCMU", "x PCMU/8000", "0 PCMU/8000/", "0 /8000", ""] {
            assert_eq!(RtpMap::parse(&Text::from(bad)), None, "{bad}");
        }
    }

    #[test]
    fn fmtp_parse_and_display() {
        let f = Fmtp::parse(&Text::from("101 0-16"));
        assert_eq!(f, Some(Fmtp::new(101, "0-16")));
        let f = Fmtp::parse(&Text::from("96 profile-level-id=42e01f; packetization-mode=1"));
        assert_eq!(f.map(|f| f.params), Some(Text::from("profile-level-id=42e01f; packetization-mode=1")));
        assert_eq!(Fmtp::parse(&Text::from("101")), Some(Fmtp::new(101, "")));
        assert_eq!(Fmtp::new(101, "").to_string(), "101");
        assert_eq!(Fmtp::parse(&Text::from("abc 1")), None);
    }

    #[test]
    fn rtcp_parse() {
        let r = Rtcp::parse(&Text::from("53020"));
        assert_eq!(r.map(|r| (r.port, r.connection)), Some((53020, None)));
        let r = Rtcp::parse(&Text::from("53020 IN IP6 2001:db8::1"));
        let ip = r.and_then(|r| r.connection).and_then(|c| c.ip());
        assert_eq!(ip, "2001:db8::1".parse().ok());
        assert_eq!(Rtcp::parse(&Text::from("70000")), None);
        assert_eq!(Rtcp::parse(&Text::from("5000 IN")), None);
    }

    #[test]
    fn direction_helpers() {
        assert_eq!(Direction::default(), Direction::SendRecv);
        assert_eq!(Direction::SendOnly.reverse(), Direction::RecvOnly);
        assert_eq!(Direction::Inactive.reverse(), Direction::Inactive);
        assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
        let mut attrs = vec![Attribute::property("sendonly"), Attribute::new("x", "1"), Attribute::property("inactive")];
        assert_eq!(find_direction(&attrs), Some(Direction::SendOnly));
        set_direction(&mut attrs, Direction::RecvOnly);
        assert_eq!(attrs, vec![Attribute::property("recvonly"), Attribute::new("x", "1")]);
    }

    #[test]
    fn media_accessors_and_builders() {
        let mut m = MediaDescription::new("audio", 4000, "RTP/AVP", ["0"]);
        m.push_codec(RtpMap::new(101, "telephone-event", 8000, None));
        m.push_attribute(Fmtp::new(101, "0-16"));
        m.set_ptime(30);
        m.set_ptime(20);
        assert_eq!(m.payload_types().collect::<Vec<_>>(), vec![0, 101]);
        assert_eq!(m.codec(0), RtpMap::static_payload(0));
        assert_eq!(m.codec(101).map(|r| r.encoding_name), Some("telephone-event".into()));
        assert_eq!(m.fmtp(101).map(|f| f.params), Some("0-16".into()));
        assert_eq!(m.ptime(), Some(20));
        assert_eq!(m.maxptime(), None);
        assert_eq!(m.rtcp_port(), None);
        let udptl = MediaDescription::new("image", 4000, "udptl", ["t38"]);
        assert_eq!(udptl.payload_types().count(), 0);
    }
}
