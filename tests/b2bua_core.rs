//! The B2BUA core without sockets: a caller phone and a callee phone built from the crate's own
//! sans-IO layers (Endpoint + UaCore + Dialogs) talk to a [`B2bua`] over in-memory datagrams, on a
//! virtual clock. Checks that what one leg does reaches the other: answers, busy, CANCEL, BYE from
//! either side, a re-INVITE changing the codec (the relay follows), INFO, a session timer that
//! expires on one leg, and a callee that never answers. Then that a call's setup state (its relay
//! flows, its call entry) ends with the caller's INVITE whatever the answer was: 422, 482, 488,
//! CANCEL, Timer B, and a retry on the same Call-ID.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::b2bua::{B2bua, B2buaConfig};
use switchboard::dialog::{CallParams, DialogConfig, DialogId, Dialogs, EndReason, Event, Side};
use switchboard::driver::Io;
use switchboard::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use switchboard::proxy::Target;
use switchboard::relay::RelayConfig;
use switchboard::store::StoreOp;
use switchboard::testing::MemoryMedia;
use switchboard::ua::core::{UaCore, UaEvent};

const CALLER: &str = "127.0.0.1:5061";
const CALLEE: &str = "127.0.0.1:5062";
const SB: &str = "127.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn offer(port: u16, codecs: &str, dir: &str) -> Bytes {
    let rtpmaps: String = codecs
        .split(' ')
        .map(|pt| match pt {
            "0" => "a=rtpmap:0 PCMU/8000\r\n",
            "8" => "a=rtpmap:8 PCMA/8000\r\n",
            _ => "",
        })
        .collect();
    Bytes::from(format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {codecs}\r\n{rtpmaps}a={dir}\r\n"
    ))
}

/// A phone: our own endpoint, UA core and dialogs.
struct Phone {
    ep: Endpoint,
    ua: UaCore,
    events: Vec<Event>,
    /// Status codes of the responses its dialogs received.
    statuses: Vec<u16>,
}

impl Phone {
    fn new(me: &str, seed: u64, session_expires: Option<Duration>) -> Phone {
        let cfg = DialogConfig {
            contact: format!("sip:phone@{me}"),
            sent_by: me.into(),
            rng_seed: seed,
            session_expires,
            ..DialogConfig::default()
        };
        Phone {
            ep: Endpoint::new(EndpointConfig::default()),
            ua: UaCore::new(Dialogs::new(cfg), None),
            events: Vec::new(),
            statuses: Vec::new(),
        }
    }

    fn incoming(&self) -> Option<DialogId> {
        self.events.iter().rev().find_map(|e| if let Event::Incoming { id, .. } = e { Some(id.clone()) } else { None })
    }

    fn established(&self) -> Option<DialogId> {
        self.events.iter().rev().find_map(|e| if let Event::Established { id } = e { Some(id.clone()) } else { None })
    }

    fn ended(&self) -> Vec<EndReason> {
        self.events.iter().filter_map(|e| if let Event::Terminated { reason, .. } = e { Some(*reason) } else { None }).collect()
    }
}

struct World {
    now: Instant,
    caller: Phone,
    callee: Phone,
    ep: Endpoint,
    b2b: B2bua,
    media: MemoryMedia,
    store: Vec<StoreOp>,
    /// Datagrams from or to this address are lost.
    dead: Option<&'static str>,
}

impl World {
    fn new(caller_se: Option<Duration>) -> World {
        World::with_relay(caller_se, true)
    }

    fn with_relay(caller_se: Option<Duration>, relay_media: bool) -> World {
        World::with(caller_se, relay_media, Duration::from_secs(10))
    }

    fn with(caller_se: Option<Duration>, relay_media: bool, no_answer: Duration) -> World {
        let b2b = B2bua::new(B2buaConfig {
            local: addr(SB),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            media_ip: "127.0.0.1".parse().expect("ip"),
            rtp_ports: 30000..=30999,
            relay: RelayConfig { inactivity: None, ..RelayConfig::default() },
            no_answer,
            relay_media,
            seed: 42,
        });
        World {
            now: Instant::now(),
            caller: Phone::new(CALLER, 1, caller_se),
            callee: Phone::new(CALLEE, 2, None),
            ep: Endpoint::new(EndpointConfig::default()),
            b2b,
            media: MemoryMedia::default(),
            store: Vec::new(),
            dead: None,
        }
    }

