//! The SDP writer: [`Display`](fmt::Display) impls that emit the lines in
//! RFC 4566 §5 order with CRLF line ends.

use std::fmt::{self, Write as _};

use bytes::Bytes;

use super::{Attribute, Bandwidth, Connection, MediaDescription, Origin, SessionDescription, Text, Timing};

impl fmt::Display for Origin {
    /// Writes the `o=` value (RFC 4566 §5.2).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username, self.session_id, self.session_version, self.net_type, self.addr_type, self.unicast_address
        )
    }
}

impl fmt::Display for Connection {
    /// Writes the `c=` value (RFC 4566 §5.7): `IN IP4 224.2.1.1/127/3`,
    /// `IN IP6 ff15::101/3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)?;
        if self.addr_type.eq_ignore_ascii_case("IP6") {
            if let Some(n) = self.num_addresses {
                write!(f, "/{n}")?;
            }
        } else if let Some(ttl) = self.ttl {
            write!(f, "/{ttl}")?;
            if let Some(n) = self.num_addresses {
                write!(f, "/{n}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Bandwidth {
    /// Writes the `b=` value (RFC 4566 §5.8): `AS:64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bwtype, self.bandwidth)
    }
}

impl fmt::Display for Attribute {
    /// Writes the `a=` value (RFC 4566 §5.13): `name` or `name:value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(value) = &self.value {
            write!(f, ":{value}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Timing {
    /// Writes the `t=` line and its `r=` lines (RFC 4566 §5.9, §5.10),
    /// each ending in CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={} {}\r\n", self.start, self.stop)?;
        for r in &self.repeats {
            line(f, 'r', r)?;
        }
        Ok(())
    }
}

fn line(f: &mut fmt::Formatter<'_>, kind: char, value: impl fmt::Display) -> fmt::Result {
    write!(f, "{kind}={value}\r\n")
}

fn opt_line(f: &mut fmt::Formatter<'_>, kind: char, value: &Option<Text>) -> fmt::Result {
    match value {
        Some(v) => line(f, kind, v),
        None => Ok(()),
    }
}

impl fmt::Display for MediaDescription {
    /// Writes the media description (RFC 4566 §5.14): `m=`, `i=`, `c=`,
    /// `b=`, `k=`, `a=`, each line ending in CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(n) = self.num_ports {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt in &self.formats {
            write!(f, " {fmt}")?;
        }
        f.write_str("\r\n")?;
        opt_line(f, 'i', &self.information)?;
        for c in &self.connections {
            line(f, 'c', c)?;
        }
        for b in &self.bandwidths {
            line(f, 'b', b)?;
        }
        opt_line(f, 'k', &self.encryption_key)?;
        for a in &self.attributes {
            line(f, 'a', a)?;
        }
        Ok(())
    }
}

