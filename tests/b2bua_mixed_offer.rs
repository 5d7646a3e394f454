//! Offers with an `RTP/SAVP` and an `RTP/AVP` audio line (how phones with optional SRTP offer,
//! issue 15 point 6) through the sans-IO B2BUA: scripted phones (`testing::DialogUa`) on the
//! in-memory network, on a virtual clock.
//!
//! The callee gets both lines pointed at the same relay port, `a=crypto` untouched; a callee
//! without SRTP answers the AVP line and refuses the SAVP line with port 0; the caller's answer
//! keeps the SAVP line at 0 and names the relay on the AVP line; the relay's legs follow the AVP
//! lines on both sides (not the SAVP line the offer listed first), and media flows both ways.
//! The same for early media (183), a re-INVITE, a late offer (the offer in the callee's 200, the
//! answer in the caller's ACK), and without the relay the SDP passes unchanged.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::{Application, FlowId, Io};
use switchboard::b2bua::{B2bua, B2buaConfig};
use switchboard::dialog::{CallParams, DialogConfig, DialogId, Dialogs, Event, Rel100};
use switchboard::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use switchboard::proxy::Target;
use switchboard::relay::RelayConfig;
use switchboard::testing::{DialogUa, Net, NodeId};

const CALLER: &str = "127.0.0.2:5061";
const CALLEE: &str = "127.0.0.3:5062";
const SB: &str = "127.0.0.1:5060";
const KEY: &str = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// A best-effort SRTP offer at `ip`: PCMU as `RTP/SAVP` on `savp` (with an SDES key), then as
/// `RTP/AVP` on `avp`.
fn mixed(ip: &str, savp: u16, avp: u16, version: u32) -> Bytes {
    Bytes::from(format!(
        "v=0\r\no=- 7 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio {savp} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n{KEY}\r\n\
m=audio {avp} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ))
}

/// The answer of a phone without SRTP to a mixed offer: the SAVP line refused, the AVP line at
/// `ip:avp`.
fn avp_answer(ip: &str, avp: u16, version: u32) -> Bytes {
    Bytes::from(format!(
        "v=0\r\no=- 9 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio 0 RTP/SAVP 0\r\n\
m=audio {avp} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    ))
}

fn rtp(seq: u8) -> Bytes {
    Bytes::from(vec![0x80, 0, 0, seq, 0, 0, 0, 160, 0, 0, 0, 7, 0xff, 0xff])
}

fn phone(me: &str, seed: u64, rel100: Rel100) -> DialogUa {
    let cfg = DialogConfig { contact: format!("sip:phone@{me}"), sent_by: me.into(), rng_seed: seed, rel100, ..DialogConfig::default() };
    DialogUa::new(Dialogs::new(cfg))
}

/// The B2BUA, calling the callee for each new call.
struct Node {
    b2b: B2bua,
}

impl Application for Node {
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        match event {
            EndpointEvent::Request { tx, request, source } if !self.b2b.knows(&request) => {
                let targets = vec![Target { uri: format!("sip:bob@{CALLEE}"), dest: addr(CALLEE) }];
                self.b2b.start_call(io, tx, request, source, targets, now);
            }
            ev => self.b2b.handle_event(io, ev, now),
        }
        while self.b2b.poll_store().is_some() {}
    }

    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: Bytes, now: Instant) {
        let _relayed = self.b2b.handle_media(io, flow, source, &payload, now);
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.b2b.handle_timeout(io, now);
        while self.b2b.poll_store().is_some() {}
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.b2b.poll_timeout()
    }

    fn shutdown(&mut self, _io: &mut Io<'_>, _now: Instant) {}

    fn is_done(&self) -> bool {
        false
    }
}

struct World {
    net: Net,
    caller: NodeId<DialogUa>,
    callee: NodeId<DialogUa>,
    sb: NodeId<Node>,
}

impl World {
    fn new(relay_media: bool) -> World {
        World::with_rel100(relay_media, Rel100::default(), Rel100::default())
    }

    fn with_rel100(relay_media: bool, caller_rel100: Rel100, callee_rel100: Rel100) -> World {
        let b2b = B2bua::new(B2buaConfig {
            local: addr(SB),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            media_ip: addr(SB).ip(),
            rtp_ports: 30000..=30999,
            relay: RelayConfig { inactivity: None, ..RelayConfig::default() },
            no_answer: Duration::from_secs(30),
            relay_media,
            seed: 42,
        });
        let mut net = Net::new(Instant::now(), 1);
        let ep = || Endpoint::new(EndpointConfig::default());
        let sb = net.add("switchboard", addr(SB), ep(), Node { b2b });
        let caller = net.add("caller", addr(CALLER), ep(), phone(CALLER, 1, caller_rel100));
        let callee = net.add("callee", addr(CALLEE), ep(), phone(CALLEE, 2, callee_rel100));
        World { net, caller, callee, sb }
    }

    fn app(&self, node: NodeId<DialogUa>) -> &DialogUa {
        self.net.app(node)
    }

    fn command<R>(&mut self, node: NodeId<DialogUa>, f: impl FnOnce(&mut Dialogs, Instant) -> R) -> R {
        self.net.with(node, |p, io, now| {
            let r = f(p.dialogs(), now);
            p.flush(io, now);
            r
        })
    }

    /// The caller dials with `sdp` (none: a late offer).
    fn dial(&mut self, sdp: Option<Bytes>) {
        let params = CallParams {
            from: "<sip:alice@example.com>".into(),
            to: "<sip:bob@example.com>".into(),
            target: Some(format!("sip:bob@{SB}")),
            sdp,
            ..CallParams::default()
        };
        self.command(self.caller, |d, now| d.invite(params, now)).expect("invite");
        self.net.run_for(Duration::from_millis(100));
    }

    fn incoming(&self) -> DialogId {
        self.app(self.callee).incoming().expect("the callee got an INVITE")
    }

    /// The SDP the callee's INVITE carried.
    fn callee_offer(&self) -> String {
        let id = self.incoming();
        let d = self.app(self.callee).ua.dialogs_ref().get(&id).expect("the callee's dialog");
        String::from_utf8_lossy(d.remote_sdp().expect("an offer")).into_owned()
    }

    fn answer(&mut self, body: Bytes) {
        let id = self.incoming();
        self.command(self.callee, |d, now| d.accept(&id, Some(body), now)).expect("accept");
        self.net.run_for(Duration::from_millis(300));
    }

    /// The remote SDP of `node`'s established call.
    fn remote_sdp(&self, node: NodeId<DialogUa>) -> String {
        let id = self.app(node).established().expect("the call is up");
        let d = self.app(node).ua.dialogs_ref().get(&id).expect("dialog");
        String::from_utf8_lossy(d.remote_sdp().expect("sdp")).into_owned()
    }

    /// Sends one RTP packet from `from` to relay port `port`; returns where the relay sent it.
    fn relay(&mut self, from: &str, port: u16, seq: u8) -> Option<SocketAddr> {
        let before = self.net.media(self.sb).sent.len();
        self.net.inject(addr(from), SocketAddr::new(addr(SB).ip(), port), rtp(seq));
        self.net.run_for(Duration::from_millis(5));
        let sent = &self.net.media(self.sb).sent;
        sent.get(before..).and_then(|s| s.last()).map(|(_, dest)| *dest)
    }
}

/// The (proto, port) of every audio line of an SDP, in order.
fn audio_lines(sdp: &str) -> Vec<(String, u16)> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("m=audio "))
        .map(|m| {
            let mut f = m.split(' ');
            let port = f.next().and_then(|p| p.parse().ok()).expect("a port");
            (f.next().expect("a proto").to_owned(), port)
        })
        .collect()
}

/// Checks that an offer passed on names relay port `relay` on both lines, with the key.
fn assert_both_lines_at_the_relay(offer: &str) -> u16 {
    let lines = audio_lines(offer);
    assert_eq!(lines.len(), 2, "{offer}");
    let relay = lines[0].1;
    assert!((30000..=30999).contains(&relay), "a relay port: {offer}");
    assert_eq!(lines, [("RTP/SAVP".to_owned(), relay), ("RTP/AVP".to_owned(), relay)], "both lines at the relay: {offer}");
    assert!(offer.contains(KEY), "the SDES key passes end to end: {offer}");
    assert!(offer.contains("c=IN IP4 127.0.0.1\r\n") && !offer.contains("127.0.0.2") && !offer.contains("127.0.0.3"), "{offer}");
    relay
}

/// Checks that an answer passed on keeps the SAVP line refused and names the relay on the AVP line.
fn assert_avp_at_the_relay(answer: &str) -> u16 {
    let lines = audio_lines(answer);
    assert_eq!(lines.len(), 2, "{answer}");
    assert_eq!(lines[0], ("RTP/SAVP".to_owned(), 0), "the refused line stays refused: {answer}");
    assert_eq!(lines[1].0, "RTP/AVP", "{answer}");
    assert!((30000..=30999).contains(&lines[1].1), "the accepted line at the relay: {answer}");
    assert!(!answer.contains("127.0.0.3") && !answer.contains("127.0.0.2"), "{answer}");
    lines[1].1
}

#[test]
fn a_mixed_offer_reaches_the_callee_on_both_lines_and_the_avp_answer_carries_media_both_ways() {
    let mut w = World::new(true);
    w.dial(Some(mixed("127.0.0.2", 4002, 4000, 1)));
    let callee_relay = assert_both_lines_at_the_relay(&w.callee_offer());

    w.answer(avp_answer("127.0.0.3", 6000, 1));
    assert_eq!(w.app(w.caller).statuses.last(), Some(&200), "answered, not 488: {:?}", w.app(w.caller).statuses);
    let caller_relay = assert_avp_at_the_relay(&w.remote_sdp(w.caller));
    assert_ne!(caller_relay, callee_relay);

    // The relay follows the AVP lines: the caller's 4000 (not the SAVP line's 4002), the callee's 6000.
    assert_eq!(w.relay("127.0.0.3:6000", callee_relay, 1), Some(addr("127.0.0.2:4000")), "callee to caller");
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 1), Some(addr("127.0.0.3:6000")), "caller to callee");
    assert_eq!(w.relay("127.0.0.3:6000", callee_relay, 2), Some(addr("127.0.0.2:4000")), "and again");
}

