//! Early media through the sans-IO B2BUA (issue 15 point 2): scripted phones (`testing::DialogUa`)
//! on the in-memory network, on a virtual clock. A callee's 183 with SDP reaches the caller as a
//! 183 whose SDP names the caller's relay port (or passes unchanged without the relay); media is
//! relayed both ways before the answer; the 200 re-uses the relay (the same description when it
//! repeats the 183's, a new version and the relay following when it does not); with two callee
//! branches sending 183 with SDP, the latest one wins and the relay follows it, and a 200 from
//! the other branch moves the relay back.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::{Application, FlowId, Io};
use switchboard::b2bua::{B2bua, B2buaConfig};
use switchboard::dialog::{CallParams, DialogConfig, DialogId, Dialogs, Event};
use switchboard::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use switchboard::proxy::Target;
use switchboard::relay::RelayConfig;
use switchboard::testing::{DialogUa, Net, NodeId};

const CALLER: &str = "127.0.0.2:5061";
const CALLEE1: &str = "127.0.0.3:5062";
const CALLEE2: &str = "127.0.0.4:5063";
const SB: &str = "127.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// A PCMU description at `media`.
fn sdp(media: &str, version: u32) -> Bytes {
    let a = addr(media);
    Bytes::from(format!(
        "v=0\r\no=- 7 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = a.ip(),
        port = a.port()
    ))
}

fn rtp(seq: u8) -> Bytes {
    Bytes::from(vec![0x80, 0, 0, seq, 0, 0, 0, 160, 0, 0, 0, 7, 0xff, 0xff])
}

fn phone(me: &str, seed: u64) -> DialogUa {
    let cfg = DialogConfig { contact: format!("sip:phone@{me}"), sent_by: me.into(), rng_seed: seed, ..DialogConfig::default() };
    DialogUa::new(Dialogs::new(cfg))
}

/// The B2BUA, calling every target for each new call.
struct Node {
    b2b: B2bua,
    targets: Vec<Target>,
}

