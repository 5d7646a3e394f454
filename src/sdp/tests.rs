//! Whole-module tests: fixtures, round-trips, a property test that random
//! valid descriptions survive `parse(to_bytes(s))`, and a no-panic sweep
//! over truncated and mutated inputs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

const SAMPLES: &[&str] = &[
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n\
     t=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
     a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
    "v=0\r\no=bob 280744730 28977631 IN IP4 host.example.com\r\ns=\r\nt=0 0\r\n\
     m=audio 22334 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\nm=video 6024 RTP/AVP 107\r\n\
     c=IN IP6 2001:db8::1\r\na=rtpmap:107 H263-1998/90000\r\n",
    "v=0\n\
     o=mhandley 2890844526 2890842807 IN IP4 126.16.64.4\n\
     s=SDP Seminar\n\
     i=A Seminar on the session description protocol\n\
     u=http://www.example.com/seminars/sdp.pdf\n\
     e=j.doe@example.com (Jane Doe)\n\
     c=IN IP4 224.2.17.12/127\n\
     t=2873397496 2873404696\n\
     r=7d 1h 0 25h\n\
     z=2882844526 -1h 2898848070 0\n\
     a=recvonly\n\
     m=audio 49170 RTP/AVP 0\n\
     m=video 51372/2 RTP/AVP 99\n\
     b=AS:128\n\
     a=rtpmap:99 h263-1998/90000\n\
     a=rtcp:53020 IN IP4 126.16.64.4",
];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sdp")
}

fn fixtures() -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(fixture_dir()).map(|d| d.flatten().collect::<Vec<_>>());
    for entry in entries.unwrap_or_default() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "sdp") {
            if let Ok(body) = std::fs::read(&path) {
                out.push((path.display().to_string(), Bytes::from(body)));
            }
        }
    }
    out.sort();
    out
}

fn assert_round_trip(sdp: &SessionDescription) {
    let written = sdp.to_bytes();
    assert!(written.ends_with(b"\r\n"));
    assert!(!written.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "bare LF");
    assert_eq!(SessionDescription::parse(&written).as_ref(), Ok(sdp), "written:\n{}", String::from_utf8_lossy(&written));
}

#[test]
fn parses_every_fixture() {
    let files = fixtures();
    let names: Vec<_> = files.iter().filter_map(|(p, _)| p.rsplit('/').next()).collect();
    for expected in ["audio-offer.sdp", "audio-answer.sdp", "hold-sendonly.sdp", "multi-media.sdp", "ipv6.sdp"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    for (path, body) in &files {
        assert!(!body.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "{path} has a bare LF");
        match SessionDescription::parse(body) {
            Ok(sdp) => {
                assert!(!sdp.media.is_empty(), "{path}");
                assert_round_trip(&sdp);
                // Fixtures are written in canonical order, so writing them
                // back gives the same bytes.
                assert_eq!(&sdp.to_bytes(), body, "{path}");
            }
            Err(e) => panic!("{path}: {e}"),
        }
    }
}

#[test]
fn fixture_contents() {
    let get = |name: &str| {
        let body = std::fs::read(fixture_dir().join(name)).unwrap_or_default();
        match SessionDescription::parse(&Bytes::from(body)) {
            Ok(sdp) => sdp,
            Err(e) => panic!("{name}: {e}"),
        }
    };
    let offer = get("audio-offer.sdp");
    let audio = &offer.media[0];
    assert_eq!(audio.payload_types().collect::<Vec<_>>(), [0, 8, 101]);
    assert_eq!(audio.fmtp(101).map(|f| f.params), Some("0-16".into()));
    assert_eq!((audio.ptime(), audio.direction()), (Some(20), Some(Direction::SendRecv)));

    let answer = get("audio-answer.sdp");
    let audio = &answer.media[0];
    assert_eq!((audio.maxptime(), audio.rtcp_port()), (Some(40), Some(3457)));

    let hold = get("hold-sendonly.sdp");
    assert!(hold.media[0].is_held(&hold));
    assert_eq!(hold.origin.session_version, offer.origin.session_version + 1);

    let multi = get("multi-media.sdp");
    let kinds: Vec<_> = multi.media.iter().map(|m| m.media.as_str()).collect();
    assert_eq!(kinds, ["audio", "video"]);
    assert_eq!(multi.media[0].rtpmap(96).and_then(|r| r.channels), Some(2));
    assert_eq!(multi.media[1].effective_direction(&multi), Direction::RecvOnly);

    let v6 = get("ipv6.sdp");
    let ip = v6.media[0].effective_connection(&v6).and_then(|c| c.ip());
    assert_eq!(ip, Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20))));
    let mapped = v6.media[1].effective_connection(&v6).and_then(|c| c.ip());
    assert_eq!(mapped.map(|a| a.to_canonical()), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))));
}

