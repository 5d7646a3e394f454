//! Round trips: the everyday fixtures in fixtures/sip/ survive parse -> rebuild -> parse byte for byte,
//! every typed header value survives `parse(to_string())` and a trip through a whole message, and
//! `Message::response_to` copies what RFC 3261 §8.2.6.2 says.

mod common;

use bytes::Bytes;
use std::fmt::Display;
use std::path::PathBuf;
use switchboard::message::{
    AuthHeader, CSeq, DeltaWithParams, ErrorKind, HeaderName, MediaType, Message, MessageBuilder, Method, NameAddr, Reason, Refresher,
    TokenList, Uri, Via,
};

// ===== (a) fixtures =====

/// fixtures/sip/*.sip (not the invalid/ subfolder), sorted.
fn sip_fixtures() -> Vec<PathBuf> {
    let dir = common::root().join("fixtures/sip");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "sip"))
        .collect();
    v.sort();
    v
}

fn load(name: &str) -> Message {
    let path = common::root().join("fixtures/sip").join(name);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Message::parse(Bytes::from(raw)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn utf8(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("UTF-8")
}

/// Rebuilds `m` with the builder: same start line, every header pushed raw in order (Content-Length is
/// written by the builder; Content-Type goes through `body` when there is a body), same body.
fn rebuild(m: &Message) -> Message {
    let mut b = match m.method() {
        Some(method) => Message::request(method.clone(), m.request_uri_str().expect("request URI")),
        None => Message::response(m.status().expect("status"), utf8(m.reason().expect("reason"))),
    };
    let mut content_type = None;
    for h in m.headers() {
        match h.name {
            HeaderName::ContentLength => {}
            HeaderName::ContentType if !m.body().is_empty() => content_type = Some(utf8(h.value)),
            _ => b.push_raw(h.name, utf8(h.raw_name), h.value),
        }
    }
    match content_type {
        Some(ct) => b.body(ct, m.body()),
        None => {
            assert!(m.body().is_empty(), "a body needs a Content-Type");
            b.finish()
        }
    }
}

#[test]
fn fixtures_parse_validate_and_rebuild_byte_for_byte() {
    let files = sip_fixtures();
    assert!(files.len() >= 12, "expected the 12 everyday fixtures, found {}", files.len());
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let raw = Bytes::from(std::fs::read(path).unwrap());
        let original = Message::parse(raw.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        original.validate().unwrap_or_else(|e| panic!("{name}: validate: {e}"));
        if original.is_request() {
            original.check_required().unwrap_or_else(|e| panic!("{name}: check_required: {e}"));
        }
        assert_eq!(original.as_bytes(), &raw, "{name}: nothing after the body");
        assert_eq!(original.content_length(), Some(original.body().len() as u32), "{name}: Content-Length = body");
        assert_eq!(Message::parse(original.as_bytes().clone()).as_ref(), Ok(&original), "{name}: reparse");

        let built = rebuild(&original);
        assert_eq!(Message::parse(built.as_bytes().clone()).as_ref(), Ok(&built), "{name}: built reparse");
        built.validate().unwrap_or_else(|e| panic!("{name}: built validate: {e}"));
        // Every header kept: same name, spelling and value, in order; the body too.
        let a: Vec<_> = original.headers().collect();
        let b: Vec<_> = built.headers().collect();
        assert_eq!(a.len(), b.len(), "{name}: header count");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.name, x.raw_name, x.value), (y.name, y.raw_name, y.value), "{name}");
        }
        assert_eq!(built.body(), original.body(), "{name}: body");
        assert_eq!(built.reason(), original.reason(), "{name}: reason");
        assert_eq!(built.request_uri_str(), original.request_uri_str(), "{name}: request URI");
        assert_eq!(built, original, "{name}");
        // The fixtures are written the way the builder writes, so even the bytes agree.
        assert_eq!(utf8(built.as_bytes()), utf8(original.as_bytes()), "{name}: bytes");
    }
}