impl Application for Node {
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        match event {
            EndpointEvent::Request { tx, request, source } if !self.b2b.knows(&request) => {
                self.b2b.start_call(io, tx, request, source, self.targets.clone(), now);
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
    callees: Vec<NodeId<DialogUa>>,
    sb: NodeId<Node>,
}

impl World {
    /// The caller, the B2BUA and one phone per callee address (each a target of every call).
    fn new(callees: &[&str], relay_media: bool) -> World {
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
        let targets = callees.iter().map(|c| Target { uri: format!("sip:bob@{c}"), dest: addr(c) }).collect();
        let mut net = Net::new(Instant::now(), 1);
        let ep = || Endpoint::new(EndpointConfig::default());
        let sb = net.add("switchboard", addr(SB), ep(), Node { b2b, targets });
        let caller = net.add("caller", addr(CALLER), ep(), phone(CALLER, 1));
        let callees = callees.iter().enumerate().map(|(i, c)| net.add(c, addr(c), ep(), phone(c, 2 + i as u64))).collect();
        World { net, caller, callees, sb }
    }

    fn caller(&self) -> &DialogUa {
        self.net.app(self.caller)
    }

    fn command<R>(&mut self, node: NodeId<DialogUa>, f: impl FnOnce(&mut Dialogs, Instant) -> R) -> R {
        self.net.with(node, |p, io, now| {
            let r = f(p.dialogs(), now);
            p.flush(io, now);
            r
        })
    }

    /// The caller dials with its media at 127.0.0.2:4000.
    fn dial(&mut self) {
        let params = CallParams {
            from: "<sip:alice@example.com>".into(),
            to: "<sip:bob@example.com>".into(),
            target: Some(format!("sip:bob@{SB}")),
            routes: Vec::new(),
            sdp: Some(sdp("127.0.0.2:4000", 1)),
            max_forwards: None,
            asserted_identity: None,
            referred_by: None,
        };
        self.command(self.caller, |d, now| d.invite(params, now)).expect("invite");
        self.net.run_for(Duration::from_millis(100));
    }

    /// Callee `n`'s incoming call.
    fn incoming(&self, n: usize) -> DialogId {
        self.net.app(self.callees[n]).incoming().expect("the callee got an INVITE")
    }

    /// Callee `n` sends `code` with `body`.
    fn progress(&mut self, n: usize, code: u16, body: Bytes) {
        let id = self.incoming(n);
        self.command(self.callees[n], |d, now| d.progress(&id, code, Some(body), now)).expect("progress");
        self.net.run_for(Duration::from_millis(100));
    }

    /// Callee `n` answers with `body`.
    fn answer(&mut self, n: usize, body: Bytes) {
        let id = self.incoming(n);
        self.command(self.callees[n], |d, now| d.accept(&id, Some(body), now)).expect("accept");
        self.net.run_for(Duration::from_millis(300));
    }

    /// The caller's early media so far, as (code, SDP text).
    fn early_media(&self) -> Vec<(u16, String)> {
        let events = &self.caller().events;
        events
            .iter()
            .filter_map(|e| match e {
                Event::EarlyMedia { code, sdp, .. } => Some((*code, String::from_utf8_lossy(sdp).into_owned())),
                _ => None,
            })
            .collect()
    }

    /// The caller's SDP from the 200.
    fn caller_answer(&self) -> String {
        let id = self.caller().established().expect("the caller's call is up");
        let d = self.caller().ua.dialogs_ref().get(&id).expect("dialog");
        String::from_utf8_lossy(d.remote_sdp().expect("sdp")).into_owned()
    }

    /// Sends one RTP packet from `from` to the relay port `port`; returns where the relay sent it.
    fn relay(&mut self, from: &str, port: u16, seq: u8) -> Option<SocketAddr> {
        let before = self.net.media(self.sb).sent.len();
        self.net.inject(addr(from), SocketAddr::new(addr(SB).ip(), port), rtp(seq));
        self.net.run_for(Duration::from_millis(5));
        let sent = &self.net.media(self.sb).sent;
        sent.get(before..).and_then(|s| s.last()).map(|(_, dest)| *dest)
    }
}

/// The audio port of an SDP.
fn audio_port(sdp: &str) -> u16 {
    let m = sdp.lines().find_map(|l| l.strip_prefix("m=audio ")).expect("an audio line");
    m.split(' ').next().and_then(|p| p.parse().ok()).expect("a port")
}

/// The `o=` version of an SDP.
fn version(sdp: &str) -> u64 {
    let o = sdp.lines().find_map(|l| l.strip_prefix("o=")).expect("an o= line");
    o.split(' ').nth(2).and_then(|v| v.parse().ok()).expect("a version")
}

/// The relay port the callee leg got in its INVITE.
fn callee_relay_port(w: &World, n: usize) -> u16 {
    let id = w.incoming(n);
    let d = w.net.app(w.callees[n]).ua.dialogs_ref().get(&id).expect("the callee's dialog");
    audio_port(&String::from_utf8_lossy(d.remote_sdp().expect("offer")))
}

#[test]
fn a_183_with_sdp_reaches_the_caller_pointed_at_the_relay_and_media_flows_before_the_answer() {
    let mut w = World::new(&[CALLEE1], true);
    w.dial();
    w.progress(0, 183, sdp("127.0.0.3:6000", 1));
    let early = w.early_media();
    assert_eq!(early.len(), 1, "one 183 with SDP reached the caller: {:?}", w.caller().events);
    let (code, text) = &early[0];
    assert_eq!(*code, 183);
    assert!(text.contains("c=IN IP4 127.0.0.1\r\n") && text.contains("o=switchboard "), "rewritten to the relay: {text}");
    assert!(!text.contains("127.0.0.3"), "the callee's address is not shown to the caller: {text}");
    let caller_relay = audio_port(text);
    let callee_relay = callee_relay_port(&w, 0);
    assert!((30000..=30999).contains(&caller_relay) && caller_relay != callee_relay);
    assert!(!w.caller().statuses.contains(&180), "no bare 180 before the early media: {:?}", w.caller().statuses);

    // Media both ways before the answer.
    assert_eq!(w.relay("127.0.0.3:6000", callee_relay, 1), Some(addr("127.0.0.2:4000")), "callee to caller");
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 1), Some(addr("127.0.0.3:6000")), "caller to callee");

    // The 200 repeats the 183's SDP: the caller's 200 carries the very description of its 183,
    // and the relay keeps going.
    w.answer(0, sdp("127.0.0.3:6000", 1));
    assert_eq!(w.caller_answer(), *text, "the 200's SDP is the 183's, o= version included");
    assert_eq!(w.relay("127.0.0.3:6000", callee_relay, 2), Some(addr("127.0.0.2:4000")));
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 2), Some(addr("127.0.0.3:6000")));
}

