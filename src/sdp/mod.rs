//! SDP, the Session Description Protocol (RFC 4566), as carried in SIP
//! bodies for the offer/answer model (RFC 3264).
//!
//! [`SessionDescription::parse`] reads a body zero-copy: every text field is
//! a [`Text`] sharing the body's [`bytes::Bytes`] buffer. The types can also
//! be built from scratch ([`SessionDescription::new`],
//! [`MediaDescription::new`]) and written back with
//! [`Display`](std::fmt::Display) or [`SessionDescription::to_bytes`], which
//! emit the lines in RFC 4566 §5 order with CRLF line ends. For every valid
//! description `s`, `SessionDescription::parse(&s.to_bytes()) == Ok(s)`.
//!
//! The parser is lenient where RFC 4566 §5 asks it to be (bare LF line ends,
//! a missing final line end, trailing empty lines) and in the order of the
//! session-level lines between `s=` and the first `m=`, but it requires
//! `v=`, `o=`, `s=` as the first three lines, at least one `t=`, and that
//! no session-level line follows an `m=`.
//!
//! The writer emits fields as they are. A description is valid, and so
//! round-trips, when text fields contain no CR, LF or NUL, token fields
//! (names, addresses, formats) no blanks (and attribute names no `:`), there
//! is at least one [`Timing`], an `IP4` [`Connection`] has a `ttl` whenever
//! it has `num_addresses`, and the values of the attributes the parser
//! checks (see [`SessionDescription::parse`]) follow their grammar.
//!
//! Not enforced: that every media section has a connection (session-level
//! or its own), and the relative order of the session-level lines between
//! `s=` and the first `m=`.
#![warn(missing_docs)]

mod attr;
mod error;
mod parse;
mod text;
mod write;

#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod tests;

pub use attr::{Direction, Fmtp, Rtcp, RtpMap};
pub use error::{SdpError, SdpErrorKind};
pub use text::Text;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The `a=` accessors that a media description and a session description
/// share (RFC 4566 §5.13, §6): both keep their attributes in `self.attributes`.
macro_rules! attribute_access {
    ($level:literal) => {
        #[doc = concat!("Appends a ", $level, " attribute (an [`Attribute`], [`RtpMap`], [`Fmtp`] or [`Direction`]).")]
        pub fn push_attribute(&mut self, attribute: impl Into<Attribute>) {
            self.attributes.push(attribute.into());
        }

        #[doc = concat!("The first ", $level, " attribute called `name`.")]
        pub fn attribute(&self, name: &str) -> Option<&Attribute> {
            self.attributes.iter().find(|a| a.name == name)
        }

        #[doc = concat!("All ", $level, " attributes called `name`, in order.")]
        pub fn attributes_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Attribute> {
            self.attributes.iter().filter(move |a| a.name == name)
        }

        #[doc = concat!("Removes all ", $level, " attributes called `name`; returns how many there were.")]
        pub fn remove_attributes(&mut self, name: &str) -> usize {
            let before = self.attributes.len();
            self.attributes.retain(|a| a.name != name);
            before - self.attributes.len()
        }

        #[doc = concat!("The ", $level, " direction attribute, if any (RFC 4566 §6).")]
        pub fn direction(&self) -> Option<Direction> {
            attr::find_direction(&self.attributes)
        }

        #[doc = concat!("Sets the ", $level, " direction attribute, replacing any present.")]
        pub fn set_direction(&mut self, direction: Direction) {
            attr::set_direction(&mut self.attributes, direction);
        }
    };
}

/// The `o=` line (RFC 4566 §5.2): who created the session and its version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `<username>`, `-` when the host has no user ids.
    pub username: Text,
    /// `<sess-id>`: a numeric string, kept as text because only its identity
    /// matters and some implementations exceed 64 bits.
    pub session_id: Text,
    /// `<sess-version>`: increased on every change of the description
    /// (RFC 3264 §8).
    pub session_version: u64,
    /// `<nettype>`, normally `IN`.
    pub net_type: Text,
    /// `<addrtype>`, normally `IP4` or `IP6`.
    pub addr_type: Text,
    /// `<unicast-address>`: an address or a fully qualified domain name.
    pub unicast_address: Text,
}

impl Origin {
    /// An `IN IP4`/`IN IP6` origin for `address`.
    pub fn new(username: impl Into<Text>, session_id: u64, session_version: u64, address: IpAddr) -> Origin {
        Origin {
            username: username.into(),
            session_id: Text::from(session_id.to_string()),
            session_version,
            net_type: Text::from("IN"),
            addr_type: addr_type_of(address),
            unicast_address: Text::from(address.to_string()),
        }
    }

    /// The unicast address as an IP address, if it is one (not an FQDN).
    pub fn ip(&self) -> Option<IpAddr> {
        parse_ip(&self.addr_type, &self.unicast_address)
    }
}