#[test]
fn fixtures_invalid_fail_parse_or_validate() {
    let dir = common::root().join("fixtures/sip/invalid");
    let files = common::files_with_ext(&dir, "sip");
    assert!(files.len() >= 3, "expected malformed fixtures in {}", dir.display());
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let raw = Bytes::from(std::fs::read(path).unwrap());
        let outcome = Message::parse(raw).and_then(|m| m.validate());
        assert!(outcome.is_err(), "{name} should fail parse or validate");
    }
    let err = |name: &str| {
        let raw = Bytes::from(std::fs::read(dir.join(name)).unwrap());
        Message::parse(raw).and_then(|m| m.validate()).expect_err(name)
    };
    assert_eq!((err("bad-via.sip").kind(), err("bad-via.sip").header()), (ErrorKind::HeaderValue, Some(HeaderName::Via)));
    assert_eq!((err("bad-cseq.sip").kind(), err("bad-cseq.sip").header()), (ErrorKind::HeaderValue, Some(HeaderName::CSeq)));
    assert_eq!(err("short-body.sip").kind(), ErrorKind::BodyTooShort);
    assert_eq!(err("unclosed-quote.sip").header(), Some(HeaderName::From));
    assert_eq!(err("bad-content-length.sip").kind(), ErrorKind::ContentLength);
    assert_eq!(err("no-version.sip").kind(), ErrorKind::StartLine);
}

#[test]
fn fixtures_dialog_is_consistent() {
    let invite = load("invite.sip");
    let ringing = load("ringing-180.sip");
    let ok = load("ok-200-invite.sip");
    let ack = load("ack.sip");
    let bye = load("bye.sip");
    let ok_bye = load("ok-200-bye.sip");
    let cancel = load("cancel.sip");
    let terminated = load("terminated-487.sip");
    let all = [&invite, &ringing, &ok, &ack, &bye, &ok_bye, &cancel, &terminated];

    let call_id = invite.call_id().unwrap();
    let from_tag = invite.from().unwrap().tag().unwrap();
    assert!(invite.to().unwrap().tag().is_none());
    assert!(cancel.to().unwrap().tag().is_none());
    let to_tag = ok.to().unwrap().tag().unwrap();
    for m in all {
        assert_eq!(m.call_id().unwrap(), call_id);
        assert_eq!(m.from().unwrap().tag(), Some(from_tag));
        assert_eq!(m.from().unwrap().uri, invite.from().unwrap().uri);
        assert_eq!(m.to().unwrap().uri, invite.to().unwrap().uri);
    }
    for m in [&ringing, &ok, &ack, &bye, &ok_bye, &terminated] {
        assert_eq!(m.to().unwrap().tag(), Some(to_tag));
    }

    // Responses to the INVITE and the CANCEL share the INVITE's branch and CSeq.
    let inv_via = invite.via().unwrap();
    let inv_cseq = invite.cseq().unwrap();
    for m in [&ringing, &ok, &terminated] {
        assert_eq!(m.via().unwrap().branch(), inv_via.branch());
        assert_eq!(m.via().unwrap().received(), Some(inv_via.host.as_str()));
        assert_eq!(m.via().unwrap().rport(), Some(Some(5060)));
        assert_eq!(m.cseq().unwrap(), inv_cseq);
    }
    assert_eq!(cancel.via().unwrap().branch(), inv_via.branch());
    assert_eq!(cancel.request_uri(), invite.request_uri());
    assert_eq!(cancel.cseq().unwrap(), CSeq { seq: inv_cseq.seq, method: Method::Cancel });
    assert_eq!(terminated.status(), Some(487));

    // ACK for a 2xx and BYE: new branches, in-dialog requests to the remote target over the route set.
    assert_eq!(ack.cseq().unwrap(), CSeq { seq: inv_cseq.seq, method: Method::Ack });
    assert!(bye.cseq().unwrap().seq > inv_cseq.seq);
    assert_eq!(ok_bye.cseq().unwrap(), bye.cseq().unwrap());
    assert_eq!(ok_bye.via().unwrap().branch(), bye.via().unwrap().branch());
    let target = ok.contacts().next().unwrap().unwrap().uri;
    let route_set: Vec<_> = ok.record_routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(ringing.record_routes().map(|r| r.unwrap().uri).collect::<Vec<_>>(), route_set);
    for m in [&ack, &bye] {
        assert_eq!(m.request_uri(), Some(target));
        assert_eq!(m.routes().map(|r| r.unwrap().uri).collect::<Vec<_>>(), route_set);
        assert_ne!(m.via().unwrap().branch(), inv_via.branch());
        assert!(m.via().unwrap().has_rfc3261_branch());
    }

    // The SDP offer and answer.
    for m in [&invite, &ok] {
        assert!(m.content_type().unwrap().unwrap().is("application", "sdp"));
        let body = utf8(m.body());
        assert!(body.starts_with("v=0\r\n") && body.ends_with("\r\n"));
        assert!(body.contains("PCMU/8000") && body.contains("telephone-event/8000"));
    }
    assert!(utf8(invite.body()).contains("PCMA/8000"));
    assert!((850..=950).contains(&invite.as_bytes().len()), "invite.sip is {} bytes", invite.as_bytes().len());
    assert_eq!(invite.max_forwards().unwrap(), Some(70));
    assert_eq!(invite.via().unwrap().rport(), Some(None));
    assert_eq!(invite.session_expires().unwrap().unwrap().refresher(), Some(Refresher::Uac));
    assert_eq!(invite.min_se().unwrap().unwrap().seconds, 90);
    assert!(invite.tokens(HeaderName::Allow).any(|t| t == Ok("INVITE")));
    assert!(invite.text(HeaderName::UserAgent).unwrap().is_some());
    assert_eq!(bye.reasons().next().unwrap().unwrap().cause(), Some(16));
}

