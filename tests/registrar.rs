//! The registrar (RFC 3261 §10.3) on a virtual clock.
//!
//! Each test builds REGISTER requests as wire text, hands them to a [`Registrar`] with a `now` it
//! controls (seconds after `T0`, a fixed Unix time), and asserts on the response (status, Contact
//! list with remaining expiry and q, Min-Expires), on the [`Change`]s to persist, and on `lookup`.
//! The RFC 4475 REGISTER torture messages are read from fixtures/torture/rfc4475.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard::message::{HeaderName, Message};
use switchboard::registrar::{Binding, Change, Outcome, RegisterError, Registrar, RegistrarConfig};

/// A fixed wall-clock origin (2023-11-14), so expiries are realistic Unix seconds.
const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> Duration {
    Duration::from_secs(T0 + secs)
}

fn src() -> SocketAddr {
    "198.51.100.7:40123".parse().unwrap()
}

/// A REGISTER for `sip:{user}@example.com` with the given Call-ID, CSeq and extra header lines.
fn register(user: &str, call_id: &str, cseq: u32, extra: &[&str]) -> Message {
    let mut s = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK{cseq}{call_id}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=f1\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
    );
    for line in extra {
        s.push_str(line);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    Message::parse(Bytes::from(s)).expect("test REGISTER parses")
}

