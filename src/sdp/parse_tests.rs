//! Parser tests: typical offers, multi-media, IPv4/IPv6 connections
//! (RFC 5118), hold, rejected streams, leniency, and one case per error.

use std::net::IpAddr;

use bytes::Bytes;

use super::*;

fn parse_ok(s: &str) -> SessionDescription {
    match s.parse::<SessionDescription>() {
        Ok(sdp) => sdp,
        Err(e) => panic!("{e} in:\n{s}"),
    }
}

fn parse_err(s: &str) -> (SdpErrorKind, usize) {
    match s.parse::<SessionDescription>() {
        Ok(sdp) => panic!("parsed {sdp:?} from:\n{s}"),
        Err(e) => (e.kind, e.line),
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

const OFFER: &str = "v=0\r\n\
    o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
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

/// Lines 1-4 of a minimal valid description.
const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";

#[test]
fn parses_typical_audio_offer() {
    let sdp = parse_ok(OFFER);
    assert_eq!(sdp.origin.username, "alice");
    assert_eq!(sdp.origin.session_id, "2890844526");
    assert_eq!(sdp.origin.session_version, 2890844526);
    assert_eq!(sdp.origin.ip(), ip("192.0.2.10"));
    assert_eq!(sdp.session_name, "-");
    assert_eq!(sdp.connection.as_ref().and_then(|c| c.ip()), ip("192.0.2.10"));
    assert_eq!(sdp.times, vec![Timing::new(0, 0)]);
    assert_eq!(sdp.media.len(), 1);
    let m = &sdp.media[0];
    assert_eq!((m.media.as_str(), m.port, m.proto.as_str()), ("audio", 49170, "RTP/AVP"));
    assert_eq!(m.formats, vec!["0", "8", "101"]);
    assert_eq!(m.payload_types().collect::<Vec<_>>(), vec![0, 8, 101]);
    assert_eq!(m.rtpmap(0), Some(RtpMap::new(0, "PCMU", 8000, None)));
    assert_eq!(m.rtpmap(8), Some(RtpMap::new(8, "PCMA", 8000, None)));
    assert_eq!(m.rtpmap(101), Some(RtpMap::new(101, "telephone-event", 8000, None)));
    assert_eq!(m.fmtp(101), Some(Fmtp::new(101, "0-16")));
    assert_eq!(m.ptime(), Some(20));
    assert_eq!(m.direction(), Some(Direction::SendRecv));
    assert_eq!(m.effective_direction(&sdp), Direction::SendRecv);
    assert!(!m.is_held(&sdp));
    assert_eq!(m.attributes.len(), 6);
    assert_eq!(m.attributes[5], Attribute::property("sendrecv"));
}

#[test]
fn text_fields_share_the_body() {
    let body = Bytes::from(OFFER);
    let sdp = SessionDescription::parse(&body).map_err(|e| e.to_string());
    let range = body.as_ptr_range();
    let name = sdp.as_ref().map(|s| s.media[0].rtpmaps().nth(2).map(|r| r.encoding_name));
    let name = name.ok().flatten().unwrap_or_default();
    assert_eq!(name, "telephone-event");
    assert!(range.contains(&name.bytes().as_ptr()));
    let user = sdp.map(|s| s.origin.username).unwrap_or_default();
    assert!(range.contains(&user.bytes().as_ptr()));
}

#[test]
fn parses_multi_media() {
    let sdp = parse_ok(
        "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
         a=sendonly\r\n\
         m=audio 5004 RTP/AVP 0\r\nb=AS:64\r\na=rtcp:5005\r\n\
         m=video 5006 RTP/AVP 31 34\r\ni=camera\r\nc=IN IP4 192.0.2.2\r\n\
         a=rtpmap:31 H261/90000\r\na=recvonly\r\n\
         m=application 9 TCP/BFCP *\r\na=rtpmap:junk is fine here\r\n",
    );
    assert_eq!(sdp.direction(), Some(Direction::SendOnly));
    let [audio, video, app] = &sdp.media[..] else { panic!("{sdp:?}") };
    assert_eq!(audio.bandwidths, vec![Bandwidth::new("AS", 64)]);
    assert_eq!(audio.rtcp_port(), Some(5005));
    assert_eq!(audio.effective_direction(&sdp), Direction::SendOnly);
    assert!(audio.is_held(&sdp));
    assert_eq!(video.formats, vec!["31", "34"]);
    assert_eq!(video.codec(34).map(|c| c.encoding_name), Some("H263".into()));
    assert_eq!(video.information.as_deref(), Some("camera"));
    assert_eq!(video.effective_direction(&sdp), Direction::RecvOnly);
    assert_eq!(video.effective_connection(&sdp).and_then(|c| c.ip()), ip("192.0.2.2"));
    assert_eq!(audio.effective_connection(&sdp).and_then(|c| c.ip()), ip("192.0.2.1"));
    assert_eq!(app.port, 9);
    assert!(!app.is_rtp());
    assert_eq!(app.formats, vec!["*"]);
}

#[test]
fn rfc5118_multiple_addresses_ipv4_then_ipv6() {
    // RFC 5118 §4.8: an IPv4 c= in one media section, IPv6 in the next,
    // and an empty s=.
    let sdp = parse_ok(
        "v=0\r\no=bob 280744730 28977631 IN IP4 host.example.com\r\ns=\r\nt=0 0\r\n\
         m=audio 22334 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n\
         m=video 6024 RTP/AVP 107\r\nc=IN IP6 2001:db8::1\r\n\
         a=rtpmap:107 H263-1998/90000\r\n",
    );
    assert_eq!(sdp.session_name, "");
    assert_eq!(sdp.origin.unicast_address, "host.example.com");
    assert_eq!(sdp.origin.ip(), None);
    assert_eq!(sdp.connection, None);
    assert_eq!(sdp.media[0].connection().and_then(|c| c.ip()), ip("192.0.2.1"));
    assert_eq!(sdp.media[1].connection().and_then(|c| c.ip()), ip("2001:db8::1"));
    // The same with the IPv4 address at session level, after t= as in
    // the RFC's own ordering of c= lines.
    let sdp = parse_ok(&format!("{HEAD}c=IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\nc=IN IP6 2001:db8::1\r\n"));
    let m = &sdp.media[0];
    assert_eq!(sdp.connection.as_ref().and_then(|c| c.ip()), ip("192.0.2.1"));
    assert_eq!(m.effective_connection(&sdp).and_then(|c| c.ip()), ip("2001:db8::1"));
}

#[test]
fn ipv6_unbracketed_and_ipv4_mapped() {
    // RFC 5118 §4.9 (IPv4-mapped) and §4.6 (unbracketed IPv6).
    let sdp = parse_ok(
        "v=0\r\no=assistant 971731711378798081 0 IN IP6 ::ffff:192.0.2.2\r\n\
         s=Call me soon, please!\r\nc=IN IP6 ::ffff:192.0.2.2\r\nt=3338481189 3370017201\r\n\
         m=audio 6000 RTP/AVP 2\r\na=rtpmap:2 G726-32/8000\r\n\
         m=video 6024 RTP/AVP 107\r\nc=IN IP6 2001:db8::1:2\r\na=rtpmap:107 H263-1998/90000\r\n",
    );
    assert_eq!(sdp.origin.session_id, "971731711378798081");
    let c = sdp.connection.as_ref();
    assert_eq!(c.map(|c| c.address.as_str()), Some("::ffff:192.0.2.2"));
    let mapped = c.and_then(|c| c.ip());
    assert_eq!(mapped, ip("::ffff:192.0.2.2"));
    assert_eq!(mapped.map(|a| a.to_canonical()), ip("192.0.2.2"));
    assert_eq!(sdp.times, vec![Timing::new(3338481189, 3370017201)]);
    assert_eq!(sdp.media[1].connection().and_then(|c| c.ip()), ip("2001:db8::1:2"));
    assert_eq!(sdp.media[0].rtpmap(2).map(|r| r.encoding_name), Some("G726-32".into()));
}

#[test]
fn multicast_connection_suffixes() {
    let sdp = parse_ok(&format!(
        "{HEAD}m=audio 1 RTP/AVP 0\r\nc=IN IP4 224.2.1.1/127/3\r\nc=IN IP4 224.2.1.1/127\r\n\
         c=IN IP6 ff15::101/3\r\nc=IN IP6 ff15::101\r\n"
    ));
    let c: Vec<_> = sdp.media[0].connections.iter().map(|c| (c.ttl, c.num_addresses)).collect();
    assert_eq!(c, vec![(Some(127), Some(3)), (Some(127), None), (None, Some(3)), (None, None)]);
    assert_eq!(sdp.media[0].connections[2].ip(), ip("ff15::101"));
}

#[test]
fn hold_forms() {
    let held = |extra: &str| {
        let sdp = parse_ok(&format!("{HEAD}m=audio 4000 RTP/AVP 0\r\n{extra}"));
        (sdp.media[0].effective_direction(&sdp), sdp.media[0].is_held(&sdp))
    };
    assert_eq!(held("a=sendonly\r\n"), (Direction::SendOnly, true));
    assert_eq!(held("a=inactive\r\n"), (Direction::Inactive, true));
    assert_eq!(held("a=recvonly\r\n"), (Direction::RecvOnly, false));
    assert_eq!(held(""), (Direction::SendRecv, false));
    assert_eq!(held("c=IN IP4 0.0.0.0\r\n"), (Direction::SendRecv, true));
    let sdp = parse_ok(&format!("{HEAD}a=inactive\r\nm=audio 4000 RTP/AVP 0\r\n"));
    assert_eq!(sdp.media[0].effective_direction(&sdp), Direction::Inactive);
}

#[test]
fn rejected_stream() {
    let sdp = parse_ok(&format!("{HEAD}m=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 31\r\n"));
    assert!(!sdp.media[0].is_rejected());
    assert!(sdp.media[1].is_rejected());
    assert_eq!(sdp.media[1].formats, vec!["31"]);
}

#[test]
fn lenient_line_ends_and_port_count() {
    let lf = OFFER.replace("\r\n", "\n");
    assert_eq!(parse_ok(&lf), parse_ok(OFFER));
    assert_eq!(parse_ok(OFFER.trim_end()), parse_ok(OFFER));
    assert_eq!(parse_ok(&format!("{OFFER}\r\n\r\n\n")), parse_ok(OFFER));
    let sdp = parse_ok(&format!("{HEAD}m=video 49170/2 RTP/AVP 31 \r\n"));
    assert_eq!((sdp.media[0].port, sdp.media[0].num_ports), (49170, Some(2)));
    assert_eq!(sdp.media[0].formats, vec!["31"]);
}

#[test]
fn keeps_unknown_attributes_in_order() {
    let sdp = parse_ok(&format!(
        "{HEAD}a=group:BUNDLE 0\r\na=x-flag\r\nm=audio 1 RTP/AVP 0\r\n\
         a=mid:0\r\na=x-empty:\r\na=ice-ufrag:F7gI\r\na=x-colons:a:b:c\r\n"
    ));
    assert_eq!(sdp.attributes[0], Attribute::new("group", "BUNDLE 0"));
    assert_eq!(sdp.attributes[1], Attribute::property("x-flag"));
    let m = &sdp.media[0];
    let names: Vec<_> = m.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["mid", "x-empty", "ice-ufrag", "x-colons"]);
    assert_eq!(m.attribute("x-empty"), Some(&Attribute::new("x-empty", "")));
    assert_eq!(m.attribute("x-colons").and_then(|a| a.value.clone()), Some("a:b:c".into()));
}

#[test]
fn bad_inputs_give_kind_and_line() {
    use SdpErrorKind::*;
    let m = "m=audio 1 RTP/AVP 0\r\n";
    let cases: Vec<(String, SdpErrorKind, usize)> = vec![
        ("".into(), MissingVersion, 1),
        ("\r\n\r\n".into(), MissingVersion, 1),
        ("o=- 1 1 IN IP4 h\r\n".into(), MissingVersion, 1),
        ("v=1\r\n".into(), BadVersion, 1),
        ("v=0\r\n".into(), MissingOrigin, 2),
        ("v=0\r\ns=-\r\n".into(), MissingOrigin, 2),
        ("v=0\r\no=bad\r\n".into(), BadOrigin, 2),
        ("v=0\r\no=- 1 x IN IP4 h\r\n".into(), BadOrigin, 2),
        ("v=0\r\no=- 1 1 IN IP4 h\r\nt=0 0\r\n".into(), MissingSessionName, 3),
        ("v=0\r\no=- 1 1 IN IP4 h\r\n".into(), MissingSessionName, 3),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n".into(), MissingTiming, 4),
        (format!("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\n{m}"), MissingTiming, 5),
        (format!("{HEAD}c=IN IP4\r\n"), BadConnection, 5),
        (format!("{HEAD}c=IN IP4 224.2.1.1/300\r\n"), BadConnection, 5),
        (format!("{HEAD}{m}c=IN IP6 ff15::1/3/2\r\n"), BadConnection, 6),
        (format!("{HEAD}c=IN IP4 192.0.2.1/\r\n"), BadConnection, 5),
        (format!("{HEAD}b=AS\r\n"), BadBandwidth, 5),
        (format!("{HEAD}{m}b=AS:x\r\n"), BadBandwidth, 6),
        (format!("{HEAD}t=0\r\n"), BadTiming, 5),
        (format!("{HEAD}m=audio RTP/AVP 0\r\n"), BadMedia, 5),
        (format!("{HEAD}m=audio 70000 RTP/AVP 0\r\n"), BadMedia, 5),
        (format!("{HEAD}m=audio 5000\r\n"), BadMedia, 5),
        (format!("{HEAD}a=\r\n"), BadAttribute, 5),
        (format!("{HEAD}{m}a=:x\r\n"), BadAttribute, 6),
        (format!("{HEAD}{m}a=rtpmap:0 PCMU\r\n"), BadAttributeValue, 6),
        (format!("{HEAD}{m}a=rtpmap:200 X/8000\r\n"), BadAttributeValue, 6),
        (format!("{HEAD}{m}a=fmtp:x 0-16\r\n"), BadAttributeValue, 6),
        (format!("{HEAD}{m}a=ptime:abc\r\n"), BadAttributeValue, 6),
        (format!("{HEAD}{m}a=maxptime\r\n"), BadAttributeValue, 6),
        (format!("{HEAD}{m}a=rtcp:99999\r\n"), BadAttributeValue, 6),
        (format!("{HEAD}x=1\r\n"), UnknownType('x'), 5),
        ("V=0\r\n".into(), UnknownType('V'), 1),
        ("garbage".into(), Malformed, 1),
        (format!("{HEAD}a\r\n"), Malformed, 5),
        (format!("{HEAD}\r\n{m}"), Malformed, 5),
        (format!("{HEAD}a=foo\rbar\r\n"), Malformed, 5),
        (format!("{HEAD}a=nul\0\r\n"), Malformed, 5),
        (format!("{HEAD} a=x\r\n"), Malformed, 5),
        (format!("{HEAD}{m}t=0 0\r\n"), OutOfOrder('t'), 6),
        (format!("{HEAD}{m}s=again\r\n"), OutOfOrder('s'), 6),
        (format!("{HEAD}{m}v=0\r\n"), OutOfOrder('v'), 6),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nr=7d 1h 0 25h\r\nt=0 0\r\n".into(), OutOfOrder('r'), 4),
        (format!("{HEAD}c=IN IP4 h\r\nc=IN IP4 h\r\n"), Duplicate('c'), 6),
        (format!("{HEAD}s=again\r\n"), Duplicate('s'), 5),
        (format!("{HEAD}v=0\r\n"), Duplicate('v'), 5),
        (format!("{HEAD}{m}i=a\r\ni=b\r\n"), Duplicate('i'), 7),
    ];
    for (input, kind, line) in cases {
        assert_eq!(parse_err(&input), (kind, line), "input:\n{input}");
    }
}

#[test]
fn not_utf8_reports_line() {
    let mut body = HEAD.as_bytes().to_vec();
    body.extend_from_slice(b"s=\xff\xfe\r\n");
    let e = SessionDescription::parse(&Bytes::from(body));
    assert_eq!(e, Err(SdpError::new(SdpErrorKind::NotUtf8, 5)));
    let e = SessionDescription::parse(&Bytes::from_static(b"v=0\r\no=\xc3"));
    assert_eq!(e.map_err(|e| e.to_string()), Err("SDP line 2: not valid UTF-8".into()));
}

#[test]
fn non_rtp_media_attributes_are_not_checked() {
    let sdp = parse_ok(&format!("{HEAD}m=image 4000 udptl t38\r\na=fmtp:t38 x\r\n"));
    assert_eq!(sdp.media[0].fmtps().count(), 0);
    assert_eq!(sdp.media[0].attribute("fmtp").and_then(|a| a.value.clone()), Some("t38 x".into()));
}
