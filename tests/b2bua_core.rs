//! The B2BUA core without sockets: two scripted user agents (`testing::DialogUa`: Endpoint +
//! UaCore + Dialogs) talk to a [`B2bua`] on the in-memory network of `switchboard::testing`, on a
//! virtual clock. Checks that what one leg does reaches the other: answers, busy, CANCEL, BYE from
//! either side, a re-INVITE changing the codec (the relay follows), INFO, a session timer that
//! expires on one leg, and a callee that never answers. Then that a call's setup state (its relay
//! flows, its call entry) ends with the caller's INVITE whatever the answer was: 422, 482, 488,
//! CANCEL, Timer B, and a retry on the same Call-ID.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::{Application, FlowId, Io};
use switchboard::b2bua::{B2bua, B2buaConfig};
use switchboard::dialog::{CallParams, DialogConfig, DialogId, Dialogs, EndReason, Event, Side};
use switchboard::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use switchboard::proxy::Target;
use switchboard::relay::RelayConfig;
use switchboard::store::StoreOp;
use switchboard::testing::{DialogUa, Net, NodeId};

const CALLER: &str = "127.0.0.2:5061";
const CALLEE: &str = "127.0.0.3:5062";
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

/// A phone that does what each test tells it.
fn phone(me: &str, seed: u64, session_expires: Option<Duration>) -> DialogUa {
    let cfg =
        DialogConfig { contact: format!("sip:phone@{me}"), sent_by: me.into(), rng_seed: seed, session_expires, ..DialogConfig::default() };
    DialogUa::new(Dialogs::new(cfg))
}

/// The B2BUA as the service runs it, sending every new call to bob at the callee phone, and
/// keeping what it hands to the store.
struct B2buaNode {
    b2b: B2bua,
    store: Vec<StoreOp>,
}

impl B2buaNode {
    fn keep_store(&mut self) {
        while let Some(op) = self.b2b.poll_store() {
            self.store.push(op);
        }
    }
}

impl Application for B2buaNode {
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        match event {
            EndpointEvent::Request { tx, request, source } if !self.b2b.knows(&request) => {
                let targets = vec![Target { uri: format!("sip:bob@{CALLEE}"), dest: addr(CALLEE) }];
                self.b2b.start_call(io, tx, request, source, targets, now);
            }
            ev => self.b2b.handle_event(io, ev, now),
        }
        self.keep_store();
    }

    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: Bytes, now: Instant) {
        // Every flow of this node is a relay port; one closed meanwhile just drops the datagram.
        let _relayed = self.b2b.handle_media(io, flow, source, &payload, now);
    }

    fn handle_bind_failed(&mut self, io: &mut Io<'_>, flow: FlowId, now: Instant) {
        self.b2b.handle_bind_failed(io, flow, now);
        self.keep_store();
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.b2b.handle_timeout(io, now);
        self.keep_store();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.b2b.poll_timeout()
    }

    fn shutdown(&mut self, _io: &mut Io<'_>, _now: Instant) {}

    fn is_done(&self) -> bool {
        false
    }
}

/// The caller, the B2BUA and the callee on a perfect in-memory network.
struct World {
    net: Net,
    caller: NodeId<DialogUa>,
    callee: NodeId<DialogUa>,
    sb: NodeId<B2buaNode>,
}

impl World {
    fn new(caller_se: Option<Duration>) -> World {
        World::with_relay(caller_se, true)
    }

    fn with_relay(caller_se: Option<Duration>, relay_media: bool) -> World {
        World::with(caller_se, relay_media, Duration::from_secs(10))
    }

    fn with(caller_se: Option<Duration>, relay_media: bool, no_answer: Duration) -> World {
        World::build(caller_se, relay_media, no_answer, 30000..=30999)
    }