#[test]
fn fixtures_registration_with_digest() {
    let reg = load("register.sip");
    let challenge = load("unauthorized-401.sip");
    let reg2 = load("register-auth.sip");
    assert_eq!(reg.auth_headers(HeaderName::Authorization).count(), 0);
    assert_eq!(reg.expires().unwrap(), Some(3600));
    assert_eq!(reg.contacts().next().unwrap().unwrap().expires(), Some(3600));
    assert_eq!(challenge.call_id().unwrap(), reg.call_id().unwrap());
    assert_eq!(challenge.cseq().unwrap(), reg.cseq().unwrap());
    assert_eq!(challenge.via().unwrap().branch(), reg.via().unwrap().branch());
    assert_eq!(reg2.call_id().unwrap(), reg.call_id().unwrap());
    assert_eq!(reg2.cseq().unwrap().seq, reg.cseq().unwrap().seq + 1);

    let ch: Vec<AuthHeader> = challenge.auth_headers(HeaderName::WwwAuthenticate).map(Result::unwrap).collect();
    assert_eq!(ch.len(), 2);
    for (c, alg) in ch.iter().zip(["SHA-256", "MD5"]) {
        assert!(c.is_digest());
        assert_eq!(c.get("realm").as_deref(), Some("biloxi.example.com"));
        assert_eq!(c.get("qop").as_deref(), Some("auth"));
        assert_eq!(c.raw("qop"), Some("\"auth\""));
        assert!(c.get("nonce").is_some_and(|n| n.len() == 32));
        assert_eq!(c.get("algorithm").as_deref(), Some(alg));
    }
    let cred: Vec<AuthHeader> = reg2.auth_headers(HeaderName::Authorization).map(Result::unwrap).collect();
    assert_eq!(cred.len(), 1);
    let a = &cred[0];
    assert!(a.is_digest());
    assert_eq!(a.get("username").as_deref(), Some("bob"));
    assert_eq!(a.get("nonce"), ch[1].get("nonce"));
    assert_eq!(a.get("opaque"), ch[1].get("opaque"));
    assert_eq!(a.get("uri").as_deref(), reg2.request_uri_str());
    assert_eq!(a.raw("qop"), Some("auth"));
    assert_eq!(a.raw("nc"), Some("00000001"));
    assert_eq!(a.get("cnonce").as_deref(), Some("0a4f113b"));
    assert_eq!(a.get("algorithm").as_deref(), Some("MD5"));
    assert!(a.get("response").is_some_and(|r| r.len() == 32 && r.bytes().all(|b| b.is_ascii_hexdigit())));
}