#[test]
fn samples_round_trip() {
    for s in SAMPLES {
        match s.parse::<SessionDescription>() {
            Ok(sdp) => assert_round_trip(&sdp),
            Err(e) => panic!("{e}:\n{s}"),
        }
    }
}

/// Parses `body`; when that succeeds, the result must round-trip.
fn check_no_panic(body: &Bytes) {
    if let Ok(sdp) = SessionDescription::parse(body) {
        assert_round_trip(&sdp);
    }
}

/// Byte values standing for every class the parser tells apart: line ends,
/// NUL, blanks, `=`, `:`, `/`, digits, letters (line types included), other
/// punctuation, DEL, and UTF-8 lead, continuation and invalid bytes.
const REPRESENTATIVE: &[u8] = b"\0\t\n\r !#*-./0159:;=AIPVZ[]_aceikmoprstuvxz~\x7f\x80\xbf\xc3\xe2\xf0\xff";

fn sweep(body: &Bytes, values: &[u8]) {
    for end in 0..=body.len() {
        check_no_panic(&body.slice(..end));
    }
    let mut buf = body.to_vec();
    for i in 0..buf.len() {
        let original = buf[i];
        for &b in values {
            buf[i] = b;
            check_no_panic(&Bytes::copy_from_slice(&buf));
        }
        buf[i] = original;
    }
}

#[test]
fn no_panic_on_truncations_and_all_byte_mutations_of_samples() {
    let all: Vec<u8> = (0..=255).collect();
    for s in SAMPLES {
        sweep(&Bytes::from_static(s.as_bytes()), &all);
    }
}

#[test]
fn no_panic_on_truncations_and_mutations_of_fixtures() {
    for (_, body) in fixtures() {
        sweep(&body, REPRESENTATIVE);
    }
}

fn token() -> impl Strategy<Value = Text> {
    "[A-Za-z0-9.+_*#-]{1,10}".prop_map(Text::from)
}

fn text() -> impl Strategy<Value = Text> {
    // Anything but NUL, CR and LF (RFC 4566 §9 `text`), including non-ASCII.
    "[^\r\n\0]{0,16}".prop_map(Text::from)
}

fn connection() -> impl Strategy<Value = Connection> {
    prop_oneof![
        any::<Ipv4Addr>().prop_map(|a| Connection::new(IpAddr::V4(a))),
        any::<Ipv6Addr>().prop_map(|a| Connection::new(IpAddr::V6(a))),
        (any::<Ipv4Addr>(), any::<u8>(), proptest::option::of(any::<u32>())).prop_map(|(a, ttl, n)| Connection {
            ttl: Some(ttl),
            num_addresses: n,
            ..Connection::new(IpAddr::V4(a))
        }),
        (any::<Ipv6Addr>(), any::<u32>()).prop_map(|(a, n)| Connection { num_addresses: Some(n), ..Connection::new(IpAddr::V6(a)) }),
        (token(), token()).prop_map(|(addr_type, address)| Connection {
            addr_type,
            address,
            ..Connection::new(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }),
    ]
}

fn origin() -> impl Strategy<Value = Origin> {
    (token(), "[0-9]{1,24}", any::<u64>(), token(), token(), token()).prop_map(
        |(username, id, session_version, net_type, addr_type, unicast_address)| Origin {
            username,
            session_id: Text::from(id),
            session_version,
            net_type,
            addr_type,
            unicast_address,
        },
    )
}

fn bandwidth() -> impl Strategy<Value = Bandwidth> {
    (token(), any::<u64>()).prop_map(|(t, b)| Bandwidth::new(t, b))
}

fn generic_attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        token().prop_map(|n| Attribute::property(Text::from(format!("x-{n}")))),
        (token(), text()).prop_map(|(n, v)| Attribute::new(Text::from(format!("x-{n}")), v)),
        prop_oneof![Just(Direction::SendRecv), Just(Direction::SendOnly), Just(Direction::RecvOnly), Just(Direction::Inactive),]
            .prop_map(Attribute::from),
    ]
}