/// A `c=` line (RFC 4566 §5.7): where media is sent.
///
/// For `IP4` the address may carry a multicast TTL and a number of
/// addresses (`224.2.1.1/127/3`); for `IP6` only a number of addresses
/// (`ff15::101/3`, RFC 4566 §5.7). IPv6 addresses are not bracketed
/// (RFC 5118 §4.6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connection {
    /// `<nettype>`, normally `IN`.
    pub net_type: Text,
    /// `<addrtype>`, normally `IP4` or `IP6`.
    pub addr_type: Text,
    /// The base address without the `/ttl` and `/number` suffixes.
    pub address: Text,
    /// The IPv4 multicast TTL. Ignored by the writer for `IP6`.
    pub ttl: Option<u8>,
    /// The number of consecutive multicast addresses. For `IP4` it is only
    /// written when `ttl` is set, as the grammar requires.
    pub num_addresses: Option<u32>,
}

impl Connection {
    /// A unicast `IN IP4`/`IN IP6` connection for `address`.
    ///
    /// `0.0.0.0` gives the RFC 2543-style hold address (RFC 3264 §8.4).
    pub fn new(address: IpAddr) -> Connection {
        Connection {
            net_type: Text::from("IN"),
            addr_type: addr_type_of(address),
            address: Text::from(address.to_string()),
            ttl: None,
            num_addresses: None,
        }
    }

    /// The address as an IP address, if it is one (not an FQDN).
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) stays
    /// [`IpAddr::V6`]; use [`IpAddr::to_canonical`] to treat it as IPv4, as
    /// RFC 3266 §5 advises.
    pub fn ip(&self) -> Option<IpAddr> {
        parse_ip(&self.addr_type, &self.address)
    }

    /// Whether the address is `0.0.0.0` or `::`, which RFC 2543 used to put
    /// a stream on hold (RFC 3264 §8.4).
    pub fn is_unspecified(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

fn addr_type_of(address: IpAddr) -> Text {
    match address {
        IpAddr::V4(_) => Text::from("IP4"),
        IpAddr::V6(_) => Text::from("IP6"),
    }
}

fn parse_ip(addr_type: &str, address: &str) -> Option<IpAddr> {
    if addr_type.eq_ignore_ascii_case("IP4") {
        address.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else if addr_type.eq_ignore_ascii_case("IP6") {
        // Brackets are not valid SDP (RFC 5118 §4.6) but cost nothing here.
        let bare = address.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(address);
        bare.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        address.parse::<IpAddr>().ok()
    }
}

/// A `b=` line (RFC 4566 §5.8): `<bwtype>:<bandwidth>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bandwidth {
    /// `<bwtype>`, e.g. `CT`, `AS`, `TIAS`.
    pub bwtype: Text,
    /// `<bandwidth>`, in kilobits per second for `CT` and `AS`.
    pub bandwidth: u64,
}

impl Bandwidth {
    /// A `b=<bwtype>:<bandwidth>` line.
    pub fn new(bwtype: impl Into<Text>, bandwidth: u64) -> Bandwidth {
        Bandwidth { bwtype: bwtype.into(), bandwidth }
    }
}

/// A `t=` line (RFC 4566 §5.9) and the `r=` lines (§5.10) that follow it.
///
/// `t=0 0` (the [`Default`]) means an unbounded session, as used in SIP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Timing {
    /// `<start-time>` as an NTP timestamp in seconds, 0 for unbounded.
    pub start: u64,
    /// `<stop-time>` as an NTP timestamp in seconds, 0 for unbounded.
    pub stop: u64,
    /// The raw values of the `r=` lines for this `t=` line.
    pub repeats: Vec<Text>,
}

impl Timing {
    /// A `t=<start> <stop>` line without repeats.
    pub fn new(start: u64, stop: u64) -> Timing {
        Timing { start, stop, repeats: Vec::new() }
    }
}

/// An `a=` line (RFC 4566 §5.13): `a=<name>` or `a=<name>:<value>`.
///
/// Attributes are kept in their original order, unknown ones included.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// The attribute name (before the first `:`).
    pub name: Text,
    /// The value after the first `:`, or `None` for a property attribute.
    pub value: Option<Text>,
}

impl Attribute {
    /// A value attribute, `a=<name>:<value>`.
    pub fn new(name: impl Into<Text>, value: impl Into<Text>) -> Attribute {
        Attribute { name: name.into(), value: Some(value.into()) }
    }

    /// A property attribute without a value, `a=<name>`.
    pub fn property(name: impl Into<Text>) -> Attribute {
        Attribute { name: name.into(), value: None }
    }
}

