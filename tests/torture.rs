//! RFC 4475 and RFC 5118 torture messages, checked against fixtures/torture/MANIFEST.tsv.
//!
//! Every file listed in the manifest is handled; none is skipped. Valid messages must parse,
//! validate and expose the key fields the RFC gives. Invalid ones must give the parse error the RFC
//! implies (kind and header). Semantically odd ones must parse and expose the oddity so the layers
//! above can answer (400, 416, 420, 483, ...).

mod common;

use bytes::Bytes;
use switchboard::message::{ErrorKind, HeaderName, Host, Message, Method, ParseError, Uri};

fn load(file: &str) -> Bytes {
    Bytes::from(common::wire_fixture(file))
}

fn parse(file: &str) -> Message {
    Message::parse(load(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// (file, method or "" for a response, Request-URI, Call-ID, CSeq, top Via branch, Content-Length,
/// body length).
type Key = (&'static str, &'static str, &'static str, Option<&'static str>, &'static str, Option<&'static str>, Option<u32>, usize);

const KEYS: &[Key] = &[
    ("rfc4475/wsinv.dat", "INVITE", "sip:vivekg@chair-dnrc.example.com;unknownparam", Some("wsinv.ndaksdj@192.0.2.1"), "9 INVITE", Some("390skdjuw"), Some(150), 150),
    (
        "rfc4475/intmeth.dat",
        "!interesting-Method0123456789_*+`.%indeed'~",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        Some("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"),
        "139122385 !interesting-Method0123456789_*+`.%indeed'~",
        Some("z9hG4bK-.!%66*_+`'~"),
        Some(0),
        0,
    ),
    ("rfc4475/esc01.dat", "INVITE", "sip:sips%3Auser%40example.com@example.net", Some("esc01.239409asdfakjkn23onasd0-3234"), "234234 INVITE", Some("z9hG4bKkdjuw"), Some(150), 150),
    ("rfc4475/escnull.dat", "REGISTER", "sip:example.com", Some("escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd"), "14398234 REGISTER", Some("z9hG4bKkdjuw"), Some(0), 0),
    ("rfc4475/esc02.dat", "RE%47IST%45R", "sip:registrar.example.com", Some("esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf"), "29344 RE%47IST%45R", Some("z9hG4bK209%fzsnel234"), Some(0), 0),
    ("rfc4475/lwsdisp.dat", "OPTIONS", "sip:user@example.com", Some("lwsdisp.1234abcd@funky.example.com"), "60 OPTIONS", Some("z9hG4bKkdjuw"), Some(0), 0),
    (
        "rfc4475/longreq.dat",
        "INVITE",
        "sip:user@example.com",
        Some("longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid"),
        "3882340 INVITE",
        None,
        Some(150),
        150,
    ),
    ("rfc4475/dblreq.dat", "REGISTER", "sip:example.com", Some("dblreq.0ha0isndaksdj99sdfafnl3lk233412"), "8 REGISTER", Some("z9hG4bKkdjuw23492"), Some(0), 0),
    ("rfc4475/semiuri.dat", "OPTIONS", "sip:user;par=u%40example.net@example.com", Some("semiuri.0ha0isndaksdj"), "8 OPTIONS", Some("z9hG4bKkdjuw"), Some(0), 0),
    ("rfc4475/transports.dat", "OPTIONS", "sip:user@example.com", Some("transports.kijh4akdnaqjkwendsasfdj"), "60 OPTIONS", Some("z9hG4bKkdjuw"), Some(0), 0),
    ("rfc4475/mpart01.dat", "MESSAGE", "sip:kumiko@example.org", Some("3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA.."), "1 MESSAGE", Some("z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"), Some(553), 553),
    ("rfc4475/unreason.dat", "", "", Some("unreason.1234ksdfak3j2erwedfsASdf"), "35 INVITE", Some("z9hG4bK1324923"), Some(154), 154),
    ("rfc4475/noreason.dat", "", "", Some("noreason.asndj203insdf99223ndf"), "35 INVITE", Some("z9hG4bK2398ndaoe"), Some(0), 0),
    ("rfc4475/badbranch.dat", "OPTIONS", "sip:user@example.com", Some("badbranch.sadonfo23i420jv0as0derf3j3n"), "8 OPTIONS", Some("z9hG4bK"), Some(0), 0),
    ("rfc4475/insuf.dat", "INVITE", "sip:user@example.com", None, "193942 INVITE", Some("z9hG4bKkdj.insuf"), Some(152), 152),
    ("rfc4475/unkscm.dat", "OPTIONS", "nobodyKnowsThisScheme:totallyopaquecontent", Some("unkscm.nasdfasser0q239nwsdfasdkl34"), "3923423 OPTIONS", Some("z9hG4bKkdjuw39234"), Some(0), 0),
    ("rfc4475/novelsc.dat", "OPTIONS", "soap.beep://192.0.2.103:3002", Some("novelsc.asdfasser0q239nwsdfasdkl34"), "3923423 OPTIONS", Some("z9hG4bKkdjuw39234"), Some(0), 0),
    ("rfc4475/unksm2.dat", "REGISTER", "sip:example.com", Some("unksm2.daksdj@hyphenated-host.example.com"), "234902 REGISTER", Some("z9hG4bKkdjuw"), Some(0), 0),
    ("rfc4475/bext01.dat", "OPTIONS", "sip:user@example.com", Some("bext01.0ha0isndaksdj"), "8 OPTIONS", Some("z9hG4bKkdjuw"), Some(0), 0),
    ("rfc4475/invut.dat", "INVITE", "sip:user@example.com", Some("invut.0ha0isndaksdjadsfij34n23d"), "235448 INVITE", Some("z9hG4bKkdjuw"), Some(40), 40),
    ("rfc4475/regaut01.dat", "REGISTER", "sip:example.com", Some("regaut01.0ha0isndaksdj"), "9338 REGISTER", Some("z9hG4bKkdjuw"), Some(0), 0),
    ("rfc4475/multi01.dat", "INVITE", "sip:user@company.com", None, "", Some("z9hG4bKkdjuw"), Some(154), 154),
    ("rfc4475/bcast.dat", "", "", Some("bcast.0384840201234ksdfak3j2erwedfsASdf"), "35 INVITE", Some("z9hG4bK1324923"), Some(154), 154),
    ("rfc4475/zeromf.dat", "OPTIONS", "sip:user@example.com", Some("zeromf.jfasdlfnm2o2l43r5u0asdfas"), "39234321 OPTIONS", Some("z9hG4bKkdjuw2349i"), Some(0), 0),
    ("rfc4475/cparam01.dat", "REGISTER", "sip:example.com", Some("cparam01.70710@saturn.example.com"), "2 REGISTER", Some("z9hG4bKkdjuw"), Some(0), 0),
    ("rfc4475/cparam02.dat", "REGISTER", "sip:example.com", Some("cparam02.70710@saturn.example.com"), "3 REGISTER", Some("z9hG4bKkdjuw"), Some(0), 0),
    ("rfc4475/regescrt.dat", "REGISTER", "sip:example.com", Some("regescrt.k345asrl3fdbv@192.0.2.1"), "14398234 REGISTER", Some("z9hG4bKkdjuw"), Some(0), 0),
    ("rfc4475/sdp01.dat", "INVITE", "sip:user@example.com", Some("sdp01.ndaksdj9342dasdd"), "8 INVITE", Some("z9hG4bKkdjuw"), Some(150), 150),
    ("rfc4475/inv2543.dat", "INVITE", "sip:UserB@example.com", Some("inv2543.1717@ift.client.example.com"), "56 INVITE", None, None, 105),
    ("rfc5118/ipv6-good.dat", "REGISTER", "sip:[2001:db8::10]", Some("SSG9559905523997077@hlau_4100"), "98176 REGISTER", Some("z9hG4bKas3-111"), Some(0), 0),
    ("rfc5118/port-ambiguous.dat", "REGISTER", "sip:[2001:db8::10:5070]", Some("SSG9559905523997077@hlau_4100"), "98176 REGISTER", Some("z9hG4bKas3-111"), Some(0), 0),
    ("rfc5118/port-unambiguous.dat", "REGISTER", "sip:[2001:db8::10]:5070", Some("SSG9559905523997077@hlau_4100"), "98176 REGISTER", Some("z9hG4bKas3-111"), Some(0), 0),
    ("rfc5118/via-received-param-with-delim.dat", "BYE", "sip:[2001:db8::10]", Some("SSG9559905523997077@hlau_4100"), "321 BYE", Some("z9hG4bKas3-111"), Some(0), 0),
    ("rfc5118/via-received-param-no-delim.dat", "OPTIONS", "sip:[2001:db8::10]", Some("SSG95523997077@hlau_4100"), "921 OPTIONS", Some("z9hG4bKas3"), Some(0), 0),
    ("rfc5118/ipv6-in-sdp.dat", "INVITE", "sip:user@[2001:db8::10]", Some("SSG9559905523997077@hlau_4100"), "8612 INVITE", Some("z9hG4bKas3-111"), Some(251), 251),
    ("rfc5118/mult-ip-in-header.dat", "BYE", "sip:user@host.example.net", Some("997077@lau_4100"), "89187 BYE", Some("z9hG4bKas3-111"), Some(0), 0),
    ("rfc5118/mult-ip-in-sdp.dat", "INVITE", "sip:user@[2001:db8::10]", Some("SSG9559905523997077@hlau_4100"), "8912 INVITE", Some("z9hG4bKas3-111"), Some(189), 189),
    ("rfc5118/ipv4-mapped-ipv6.dat", "INVITE", "sip:user@example.com", Some("SSG9559905523997077@hlau_4100"), "612 INVITE", Some("z9hG4bKbh19"), Some(245), 245),
    ("rfc5118/ipv6-bug-abnf-3-colons.dat", "OPTIONS", "sip:user@[2001:db8:::192.0.2.1]", Some("G9559905523997077@hlau_4100"), "689 OPTIONS", Some("z9hG4bKas3-111"), Some(0), 0),
    ("rfc5118/ipv6-correct-abnf-2-colons.dat", "OPTIONS", "sip:user@[2001:db8::192.0.2.1]", Some("G9559905523997077@hlau_4100"), "689 OPTIONS", Some("z9hG4bKas3-111"), Some(0), 0),
];

/// Where an invalid message fails: at `Message::parse` or at `validate()`, with which kind and header.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Parse,
    Validate,
}

const INVALID: &[(&str, Stage, ErrorKind, Option<HeaderName>)] = &[
    ("rfc4475/badinv01.dat", Stage::Validate, ErrorKind::HeaderValue, Some(HeaderName::Via)),
    ("rfc4475/clerr.dat", Stage::Parse, ErrorKind::BodyTooShort, Some(HeaderName::ContentLength)),
    ("rfc4475/ncl.dat", Stage::Parse, ErrorKind::ContentLength, Some(HeaderName::ContentLength)),
    ("rfc4475/scalar02.dat", Stage::Validate, ErrorKind::HeaderValue, Some(HeaderName::CSeq)),
    ("rfc4475/scalarlg.dat", Stage::Validate, ErrorKind::HeaderValue, Some(HeaderName::CSeq)),
    ("rfc4475/quotbal.dat", Stage::Validate, ErrorKind::HeaderValue, Some(HeaderName::To)),
    ("rfc4475/ltgtruri.dat", Stage::Parse, ErrorKind::RequestUri, None),
    ("rfc4475/lwsruri.dat", Stage::Parse, ErrorKind::StartLine, None),
    ("rfc4475/lwsstart.dat", Stage::Parse, ErrorKind::StartLine, None),
    ("rfc4475/trws.dat", Stage::Parse, ErrorKind::StartLine, None),
    ("rfc4475/escruri.dat", Stage::Parse, ErrorKind::RequestUri, None),
    ("rfc4475/baddate.dat", Stage::Validate, ErrorKind::HeaderValue, Some(HeaderName::Date)),
    ("rfc4475/regbadct.dat", Stage::Validate, ErrorKind::HeaderValue, Some(HeaderName::Contact)),
    ("rfc4475/badaspec.dat", Stage::Validate, ErrorKind::HeaderValue, Some(HeaderName::To)),
    ("rfc4475/baddn.dat", Stage::Validate, ErrorKind::HeaderValue, Some(HeaderName::From)),
    ("rfc4475/badvers.dat", Stage::Parse, ErrorKind::VersionNotSupported, None),
    ("rfc4475/mismatch01.dat", Stage::Validate, ErrorKind::CSeqMethodMismatch, Some(HeaderName::CSeq)),
    ("rfc4475/mismatch02.dat", Stage::Validate, ErrorKind::CSeqMethodMismatch, Some(HeaderName::CSeq)),
    ("rfc4475/bigcode.dat", Stage::Parse, ErrorKind::StatusCode, None),
    ("rfc5118/ipv6-bad.dat", Stage::Parse, ErrorKind::RequestUri, None),
];

/// The one framing error among the semantically odd ones (RFC 4475 §3.3.9).
const ODD_FRAMING: &[(&str, ErrorKind)] = &[("rfc4475/mcl01.dat", ErrorKind::ConflictingContentLength)];

#[test]
fn every_manifest_row_is_covered_and_nothing_skipped() {
    let rows = common::manifest();
    assert_eq!(rows.len(), 61, "49 RFC 4475 + 12 RFC 5118 files");
    let mut handled = 0;
    for (file, _, kind, _) in &rows {
        let in_keys = KEYS.iter().any(|k| k.0 == file);
        let in_invalid = INVALID.iter().any(|k| k.0 == file);
        let in_odd = ODD_FRAMING.iter().any(|k| k.0 == file);
        match kind.as_str() {
            "valid" => assert!(in_keys, "{file}: valid file without key fields"),
            "invalid" => assert!(in_invalid, "{file}: invalid file without an expected error"),
            "valid-but-semantically-odd" => assert!(in_keys || in_odd, "{file}: odd file not checked"),
            other => panic!("{file}: unknown kind {other}"),
        }
        handled += 1;
    }
    assert_eq!(handled, 61);
    assert_eq!(KEYS.len() + INVALID.len() + ODD_FRAMING.len(), 61);
}

#[test]
fn valid_and_odd_messages_expose_their_key_fields() {
    let rows = common::manifest();
    for &(file, method, ruri, call_id, cseq, branch, cl, body_len) in KEYS {
        let kind = &rows.iter().find(|r| r.0 == file).unwrap_or_else(|| panic!("{file} not in MANIFEST")).2;
        let m = parse(file);
        if method.is_empty() {
            assert!(m.status().is_some(), "{file}: expected a response");
        } else {
            assert_eq!(m.method().map(|x| x.as_str()), Some(method), "{file}: method");
            assert_eq!(m.request_uri_str(), Some(ruri), "{file}: Request-URI");
            assert!(m.request_uri().is_some(), "{file}: Request-URI parses");
        }
        assert_eq!(m.call_id().ok(), call_id, "{file}: Call-ID");
        if !cseq.is_empty() {
            assert_eq!(m.cseq().map(|c| c.to_string()).ok().as_deref(), Some(cseq), "{file}: CSeq");
        }
        assert_eq!(m.via().unwrap_or_else(|e| panic!("{file}: {e}")).branch(), branch, "{file}: top Via branch");
        assert_eq!(m.content_length(), cl, "{file}: Content-Length");
        assert_eq!(m.body().len(), body_len, "{file}: body length");
        if kind == "valid" {
            m.validate().unwrap_or_else(|e| panic!("{file}: validate: {e}"));
            if m.is_request() {
                m.check_required().unwrap_or_else(|e| panic!("{file}: required headers: {e}"));
            }
        }
    }
}

fn failure(file: &str, stage: Stage) -> ParseError {
    match (Message::parse(load(file)), stage) {
        (Err(e), Stage::Parse) => e,
        (Ok(m), Stage::Validate) => m.validate().expect_err(file),
        (Ok(_), Stage::Parse) => panic!("{file}: parsed, expected a parse error"),
        (Err(e), Stage::Validate) => panic!("{file}: parse failed ({e}), expected it to parse and fail validate"),
    }
}

#[test]
fn invalid_messages_give_the_error_the_rfc_implies() {
    for &(file, stage, kind, header) in INVALID {
        let e = failure(file, stage);
        assert_eq!((e.kind(), e.header()), (kind, header), "{file}: got {e}");
        let expected_status = if kind == ErrorKind::VersionNotSupported { 505 } else { 400 };
        assert_eq!(e.status_code(), expected_status, "{file}");
        assert!(!e.reason_phrase().is_empty());
    }
    // §3.1.2.18: NEWMETHOD with CSeq INVITE: an unknown method the UAS answers 501, never an INVITE.
    let m = parse("rfc4475/mismatch02.dat");
    assert!(m.method().is_some_and(Method::is_extension));
    // Reason phrases name the bad part.
    assert_eq!(failure("rfc4475/badinv01.dat", Stage::Validate).reason_phrase(), "Bad Via Header");
    assert_eq!(failure("rfc4475/scalar02.dat", Stage::Validate).reason_phrase(), "Bad CSeq Header");
}

#[test]
fn odd_framing_is_an_error() {
    for &(file, kind) in ODD_FRAMING {
        let e = Message::parse(load(file)).expect_err(file);
        assert_eq!(e.kind(), kind, "{file}");
    }
}

fn sip_uri_host(m: &Message) -> (String, Option<u16>) {
    match m.request_uri() {
        Some(Uri::Sip(u)) => (u.host.to_string(), u.port),
        other => panic!("not a SIP R-URI: {other:?}"),
    }
}

#[test]
fn valid_messages_details() {
    // §3.1.1.1: unknown headers kept verbatim, folded values joined, q parsed.
    let m = parse("rfc4475/wsinv.dat");
    assert_eq!(m.other_header("UnknownHeaderWithUnusualValue").next(), Some(&b";;,,;;,;"[..]));
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.vias().count(), 3);
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(c.q_millis(), Some(330));
    assert_eq!(c.display_name().as_deref(), Some("Quoted string \"\""));
    assert_eq!(m.from().unwrap().display_name().as_deref(), Some("J Rosenberg \\\""));
    // §3.1.1.3: escapes decoded once.
    let m = parse("rfc4475/esc01.dat");
    let Some(Uri::Sip(u)) = m.request_uri() else { panic!() };
    assert_eq!(&*u.user_decoded().unwrap(), b"sips:user@example.com");
    let contact = m.contacts().next().unwrap().unwrap();
    let Uri::Sip(cu) = contact.uri else { panic!() };
    assert_eq!(&*switchboard::message::percent_decode(cu.params.value("n%61me").unwrap()), b"value%41");
    // §3.1.1.4: %00 decodes to NUL without cutting the user short; two contacts.
    let m = parse("rfc4475/escnull.dat");
    let users: Vec<Vec<u8>> = m.contacts().map(|c| c.unwrap().uri.as_sip().unwrap().user_decoded().unwrap().into_owned()).collect();
    assert_eq!(users, vec![b"\0".to_vec(), b"\0\0".to_vec()]);
    // §3.1.1.5: RE%47IST%45R is an extension method; C%6Fntact is unknown so 2 Contacts.
    let m = parse("rfc4475/esc02.dat");
    assert!(m.method().unwrap().is_extension());
    assert_eq!(m.contacts().count(), 2);
    // §3.1.1.6: display name against '<'.
    assert_eq!(parse("rfc4475/lwsdisp.dat").from().unwrap().display_name().as_deref(), Some("caller"));
    // §3.1.1.8: trailing bytes dropped.
    let m = parse("rfc4475/dblreq.dat");
    assert!(m.as_bytes().ends_with(b"\r\n\r\n"));
    assert!(!m.as_bytes().windows(6).any(|w| w == b"INVITE"));
    // §3.1.1.9: ';' in the user part.
    let m = parse("rfc4475/semiuri.dat");
    let Some(Uri::Sip(u)) = m.request_uri() else { panic!() };
    assert_eq!(u.user, Some("user;par=u%40example.net"));
    assert!(u.params.is_empty());
    // §3.1.1.10: any transport token.
    let transports: Vec<String> = parse("rfc4475/transports.dat").vias().map(|v| v.unwrap().transport.to_owned()).collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    // §3.1.1.11: binary multipart body framed by Content-Length.
    let m = parse("rfc4475/mpart01.dat");
    assert!(m.content_type().unwrap().unwrap().is("multipart", "mixed"));
    assert!(m.body().contains(&0));
    // §3.1.1.12/13: reason phrases.
    assert!(std::str::from_utf8(parse("rfc4475/unreason.dat").reason().unwrap()).unwrap().contains("простое"));
    assert_eq!(parse("rfc4475/noreason.dat").reason(), Some(&b""[..]));
    // RFC 5118.
    assert_eq!(sip_uri_host(&parse("rfc5118/ipv6-good.dat")), ("[2001:db8::10]".into(), None));
    assert_eq!(sip_uri_host(&parse("rfc5118/port-unambiguous.dat")), ("[2001:db8::10]".into(), Some(5070)));
    let v = parse("rfc5118/via-received-param-with-delim.dat");
    assert_eq!(v.via().unwrap().received(), Some("2001:db8::9:255"));
    let v = parse("rfc5118/via-received-param-no-delim.dat");
    assert_eq!(v.via().unwrap().received(), Some("2001:db8::9:255"));
    let hosts: Vec<String> = parse("rfc5118/mult-ip-in-header.dat").vias().map(|v| v.unwrap().host.to_string()).collect();
    assert_eq!(hosts.len(), 3);
    let m = parse("rfc5118/ipv6-bug-abnf-3-colons.dat");
    let Some(Uri::Sip(u)) = m.request_uri() else { panic!() };
    assert_eq!(u.host.ip(), "2001:db8::192.0.2.1".parse().ok());
}

#[test]
fn odd_messages_expose_the_oddity() {
    // §3.2.1: the bare cookie is not an RFC 3261 branch.
    assert!(!parse("rfc4475/badbranch.dat").via().unwrap().has_rfc3261_branch());
    // §3.3.1: missing To, From, Call-ID: 400.
    let e = parse("rfc4475/insuf.dat").check_required().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingHeader);
    // §3.3.2 / §3.3.3: unknown Request-URI schemes: 416.
    assert!(matches!(parse("rfc4475/unkscm.dat").request_uri(), Some(Uri::Other { scheme: "nobodyKnowsThisScheme", .. })));
    assert!(matches!(parse("rfc4475/novelsc.dat").request_uri(), Some(Uri::Other { scheme: "soap.beep", .. })));
    // §3.3.4: non-SIP URIs in To/From/Contact parse.
    let m = parse("rfc4475/unksm2.dat");
    assert_eq!(m.to().unwrap().uri.scheme(), "isbn");
    assert_eq!(m.from().unwrap().uri.scheme(), "http");
    assert_eq!(m.contacts().next().unwrap().unwrap().uri.scheme(), "name");
    // §3.3.5: Require / Proxy-Require tags for 420.
    let m = parse("rfc4475/bext01.dat");
    let req: Vec<&str> = m.tokens(HeaderName::Require).map(Result::unwrap).collect();
    assert_eq!(req, ["nothingSupportsThis", "nothingSupportsThisEither"]);
    assert_eq!(m.tokens(HeaderName::ProxyRequire).count(), 2);
    // §3.3.6: unknown body type: 415.
    assert!(parse("rfc4475/invut.dat").content_type().unwrap().unwrap().is("application", "unknownformat"));
    // §3.3.7: unknown auth scheme.
    let m = parse("rfc4475/regaut01.dat");
    assert_eq!(m.auth_headers(HeaderName::Authorization).next().unwrap().unwrap().scheme, "NoOneKnowsThisScheme");
    // §3.3.8: repeated single headers: 400.
    let m = parse("rfc4475/multi01.dat");
    assert_eq!(m.call_id().unwrap_err().kind(), ErrorKind::DuplicateHeader);
    assert_eq!(m.validate().unwrap_err().kind(), ErrorKind::DuplicateHeader);
    // §3.3.10: the broadcast Via is visible.
    let m = parse("rfc4475/bcast.dat");
    let hosts: Vec<Host> = m.vias().map(|v| v.unwrap().host).collect();
    assert_eq!(hosts[1].to_string(), "255.255.255.255");
    // §3.3.11: Max-Forwards 0.
    assert_eq!(parse("rfc4475/zeromf.dat").max_forwards().unwrap(), Some(0));
    // §3.3.12 / §3.3.13: contact-param outside <>, url-param inside.
    let m = parse("rfc4475/cparam01.dat");
    let c = m.contacts().next().unwrap().unwrap();
    assert!(c.params.contains("unknownparam") && c.uri.as_sip().unwrap().params.is_empty());
    let m = parse("rfc4475/cparam02.dat");
    let c = m.contacts().next().unwrap().unwrap();
    assert!(!c.params.contains("unknownparam") && c.uri.as_sip().unwrap().params.contains("unknownparam"));
    // §3.3.14: the escaped Route header stays in the Contact URI.
    let m = parse("rfc4475/regescrt.dat");
    assert_eq!(m.contacts().next().unwrap().unwrap().uri.as_sip().unwrap().headers, Some("Route=%3Csip:sip.example.com%3E"));
    // §3.3.15: Accept without application/sdp: 406.
    assert_eq!(parse("rfc4475/sdp01.dat").header(HeaderName::Accept), Some(&b"text/nobodyKnowsThis"[..]));
    // §3.4.1: RFC 2543 request: no branch, no From tag, no Max-Forwards, no Content-Length.
    let m = parse("rfc4475/inv2543.dat");
    assert!(m.via().unwrap().branch().is_none() && m.from().unwrap().tag().is_none());
    assert_eq!(m.max_forwards().unwrap(), None);
    // RFC 5118 §4.3: the port is part of the address.
    let m = parse("rfc5118/port-ambiguous.dat");
    let Some(Uri::Sip(u)) = m.request_uri() else { panic!() };
    assert_eq!((u.host, u.port), (Host::Ipv6("2001:db8::10:5070"), None));
}