    fn io<'a>(ep: &'a mut Endpoint, media: &'a mut MemoryMedia) -> Io<'a> {
        Io { endpoint: ep, media, wall_clock: Duration::from_secs(1_800_000_000) }
    }

    /// Delivers every datagram and event until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for who in 0..3 {
                let (src, ep) = match who {
                    0 => (CALLER, &mut self.caller.ep),
                    1 => (CALLEE, &mut self.callee.ep),
                    _ => (SB, &mut self.ep),
                };
                let mut out = Vec::new();
                while let Some(t) = ep.poll_transmit() {
                    out.push(t);
                }
                for t in out {
                    moved = true;
                    let dest = t.dest.to_string();
                    if self.dead.is_some_and(|d| d == dest || d == src) {
                        continue;
                    }
                    let target = if dest == CALLER {
                        &mut self.caller.ep
                    } else if dest == CALLEE {
                        &mut self.callee.ep
                    } else {
                        &mut self.ep
                    };
                    target.handle_datagram(addr(src), t.payload, self.now);
                }
            }
            for phone in [&mut self.caller, &mut self.callee] {
                while let Some(ev) = phone.ep.poll_event() {
                    moved = true;
                    phone.ua.handle_endpoint_event(&mut phone.ep, ev, self.now);
                }
                while let Some(ev) = phone.ua.poll_event() {
                    match ev {
                        UaEvent::Dialog(ev) => phone.events.push(ev),
                        UaEvent::ResponseSeen { status, .. } => phone.statuses.push(status),
                        // Answers to raw requests a test sent from the phone's address.
                        UaEvent::Endpoint(EndpointEvent::StrayResponse { response, .. }) => {
                            phone.statuses.extend(response.status().filter(|&c| c >= 200));
                        }
                        _ => {}
                    }
                }
            }
            while let Some(ev) = self.ep.poll_event() {
                moved = true;
                let mut io = Self::io(&mut self.ep, &mut self.media);
                match ev {
                    EndpointEvent::Request { tx, request, source } if !self.b2b.knows(&request) => {
                        let targets = vec![Target { uri: format!("sip:bob@{CALLEE}"), dest: addr(CALLEE) }];
                        self.b2b.start_call(&mut io, tx, request, source, targets, self.now);
                    }
                    ev => self.b2b.handle_event(&mut io, ev, self.now),
                }
            }
            while let Some(op) = self.b2b.poll_store() {
                self.store.push(op);
            }
            if !moved {
                return;
            }
        }
        panic!("the world never settles");
    }

    /// Moves the virtual clock forward by `secs`, firing every timer on the way.
    fn run(&mut self, secs: f64) {
        let end = self.now + Duration::from_secs_f64(secs);
        loop {
            self.settle();
            let next = [
                self.caller.ep.poll_timeout(),
                self.caller.ua.poll_timeout(),
                self.callee.ep.poll_timeout(),
                self.callee.ua.poll_timeout(),
                self.ep.poll_timeout(),
                self.b2b.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for p in [&mut self.caller, &mut self.callee] {
                        p.ep.handle_timeout(now);
                        p.ua.handle_timeout(&mut p.ep, now);
                    }
                    self.ep.handle_timeout(now);
                    let mut io = Self::io(&mut self.ep, &mut self.media);
                    self.b2b.handle_timeout(&mut io, now);
                }
                _ => {
                    self.now = end;
                    self.settle();
                    return;
                }
            }
        }
    }

    /// The caller dials bob through the B2BUA.
    fn dial(&mut self) -> DialogId {
        let params = CallParams {
            from: "<sip:alice@example.com>".into(),
            to: "<sip:bob@example.com>".into(),
            target: Some(format!("sip:bob@{SB}")),
            routes: Vec::new(),
            sdp: Some(offer(4000, "0 8", "sendrecv")),
            max_forwards: None,
            asserted_identity: None,
        };
        let id = self.caller.ua.dialogs().invite(params, self.now).expect("invite");
        self.caller.ua.flush(&mut self.caller.ep, self.now);
        self.run(0.1);
        id
    }

    /// The callee answers its incoming call with `sdp`.
    fn answer(&mut self, sdp: Bytes) -> DialogId {
        let id = self.callee.incoming().expect("the callee got an INVITE");
        self.callee.ua.dialogs().accept(&id, Some(sdp), self.now).expect("accept");
        self.callee.ua.flush(&mut self.callee.ep, self.now);
        self.run(0.2);
        id
    }

    fn records(&self) -> Vec<&switchboard::store::CallRecord> {
        self.store.iter().filter_map(|op| if let StoreOp::PutCall(r) = op { Some(r) } else { None }).collect()
    }

    fn last_record(&self) -> switchboard::store::CallRecord {
        (*self.records().last().expect("a call record")).clone()
    }
}