#[test]
fn a_183_answering_the_avp_line_carries_early_media_to_the_avp_line() {
    let mut w = World::new(true);
    w.dial(Some(mixed("127.0.0.2", 4002, 4000, 1)));
    let callee_relay = assert_both_lines_at_the_relay(&w.callee_offer());
    let id = w.incoming();
    w.command(w.callee, |d, now| d.progress(&id, 183, Some(avp_answer("127.0.0.3", 6000, 1)), now)).expect("183");
    w.net.run_for(Duration::from_millis(100));
    let early = w.app(w.caller).events.iter().find_map(|e| match e {
        Event::EarlyMedia { code: 183, sdp, .. } => Some(String::from_utf8_lossy(sdp).into_owned()),
        _ => None,
    });
    let caller_relay = assert_avp_at_the_relay(&early.expect("the 183 with SDP reached the caller"));
    assert_eq!(w.relay("127.0.0.3:6000", callee_relay, 1), Some(addr("127.0.0.2:4000")), "early media to the AVP line");
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 1), Some(addr("127.0.0.3:6000")));
    w.answer(avp_answer("127.0.0.3", 6000, 1));
    assert_eq!(assert_avp_at_the_relay(&w.remote_sdp(w.caller)), caller_relay);
    assert_eq!(w.relay("127.0.0.3:6000", callee_relay, 2), Some(addr("127.0.0.2:4000")), "the same after the 200");
}