// ===== (b) typed headers =====

const VIAS: &[&str] = &[
    "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "SIP/2.0/TCP 192.0.2.4:5061;branch=z9hG4bKnashds8;received=192.0.2.3;rport=5060",
    "SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111;received=[2001:db8::9:255];rport",
    "SIP/2.0/TLS h.example.com;maddr=224.2.0.1;ttl=16;branch=z9hG4bK-x.y",
    "SIP/2.0/SCTP host;branch=z9hG4bKa;x-ext=\"quoted;value, with comma\"",
    "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks",
];

/// name-addr forms, usable in Route/Record-Route too.
const NAME_ADDRS: &[&str] = &[
    "\"Bob \\\"B\\\"\" <sip:bob@biloxi.example.com>;tag=a6c85cf",
    "Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "<sip:carol@chicago.example.com>",
    "<sips:bob@192.0.2.4:5061;transport=tls>;expires=3600;q=0.7",
    "<sip:ss1.atlanta.example.com;lr>",
    "\"Ünïcode, Näme\" <sip:u@[2001:db8::1]:5060>",
    "<tel:+1-201-555-0123;phone-context=example.com>",
    "<sip:bob@biloxi.example.com?Subject=hi&Priority=urgent>",
    "Anonymous <sip:anonymous@anonymous.invalid>;tag=hyh8",
    "The Operator <sip:operator@cs.columbia.edu>;tag=287447",
];

/// addr-spec forms (no angle brackets), for From/To/Contact only.
const ADDR_SPECS: &[&str] = &["sip:carol@chicago.example.com;tag=x", "sip:user@192.0.2.1:5060", "tel:+15551234"];

const CSEQS: &[&str] = &["1 INVITE", "4294967295 OPTIONS", "0 ACK", "101 FOO-bar.ext", "2 BYE"];
const MEDIA_TYPES: &[&str] =
    &["application/sdp", "multipart/mixed;boundary=unique-boundary-1", "text/plain;charset=UTF-8", "application/pidf+xml"];
const TOKEN_LISTS: &[&str] = &["INVITE, ACK, BYE", "timer", "100rel, replaces, timer, path", ""];
const DELTAS: &[&str] = &["1800;refresher=uac", "90", "3600;refresher=uas;x=y"];
const REASONS: &[&str] = &["SIP;cause=200;text=\"Call completed elsewhere\"", "Q.850;cause=16;text=\"Terminated\"", "preemption;cause=1"];
const AUTHS: &[&str] = &[
    "Digest username=\"bob\", realm=\"biloxi.example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:biloxi.example.com\", response=\"245f23415f11432b3434341c022\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001",
    "Digest realm=\"atlanta.example.com\", qop=\"auth,auth-int\", nonce=\"84a4cc6f3082121f32b42a2187831a9e\", algorithm=SHA-256, stale=FALSE",
    "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
    "NoOneKnowsThisScheme opaque-data=here",
];
const URIS: &[&str] = &[
    "sip:alice@atlanta.example.com",
    "sip:alice:secret@[2001:db8::10]:5070;transport=udp;lr",
    "sips:bob@192.0.2.4:5061",
    "sip:sips%3Auser%40example.com@example.net",
    "sip:user;par=u%40example.net@example.com",
    "sip:registrar.biloxi.example.com",
    "sip:bob@biloxi.example.com?Subject=hi",
    "tel:+1-201-555-0123",
    "tel:7042;phone-context=example.com",
    "soap.beep://192.0.2.103:3002",
    "urn:service:sos",
];