fn fixture(name: &str) -> Message {
    let path = format!("{}/fixtures/torture/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Message::parse(Bytes::from(raw)).expect("fixture parses")
}

fn registrar() -> Registrar {
    Registrar::new(RegistrarConfig::default())
}

/// `(uri, expires, q)` of each Contact in a response, in order.
fn listed(out: &Outcome) -> Vec<(String, u32, u16)> {
    out.response
        .contacts()
        .map(|c| {
            let c = c.expect("response Contact parses");
            (c.uri_text.to_owned(), c.expires().expect("expires"), c.q_millis().expect("q"))
        })
        .collect()
}

fn contacts(reg: &Registrar, aor: &str) -> Vec<String> {
    reg.lookup(aor).into_iter().map(|b| b.contact.clone()).collect()
}

fn status(out: &Outcome) -> u16 {
    out.response.status().expect("a response")
}

const BOB: &str = "sip:bob@example.com";

#[test]
fn add_binding() {
    let mut reg = registrar();
    let out = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:bob@192.0.2.9:5060>;expires=600"]), src(), None, at(0));
    assert_eq!(status(&out), 200);
    assert!(out.rejected.is_none());
    let [Change::Put(b)] = out.changes.as_slice() else { panic!("{:?}", out.changes) };
    assert_eq!(b.aor, BOB);
    assert_eq!(b.contact, "sip:bob@192.0.2.9:5060");
    assert_eq!((b.expires_at, b.updated_at, b.q_millis), (T0 + 600, T0, 1000));
    assert_eq!((b.call_id.as_str(), b.cseq), ("c1", 1));
    assert_eq!(reg.lookup(BOB), vec![b]);
    assert_eq!(reg.lookup_user("bob", "Example.COM"), vec![b]);
    assert_eq!(reg.aors().collect::<Vec<_>>(), [BOB]);
    assert_eq!(reg.len(), 1);
    assert!(out.response.header(HeaderName::Date).is_some());
    assert!(out.response.to().unwrap().tag().is_some(), "the 200 carries a To tag");
}

#[test]
fn refresh_same_call_id_higher_cseq() {
    let mut reg = registrar();
    let c = "Contact: <sip:bob@192.0.2.9>";
    let _ = reg.handle_register(&register("bob", "c1", 1, &[c, "Expires: 300"]), src(), None, at(0));
    let out = reg.handle_register(&register("bob", "c1", 2, &[c, "Expires: 300"]), src(), None, at(200));
    assert_eq!(status(&out), 200);
    let b = reg.lookup(BOB)[0];
    assert_eq!((b.cseq, b.expires_at, b.updated_at), (2, T0 + 500, T0 + 200));
    assert_eq!(reg.len(), 1);
    assert_eq!(reg.next_expiry(), Some(T0 + 500), "the old deadline is gone");
}

#[test]
fn different_call_id_replaces_binding() {
    let mut reg = registrar();
    let c = "Contact: <sip:bob@192.0.2.9>";
    let _ = reg.handle_register(&register("bob", "c1", 50, &[c]), src(), None, at(0));
    // A rebooted phone: new Call-ID, CSeq starting low again.
    let out = reg.handle_register(&register("bob", "c2", 1, &[c]), src(), None, at(10));
    assert_eq!(status(&out), 200);
    assert_eq!((reg.lookup(BOB)[0].call_id.as_str(), reg.lookup(BOB)[0].cseq), ("c2", 1));
    assert_eq!(reg.len(), 1);
}

#[test]
fn expiry_and_purge() {
    let mut reg = registrar();
    let _ = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:bob@192.0.2.9>;expires=60"]), src(), None, at(0));
    let _ = reg.handle_register(&register("alice", "c2", 1, &["Contact: <sip:alice@192.0.2.10>;expires=120"]), src(), None, at(0));
    assert_eq!(reg.next_expiry(), Some(T0 + 60));
    assert!(reg.purge(at(59)).is_empty(), "nothing lapsed yet");
    let removed = reg.purge(at(60));
    assert_eq!(removed, [Change::Remove { aor: BOB.into(), contact: "sip:bob@192.0.2.9".into() }]);
    assert!(reg.lookup(BOB).is_empty());
    assert!(reg.purge(at(60)).is_empty(), "a spurious purge does nothing");
    assert_eq!(reg.next_expiry(), Some(T0 + 120));
    assert_eq!(reg.purge(at(500)).len(), 1);
    assert!(reg.is_empty());
    assert_eq!(reg.next_expiry(), None);
}

#[test]
fn lapsed_binding_is_not_listed_and_is_removed_on_next_register() {
    let mut reg = registrar();
    let _ = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:old@192.0.2.9>;expires=60"]), src(), None, at(0));
    let out = reg.handle_register(&register("bob", "c1", 2, &["Contact: <sip:new@192.0.2.9>"]), src(), None, at(61));
    assert_eq!(listed(&out), [("sip:new@192.0.2.9".to_owned(), 3600, 1000)]);
    assert_eq!(out.changes[0], Change::Remove { aor: BOB.into(), contact: "sip:old@192.0.2.9".into() });
}

#[test]
fn remove_with_expires_header_zero() {
    let mut reg = registrar();
    let _ = reg.handle_register(
        &register("bob", "c1", 1, &["Contact: <sip:bob@192.0.2.9>", "Contact: <sip:bob@192.0.2.10>"]),
        src(),
        None,
        at(0),
    );
    let out = reg.handle_register(&register("bob", "c1", 2, &["Contact: <sip:bob@192.0.2.9>", "Expires: 0"]), src(), None, at(5));
    assert_eq!(status(&out), 200);
    assert_eq!(out.changes, [Change::Remove { aor: BOB.into(), contact: "sip:bob@192.0.2.9".into() }]);
    assert_eq!(contacts(&reg, BOB), ["sip:bob@192.0.2.10"]);
    assert_eq!(listed(&out), [("sip:bob@192.0.2.10".to_owned(), 3595, 1000)]);
}

#[test]
fn remove_with_expires_param_zero() {
    let mut reg = registrar();
    let _ = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:bob@192.0.2.9>"]), src(), None, at(0));
    // The contact param wins over the Expires header.
    let out =
        reg.handle_register(&register("bob", "c1", 2, &["Contact: <sip:bob@192.0.2.9>;expires=0", "Expires: 3600"]), src(), None, at(1));
    assert_eq!(out.changes.len(), 1);
    assert!(reg.is_empty());
    assert!(listed(&out).is_empty());
}

#[test]
fn wildcard_removes_all() {
    let mut reg = registrar();
    let _ = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:a@192.0.2.9>, <sip:b@192.0.2.9>"]), src(), None, at(0));
    let _ = reg.handle_register(&register("bob", "other-phone", 7, &["Contact: <sip:c@192.0.2.11>"]), src(), None, at(0));
    let _ = reg.handle_register(&register("alice", "c3", 1, &["Contact: <sip:alice@192.0.2.12>"]), src(), None, at(0));
    assert_eq!(reg.len(), 4);
    let out = reg.handle_register(&register("bob", "c1", 2, &["Contact: *", "Expires: 0"]), src(), None, at(3));
    assert_eq!(status(&out), 200);
    assert_eq!(out.changes.len(), 3);
    assert!(out.changes.iter().all(|c| matches!(c, Change::Remove { aor, .. } if aor == BOB)));
    assert!(reg.lookup(BOB).is_empty());
    assert_eq!(reg.len(), 1, "alice is untouched");
}

#[test]
fn wildcard_without_expires_zero_is_400() {
    let mut reg = registrar();
    let _ = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:a@192.0.2.9>"]), src(), None, at(0));
    for extra in [
        &["Contact: *", "Expires: 60"][..],
        &["Contact: *"],
        &["Contact: *", "Contact: <sip:b@192.0.2.9>", "Expires: 0"],
        &["Contact: *, <sip:b@192.0.2.9>", "Expires: 0"],
    ] {
        let out = reg.handle_register(&register("bob", "c1", 2, extra), src(), None, at(1));
        assert_eq!(status(&out), 400, "{extra:?}");
        assert_eq!(out.rejected, Some(RegisterError::InvalidWildcard), "{extra:?}");
        assert!(out.changes.is_empty());
    }
    assert_eq!(reg.len(), 1);
}

#[test]
fn too_brief_is_423_with_min_expires() {
    let mut reg = registrar();
    let _ = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:a@192.0.2.9>"]), src(), None, at(0));
    // One good contact and one too brief: nothing changes at all.
    let req = register("bob", "c1", 2, &["Contact: <sip:b@192.0.2.9>;expires=600, <sip:a@192.0.2.9>;expires=30"]);
    let out = reg.handle_register(&req, src(), None, at(1));
    assert_eq!(status(&out), 423);
    assert_eq!(out.response.min_expires().unwrap(), Some(60));
    assert_eq!(out.rejected, Some(RegisterError::IntervalTooBrief { min_expires: 60 }));
    assert!(out.changes.is_empty());
    assert_eq!(contacts(&reg, BOB), ["sip:a@192.0.2.9"]);
    assert_eq!(reg.lookup(BOB)[0].expires_at, T0 + 3600);
    let out = reg.handle_register(&register("bob", "c1", 3, &["Contact: <sip:b@192.0.2.9>", "Expires: 59"]), src(), None, at(1));
    assert_eq!(status(&out), 423);
}

#[test]
fn above_max_is_clamped() {
    let mut reg = registrar();
    let out = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:a@192.0.2.9>;expires=99999999999"]), src(), None, at(0));
    assert_eq!(listed(&out), [("sip:a@192.0.2.9".to_owned(), 3600, 1000)]);
    assert_eq!(reg.lookup(BOB)[0].expires_at, T0 + 3600);
}

#[test]
fn q_ordering_in_lookup_and_200() {
    let mut reg = registrar();
    let _ = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:low@192.0.2.9>;q=0.1"]), src(), None, at(0));
    let _ = reg.handle_register(&register("bob", "c1", 2, &["Contact: <sip:top@192.0.2.9>;q=0.9"]), src(), None, at(1));
    let _ = reg.handle_register(&register("bob", "c1", 3, &["Contact: <sip:mid-old@192.0.2.9>;q=0.5"]), src(), None, at(2));
    let out = reg.handle_register(&register("bob", "c1", 4, &["Contact: <sip:mid-new@192.0.2.9>;q=0.5"]), src(), None, at(3));
    let want = ["sip:top@192.0.2.9", "sip:mid-new@192.0.2.9", "sip:mid-old@192.0.2.9", "sip:low@192.0.2.9"];
    assert_eq!(contacts(&reg, BOB), want);
    let got = listed(&out);
    assert_eq!(got.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), want);
    assert_eq!(got.iter().map(|c| c.2).collect::<Vec<_>>(), [900, 500, 500, 100]);
    assert!(String::from_utf8_lossy(out.response.as_bytes()).contains("Contact: <sip:top@192.0.2.9>;expires=3598;q=0.9\r\n"));
}