#[test]
fn a_mixed_reinvite_is_relayed_on_both_lines_and_the_relay_follows_the_accepted_one() {
    let mut w = World::new(true);
    w.dial(Some(mixed("127.0.0.2", 4002, 4000, 1)));
    let callee_relay = assert_both_lines_at_the_relay(&w.callee_offer());
    w.answer(avp_answer("127.0.0.3", 6000, 1));
    let caller_relay = assert_avp_at_the_relay(&w.remote_sdp(w.caller));

    // The callee moves with a mixed re-offer; the caller (no SRTP) answers its AVP line at 4100.
    let callee = w.app(w.callee).established().expect("callee up");
    w.command(w.callee, |d, now| d.send_reinvite(&callee, mixed("127.0.0.3", 6102, 6100, 2), now)).expect("re-INVITE");
    w.net.run_for(Duration::from_millis(200));
    let reoffer = w.app(w.caller).events.iter().rev().find_map(|e| match e {
        Event::Reoffer { id, request } => Some((id.clone(), String::from_utf8_lossy(request.body()).into_owned())),
        _ => None,
    });
    let (caller, reoffer) = reoffer.expect("the caller got the re-INVITE");
    assert_eq!(assert_both_lines_at_the_relay(&reoffer), caller_relay, "the caller's relay port on both lines");
    w.command(w.caller, |d, now| d.accept(&caller, Some(avp_answer("127.0.0.2", 4100, 2)), now)).expect("accept");
    w.net.run_for(Duration::from_millis(500));
    let answered = w.app(w.callee).events.iter().rev().find_map(|e| match e {
        Event::Answered { response, .. } => Some(String::from_utf8_lossy(response.body()).into_owned()),
        _ => None,
    });
    assert_eq!(assert_avp_at_the_relay(&answered.expect("the callee got the answer")), callee_relay);
    assert_eq!(w.relay("127.0.0.3:6100", callee_relay, 1), Some(addr("127.0.0.2:4100")), "callee to the caller's new AVP port");
    assert_eq!(w.relay("127.0.0.2:4100", caller_relay, 1), Some(addr("127.0.0.3:6100")), "caller to the callee's AVP line, not 6102");
}