impl fmt::Display for SessionDescription {
    /// Writes the session description in RFC 4566 §5 order with CRLF line
    /// ends. With no `t=` lines, `t=0 0` is written, as §5.9 requires one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=0\r\n")?;
        line(f, 'o', &self.origin)?;
        line(f, 's', &self.session_name)?;
        opt_line(f, 'i', &self.information)?;
        opt_line(f, 'u', &self.uri)?;
        for e in &self.emails {
            line(f, 'e', e)?;
        }
        for p in &self.phones {
            line(f, 'p', p)?;
        }
        if let Some(c) = &self.connection {
            line(f, 'c', c)?;
        }
        for b in &self.bandwidths {
            line(f, 'b', b)?;
        }
        if self.times.is_empty() {
            f.write_str("t=0 0\r\n")?;
        }
        for t in &self.times {
            write!(f, "{t}")?;
        }
        opt_line(f, 'z', &self.time_zones)?;
        opt_line(f, 'k', &self.encryption_key)?;
        for a in &self.attributes {
            line(f, 'a', a)?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl SessionDescription {
    /// The description as an SDP body (the [`Display`](fmt::Display)
    /// output).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = String::with_capacity(512);
        // Writing into a String cannot fail.
        let _ = write!(out, "{self}");
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::{Direction, Fmtp, RtpMap};
    use std::net::IpAddr;

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn builds_and_writes_an_offer() {
        let origin = Origin::new("-", 42, 1, addr("192.0.2.10"));
        let mut sdp = SessionDescription::new(origin, "-", Connection::new(addr("192.0.2.10")));
        let mut audio = MediaDescription::new("audio", 49170, "RTP/AVP", ["0", "8"]);
        audio.push_attribute(RtpMap::new(0, "PCMU", 8000, None));
        audio.push_attribute(RtpMap::new(8, "PCMA", 8000, None));
        audio.push_codec(RtpMap::new(101, "telephone-event", 8000, None));
        audio.push_attribute(Fmtp::new(101, "0-16"));
        audio.set_ptime(20);
        audio.set_direction(Direction::SendRecv);
        sdp.push_media(audio);
        let expected = "v=0\r\n\
            o=- 42 1 IN IP4 192.0.2.10\r\n\
            s=-\r\n\
            c=IN IP4 192.0.2.10\r\n\
            t=0 0\r\n\
            m=audio 49170 RTP/AVP 0 8 101\r\n\
            a=rtpmap:0 PCMU/8000\r\n\
            a=rtpmap:8 PCMA/8000\r\n\
            a=rtpmap:101 telephone-event/8000\r\n\
            a=fmtp:101 0-16\r\n\
            a=ptime:20\r\n\
            a=sendrecv\r\n";
        assert_eq!(sdp.to_string(), expected);
        assert_eq!(sdp.to_bytes(), Bytes::from_static(expected.as_bytes()));
        assert_eq!(SessionDescription::parse(&sdp.to_bytes()), Ok(sdp));
    }

    #[test]
    fn writes_fields_in_rfc_order() {
        let mut sdp = SessionDescription::new(Origin::new("u", 1, 2, addr("2001:db8::1")), "name", None);
        sdp.push_attribute(Attribute::new("tool", "x"));
        sdp.information = Some("info".into());
        sdp.uri = Some("http://example.com/".into());
        sdp.emails.push("a@example.com".into());
        sdp.phones.push("+1 555 0100".into());
        sdp.bandwidths.push(Bandwidth::new("CT", 128));
        sdp.times[0].repeats.push("604800 3600 0 90000".into());
        sdp.times.push(Timing::new(3, 4));
        sdp.time_zones = Some("2882844526 -1h".into());
        sdp.encryption_key = Some("prompt".into());
        sdp.set_connection(Connection::new(addr("2001:db8::1")));
        let mut m = MediaDescription::new("video", 0, "RTP/AVP", ["31"]);
        m.num_ports = Some(2);
        m.encryption_key = Some("clear:k".into());
        m.information = Some("cam".into());
        m.bandwidths.push(Bandwidth::new("AS", 1));
        m.connections.push(Connection { ttl: Some(127), num_addresses: Some(3), ..Connection::new(addr("224.2.1.1")) });
        m.connections.push(Connection { num_addresses: Some(2), ..Connection::new(addr("ff15::101")) });
        m.push_attribute(Attribute::property("inactive"));
        sdp = sdp.with_media(m);
        let expected = "v=0\r\no=u 1 2 IN IP6 2001:db8::1\r\ns=name\r\ni=info\r\n\
            u=http://example.com/\r\ne=a@example.com\r\np=+1 555 0100\r\n\
            c=IN IP6 2001:db8::1\r\nb=CT:128\r\nt=0 0\r\nr=604800 3600 0 90000\r\nt=3 4\r\n\
            z=2882844526 -1h\r\nk=prompt\r\na=tool:x\r\n\
            m=video 0/2 RTP/AVP 31\r\ni=cam\r\nc=IN IP4 224.2.1.1/127/3\r\n\
            c=IN IP6 ff15::101/2\r\nb=AS:1\r\nk=clear:k\r\na=inactive\r\n";
        assert_eq!(sdp.to_string(), expected);
        assert_eq!(SessionDescription::parse(&sdp.to_bytes()), Ok(sdp));
    }

    #[test]
    fn empty_times_write_t_zero() {
        let mut sdp = SessionDescription::new(Origin::new("-", 1, 1, addr("192.0.2.1")), "-", None);
        sdp.times.clear();
        assert!(sdp.to_string().contains("\r\nt=0 0\r\n"));
    }

    #[test]
    fn answer_from_offer_by_mutation() {
        let offer = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
                     m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\na=sendonly\r\n";
        let Ok(mut sdp) = offer.parse::<SessionDescription>() else { panic!("parse") };
        sdp.origin.session_version += 1;
        for m in &mut sdp.media {
            let d = m.direction().unwrap_or_default().reverse();
            m.set_direction(d);
            m.set_port(5000);
            m.set_connection(Connection::new(addr("198.51.100.1")));
        }
        let text = sdp.to_string();
        assert!(text.contains("o=a 1 2 IN IP4"));
        assert!(text.ends_with("m=audio 5000 RTP/AVP 0\r\nc=IN IP4 198.51.100.1\r\na=recvonly\r\n"));
    }
}