#[test]
fn out_of_order_cseq_refused() {
    let mut reg = registrar();
    let c = "Contact: <sip:bob@192.0.2.9>";
    let _ = reg.handle_register(&register("bob", "c1", 5, &[c, "Expires: 600"]), src(), None, at(0));
    for cseq in [5, 4] {
        let out = reg.handle_register(&register("bob", "c1", cseq, &[c, "Expires: 0"]), src(), None, at(1));
        assert_eq!(status(&out), 500, "CSeq {cseq}");
        assert_eq!(out.rejected, Some(RegisterError::OutOfOrder));
        assert!(out.changes.is_empty());
    }
    let out = reg.handle_register(&register("bob", "c1", 4, &["Contact: *", "Expires: 0"]), src(), None, at(1));
    assert_eq!(out.rejected, Some(RegisterError::OutOfOrder), "the wildcard obeys the same rule");
    assert_eq!(reg.lookup(BOB)[0].expires_at, T0 + 600, "the binding is untouched");
}

#[test]
fn two_contacts_in_one_register() {
    let mut reg = registrar();
    let req = register("bob", "c1", 1, &["Contact: <sip:desk@192.0.2.9>;q=0.8;expires=120, <sip:mobile@192.0.2.20>;q=0.3"]);
    let out = reg.handle_register(&req, src(), None, at(0));
    assert_eq!(out.changes.len(), 2);
    assert_eq!(listed(&out), [("sip:desk@192.0.2.9".to_owned(), 120, 800), ("sip:mobile@192.0.2.20".to_owned(), 3600, 300)]);
}