#[test]
fn a_mixed_late_offer_in_the_200_is_answered_in_the_ack_and_the_relay_follows_the_avp_line() {
    let mut w = World::new(true);
    w.dial(None);
    assert!(w.callee_offer_is_empty(), "a late offer goes on without SDP");
    w.answer(mixed("127.0.0.3", 6002, 6000, 1));
    let caller_relay = assert_both_lines_at_the_relay(&w.remote_sdp(w.caller));
    let caller = w.app(w.caller).established().expect("caller up");
    w.command(w.caller, |d, now| d.send_late_ack(&caller, Some(avp_answer("127.0.0.2", 4000, 1)), now)).expect("ACK");
    w.net.run_for(Duration::from_millis(300));
    let callee_relay = assert_avp_at_the_relay(&w.remote_sdp(w.callee));
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 1), Some(addr("127.0.0.3:6000")), "caller to the callee's AVP line, not 6002");
    assert_eq!(w.relay("127.0.0.3:6000", callee_relay, 1), Some(addr("127.0.0.2:4000")), "callee to caller");
}

/// The callee requires 100rel, the caller has none: the caller's leg cannot take an early UPDATE,
/// so the service answers the callee's mixed UPDATE itself, accepting the AVP line only (it has
/// no SRTP key to answer the SAVP line with), and the relay follows that line.
#[test]
fn an_early_mixed_update_answered_by_the_service_accepts_the_avp_line_only() {
    let mut w = World::with_rel100(true, Rel100::Off, Rel100::Required);
    w.dial(Some(mixed("127.0.0.2", 4002, 4000, 1)));
    let callee_relay = assert_both_lines_at_the_relay(&w.callee_offer());
    let id = w.incoming();
    w.command(w.callee, |d, now| d.progress(&id, 183, Some(avp_answer("127.0.0.3", 6000, 1)), now)).expect("183");
    w.net.run_for(Duration::from_millis(300));
    let early = w.app(w.caller).events.iter().find_map(|e| match e {
        Event::EarlyMedia { sdp, .. } => Some(String::from_utf8_lossy(sdp).into_owned()),
        _ => None,
    });
    let caller_relay = assert_avp_at_the_relay(&early.expect("early media reached the caller"));
    w.command(w.callee, |d, now| d.send_update(&id, Some(mixed("127.0.0.3", 6202, 6200, 2)), now)).expect("early UPDATE");
    w.net.run_for(Duration::from_millis(300));
    let answer = w.app(w.callee).events.iter().rev().find_map(|e| match e {
        Event::Answered { response, .. } => Some(String::from_utf8_lossy(response.body()).into_owned()),
        _ => None,
    });
    let answer = answer.expect("the early UPDATE was answered");
    assert!(!w.app(w.caller).events.iter().any(|e| matches!(e, Event::Reoffer { .. })), "answered by the service, not the caller");
    assert_eq!(assert_avp_at_the_relay(&answer), callee_relay, "{answer}");
    assert!(!answer.contains("crypto"), "no key echoed back: {answer}");
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 1), Some(addr("127.0.0.3:6200")), "to the AVP line, not 6202");
}

#[test]
fn without_the_relay_a_mixed_offer_and_its_answer_pass_unchanged() {
    let mut w = World::new(false);
    let offer = mixed("127.0.0.2", 4002, 4000, 1);
    w.dial(Some(offer.clone()));
    assert_eq!(w.callee_offer(), String::from_utf8_lossy(&offer));
    let answer = avp_answer("127.0.0.3", 6000, 1);
    w.answer(answer.clone());
    assert_eq!(w.remote_sdp(w.caller), String::from_utf8_lossy(&answer));
    assert!(w.net.media(w.sb).open.is_empty(), "no relay port bound");
}

impl World {
    fn callee_offer_is_empty(&self) -> bool {
        let id = self.incoming();
        self.app(self.callee).ua.dialogs_ref().get(&id).is_some_and(|d| d.remote_sdp().is_none_or(|b| b.is_empty()))
    }
}
