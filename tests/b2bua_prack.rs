//! 100rel/PRACK (RFC 3262) and UPDATE (RFC 3311) through the B2BUA core, without sockets: two
//! scripted user agents (`testing::DialogUa`) on the in-memory network of `switchboard::testing`,
//! on a virtual clock. Each leg does its own reliability: a callee that requires 100rel is
//! PRACKed by the service, and the caller gets a reliable 18x only when it supports 100rel; an
//! UPDATE from one leg reaches the other as an UPDATE with the relay in its SDP, in a confirmed
//! call; an early UPDATE the caller's leg cannot take is answered by the service from the relay.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::{Application, FlowId, Io};
use switchboard::b2bua::{B2bua, B2buaConfig};
use switchboard::dialog::{CallParams, DialogConfig, DialogId, DialogState, Dialogs, Event, RefreshMethod, Rel100};
use switchboard::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use switchboard::message::{Message, Method};
use switchboard::proxy::Target;
use switchboard::relay::RelayConfig;
use switchboard::testing::{DialogUa, Net, NodeId};

const CALLER: &str = "127.0.0.2:5061";
const CALLEE: &str = "127.0.0.3:5062";
const SB: &str = "127.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn offer(port: u16, dir: &str) -> Bytes {
    Bytes::from(format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={dir}\r\n"
    ))
}

fn phone(me: &str, seed: u64, rel100: Rel100) -> DialogUa {
    let cfg = DialogConfig {
        contact: format!("sip:phone@{me}"),
        sent_by: me.into(),
        rng_seed: seed,
        session_expires: None,
        rel100,
        ..DialogConfig::default()
    };
    DialogUa::new(Dialogs::new(cfg))
}

struct Node(B2bua);

impl Application for Node {
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        match event {
            EndpointEvent::Request { tx, request, source } if !self.0.knows(&request) => {
                let targets = vec![Target { uri: format!("sip:bob@{CALLEE}"), dest: addr(CALLEE) }];
                self.0.start_call(io, tx, request, source, targets, now);
            }
            ev => self.0.handle_event(io, ev, now),
        }
        while self.0.poll_store().is_some() {}
    }

    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: Bytes, now: Instant) {
        let _relayed = self.0.handle_media(io, flow, source, &payload, now);
    }

    fn handle_bind_failed(&mut self, io: &mut Io<'_>, flow: FlowId, now: Instant) {
        self.0.handle_bind_failed(io, flow, now);
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.0.handle_timeout(io, now);
        while self.0.poll_store().is_some() {}
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
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
}

impl World {
    fn new(caller: Rel100, callee: Rel100) -> World {
        World::with_caller(phone(CALLER, 1, caller), callee)
    }

    fn with_caller(caller: DialogUa, callee: Rel100) -> World {
        let b2b = B2bua::new(B2buaConfig {
            local: addr(SB),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            media_ip: addr(SB).ip(),
            rtp_ports: 31000..=31999,
            relay: RelayConfig { inactivity: None, ..RelayConfig::default() },
            no_answer: Duration::from_secs(120),
            relay_media: true,
            seed: 42,
        });
        let mut net = Net::new(Instant::now(), 1);
        let ep = || Endpoint::new(EndpointConfig::default());
        net.add("switchboard", addr(SB), ep(), Node(b2b));
        let caller = net.add("caller", addr(CALLER), ep(), caller);
        let callee = net.add("callee", addr(CALLEE), ep(), phone(CALLEE, 2, callee));
        World { net, caller, callee }
    }

    fn caller(&self) -> &DialogUa {
        self.net.app(self.caller)
    }

    fn callee(&self) -> &DialogUa {
        self.net.app(self.callee)
    }

    fn command<R>(&mut self, phone: NodeId<DialogUa>, f: impl FnOnce(&mut Dialogs, Instant) -> R) -> R {
        self.net.with(phone, |p, io, now| {
            let r = f(p.dialogs(), now);
            p.flush(io, now);
            r
        })
    }

    /// The caller dials; the callee's incoming dialog id.
    fn dial(&mut self) -> DialogId {
        let params = CallParams {
            from: "<sip:alice@example.com>".into(),
            to: "<sip:bob@example.com>".into(),
            target: Some(format!("sip:bob@{SB}")),
            routes: Vec::new(),
            sdp: Some(offer(4000, "sendrecv")),
            max_forwards: None,
            asserted_identity: None,
            referred_by: None,
        };
        self.command(self.caller, |d, now| d.invite(params, now)).expect("invite");
        self.net.run_for(Duration::from_millis(100));
        self.callee().incoming().expect("the callee got an INVITE")
    }