fn established_call() -> (World, DialogId, DialogId) {
    let mut w = World::new(None);
    w.dial();
    let callee = w.answer(offer(6000, "0", "sendrecv"));
    let caller = w.caller.established().expect("the caller's call is up");
    (w, caller, callee)
}

#[test]
fn the_answer_reaches_the_caller_with_the_relay_in_its_sdp() {
    let (w, caller, callee) = established_call();
    assert_ne!(caller.call_id, callee.call_id, "two dialogs");
    let to_caller = w.caller.ua.dialogs_ref().get(&caller).and_then(|d| d.remote_sdp().cloned()).expect("answer SDP");
    let text = String::from_utf8_lossy(&to_caller);
    assert!(text.contains("m=audio 30000 ") && text.contains("c=IN IP4 127.0.0.1"), "the caller sends to the relay: {text}");
    let to_callee = w.callee.ua.dialogs_ref().get(&callee).and_then(|d| d.remote_sdp().cloned()).expect("offer SDP");
    assert!(String::from_utf8_lossy(&to_callee).contains("m=audio 30002 "), "the callee sends to its own relay port");
    let r = w.last_record();
    assert!(r.answered_at.is_some() && r.callee_call_id.as_deref() == Some(&*callee.call_id));
    assert_eq!(r.codec.as_deref(), Some("PCMU/8000"));
    assert!(w.store.iter().any(|op| matches!(op, StoreOp::PutCallState(_))), "an established call is saved for a restart");
}

#[test]
fn busy_on_the_callee_leg_is_busy_for_the_caller() {
    let mut w = World::new(None);
    w.dial();
    let id = w.callee.incoming().expect("incoming");
    w.callee.ua.dialogs().reject(&id, 486, w.now).expect("reject");
    w.callee.ua.flush(&mut w.callee.ep, w.now);
    w.run(1.0);
    assert_eq!(w.caller.ended(), [EndReason::Rejected(486)]);
    let r = w.last_record();
    assert_eq!((r.end_reason.as_deref(), r.ended_by.as_deref()), (Some("486"), Some("callee")));
    assert!(w.media.open.is_empty(), "relay ports closed");
}

#[test]
fn cancel_from_the_caller_cancels_the_callee() {
    let mut w = World::new(None);
    let pending = w.dial();
    let id = w.callee.incoming().expect("incoming");
    w.callee.ua.dialogs().ring(&id, w.now).expect("ring");
    w.callee.ua.flush(&mut w.callee.ep, w.now);
    w.run(0.2);
    assert!(w.caller.events.iter().any(|e| matches!(e, Event::Early { .. })), "180 reached the caller");
    w.caller.ua.cancel(&mut w.caller.ep, &pending, w.now).expect("cancel");
    w.run(1.0);
    assert_eq!(w.callee.ended(), [EndReason::Cancelled]);
    assert_eq!(w.caller.ended(), [EndReason::Cancelled]);
    let r = w.last_record();
    assert_eq!((r.end_reason.as_deref(), r.ended_by.as_deref()), (Some("cancel"), Some("caller")));
}

#[test]
fn bye_from_either_side_ends_both_legs() {
    for callee_hangs_up in [false, true] {
        let (mut w, caller, callee) = established_call();
        let (phone, id) = if callee_hangs_up { (&mut w.callee, &callee) } else { (&mut w.caller, &caller) };
        phone.ua.dialogs().send_bye(id, w.now).expect("bye");
        phone.ua.flush(&mut phone.ep, w.now);
        w.run(1.0);
        let remote = [EndReason::Bye(Side::Remote)];
        let local = [EndReason::Bye(Side::Local)];
        let (c, e) = if callee_hangs_up { (remote, local) } else { (local, remote) };
        assert_eq!((w.caller.ended(), w.callee.ended()), (c.to_vec(), e.to_vec()));
        let r = w.last_record();
        assert_eq!(r.end_reason.as_deref(), Some("bye"));
        assert_eq!(r.ended_by.as_deref(), Some(if callee_hangs_up { "callee" } else { "caller" }));
        assert!(w.store.iter().any(|op| matches!(op, StoreOp::RemoveCallState(_))), "the saved state goes");
    }
}