/// An OPTIONS (or `method`) request with the usual headers, where `name: value` replaces the usual
/// header of that name (or is added before Content-Length).
fn carrier(method: Method, name: HeaderName, value: &dyn Display) -> Message {
    let cseq = CSeq { seq: 7, method: method.clone() };
    let usual: [(HeaderName, &dyn Display); 6] = [
        (HeaderName::Via, &"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKcarrier"),
        (HeaderName::MaxForwards, &70),
        (HeaderName::From, &"<sip:a@example.com>;tag=f1"),
        (HeaderName::To, &"<sip:b@example.com>"),
        (HeaderName::CallId, &"carrier-1@example.com"),
        (HeaderName::CSeq, &cseq),
    ];
    let mut b: MessageBuilder = Message::request(method, "sip:b@example.com");
    let mut placed = false;
    for (n, v) in usual {
        if n == name {
            b.push(name, value);
            placed = true;
        } else {
            b.push(n, v);
        }
    }
    if !placed {
        b.push(name, value);
    }
    let built = b.finish();
    let parsed = Message::parse(built.as_bytes().clone()).unwrap_or_else(|e| panic!("{name:?}: {value}: {e}"));
    assert_eq!(parsed, built);
    parsed.validate().unwrap_or_else(|e| panic!("{name:?}: {value}: {e}"));
    parsed.check_required().unwrap();
    parsed
}

fn options(name: HeaderName, value: &dyn Display) -> Message {
    carrier(Method::Options, name, value)
}

#[test]
fn via_round_trip() {
    for s in VIAS {
        let v = Via::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(v.to_string(), *s);
        assert_eq!(Via::parse(&v.to_string()), Ok(v));
        let m = options(HeaderName::Via, &v);
        assert_eq!(m.via(), Ok(v));
        assert_eq!(m.vias().map(Result::unwrap).collect::<Vec<_>>(), [v]);
    }
    // All of them in one message: one line with a list, then one line each.
    let mut b = Message::response(200, "OK");
    b.push(HeaderName::Via, VIAS[..3].join(", "));
    for s in &VIAS[3..] {
        b.push(HeaderName::Via, s);
    }
    let built = b.finish();
    let m = Message::parse(built.as_bytes().clone()).unwrap();
    assert_eq!(m, built);
    let got: Vec<String> = m.vias().map(|v| v.unwrap().to_string()).collect();
    assert_eq!(got, VIAS);
    assert_eq!(m.via().unwrap().to_string(), VIAS[0]);
}

#[test]
fn name_addr_round_trip() {
    for s in NAME_ADDRS.iter().chain(ADDR_SPECS) {
        let a = NameAddr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(a.to_string(), *s);
        assert_eq!(NameAddr::parse(&a.to_string()), Ok(a));
        assert_eq!(options(HeaderName::From, &a).from(), Ok(a), "From: {s}");
        assert_eq!(options(HeaderName::To, &a).to(), Ok(a), "To: {s}");
        assert_eq!(options(HeaderName::Contact, &a).contacts().collect::<Vec<_>>(), [Ok(a)], "Contact: {s}");
    }
    assert_eq!(NameAddr::parse(NAME_ADDRS[0]).unwrap().display_name().as_deref(), Some("Bob \"B\""));
    assert_eq!(NameAddr::parse(NAME_ADDRS[5]).unwrap().display_name().as_deref(), Some("Ünïcode, Näme"));
    for s in NAME_ADDRS {
        let a = NameAddr::parse_name_addr(s).unwrap();
        assert_eq!(NameAddr::parse_name_addr(&a.to_string()), Ok(a));
        assert_eq!(options(HeaderName::Route, &a).routes().collect::<Vec<_>>(), [Ok(a)], "Route: {s}");
        assert_eq!(options(HeaderName::RecordRoute, &a).record_routes().collect::<Vec<_>>(), [Ok(a)], "Record-Route: {s}");
    }
    for s in ADDR_SPECS {
        assert!(NameAddr::parse_name_addr(s).is_err(), "{s}: Route needs <>");
    }
    // Lists: every form in one Contact line and in one Record-Route line.
    let all: Vec<&str> = NAME_ADDRS.iter().chain(ADDR_SPECS).copied().collect();
    let m = options(HeaderName::Contact, &all.join(", "));
    assert_eq!(m.contacts().map(|c| c.unwrap().to_string()).collect::<Vec<_>>(), all);
    let m = options(HeaderName::RecordRoute, &NAME_ADDRS.join(","));
    assert_eq!(m.record_routes().map(|c| c.unwrap().to_string()).collect::<Vec<_>>(), NAME_ADDRS);
}