#[test]
fn source_address_stored() {
    let mut reg = registrar();
    let nat: SocketAddr = "203.0.113.50:61000".parse().unwrap();
    let _ = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:bob@10.0.0.5:5060>"]), nat, None, at(0));
    let b = reg.lookup(BOB)[0];
    assert_eq!((b.contact.as_str(), b.source), ("sip:bob@10.0.0.5:5060", nat));
}

#[test]
fn ok_lists_remaining_expiry() {
    let mut reg = registrar();
    let _ = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:bob@192.0.2.9>;expires=1000"]), src(), None, at(0));
    // A query (no Contact) 400 s later.
    let out = reg.handle_register(&register("bob", "c9", 1, &[]), src(), None, at(400));
    assert_eq!(status(&out), 200);
    assert!(out.changes.is_empty());
    assert_eq!(listed(&out), [("sip:bob@192.0.2.9".to_owned(), 600, 1000)]);
}

#[test]
fn contact_compared_per_19_1_4() {
    let mut reg = registrar();
    let _ = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:bob@PHONE.example.net;transport=UDP>"]), src(), None, at(0));
    let out = reg.handle_register(&register("bob", "c1", 2, &["Contact: <sip:bob@phone.example.net;transport=udp>"]), src(), None, at(1));
    assert_eq!(reg.len(), 1);
    // The store keys by text, so the old spelling is removed before the new one is put.
    assert!(matches!(&out.changes[..], [Change::Remove { contact, .. }, Change::Put(b)]
        if contact == "sip:bob@PHONE.example.net;transport=UDP" && b.contact == "sip:bob@phone.example.net;transport=udp"));
}

#[test]
fn rfc4475_cparam01_unknownparam_is_a_contact_param() {
    let mut reg = Registrar::new(RegistrarConfig { domain: Some("example.com".into()), ..RegistrarConfig::default() });
    let out = reg.handle_register(&fixture("cparam01"), src(), None, at(0));
    assert_eq!(status(&out), 200);
    assert_eq!(contacts(&reg, "sip:watson@example.com"), ["sip:+19725552222@gw1.example.net"]);
    assert_eq!(listed(&out)[0].0, "sip:+19725552222@gw1.example.net");
}

#[test]
fn rfc4475_cparam02_unknownparam_stays_in_the_uri() {
    let mut reg = registrar();
    let out = reg.handle_register(&fixture("cparam02"), src(), None, at(0));
    assert_eq!(status(&out), 200);
    assert_eq!(contacts(&reg, "sip:watson@example.com"), ["sip:+19725552222@gw1.example.net;unknownparam"]);
    assert_eq!(listed(&out)[0].0, "sip:+19725552222@gw1.example.net;unknownparam");
}