#[test]
fn a_200_with_another_sdp_than_the_183_moves_the_relay() {
    let mut w = World::new(&[CALLEE1], true);
    w.dial();
    w.progress(0, 183, sdp("127.0.0.3:6000", 1));
    let (_, early) = w.early_media().pop().expect("early media");
    let caller_relay = audio_port(&early);
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 1), Some(addr("127.0.0.3:6000")));
    w.answer(0, sdp("127.0.0.3:6100", 2));
    let answer = w.caller_answer();
    assert_eq!(audio_port(&answer), caller_relay, "the same relay port");
    assert!(version(&answer) > version(&early), "a new description, a new version: {early} then {answer}");
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 2), Some(addr("127.0.0.3:6100")), "the relay follows the 200");
}

#[test]
fn without_the_relay_the_183_sdp_passes_unchanged() {
    let mut w = World::new(&[CALLEE1], false);
    w.dial();
    let body = sdp("127.0.0.3:6000", 1);
    w.progress(0, 183, body.clone());
    let early = w.early_media();
    assert_eq!(early, vec![(183, String::from_utf8_lossy(&body).into_owned())]);
    assert!(w.net.media(w.sb).open.is_empty(), "no relay port bound");
}

#[test]
fn a_180_without_sdp_still_rings_and_an_sdp_without_audio_is_not_passed_on() {
    let mut w = World::new(&[CALLEE1], true);
    w.dial();
    let id = w.incoming(0);
    w.command(w.callees[0], |d, now| d.ring(&id, now)).expect("ring");
    w.net.run_for(Duration::from_millis(100));
    assert_eq!(w.caller().statuses.iter().filter(|s| **s == 180).count(), 1, "{:?}", w.caller().statuses);
    let video_only =
        Bytes::from_static(b"v=0\r\no=- 7 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\n");
    w.progress(0, 183, video_only);
    assert!(w.early_media().is_empty(), "{:?}", w.caller().events);
}

#[test]
fn with_two_branches_sending_183_the_latest_wins_and_the_relay_follows_it() {
    let mut w = World::new(&[CALLEE1, CALLEE2], true);
    w.dial();
    let relay1 = callee_relay_port(&w, 0);
    assert_eq!(relay1, callee_relay_port(&w, 1), "both branches send to the callee leg's relay port");

    w.progress(0, 183, sdp("127.0.0.3:6000", 1));
    let (_, first) = w.early_media().pop().expect("the first branch's early media");
    let caller_relay = audio_port(&first);
    assert_eq!(w.relay("127.0.0.3:6000", relay1, 1), Some(addr("127.0.0.2:4000")), "branch 1 is heard");
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 1), Some(addr("127.0.0.3:6000")), "branch 1 hears the caller");

    w.progress(1, 183, sdp("127.0.0.4:7000", 1));
    let early = w.early_media();
    assert_eq!(early.len(), 2, "both 183s reached the caller");
    let (code, second) = &early[1];
    assert_eq!((*code, audio_port(second)), (183, caller_relay), "the same relay port for the caller");
    assert!(version(second) > version(&first), "a new description: {first} then {second}");
    // The caller now talks to branch 2 only, and hears branch 2, not branch 1.
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 2), Some(addr("127.0.0.4:7000")), "the relay follows the latest 183");
    assert_eq!(w.relay("127.0.0.3:6000", relay1, 2), None, "branch 1 is no longer heard");
    assert_eq!(w.relay("127.0.0.4:7000", relay1, 1), Some(addr("127.0.0.2:4000")), "branch 2 is heard");
    assert_eq!(w.relay("127.0.0.3:6000", relay1, 3), None, "branch 1 stays unheard");

    // Branch 1 sends its 183 again: it is the latest now.
    w.progress(0, 183, sdp("127.0.0.3:6000", 1));
    assert_eq!(w.early_media().len(), 3);
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 3), Some(addr("127.0.0.3:6000")));

    // Branch 2 answers after all: the relay follows the 200, branch 1 is cancelled.
    w.answer(1, sdp("127.0.0.4:7000", 1));
    let answer = w.caller_answer();
    assert_eq!(audio_port(&answer), caller_relay);
    assert_eq!(w.relay("127.0.0.2:4000", caller_relay, 4), Some(addr("127.0.0.4:7000")), "the relay follows the 200");
    w.net.run_for(Duration::from_secs(1));
    assert!(!w.net.app(w.callees[0]).ended().is_empty(), "the other branch is cancelled");
}