#[test]
fn cseq_round_trip() {
    for s in CSEQS {
        let c = CSeq::parse(s).unwrap();
        assert_eq!(c.to_string(), *s);
        assert_eq!(CSeq::parse(&c.to_string()), Ok(c.clone()));
        assert_eq!(carrier(c.method.clone(), HeaderName::CSeq, &c).cseq(), Ok(c));
    }
}

#[test]
fn media_type_round_trip() {
    for s in MEDIA_TYPES {
        let t = MediaType::parse(s).unwrap();
        assert_eq!(t.to_string(), *s);
        assert_eq!(MediaType::parse(&t.to_string()), Ok(t));
        assert_eq!(options(HeaderName::ContentType, &t).content_type(), Ok(Some(t)));
        // And the way a body is normally added.
        let built = Message::request(Method::Message, "sip:b@example.com").body(s, b"\x00hello\xff");
        let m = Message::parse(built.as_bytes().clone()).unwrap();
        assert_eq!(m, built);
        assert_eq!(m.content_type(), Ok(Some(t)));
        assert_eq!(m.body(), b"\x00hello\xff");
    }
}

#[test]
fn token_list_round_trip() {
    for s in TOKEN_LISTS {
        let t = TokenList::parse(s).unwrap();
        assert_eq!(t.to_string(), *s);
        assert_eq!(TokenList::parse(&t.to_string()), Ok(t));
        let want: Vec<&str> = t.iter().collect();
        for name in [HeaderName::Allow, HeaderName::Supported, HeaderName::Require, HeaderName::ProxyRequire, HeaderName::Unsupported] {
            let m = options(name, &t);
            assert_eq!(m.tokens(name).map(Result::unwrap).collect::<Vec<_>>(), want, "{name:?}: {s}");
        }
    }
}

#[test]
fn delta_with_params_round_trip() {
    for s in DELTAS {
        let d = DeltaWithParams::parse(s).unwrap();
        assert_eq!(d.to_string(), *s);
        assert_eq!(DeltaWithParams::parse(&d.to_string()), Ok(d));
        assert_eq!(options(HeaderName::SessionExpires, &d).session_expires(), Ok(Some(d)));
        assert_eq!(options(HeaderName::MinSe, &d).min_se(), Ok(Some(d)));
    }
}

#[test]
fn reason_round_trip() {
    for s in REASONS {
        let r = Reason::parse(s).unwrap();
        assert_eq!(r.to_string(), *s);
        assert_eq!(Reason::parse(&r.to_string()), Ok(r));
        assert_eq!(options(HeaderName::Reason, &r).reasons().collect::<Vec<_>>(), [Ok(r)]);
    }
    let m = options(HeaderName::Reason, &REASONS.join(", "));
    assert_eq!(m.reasons().map(|r| r.unwrap().to_string()).collect::<Vec<_>>(), REASONS);
}

#[test]
fn auth_header_round_trip() {
    for s in AUTHS {
        let a = AuthHeader::parse(s).unwrap();
        assert_eq!(a.to_string(), *s);
        assert_eq!(AuthHeader::parse(&a.to_string()), Ok(a));
        for name in [HeaderName::Authorization, HeaderName::ProxyAuthorization, HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate]
        {
            let m = options(name, &a);
            assert_eq!(m.auth_headers(name).collect::<Vec<_>>(), [Ok(a)], "{name:?}: {s}");
        }
    }
}