    fn build(caller_se: Option<Duration>, relay_media: bool, no_answer: Duration, rtp_ports: std::ops::RangeInclusive<u16>) -> World {
        let b2b = B2bua::new(B2buaConfig {
            local: addr(SB),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            media_ip: addr(SB).ip(),
            rtp_ports,
            relay: RelayConfig { inactivity: None, ..RelayConfig::default() },
            no_answer,
            relay_media,
            seed: 42,
        });
        let mut net = Net::new(Instant::now(), 1);
        let ep = || Endpoint::new(EndpointConfig::default());
        let sb = net.add("switchboard", addr(SB), ep(), B2buaNode { b2b, store: Vec::new() });
        let caller = net.add("caller", addr(CALLER), ep(), phone(CALLER, 1, caller_se));
        let callee = net.add("callee", addr(CALLEE), ep(), phone(CALLEE, 2, None));
        World { net, caller, callee, sb }
    }

    fn caller(&self) -> &DialogUa {
        self.net.app(self.caller)
    }

    fn callee(&self) -> &DialogUa {
        self.net.app(self.callee)
    }

    /// Gives `phone` a dialog command at the current instant and sends what it produced.
    fn command<R>(&mut self, phone: NodeId<DialogUa>, f: impl FnOnce(&mut Dialogs, Instant) -> R) -> R {
        self.net.with(phone, |p, io, now| {
            let r = f(p.dialogs(), now);
            p.flush(io, now);
            r
        })
    }

    /// The caller dials bob through the B2BUA.
    fn dial(&mut self) -> DialogId {
        self.dial_with(Some(offer(4000, "0 8", "sendrecv")))
    }

    /// The caller dials bob through the B2BUA with `sdp` (`None`: a late offer).
    fn dial_with(&mut self, sdp: Option<Bytes>) -> DialogId {
        let params = CallParams {
            from: "<sip:alice@example.com>".into(),
            to: "<sip:bob@example.com>".into(),
            target: Some(format!("sip:bob@{SB}")),
            routes: Vec::new(),
            sdp,
            max_forwards: None,
            asserted_identity: None,
            referred_by: None,
        };
        let id = self.command(self.caller, |d, now| d.invite(params, now)).expect("invite");
        self.net.run_for(Duration::from_millis(100));
        id
    }

    /// The callee answers its incoming call with `sdp`.
    fn answer(&mut self, sdp: Bytes) -> DialogId {
        let id = self.callee().incoming().expect("the callee got an INVITE");
        self.command(self.callee, |d, now| d.accept(&id, Some(sdp), now)).expect("accept");
        self.net.run_for(Duration::from_millis(200));
        id
    }

    fn store(&self) -> &[StoreOp] {
        &self.net.app(self.sb).store
    }

    fn last_record(&self) -> switchboard::store::CallRecord {
        let mut records = self.store().iter().filter_map(|op| if let StoreOp::PutCall(r) = op { Some(r) } else { None });
        records.next_back().expect("a call record").clone()
    }
}

fn established_call() -> (World, DialogId, DialogId) {
    let mut w = World::new(None);
    w.dial();
    let callee = w.answer(offer(6000, "0", "sendrecv"));
    let caller = w.caller().established().expect("the caller's call is up");
    (w, caller, callee)
}

fn remote_sdp(p: &DialogUa, id: &DialogId) -> String {
    String::from_utf8_lossy(&p.ua.dialogs_ref().get(id).and_then(|d| d.remote_sdp().cloned()).expect("sdp")).into_owned()
}

/// The audio port of an SDP.
fn audio_port(sdp: &str) -> u16 {
    let m = sdp.lines().find_map(|l| l.strip_prefix("m=audio ")).expect("an audio line");
    m.split(' ').next().and_then(|p| p.parse().ok()).expect("a port")
}