#[test]
fn rfc4475_regescrt_keeps_escaped_headers() {
    let mut reg = registrar();
    let out = reg.handle_register(&fixture("regescrt"), src(), None, at(0));
    assert_eq!(status(&out), 200);
    let uri = "sip:user@example.com?Route=%3Csip:sip.example.com%3E";
    assert_eq!(contacts(&reg, "sip:user@example.com"), [uri]);
    assert_eq!(listed(&out)[0].0, uri);
}

#[test]
fn rfc4475_unksm2_non_sip_to_is_400() {
    let mut reg = registrar();
    let out = reg.handle_register(&fixture("unksm2"), src(), None, at(0));
    assert_eq!(status(&out), 400);
    assert_eq!(out.rejected, Some(RegisterError::AorNotSip));
    assert!(String::from_utf8_lossy(out.response.reason().unwrap()).contains("SIP"));
    assert!(reg.is_empty());
}

#[test]
fn domain_and_authorization_checks() {
    let mut reg = Registrar::new(RegistrarConfig { domain: Some("example.com".into()), ..RegistrarConfig::default() });
    let c = "Contact: <sip:bob@192.0.2.9>";
    let foreign = String::from_utf8_lossy(register("bob", "c1", 1, &[c]).as_bytes()).replacen("sip:example.com", "sip:example.org", 1);
    let out = reg.handle_register(&Message::parse(Bytes::from(foreign)).unwrap(), src(), None, at(0));
    assert_eq!((status(&out), out.rejected), (404, Some(RegisterError::DomainNotServed)));
    let foreign_to = String::from_utf8_lossy(register("bob", "c1", 1, &[c]).as_bytes()).replacen(
        "To: <sip:bob@example.com>",
        "To: <sip:bob@example.org>",
        1,
    );
    let out = reg.handle_register(&Message::parse(Bytes::from(foreign_to)).unwrap(), src(), None, at(0));
    assert_eq!((status(&out), out.rejected), (404, Some(RegisterError::AorNotInDomain)));
    let out = reg.handle_register(&register("bob", "c1", 1, &[c]), src(), Some("alice"), at(0));
    assert_eq!((status(&out), out.rejected), (403, Some(RegisterError::Forbidden)));
    let out = reg.handle_register(&register("bob", "c1", 1, &[c]), src(), Some("bob"), at(0));
    assert_eq!(status(&out), 200);
    let out = reg.handle_register(&register("bob", "c1", 2, &[c, "Require: gruu"]), src(), None, at(0));
    assert_eq!(status(&out), 420);
    assert_eq!(out.response.header(HeaderName::Unsupported), Some(&b"gruu"[..]));
}

#[test]
fn restore_drops_expired() {
    let mut reg = registrar();
    let binding = |contact: &str, expires_at: u64| Binding {
        aor: BOB.into(),
        contact: contact.into(),
        expires_at,
        q_millis: 1000,
        call_id: "c1".into(),
        cseq: 1,
        source: src(),
        updated_at: T0,
    };
    let dropped = reg.restore(vec![binding("sip:old@192.0.2.9", T0 + 100), binding("sip:live@192.0.2.9", T0 + 900)], at(100));
    assert_eq!(dropped, [Change::Remove { aor: BOB.into(), contact: "sip:old@192.0.2.9".into() }]);
    assert_eq!(contacts(&reg, BOB), ["sip:live@192.0.2.9"]);
    assert_eq!(reg.next_expiry(), Some(T0 + 900));
    // A restored binding keeps its Call-ID/CSeq guard.
    let out = reg.handle_register(&register("bob", "c1", 1, &["Contact: <sip:live@192.0.2.9>"]), src(), None, at(101));
    assert_eq!(out.rejected, Some(RegisterError::OutOfOrder));
}