#[test]
fn uri_round_trip() {
    for s in URIS {
        let u = Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(u.to_string(), *s);
        assert_eq!(Uri::parse(&u.to_string()), Ok(u));
        let in_to = options(HeaderName::To, &format!("<{u}>"));
        assert_eq!(in_to.to().unwrap().uri, u, "{s}");
        let has_headers = u.as_sip().is_some_and(|x| x.headers.is_some());
        let built = Message::request(Method::Options, u)
            .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKuri")
            .header(HeaderName::CSeq, "1 OPTIONS")
            .finish();
        match Message::parse(built.as_bytes().clone()) {
            Ok(m) => {
                assert!(!has_headers, "{s}: a Request-URI may not carry ?headers");
                assert_eq!(m, built);
                assert_eq!(m.request_uri(), Some(u));
                assert_eq!(m.request_uri_str(), Some(*s));
            }
            Err(e) => assert!(has_headers, "{s}: {e}"),
        }
    }
    let schemes: Vec<&str> = URIS.iter().map(|s| Uri::parse(s).unwrap().scheme()).collect();
    for want in ["sip", "sips", "tel", "soap.beep", "urn"] {
        assert!(schemes.contains(&want), "{want}");
    }
    let esc = Uri::parse(URIS[3]).unwrap();
    assert_eq!(esc.as_sip().unwrap().user_decoded().as_deref(), Some(&b"sips:user@example.com"[..]));
}

// ===== (c) response_to =====

fn request_for_response(to: &str) -> Message {
    let wire = format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP ss1.example.com;branch=z9hG4bK2d4790.1, SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKv6\r\n\
         Max-Forwards: 69\r\n\
         v: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bf9;received=192.0.2.101;rport=5060\r\n\
         f: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
         To: {to}\r\n\
         Call-ID: 3848276298220188511@atlanta.example.com\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@192.0.2.101>\r\n\
         Record-Route: <sip:ss1.example.com;lr>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let m = Message::parse(Bytes::from(wire)).unwrap();
    m.validate().unwrap();
    m
}

#[test]
fn response_to_copies_per_rfc3261_8_2_6_2() {
    let req = request_for_response("\"Bob\" <sip:bob@biloxi.example.com>");
    let built = req.response_to(180, "Ringing", Some("8321234356")).finish();
    let resp = Message::parse(built.as_bytes().clone()).unwrap();
    assert_eq!(resp, built);
    resp.validate().unwrap();
    assert_eq!(resp.status(), Some(180));
    assert_eq!(resp.reason(), Some(&b"Ringing"[..]));
    // Every Via, in order, values as written.
    assert_eq!(resp.header_values(HeaderName::Via).collect::<Vec<_>>(), req.header_values(HeaderName::Via).collect::<Vec<_>>());
    let req_vias: Vec<_> = req.vias().map(Result::unwrap).collect();
    assert_eq!(req_vias.len(), 3);
    assert_eq!(resp.vias().map(Result::unwrap).collect::<Vec<_>>(), req_vias);
    assert_eq!(resp.from(), req.from());
    assert_eq!(resp.call_id(), req.call_id());
    assert_eq!(resp.cseq(), req.cseq());
    // To gets the tag, otherwise unchanged.
    let (rt, qt) = (resp.to().unwrap(), req.to().unwrap());
    assert_eq!((rt.display, rt.uri), (qt.display, qt.uri));
    assert_eq!(rt.tag(), Some("8321234356"));
    assert_eq!(resp.header(HeaderName::To), Some(&b"\"Bob\" <sip:bob@biloxi.example.com>;tag=8321234356"[..]));
    // Nothing else is copied.
    for h in [HeaderName::MaxForwards, HeaderName::Contact, HeaderName::RecordRoute] {
        assert_eq!(resp.header(h), None, "{h:?}");
    }
    let order: Vec<HeaderName> = resp.headers().map(|h| h.name).collect();
    let want = [
        HeaderName::Via,
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::ContentLength,
    ];
    assert_eq!(order, want);

    // 100 Trying: no tag given, none added.
    let trying = req.response_to(100, "Trying", None).finish();
    assert_eq!(trying.to().unwrap().tag(), None);
    assert_eq!(trying.to(), req.to());

    // A To that already has a tag keeps it.
    let req = request_for_response("<sip:bob@biloxi.example.com>;tag=existing");
    let resp = req.response_to(200, "OK", Some("other")).finish();
    assert_eq!(resp.to().unwrap().tag(), Some("existing"));
    assert_eq!(resp.header(HeaderName::To), req.header(HeaderName::To));
    assert_eq!(Message::parse(resp.as_bytes().clone()).as_ref(), Ok(&resp));
}