    fn early(&self, phone: NodeId<DialogUa>) -> Option<DialogId> {
        self.net.app(phone).events.iter().find_map(|e| if let Event::Early { id } = e { Some(id.clone()) } else { None })
    }

    fn reoffer(&self, phone: NodeId<DialogUa>) -> Option<Message> {
        self.net
            .app(phone)
            .events
            .iter()
            .rev()
            .find_map(|e| if let Event::Reoffer { request, .. } = e { Some(request.clone()) } else { None })
    }

    fn answered(&self, phone: NodeId<DialogUa>) -> Option<Message> {
        self.net.app(phone).events.iter().rev().find_map(|e| {
            if let Event::Answered { response, .. } = e {
                Some(response.clone())
            } else {
                None
            }
        })
    }
}

fn dialog_of<'a>(p: &'a DialogUa, id: &DialogId) -> &'a switchboard::dialog::Dialog {
    p.ua.dialogs_ref().get(id).expect("dialog")
}

fn audio_port(sdp: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(sdp);
    let m = text.lines().find_map(|l| l.strip_prefix("m=audio ")).expect("an audio line").to_owned();
    m.split(' ').next().and_then(|p| p.parse().ok()).expect("a port")
}

#[test]
fn both_legs_do_their_own_prack() {
    let mut w = World::new(Rel100::Supported, Rel100::Required);
    let callee_id = w.dial();
    w.command(w.callee, |d, now| d.ring(&callee_id, now)).expect("ring");
    w.net.run_for(Duration::from_secs(40));
    // The callee's 180 was reliable and the service PRACKed it: no retransmission, no 500.
    assert!(!dialog_of(w.callee(), &callee_id).awaiting_prack());
    assert_eq!(dialog_of(w.callee(), &callee_id).state(), DialogState::Early);
    // The caller supports 100rel: its 180 was reliable too, and it PRACKed it (the 200 to its PRACK).
    let caller_early = w.early(w.caller).expect("the caller heard the ringing");
    assert!(dialog_of(w.caller(), &caller_early).peer_sent_reliable());
    assert_eq!(w.caller().statuses, [180, 200], "the 180, and the 200 to the caller's PRACK");
    w.command(w.callee, |d, now| d.accept(&callee_id, Some(offer(6000, "sendrecv")), now)).expect("accept");
    w.net.run_for(Duration::from_secs(1));
    assert!(w.caller().established().is_some());
    assert!(w.caller().ended().is_empty() && w.callee().ended().is_empty());
}

#[test]
fn a_callee_requiring_100rel_is_pracked_by_the_service_for_a_caller_without_it() {
    let mut w = World::new(Rel100::Off, Rel100::Required);
    let callee_id = w.dial();
    w.command(w.callee, |d, now| d.progress(&callee_id, 183, Some(offer(6000, "sendrecv")), now)).expect("183");
    w.net.run_for(Duration::from_secs(40));
    assert!(!dialog_of(w.callee(), &callee_id).awaiting_prack(), "the service PRACKed the callee");
    assert_eq!(dialog_of(w.callee(), &callee_id).state(), DialogState::Early);
    let caller_early = w.early(w.caller).expect("the caller heard the ringing");
    assert!(!dialog_of(w.caller(), &caller_early).peer_sent_reliable(), "a plain 18x for a caller without 100rel");
    // The 183 reaches the caller as early media (plain): no PRACK from it, so no 200 to one.
    assert_eq!(w.caller().statuses, [183], "the caller sent no PRACK");
    // The 2xx waited for nothing on the caller's leg.
    w.command(w.callee, |d, now| d.accept(&callee_id, Some(offer(6000, "sendrecv")), now)).expect("accept");
    w.net.run_for(Duration::from_secs(1));
    assert!(w.caller().established().is_some());
    assert!(w.caller().ended().is_empty() && w.callee().ended().is_empty());
}