#[test]
fn thousand_aors() {
    let mut reg = registrar();
    for i in 0..1000u32 {
        let contact = format!("Contact: <sip:u{i}@10.0.{}.{}:5060>;expires={}", i / 250, i % 250, 60 + i);
        let out = reg.handle_register(&register(&format!("u{i}"), &format!("call{i}"), 1, &[&contact]), src(), None, at(0));
        assert_eq!(status(&out), 200);
    }
    assert_eq!((reg.len(), reg.aors().count()), (1000, 1000));
    for i in 0..1000u32 {
        let found = reg.lookup_user(&format!("u{i}"), "example.com");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].contact, format!("sip:u{i}@10.0.{}.{}:5060", i / 250, i % 250));
    }
    assert_eq!(reg.next_expiry(), Some(T0 + 60));
    assert_eq!(reg.purge(at(559)).len(), 500);
    assert_eq!(reg.len(), 500);
}

#[test]
fn mutated_registers_never_panic() {
    // Stands in for a fuzz target: every byte of each REGISTER fixture replaced by a few values.
    let wires: Vec<Vec<u8>> = ["cparam01", "cparam02", "regescrt", "unksm2"]
        .iter()
        .map(|n| fixture(n).as_bytes().to_vec())
        .chain([register("bob", "c1", 1, &["Contact: <sip:a@b>;expires=60;q=0.5, *", "Expires: 0"]).as_bytes().to_vec()])
        .collect();
    let mut reg = registrar();
    for wire in &wires {
        for i in 0..wire.len() {
            for byte in [b'*', b';', b'0', b',', b'%', 0xff] {
                let mut w = wire.clone();
                w[i] = byte;
                if let Ok(msg) = Message::parse(Bytes::from(w)) {
                    let _ = reg.handle_register(&msg, src(), Some("watson"), at(i as u64));
                    let _ = reg.purge(at(i as u64));
                }
            }
        }
    }
}

/// Issue 14 point 5: the eleventh contact of an AOR is refused with 503 and Retry-After (the
/// seconds until the AOR's first binding lapses); nothing changes, the ten still refresh, and a
/// request that swaps one contact for another keeps the count and goes through.
#[test]
fn max_contacts_refuses_one_more_but_refreshes_and_swaps_pass() {
    let mut reg = registrar();
    for i in 0..10u32 {
        let c = format!("Contact: <sip:bob@192.0.2.{i}>;expires={}", 600 + i);
        assert_eq!(status(&reg.handle_register(&register("bob", &format!("c{i}"), 1, &[&c]), src(), None, at(0))), 200);
    }
    let out = reg.handle_register(&register("bob", "c10", 1, &["Contact: <sip:bob@192.0.2.10>"]), src(), None, at(100));
    assert_eq!((status(&out), out.response.reason()), (503, Some(&b"Too many registered contacts"[..])));
    assert_eq!(out.response.header(HeaderName::RetryAfter), Some(&b"500"[..]));
    assert!(out.changes.is_empty() && matches!(out.rejected, Some(RegisterError::TooManyContacts { retry_after: 500 })));
    assert_eq!(reg.lookup(BOB).len(), 10);
    let refresh = reg.handle_register(&register("bob", "c0", 2, &["Contact: <sip:bob@192.0.2.0>;expires=900"]), src(), None, at(100));
    assert_eq!(status(&refresh), 200, "an existing contact refreshes");
    assert_eq!(listed(&refresh).len(), 10);
    let swap = reg.handle_register(
        &register("bob", "c1", 2, &["Contact: <sip:bob@192.0.2.1>;expires=0", "Contact: <sip:bob@192.0.2.99>"]),
        src(),
        None,
        at(100),
    );
    assert_eq!(status(&swap), 200, "one out, one in");
    assert!(contacts(&reg, BOB).contains(&"sip:bob@192.0.2.99".to_owned()));
    // Once one lapses, there is room again.
    let later = reg.handle_register(&register("bob", "c11", 1, &["Contact: <sip:bob@192.0.2.11>"]), src(), None, at(603));
    assert_eq!(status(&later), 200);
}

/// The registrar as a whole holds at most `max_bindings`.
#[test]
fn max_bindings_caps_the_table() {
    let mut reg = Registrar::new(RegistrarConfig { max_bindings: 3, ..RegistrarConfig::default() });
    for user in ["a", "b", "c"] {
        assert_eq!(status(&reg.handle_register(&register(user, user, 1, &["Contact: <sip:x@192.0.2.1>"]), src(), None, at(0))), 200);
    }
    let out = reg.handle_register(&register("d", "d", 1, &["Contact: <sip:x@192.0.2.1>"]), src(), None, at(10));
    assert_eq!(status(&out), 503);
    assert_eq!(out.response.header(HeaderName::RetryAfter), Some(&b"3590"[..]));
    assert_eq!(reg.len(), 3);
    assert_eq!(status(&reg.handle_register(&register("a", "a", 2, &["Contact: <sip:x@192.0.2.1>"]), src(), None, at(10))), 200);
}