#[test]
fn the_answer_reaches_the_caller_with_the_relay_in_its_sdp() {
    let (w, caller, callee) = established_call();
    assert_ne!(caller.call_id, callee.call_id, "two dialogs");
    let text = remote_sdp(w.caller(), &caller);
    assert!(text.contains("c=IN IP4 127.0.0.1"), "the caller sends to the relay: {text}");
    // Each leg has its own relay port pair, picked at random in the range, and both are bound.
    let (to_caller, to_callee) = (audio_port(&text), audio_port(&remote_sdp(w.callee(), &callee)));
    assert_ne!(to_caller, to_callee, "the callee sends to its own relay port");
    assert!([to_caller, to_callee].iter().all(|p| (30000..=30999).contains(p) && p % 2 == 0));
    let open: std::collections::BTreeSet<u16> = w.net.media(w.sb).open.values().map(|a| a.port()).collect();
    assert_eq!(open, [to_caller, to_caller + 1, to_callee, to_callee + 1].into(), "RTP and RTCP of both legs are bound");
    let r = w.last_record();
    assert!(r.answered_at.is_some() && r.callee_call_id.as_deref() == Some(&*callee.call_id));
    assert_eq!(r.codec.as_deref(), Some("PCMU/8000"));
    // From and To of the caller's INVITE without their tags (read from the caller's dialog).
    assert_eq!((r.from.as_str(), r.to.as_str()), ("<sip:alice@example.com>", "<sip:bob@example.com>"));
    assert!(
        w.store().iter().any(|op| matches!(op, StoreOp::PutCallState(_) | StoreOp::PutCallStateLater(_))),
        "an established call is saved for a restart"
    );
}

#[test]
fn busy_on_the_callee_leg_is_busy_for_the_caller() {
    let mut w = World::new(None);
    w.dial();
    let id = w.callee().incoming().expect("incoming");
    w.command(w.callee, |d, now| d.reject(&id, 486, now)).expect("reject");
    w.net.run_for(Duration::from_secs(1));
    assert_eq!(w.caller().ended(), [EndReason::Rejected(486)]);
    let r = w.last_record();
    assert_eq!((r.end_reason.as_deref(), r.ended_by.as_deref()), (Some("486"), Some("callee")));
    assert!(w.net.media(w.sb).open.is_empty(), "relay ports closed");
}

#[test]
fn cancel_from_the_caller_cancels_the_callee() {
    let mut w = World::new(None);
    let pending = w.dial();
    let id = w.callee().incoming().expect("incoming");
    w.command(w.callee, |d, now| d.ring(&id, now)).expect("ring");
    w.net.run_for(Duration::from_millis(200));
    assert!(w.caller().events.iter().any(|e| matches!(e, Event::Early { .. })), "180 reached the caller");
    w.net.with(w.caller, |p, io, now| p.ua.cancel(io.endpoint, &pending, now)).expect("cancel");
    w.net.run_for(Duration::from_secs(1));
    assert_eq!(w.callee().ended(), [EndReason::Cancelled]);
    assert_eq!(w.caller().ended(), [EndReason::Cancelled]);
    let r = w.last_record();
    assert_eq!((r.end_reason.as_deref(), r.ended_by.as_deref()), (Some("cancel"), Some("caller")));
}

#[test]
fn bye_from_either_side_ends_both_legs() {
    for callee_hangs_up in [false, true] {
        let (mut w, caller, callee) = established_call();
        let (phone, id) = if callee_hangs_up { (w.callee, callee) } else { (w.caller, caller) };
        w.command(phone, |d, now| d.send_bye(&id, now)).expect("bye");
        w.net.run_for(Duration::from_secs(1));
        let remote = [EndReason::Bye(Side::Remote)];
        let local = [EndReason::Bye(Side::Local)];
        let (c, e) = if callee_hangs_up { (remote, local) } else { (local, remote) };
        assert_eq!((w.caller().ended(), w.callee().ended()), (c.to_vec(), e.to_vec()));
        let r = w.last_record();
        assert_eq!(r.end_reason.as_deref(), Some("bye"));
        assert_eq!(r.ended_by.as_deref(), Some(if callee_hangs_up { "callee" } else { "caller" }));
        assert!(w.store().iter().any(|op| matches!(op, StoreOp::RemoveCallState(_))), "the saved state goes");
    }
}