#[test]
fn a_reinvite_changing_the_codec_passes_through_and_the_relay_follows() {
    let (mut w, caller, callee) = established_call();
    w.caller.ua.dialogs().send_reinvite(&caller, offer(4100, "8", "sendrecv"), w.now).expect("re-INVITE");
    w.caller.ua.flush(&mut w.caller.ep, w.now);
    w.run(0.2);
    let reoffer =
        w.callee.events.iter().rev().find_map(|e| if let Event::Reoffer { request, .. } = e { Some(request.clone()) } else { None });
    let reoffer = reoffer.expect("the callee got the re-INVITE");
    let body = String::from_utf8_lossy(reoffer.body()).into_owned();
    assert!(body.contains("m=audio 30002 RTP/AVP 8") && body.contains("o=switchboard"), "{body}");
    w.callee.ua.dialogs().accept(&callee, Some(offer(6100, "8", "sendrecv")), w.now).expect("accept");
    w.callee.ua.flush(&mut w.callee.ep, w.now);
    w.run(0.5);
    let answered =
        w.caller.events.iter().rev().find_map(|e| if let Event::Answered { response, .. } = e { Some(response.clone()) } else { None });
    assert!(String::from_utf8_lossy(answered.expect("the caller got the answer").body()).contains("RTP/AVP 8"));
    // The relay now sends the caller's media to the callee's new port.
    let caller_flow = *w.media.open.iter().find(|(_, a)| a.port() == 30000).map(|(f, _)| f).expect("caller relay flow");
    let mut io = World::io(&mut w.ep, &mut w.media);
    let rtp = Bytes::from_static(&[0x80, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7, 0xd5, 0xd5]);
    assert!(w.b2b.handle_media(&mut io, caller_flow, addr("127.0.0.1:4100"), &rtp, w.now));
    assert_eq!(w.media.sent.last().map(|(_, d)| *d), Some(addr("127.0.0.1:6100")));
}

#[test]
fn info_is_passed_on() {
    let (mut w, caller, _callee) = established_call();
    w.caller
        .ua
        .dialogs()
        .send_info(&caller, "application/dtmf-relay", Bytes::from_static(b"Signal=5\r\nDuration=160\r\n"), w.now)
        .expect("info");
    w.caller.ua.flush(&mut w.caller.ep, w.now);
    w.run(0.5);
    let info = w.callee.events.iter().find_map(|e| if let Event::Info { request, .. } = e { Some(request.clone()) } else { None });
    assert_eq!(info.expect("INFO reached the callee").body(), b"Signal=5\r\nDuration=160\r\n");
}

#[test]
fn a_session_timer_expiring_on_one_leg_ends_the_other() {
    // The caller asks for a 90 s session refreshed by itself, then goes silent (its refreshes are
    // lost): the B2BUA's caller leg expires (RFC 4028 §10) and the callee gets a BYE.
    let mut w = World::new(Some(Duration::from_secs(90)));
    w.dial();
    w.answer(offer(6000, "0", "sendrecv"));
    assert!(w.caller.established().is_some());
    // Every datagram to or from the caller is lost from now on.
    w.dead = Some(CALLER);
    w.run(200.0);
    assert_eq!(w.callee.ended(), [EndReason::Bye(Side::Remote)]);
    let r = w.last_record();
    assert_eq!((r.end_reason.as_deref(), r.ended_by.as_deref()), (Some("session-expired"), Some("service")));
}

#[test]
fn a_callee_that_never_answers_times_out_for_the_caller() {
    let mut w = World::new(None);
    w.dead = Some(CALLEE);
    w.dial();
    w.run(10.5);
    // The dialog layer reports a 408 answer as Timeout; it came from the B2BUA after its 10 s
    // no-answer timeout, long before the caller's own Timer B (32 s).
    assert_eq!(w.caller.ended(), [EndReason::Timeout], "the B2BUA gives up after its no-answer timeout");
    assert_eq!(w.last_record().end_reason.as_deref(), Some("408"));
}