fn media_attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        generic_attribute(),
        (0..=127u8, token(), any::<u32>(), proptest::option::of(any::<u16>()))
            .prop_map(|(pt, name, rate, ch)| RtpMap::new(pt, name, rate, ch).into()),
        (0..=127u8, text()).prop_map(|(pt, p)| Fmtp::new(pt, p).into()),
        any::<u32>().prop_map(|p| Attribute::new("ptime", p.to_string())),
        any::<u32>().prop_map(|p| Attribute::new("maxptime", p.to_string())),
        (any::<u16>(), proptest::option::of(connection())).prop_map(|(port, connection)| Rtcp { port, connection }.into()),
    ]
}

fn media() -> impl Strategy<Value = MediaDescription> {
    let proto = prop_oneof![Just("RTP/AVP"), Just("RTP/SAVPF"), Just("udptl"), Just("TCP/BFCP")];
    (
        (token(), any::<u16>(), proptest::option::of(any::<u16>()), proto),
        proptest::collection::vec(token(), 0..4),
        proptest::option::of(text()),
        proptest::collection::vec(connection(), 0..3),
        proptest::collection::vec(bandwidth(), 0..2),
        proptest::option::of(text()),
        proptest::collection::vec(media_attribute(), 0..6),
    )
        .prop_map(|((media, port, num_ports, proto), formats, info, conns, bws, key, attrs)| {
            let mut m = MediaDescription::new(media, port, proto, formats);
            m.num_ports = num_ports;
            m.information = info;
            m.connections = conns;
            m.bandwidths = bws;
            m.encryption_key = key;
            m.attributes = attrs;
            m
        })
}

fn timing() -> impl Strategy<Value = Timing> {
    (any::<u64>(), any::<u64>(), proptest::collection::vec(text(), 0..2)).prop_map(|(start, stop, repeats)| Timing { start, stop, repeats })
}

fn session() -> impl Strategy<Value = SessionDescription> {
    (
        (origin(), text(), proptest::option::of(text()), proptest::option::of(text())),
        proptest::collection::vec(text(), 0..2),
        proptest::collection::vec(text(), 0..2),
        proptest::option::of(connection()),
        proptest::collection::vec(bandwidth(), 0..2),
        proptest::collection::vec(timing(), 1..3),
        (proptest::option::of(text()), proptest::option::of(text())),
        proptest::collection::vec(generic_attribute(), 0..4),
        proptest::collection::vec(media(), 0..4),
    )
        .prop_map(|((origin, name, info, uri), emails, phones, c, bws, times, (z, k), attrs, media)| {
            let mut s = SessionDescription::new(origin, name, c);
            s.information = info;
            s.uri = uri;
            s.emails = emails;
            s.phones = phones;
            s.bandwidths = bws;
            s.times = times;
            s.time_zones = z;
            s.encryption_key = k;
            s.attributes = attrs;
            s.media = media;
            s
        })
}

proptest! {
    #[test]
    fn prop_parse_of_written_equals_original(sdp in session()) {
        let written = sdp.to_bytes();
        prop_assert_eq!(SessionDescription::parse(&written), Ok(sdp));
    }

    #[test]
    fn prop_arbitrary_bytes_do_not_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_no_panic(&Bytes::from(body));
    }

    #[test]
    fn prop_arbitrary_lines_do_not_panic(
        lines in proptest::collection::vec("[vosiuepcbtrzkamx]=[ -~]{0,30}", 0..12)
    ) {
        let body = format!("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n{}", lines.join("\r\n"));
        check_no_panic(&Bytes::from(body));
    }
}