#[test]
fn a_reinvite_changing_the_codec_passes_through_and_the_relay_follows() {
    let (mut w, caller, callee) = established_call();
    let caller_relay = audio_port(&remote_sdp(w.caller(), &caller));
    let callee_relay = audio_port(&remote_sdp(w.callee(), &callee));
    w.command(w.caller, |d, now| d.send_reinvite(&caller, offer(4100, "8", "sendrecv"), now)).expect("re-INVITE");
    w.net.run_for(Duration::from_millis(200));
    let reoffer =
        w.callee().events.iter().rev().find_map(|e| if let Event::Reoffer { request, .. } = e { Some(request.clone()) } else { None });
    let reoffer = reoffer.expect("the callee got the re-INVITE");
    let body = String::from_utf8_lossy(reoffer.body()).into_owned();
    assert!(body.contains(&format!("m=audio {callee_relay} RTP/AVP 8")) && body.contains("o=switchboard"), "{body}");
    w.command(w.callee, |d, now| d.accept(&callee, Some(offer(6100, "8", "sendrecv")), now)).expect("accept");
    w.net.run_for(Duration::from_millis(500));
    let answered =
        w.caller().events.iter().rev().find_map(|e| if let Event::Answered { response, .. } = e { Some(response.clone()) } else { None });
    assert!(String::from_utf8_lossy(answered.expect("the caller got the answer").body()).contains("RTP/AVP 8"));
    // The relay now sends the caller's media to the callee's new port: an RTP packet from the
    // caller's new port to its relay port comes out towards 6100.
    let rtp = Bytes::from_static(&[0x80, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7, 0xd5, 0xd5]);
    w.net.inject(addr("127.0.0.1:4100"), std::net::SocketAddr::new(addr(SB).ip(), caller_relay), rtp);
    w.net.run_for(Duration::from_millis(1));
    assert_eq!(w.net.media(w.sb).sent.last().map(|(_, d)| *d), Some(addr("127.0.0.1:6100")));
}

#[test]
fn info_is_passed_on() {
    let (mut w, caller, _callee) = established_call();
    let body = Bytes::from_static(b"Signal=5\r\nDuration=160\r\n");
    w.command(w.caller, |d, now| d.send_info(&caller, "application/dtmf-relay", body, now)).expect("info");
    w.net.run_for(Duration::from_millis(500));
    let info = w.callee().events.iter().find_map(|e| if let Event::Info { request, .. } = e { Some(request.clone()) } else { None });
    assert_eq!(info.expect("INFO reached the callee").body(), b"Signal=5\r\nDuration=160\r\n");
}

#[test]
fn a_session_timer_expiring_on_one_leg_ends_the_other() {
    // The caller asks for a 90 s session refreshed by itself, then goes silent (its refreshes are
    // lost): the B2BUA's caller leg expires (RFC 4028 §10) and the callee gets a BYE.
    let mut w = World::new(Some(Duration::from_secs(90)));
    w.dial();
    w.answer(offer(6000, "0", "sendrecv"));
    assert!(w.caller().established().is_some());
    // Every datagram to or from the caller is lost from now on.
    w.net.cut_off(addr(CALLER).ip(), true);
    w.net.run_for(Duration::from_secs(200));
    assert_eq!(w.callee().ended(), [EndReason::Bye(Side::Remote)]);
    let r = w.last_record();
    assert_eq!((r.end_reason.as_deref(), r.ended_by.as_deref()), (Some("session-expired"), Some("service")));
}