#[test]
fn without_the_relay_the_sdp_passes_through_and_no_port_is_bound() {
    let mut w = World::with_relay(None, false);
    w.dial();
    let callee = w.answer(offer(6000, "0", "sendrecv"));
    let caller = w.caller.established().expect("up");
    let sdp_of = |p: &Phone, id: &DialogId| {
        String::from_utf8_lossy(&p.ua.dialogs_ref().get(id).and_then(|d| d.remote_sdp().cloned()).expect("sdp")).into_owned()
    };
    assert!(sdp_of(&w.callee, &callee).contains("m=audio 4000 "), "the callee sends straight to the caller");
    assert!(sdp_of(&w.caller, &caller).contains("m=audio 6000 "), "and the caller to the callee");
    assert!(w.media.open.is_empty(), "no relay port bound");
    assert!(w.store.iter().any(|op| matches!(op, StoreOp::PutCallState(_))), "the call is still saved for a restart");
    w.caller.ua.dialogs().send_bye(&caller, w.now).expect("bye");
    w.caller.ua.flush(&mut w.caller.ep, w.now);
    w.run(1.0);
    assert_eq!(w.callee.ended(), [EndReason::Bye(Side::Remote)]);
    assert_eq!(w.last_record().caller_packets, 0);
}

// ===== The B2BUA's setup state ends with the caller's INVITE transaction =====
//
// Issue 13 point 2: whatever the answer to the caller's INVITE (one the dialog layer writes
// itself, a refusal, a CANCEL, a callee that never answers), nothing of the call is left: no
// relay flow open and no call entry. A retry on the same Call-ID orphans nothing either.

impl World {
    /// Nothing of any call is left: every relay flow closed, no call in the B2BUA.
    fn assert_nothing_left(&self, case: &str) {
        assert!(self.media.open.is_empty(), "{case}: relay flows left open: {:?}", self.media.open);
        assert!(self.b2b.is_empty(), "{case}: {} call entries left", self.b2b.len());
    }