#[test]
fn an_update_in_a_confirmed_call_reaches_the_other_leg_as_an_update() {
    let mut w = World::new(Rel100::Supported, Rel100::Supported);
    let callee_id = w.dial();
    w.command(w.callee, |d, now| d.accept(&callee_id, Some(offer(6000, "sendrecv")), now)).expect("accept");
    w.net.run_for(Duration::from_millis(300));
    let caller_id = w.caller().established().expect("up");
    let callee_relay = audio_port(dialog_of(w.callee(), &callee_id).remote_sdp().expect("sdp"));
    w.command(w.caller, |d, now| d.send_update(&caller_id, Some(offer(4100, "sendonly")), now)).expect("UPDATE");
    w.net.run_for(Duration::from_millis(300));
    let update = w.reoffer(w.callee).expect("the callee got the offer");
    assert_eq!(update.method(), Some(&Method::Update));
    let body = String::from_utf8_lossy(update.body()).into_owned();
    assert!(body.contains(&format!("m=audio {callee_relay} ")) && body.contains("o=switchboard") && body.contains("a=sendonly"), "{body}");
    w.command(w.callee, |d, now| d.accept(&callee_id, Some(offer(6100, "recvonly")), now)).expect("answer");
    w.net.run_for(Duration::from_millis(300));
    let answer = w.answered(w.caller).expect("the caller got the answer");
    assert_eq!(answer.cseq().unwrap().method, Method::Update);
    assert!(String::from_utf8_lossy(answer.body()).contains("a=recvonly"));
    assert!(w.caller().ended().is_empty() && w.callee().ended().is_empty());
}

#[test]
fn an_early_update_from_the_callee_is_answered_from_the_relay() {
    let mut w = World::new(Rel100::Off, Rel100::Required);
    let callee_id = w.dial();
    w.command(w.callee, |d, now| d.progress(&callee_id, 183, Some(offer(6000, "sendrecv")), now)).expect("183");
    w.net.run_for(Duration::from_millis(300));
    let relay_port = audio_port(dialog_of(w.callee(), &callee_id).remote_sdp().expect("the INVITE's offer"));
    w.command(w.callee, |d, now| d.send_update(&callee_id, Some(offer(6200, "sendonly")), now)).expect("early UPDATE");
    w.net.run_for(Duration::from_millis(300));
    let answer = w.answered(w.callee).expect("the early UPDATE was answered");
    assert_eq!(answer.cseq().unwrap().method, Method::Update);
    let body = String::from_utf8_lossy(answer.body()).into_owned();
    assert!(body.contains(&format!("m=audio {relay_port} ")) && body.contains("a=recvonly"), "{body}");
    assert_eq!(dialog_of(w.callee(), &callee_id).state(), DialogState::Early);
    w.command(w.callee, |d, now| d.accept(&callee_id, Some(offer(6200, "sendrecv")), now)).expect("accept");
    w.net.run_for(Duration::from_secs(1));
    assert!(w.caller().established().is_some());
}

#[test]
fn a_caller_refreshing_its_session_by_update_keeps_the_call_up() {
    // RFC 4028 §10 with UPDATE as the refresh: the caller asks for a 90 s session that it refreshes
    // itself with bodyless UPDATEs; the caller's leg answers them, the callee never sees them.
    let cfg = DialogConfig {
        contact: format!("sip:phone@{CALLER}"),
        sent_by: CALLER.into(),
        rng_seed: 1,
        session_expires: Some(Duration::from_secs(90)),
        refresh_method: RefreshMethod::Update,
        ..DialogConfig::default()
    };
    let mut w = World::with_caller(DialogUa::new(Dialogs::new(cfg)), Rel100::Supported);
    let callee_id = w.dial();
    w.command(w.callee, |d, now| d.accept(&callee_id, Some(offer(6000, "sendrecv")), now)).expect("accept");
    w.net.run_for(Duration::from_secs(300));
    let refreshed = w.caller().events.iter().filter(|e| matches!(e, Event::Refreshed { .. })).count();
    assert!(refreshed >= 5, "a refresh every 45 s: {refreshed} in 300 s");
    assert!(
        w.caller().statuses.iter().filter(|s| **s == 200).count() >= 6,
        "the INVITE's and the UPDATEs' 200s: {:?}",
        w.caller().statuses
    );
    assert!(w.callee().events.iter().all(|e| !matches!(e, Event::Reoffer { .. })), "refreshes stay on their leg");
    assert!(w.caller().ended().is_empty() && w.callee().ended().is_empty(), "the session never expired");
}