#[test]
fn a_callee_that_never_answers_times_out_for_the_caller() {
    let mut w = World::new(None);
    w.net.cut_off(addr(CALLEE).ip(), true);
    w.dial();
    w.net.run_for(Duration::from_secs_f64(10.5));
    // The dialog layer reports a 408 answer as Timeout; it came from the B2BUA after its 10 s
    // no-answer timeout, long before the caller's own Timer B (32 s).
    assert_eq!(w.caller().ended(), [EndReason::Timeout], "the B2BUA gives up after its no-answer timeout");
    assert_eq!(w.last_record().end_reason.as_deref(), Some("408"));
}

#[test]
fn without_the_relay_the_sdp_passes_through_and_no_port_is_bound() {
    let mut w = World::with_relay(None, false);
    w.dial();
    let callee = w.answer(offer(6000, "0", "sendrecv"));
    let caller = w.caller().established().expect("up");
    assert!(remote_sdp(w.callee(), &callee).contains("m=audio 4000 "), "the callee sends straight to the caller");
    assert!(remote_sdp(w.caller(), &caller).contains("m=audio 6000 "), "and the caller to the callee");
    assert!(w.net.media(w.sb).open.is_empty(), "no relay port bound");
    assert!(
        w.store().iter().any(|op| matches!(op, StoreOp::PutCallState(_) | StoreOp::PutCallStateLater(_))),
        "the call is still saved for a restart"
    );
    w.command(w.caller, |d, now| d.send_bye(&caller, now)).expect("bye");
    w.net.run_for(Duration::from_secs(1));
    assert_eq!(w.callee().ended(), [EndReason::Bye(Side::Remote)]);
    assert_eq!(w.last_record().caller_packets, 0);
}

#[test]
fn a_relay_port_another_process_holds_ends_that_call_and_the_next_call_gets_another() {
    // Three port pairs in the range, one of them (30000) held by "another process": the allocator
    // does not know until the driver fails to bind it. The call that drew it ends on both legs
    // (the port was already in an SDP on its way); the allocator skips the port from then on.
    let mut w = World::build(None, true, Duration::from_secs(10), 30000..=30005);
    w.net.media_mut(w.sb).taken.insert(30000);
    let mut ended = 0;
    for _ in 0..3 {
        let before = w.caller().ended().len();
        w.dial();
        if w.caller().ended().len() > before {
            ended += 1;
            assert_eq!(w.caller().ended().last(), Some(&EndReason::Rejected(480)));
            assert_eq!(w.last_record().end_reason.as_deref(), Some("relay-port-taken"));
            w.net.run_for(Duration::from_secs(1));
            assert!(w.net.media(w.sb).open.is_empty(), "the call's other ports are closed");
            continue;
        }
        // A call that got through holds two of the three pairs: not 30000's.
        w.answer(offer(6000, "0", "sendrecv"));
        let caller = w.caller().established().expect("up");
        let open = &w.net.media(w.sb).open;
        assert!(open.len() == 4 && open.values().all(|a| a.port() >= 30002), "{open:?}");
        w.command(w.caller, |d, now| d.send_bye(&caller, now)).expect("bye");
        w.net.run_for(Duration::from_secs(1));
        assert!(w.net.media(w.sb).open.is_empty());
        assert_eq!(ended, 1, "a taken port costs one call (with these seeds, the first drew it)");
        return;
    }
    panic!("no call got through");
}

// ===== The B2BUA's setup state ends with the caller's INVITE transaction =====
//
// Issue 13 point 2: whatever the answer to the caller's INVITE (one the dialog layer writes
// itself, a refusal, a CANCEL, a callee that never answers), nothing of the call is left: no
// relay flow open and no call entry. A retry on the same Call-ID orphans nothing either.

impl World {
    /// Nothing of any call is left: every relay flow closed, no call in the B2BUA.
    fn assert_nothing_left(&self, case: &str) {
        let open = &self.net.media(self.sb).open;
        assert!(open.is_empty(), "{case}: relay flows left open: {open:?}");
        let b2b = &self.net.app(self.sb).b2b;
        assert!(b2b.is_empty(), "{case}: {} call entries left", b2b.len());
    }