/// A media description (RFC 4566 §5.14): an `m=` line and the `i=`, `c=`,
/// `b=`, `k=` and `a=` lines that follow it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaDescription {
    /// `<media>`: `audio`, `video`, `text`, `application`, `message`, ...
    pub media: Text,
    /// `<port>`; 0 marks a rejected or disabled stream (RFC 3264 §6).
    pub port: u16,
    /// The `/<number of ports>` suffix of the port, if present.
    pub num_ports: Option<u16>,
    /// `<proto>`, e.g. `RTP/AVP`.
    pub proto: Text,
    /// `<fmt>` list; RTP payload type numbers for `RTP/AVP`.
    pub formats: Vec<Text>,
    /// The media-level `i=` line.
    pub information: Option<Text>,
    /// The media-level `c=` lines; several only for layered multicast
    /// (RFC 4566 §5.7).
    pub connections: Vec<Connection>,
    /// The media-level `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// The raw value of the media-level `k=` line (RFC 4566 §5.12).
    pub encryption_key: Option<Text>,
    /// The media-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// An `m=<media> <port> <proto> <fmt>...` line with nothing below it.
    pub fn new<I>(media: impl Into<Text>, port: u16, proto: impl Into<Text>, formats: I) -> MediaDescription
    where
        I: IntoIterator,
        I::Item: Into<Text>,
    {
        MediaDescription {
            media: media.into(),
            port,
            num_ports: None,
            proto: proto.into(),
            formats: formats.into_iter().map(Into::into).collect(),
            information: None,
            connections: Vec::new(),
            bandwidths: Vec::new(),
            encryption_key: None,
            attributes: Vec::new(),
        }
    }

    /// Sets the port.
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    /// Rejects the stream by setting its port to 0 (RFC 3264 §6).
    pub fn reject(&mut self) {
        self.port = 0;
    }

    /// Whether the port is 0: a rejected or disabled stream (RFC 3264 §6).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// The first media-level `c=` line.
    pub fn connection(&self) -> Option<&Connection> {
        self.connections.first()
    }

    /// Replaces the media-level `c=` lines with `connection` (or none).
    pub fn set_connection(&mut self, connection: impl Into<Option<Connection>>) {
        self.connections.clear();
        self.connections.extend(connection.into());
    }

    /// The connection that applies to this stream: its own `c=` line, else
    /// the session-level one (RFC 4566 §5.7).
    pub fn effective_connection<'a>(&'a self, session: &'a SessionDescription) -> Option<&'a Connection> {
        self.connection().or(session.connection.as_ref())
    }

    attribute_access!("media-level");

    /// The direction in force for this stream: the media-level attribute,
    /// else the session-level one, else `sendrecv` (RFC 4566 §6,
    /// RFC 3264 §5.1).
    pub fn effective_direction(&self, session: &SessionDescription) -> Direction {
        self.direction().or_else(|| session.direction()).unwrap_or_default()
    }

    /// Whether this stream, as described, signals hold (RFC 3264 §8.4): its
    /// effective direction is `sendonly` or `inactive`, or its effective
    /// connection address is `0.0.0.0` (the RFC 2543 form).
    pub fn is_held(&self, session: &SessionDescription) -> bool {
        matches!(self.effective_direction(session), Direction::SendOnly | Direction::Inactive)
            || self.effective_connection(session).is_some_and(Connection::is_unspecified)
    }
}

/// A session description (RFC 4566 §5): the session-level lines and the
/// media descriptions.
///
/// `v=` is not stored: it is always 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionDescription {
    /// The `o=` line (§5.2).
    pub origin: Origin,
    /// The `s=` line (§5.3); `-` or a single space when meaningless.
    pub session_name: Text,
    /// The session-level `i=` line (§5.4).
    pub information: Option<Text>,
    /// The `u=` line (§5.5).
    pub uri: Option<Text>,
    /// The `e=` lines (§5.6).
    pub emails: Vec<Text>,
    /// The `p=` lines (§5.6).
    pub phones: Vec<Text>,
    /// The session-level `c=` line (§5.7).
    pub connection: Option<Connection>,
    /// The session-level `b=` lines (§5.8).
    pub bandwidths: Vec<Bandwidth>,
    /// The `t=` lines with their `r=` lines (§5.9, §5.10); at least one.
    pub times: Vec<Timing>,
    /// The raw value of the `z=` line (§5.11).
    pub time_zones: Option<Text>,
    /// The raw value of the session-level `k=` line (§5.12).
    pub encryption_key: Option<Text>,
    /// The session-level `a=` lines, in order (§5.13).
    pub attributes: Vec<Attribute>,
    /// The media descriptions, in order (§5.14).
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// A description with the given `o=`, `s=` and optional session-level
    /// `c=`, one `t=0 0` line and no media.
    pub fn new(origin: Origin, session_name: impl Into<Text>, connection: impl Into<Option<Connection>>) -> SessionDescription {
        SessionDescription {
            origin,
            session_name: session_name.into(),
            information: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection: connection.into(),
            bandwidths: Vec::new(),
            times: vec![Timing::default()],
            time_zones: None,
            encryption_key: None,
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// Appends a media description.
    pub fn push_media(&mut self, media: MediaDescription) {
        self.media.push(media);
    }

    /// Appends a media description, builder style.
    #[must_use]
    pub fn with_media(mut self, media: MediaDescription) -> SessionDescription {
        self.media.push(media);
        self
    }

    /// Replaces the session-level `c=` line.
    pub fn set_connection(&mut self, connection: impl Into<Option<Connection>>) {
        self.connection = connection.into();
    }

    attribute_access!("session-level");
}