    /// Hands a raw INVITE from the caller's address straight to the B2BUA's endpoint.
    fn raw_invite(&mut self, call_id: &str, branch: &str, cseq: u32, headers: &str, sdp: &str) {
        let msg = format!(
            "INVITE sip:bob@{SB} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=raw1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:alice@{CALLER}>\r\n{headers}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.ep.handle_datagram(addr(CALLER), Bytes::from(msg), self.now);
        self.run(0.1);
    }
}

#[test]
fn a_422_and_the_retry_on_the_same_call_id_leave_nothing_behind() {
    // The caller asks for a 30 s session: the B2BUA's dialog layer answers 422 (Min-SE 90,
    // RFC 4028 §9) on its own, and the caller retries at once with the same Call-ID.
    let mut w = World::new(Some(Duration::from_secs(30)));
    let pending = w.dial();
    assert!(w.caller.statuses.contains(&422), "the first INVITE got 422: {:?}", w.caller.statuses);
    assert_eq!(w.media.open.len(), 4, "only the retry's call holds relay ports");
    let callee = w.answer(offer(6000, "0", "sendrecv"));
    let caller = w.caller.established().expect("the retry is answered");
    assert_eq!(caller.call_id, pending.call_id, "the retry kept the Call-ID");
    w.callee.ua.dialogs().send_bye(&callee, w.now).expect("bye");
    w.callee.ua.flush(&mut w.callee.ep, w.now);
    w.run(1.0);
    assert_eq!(w.last_record().end_reason.as_deref(), Some("bye"));
    w.assert_nothing_left("422 then retry");
}

#[test]
fn a_merged_invite_gets_482_and_leaves_nothing_behind() {
    // The same INVITE by two paths (§8.2.2.2). Its first copy asks for too short a session and
    // gets 422 (RFC 4028 §9), so no call knows its Call-ID and the second copy is a new call for
    // the B2BUA too: the dialog layer answers it 482 itself.
    let mut w = World::new(None);
    let sdp = String::from_utf8_lossy(&offer(4000, "0", "sendrecv")).into_owned();
    w.raw_invite("merged@example.com", "path1", 1, "Supported: timer\r\nSession-Expires: 30\r\n", &sdp);
    w.raw_invite("merged@example.com", "path2", 1, "Supported: timer\r\nSession-Expires: 30\r\n", &sdp);
    assert_eq!(w.caller.statuses, [422, 482], "422 to the first copy, 482 to the second");
    w.assert_nothing_left("482");
    // A retry on the same Call-ID (next CSeq, no short session) is a call; it ends as usual.
    w.raw_invite("merged@example.com", "path3", 2, "", &sdp);
    assert_eq!((w.b2b.len(), w.media.open.len()), (1, 4), "the retry is a call with its relay ports");
    let id = w.callee.incoming().expect("the retry reached the callee");
    w.callee.ua.dialogs().reject(&id, 486, w.now).expect("reject");
    w.callee.ua.flush(&mut w.callee.ep, w.now);
    w.run(1.0);
    assert_eq!(w.last_record().end_reason.as_deref(), Some("486"));
    w.assert_nothing_left("482 then retry");
}

#[test]
fn a_488_leaves_nothing_behind() {
    // No SDP offer from the caller: refused before any port is bound.
    let mut w = World::new(None);
    w.raw_invite("no-sdp@example.com", "nosdp", 1, "", "");
    w.assert_nothing_left("488 to an INVITE without SDP");
    // The callee answers with no audio: BYE to it, 488 to the caller.
    let mut w = World::new(None);
    w.dial();
    w.answer(Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\n"));
    assert_eq!(w.caller.ended(), [EndReason::Rejected(488)]);
    assert_eq!(w.last_record().end_reason.as_deref(), Some("488"));
    w.assert_nothing_left("488 from an answer without audio");
}

#[test]
fn a_cancel_leaves_nothing_behind() {
    let mut w = World::new(None);
    let pending = w.dial();
    let id = w.callee.incoming().expect("incoming");
    w.callee.ua.dialogs().ring(&id, w.now).expect("ring");
    w.callee.ua.flush(&mut w.callee.ep, w.now);
    w.run(0.2);
    w.caller.ua.cancel(&mut w.caller.ep, &pending, w.now).expect("cancel");
    w.run(1.0);
    assert_eq!(w.last_record().end_reason.as_deref(), Some("cancel"));
    w.assert_nothing_left("CANCEL");
}

#[test]
fn timer_b_on_the_callee_leg_leaves_nothing_behind() {
    // The callee never answers and the B2BUA's no-answer timeout is longer than Timer B (64*T1 =
    // 32 s): the callee leg's INVITE transaction times out and the caller gets 408.
    let mut w = World::with(None, true, Duration::from_secs(120));
    w.dead = Some(CALLEE);
    w.dial();
    w.run(40.0);
    assert_eq!(w.caller.ended(), [EndReason::Timeout]);
    assert_eq!(w.last_record().end_reason.as_deref(), Some("408"));
    w.assert_nothing_left("Timer B");
}

#[test]
fn a_cancel_crossing_the_callees_200_leaves_nothing_behind() {
    // The caller cancels while the callee answers (§9.2, §15): the answer finds no call, and
    // the callee's dialog gets a BYE (§13.2.2.4).
    let mut w = World::new(None);
    let pending = w.dial();
    let id = w.callee.incoming().expect("incoming");
    w.callee.ua.dialogs().ring(&id, w.now).expect("ring");
    w.callee.ua.flush(&mut w.callee.ep, w.now);
    w.run(0.2);
    w.caller.ua.cancel(&mut w.caller.ep, &pending, w.now).expect("cancel");
    w.callee.ua.dialogs().accept(&id, Some(offer(6000, "0", "sendrecv")), w.now).expect("accept");
    w.callee.ua.flush(&mut w.callee.ep, w.now);
    w.run(2.0);
    assert_eq!(w.caller.ended(), [EndReason::Cancelled]);
    assert_eq!(w.callee.ended(), [EndReason::Bye(Side::Remote)]);
    let r = w.last_record();
    assert_eq!((r.end_reason.as_deref(), r.ended_by.as_deref()), (Some("cancel"), Some("caller")));
    w.assert_nothing_left("CANCEL crossing 200");
}