/// RFC 3261 §18.1.1: the 200 listing the contacts stays within 1,300 bytes. Long contacts fill the
/// budget before ten do; the one that would overflow it is refused with 503, every 200 sent fits.
#[test]
fn the_200_listing_contacts_fits_a_udp_datagram() {
    let mut reg = registrar();
    let long = "x".repeat(200);
    let mut accepted = 0;
    for i in 0..10u32 {
        let c = format!("Contact: <sip:bob@192.0.2.{i}:5060;{long}=1>");
        let out = reg.handle_register(&register("bob", &format!("c{i}"), 1, &[&c]), src(), None, at(0));
        assert!(out.response.as_bytes().len() <= 1300, "{} bytes:\n{:?}", out.response.as_bytes().len(), out.response);
        match status(&out) {
            200 => accepted += 1,
            503 => assert!(out.response.header(HeaderName::RetryAfter).is_some()),
            other => panic!("unexpected {other}"),
        }
    }
    assert!((3..10).contains(&accepted), "{accepted} long contacts accepted");
    assert_eq!(reg.lookup(BOB).len(), accepted);
}

/// A refresh of every contact of an AOR (the registrar's in-place path, issue 16) writes what a
/// new registration writes: a Put per contact in request order, a Remove for a contact written
/// differently, the new deadlines and the listing; with a lapsed binding of the AOR beside them
/// it takes the general path, which removes that first.
#[test]
fn refresh_of_several_contacts_writes_as_a_registration() {
    let mut reg = registrar();
    let first = "Contact: <sip:desk@192.0.2.9>;expires=300, <sip:mobile@HOST.example.net>;expires=600";
    let _ = reg.handle_register(&register("bob", "c1", 1, &[first]), src(), None, at(0));
    let again = "Contact: <sip:mobile@host.example.net>;expires=900;q=0.5, <sip:desk@192.0.2.9>;expires=200";
    let out = reg.handle_register(&register("bob", "c1", 2, &[again]), src(), None, at(100));
    assert_eq!(status(&out), 200);
    let [Change::Remove { contact: gone, .. }, Change::Put(mobile), Change::Put(desk)] = out.changes.as_slice() else {
        panic!("{:?}", out.changes)
    };
    assert_eq!(gone, "sip:mobile@HOST.example.net");
    assert_eq!(
        (mobile.contact.as_str(), mobile.expires_at, mobile.q_millis, mobile.cseq),
        ("sip:mobile@host.example.net", T0 + 1000, 500, 2)
    );
    assert_eq!((desk.contact.as_str(), desk.expires_at, desk.updated_at), ("sip:desk@192.0.2.9", T0 + 300, T0 + 100));
    assert_eq!(reg.len(), 2);
    assert_eq!(reg.next_expiry(), Some(T0 + 300), "the old deadlines are gone");
    assert_eq!(listed(&out), [("sip:desk@192.0.2.9".to_owned(), 200, 1000), ("sip:mobile@host.example.net".to_owned(), 900, 500)]);

    // A third contact that lapses at 200 s; at 250 s the desk's refresh removes it first.
    let _ = reg.handle_register(&register("bob", "c2", 1, &["Contact: <sip:old@192.0.2.30>;expires=100"]), src(), None, at(100));
    let out = reg.handle_register(&register("bob", "c1", 3, &["Contact: <sip:desk@192.0.2.9>;expires=200"]), src(), None, at(250));
    assert!(
        matches!(&out.changes[..], [Change::Remove { contact, .. }, Change::Put(b)]
        if contact == "sip:old@192.0.2.30" && b.contact == "sip:desk@192.0.2.9"),
        "{:?}",
        out.changes
    );
    assert_eq!(reg.len(), 2);
}