    fn open_flows(&self) -> usize {
        self.net.media(self.sb).open.len()
    }

    /// Puts a raw INVITE from the caller's address on the wire to the B2BUA; its answers reach
    /// the caller's endpoint as stray responses.
    fn raw_invite(&mut self, call_id: &str, branch: &str, cseq: u32, headers: &str, sdp: &str) {
        let msg = format!(
            "INVITE sip:bob@{SB} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=raw1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:alice@{CALLER}>\r\n{headers}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.net.inject(addr(CALLER), addr(SB), Bytes::from(msg));
        self.net.run_for(Duration::from_millis(100));
    }

    /// Final status codes of the answers to the raw INVITEs.
    fn raw_answers(&self) -> Vec<u16> {
        let stray = |e: &EndpointEvent| match e {
            EndpointEvent::StrayResponse { response, .. } => response.status().filter(|&c| c >= 200),
            _ => None,
        };
        self.caller().others.iter().filter_map(stray).collect()
    }
}

#[test]
fn a_422_and_the_retry_on_the_same_call_id_leave_nothing_behind() {
    // The caller asks for a 30 s session: the B2BUA's dialog layer answers 422 (Min-SE 90,
    // RFC 4028 §9) on its own, and the caller's dialog layer retries at once with the same Call-ID
    // and a new CSeq (RFC 4028 §7.4).
    let mut w = World::new(Some(Duration::from_secs(30)));
    let pending = w.dial();
    assert!(w.caller().statuses.contains(&422), "the first INVITE got 422: {:?}", w.caller().statuses);
    assert_eq!(w.open_flows(), 4, "only the retry's call holds relay ports");
    let callee = w.answer(offer(6000, "0", "sendrecv"));
    let caller = w.caller().established().expect("the retry is answered");
    assert_eq!(caller.call_id, pending.call_id, "the retry kept the Call-ID");
    w.command(w.callee, |d, now| d.send_bye(&callee, now)).expect("bye");
    w.net.run_for(Duration::from_secs(1));
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
    let short = "Supported: timer\r\nSession-Expires: 30\r\n";
    w.raw_invite("merged@example.com", "path1", 1, short, &sdp);
    w.raw_invite("merged@example.com", "path2", 1, short, &sdp);
    assert_eq!(w.raw_answers(), [422, 482], "422 to the first copy, 482 to the second");
    w.assert_nothing_left("482");
    // A retry on the same Call-ID (next CSeq, no short session) is a call; it ends as usual.
    w.raw_invite("merged@example.com", "path3", 2, "", &sdp);
    assert_eq!((w.net.app(w.sb).b2b.len(), w.open_flows()), (1, 4), "the retry is a call with its relay ports");
    let id = w.callee().incoming().expect("the retry reached the callee");
    w.command(w.callee, |d, now| d.reject(&id, 486, now)).expect("reject");
    w.net.run_for(Duration::from_secs(1));
    assert_eq!(w.last_record().end_reason.as_deref(), Some("486"));
    w.assert_nothing_left("482 then retry");
}

#[test]
fn a_488_leaves_nothing_behind() {
    // An SDP offer without audio from the caller: refused before any port is bound. (No SDP at
    // all is a late offer, see `a_late_offer_passes_through_both_legs`.)
    let mut w = World::new(None);
    let video = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\n";
    w.raw_invite("no-audio@example.com", "noaudio", 1, "", video);
    assert_eq!(w.raw_answers(), [488]);
    w.assert_nothing_left("488 to an INVITE without audio");
    // The callee answers with no audio: BYE to it, 488 to the caller.
    let mut w = World::new(None);
    w.dial();
    w.answer(Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\n"));
    assert_eq!(w.caller().ended(), [EndReason::Rejected(488)]);
    assert_eq!(w.last_record().end_reason.as_deref(), Some("488"));
    w.assert_nothing_left("488 from an answer without audio");
}

#[test]
fn a_cancel_leaves_nothing_behind() {
    let mut w = World::new(None);
    let pending = w.dial();
    let id = w.callee().incoming().expect("incoming");
    w.command(w.callee, |d, now| d.ring(&id, now)).expect("ring");
    w.net.run_for(Duration::from_millis(200));
    w.net.with(w.caller, |p, io, now| p.ua.cancel(io.endpoint, &pending, now)).expect("cancel");
    w.net.run_for(Duration::from_secs(1));
    assert_eq!(w.last_record().end_reason.as_deref(), Some("cancel"));
    w.assert_nothing_left("CANCEL");
}

#[test]
fn a_cancel_crossing_the_callees_200_leaves_nothing_behind() {
    // The caller cancels while the callee answers (§9.2, §15): the answer finds no call, and
    // the callee's dialog gets a BYE (§13.2.2.4).
    let mut w = World::new(None);
    let pending = w.dial();
    let id = w.callee().incoming().expect("incoming");
    w.command(w.callee, |d, now| d.ring(&id, now)).expect("ring");
    w.net.run_for(Duration::from_millis(200));
    w.net.with(w.caller, |p, io, now| p.ua.cancel(io.endpoint, &pending, now)).expect("cancel");
    w.command(w.callee, |d, now| d.accept(&id, Some(offer(6000, "0", "sendrecv")), now)).expect("accept");
    w.net.run_for(Duration::from_secs(2));
    assert_eq!(w.caller().ended(), [EndReason::Cancelled]);
    assert_eq!(w.callee().ended(), [EndReason::Bye(Side::Remote)]);
    let r = w.last_record();
    assert_eq!((r.end_reason.as_deref(), r.ended_by.as_deref()), (Some("cancel"), Some("caller")));
    w.assert_nothing_left("CANCEL crossing 200");
}

#[test]
fn timer_b_on_the_callee_leg_leaves_nothing_behind() {
    // The callee never answers and the B2BUA's no-answer timeout is longer than Timer B (64*T1 =
    // 32 s): the callee leg's INVITE transaction times out and the caller gets 408.
    let mut w = World::with(None, true, Duration::from_secs(120));
    w.net.cut_off(addr(CALLEE).ip(), true);
    w.dial();
    w.net.run_for(Duration::from_secs(40));
    assert_eq!(w.caller().ended(), [EndReason::Timeout]);
    assert_eq!(w.last_record().end_reason.as_deref(), Some("408"));
    w.assert_nothing_left("Timer B");
}

// ===== late offer (RFC 3261 §13.3.1.4, §13.2.2.4, RFC 3264 §4) =====

/// The INVITE the callee got.
fn incoming_invite(p: &DialogUa) -> switchboard::message::Message {
    p.events.iter().rev().find_map(|e| if let Event::Incoming { request, .. } = e { Some(request.clone()) } else { None }).expect("INVITE")
}

#[test]
fn a_late_offer_passes_through_both_legs() {
    for relay in [true, false] {
        let mut w = World::with_relay(None, relay);
        w.dial_with(None);
        assert!(incoming_invite(w.callee()).body().is_empty(), "relay {relay}: the callee's INVITE has no SDP either");
        // The callee offers in its 200; the caller gets it (at the relay) in the B2BUA's 200.
        let callee = w.answer(offer(6000, "0 8", "sendrecv"));
        let caller = w.caller().established().expect("the caller got the 200");
        let offer_text = remote_sdp(w.caller(), &caller);
        let to_callee_relay = if relay {
            assert!(offer_text.contains("c=IN IP4 127.0.0.1") && audio_port(&offer_text) != 6000, "rewritten to the relay: {offer_text}");
            audio_port(&offer_text)
        } else {
            assert_eq!(audio_port(&offer_text), 6000, "passed through unchanged without the relay: {offer_text}");
            6000
        };
        let d = w.caller().ua.dialogs_ref().get(&caller).expect("dialog");
        assert!(d.awaits_late_ack(), "the caller's ACK waits for its answer");
        // The callee's ACK waits for the caller's: the callee keeps retransmitting its 200.
        assert!(!w.callee().events.iter().any(|e| matches!(e, Event::Acked { .. })), "relay {relay}: no ACK to the callee yet");
        w.net.run_for(Duration::from_secs(2));
        assert!(!w.callee().events.iter().any(|e| matches!(e, Event::Acked { .. })));
        // The caller answers in its ACK; the callee gets that answer (at the relay) in its ACK.
        w.command(w.caller, |d, now| d.send_late_ack(&caller, Some(offer(4000, "8", "sendrecv")), now)).expect("late ACK");
        w.net.run_for(Duration::from_millis(200));
        assert!(w.callee().events.iter().any(|e| matches!(e, Event::Acked { id } if *id == callee)), "relay {relay}: the callee's ACK");
        let answer = remote_sdp(w.callee(), &callee);
        assert!(answer.contains("RTP/AVP 8"), "the caller's answer: {answer}");
        if relay {
            let port = audio_port(&answer);
            assert!(port != 4000 && port != to_callee_relay, "the callee sends to its own relay port: {answer}");
        } else {
            assert_eq!(audio_port(&answer), 4000, "{answer}");
        }
        w.command(w.caller, |d, now| d.send_bye(&caller, now)).expect("bye");
        w.net.run_for(Duration::from_secs(1));
        assert_eq!(w.callee().ended(), [EndReason::Bye(Side::Remote)], "relay {relay}");
        assert_eq!(w.last_record().end_reason.as_deref(), Some("bye"));
        w.net.run_for(Duration::from_secs(40));
        w.assert_nothing_left("late offer");
    }
}

#[test]
fn a_late_offer_without_answer_in_the_ack_ends_both_legs() {
    let mut w = World::new(None);
    w.dial_with(None);
    let callee = w.answer(offer(6000, "0", "sendrecv"));
    let caller = w.caller().established().expect("the caller got the 200");
    // The caller's ACK brings no answer: BYE to both (the callee's 200 acknowledged first).
    w.command(w.caller, |d, now| d.send_late_ack(&caller, None, now)).expect("ACK");
    w.net.run_for(Duration::from_secs(1));
    assert!(w.callee().events.iter().any(|e| matches!(e, Event::Acked { id } if *id == callee)), "the callee's 200 was acknowledged");
    assert_eq!(w.callee().ua.dialogs_ref().get(&callee).and_then(|d| d.remote_sdp().cloned()), None, "without a body");
    assert_eq!(w.callee().ended(), [EndReason::Bye(Side::Remote)]);
    assert_eq!(w.caller().ended(), [EndReason::Bye(Side::Remote)]);
    let r = w.last_record();
    assert_eq!((r.end_reason.as_deref(), r.ended_by.as_deref()), (Some("488"), Some("service")));
    w.net.run_for(Duration::from_secs(40));
    w.assert_nothing_left("late offer without answer");
}

#[test]
fn a_caller_that_never_acks_a_late_offer_ends_the_callee_leg_too() {
    let mut w = World::new(None);
    w.dial_with(None);
    w.answer(offer(6000, "0", "sendrecv"));
    // The caller never ACKs: the B2BUA's 200 to it times out after 64*T1 (§13.3.1.4), and so does
    // the callee's 200, which waited for that ACK; both legs end and nothing is left.
    w.net.run_for(Duration::from_secs(40));
    assert_eq!(w.callee().ended().len(), 1, "the callee leg ended: {:?}", w.callee().ended());
    assert_eq!(w.last_record().end_reason.as_deref(), Some("no-ack"));
    w.net.run_for(Duration::from_secs(40));
    w.assert_nothing_left("late offer never acknowledged");
}
