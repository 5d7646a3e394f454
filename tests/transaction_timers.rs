//! Transaction timers on a virtual clock (RFC 3261 §17, Table 4).
//!
//! Setup: T1 = 500 ms, T2 = 4 s, T4 = 5 s. Each test captures one base `Instant` and speaks in
//! offsets from it. [`run`] plays the driver: it sleeps until `poll_timeout`, calls
//! `handle_timeout` at exactly that instant, and logs every transmission and event with its offset in
//! milliseconds. Asserts compare those logs with the exact instants the RFC prescribes: Timer A
//! doubling without cap, E and G doubling up to T2, B/F/H at 64*T1, D at 32 s, I and K at T4, J at
//! 64*T1, and the 100 Trying at 200 ms.

use std::time::{Duration, Instant};
use switchboard::message::{HeaderName, Message, Method};
use switchboard::transaction::{ClientInvite, ClientNonInvite, Config, Event, ServerInvite, ServerNonInvite, Timer, TransactionState};

fn config() -> Config {
    Config { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
}

fn request(method: Method, transport: &str) -> Message {
    Message::request(method.clone(), "sip:bob@biloxi.example.com")
        .header(HeaderName::Via, format!("SIP/2.0/{transport} pc33.atlanta.example.com;branch=z9hG4bKnashds8"))
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, "Bob <sip:bob@biloxi.example.com>")
        .header(HeaderName::From, "Alice <sip:alice@atlanta.example.com>;tag=1928301774")
        .header(HeaderName::CallId, "a84b4c76e66710@pc33.atlanta.example.com")
        .header(HeaderName::CSeq, format!("314159 {method}"))
        .finish()
}

fn response(req: &Message, code: u16) -> Message {
    req.response_to(code, "Whatever", (code > 100).then_some("a6c85cf")).finish()
}

/// What a machine did, for the logs: the method or status code it sent, or the event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Sent(String),
    Ev(&'static str),
}

fn label(msg: &Message) -> String {
    match msg.method() {
        Some(m) => m.to_string(),
        None => msg.status().map(|c| c.to_string()).unwrap_or_default(),
    }
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Response(_) => "response",
        Event::Request(_) => "request",
        Event::Timeout => "timeout",
        Event::TransportError => "transport-error",
        Event::Terminated => "terminated",
        _ => "other",
    }
}

/// The sans-IO surface every machine shares, so one driver runs them all.
trait Machine {
    fn timeout(&mut self, now: Instant);
    fn next(&self) -> Option<Instant>;
    fn transmit(&mut self) -> Option<Message>;
    fn event(&mut self) -> Option<Event>;
    fn done(&self) -> bool;
}

macro_rules! machine {
    ($($t:ty),*) => {$(
        impl Machine for $t {
            fn timeout(&mut self, now: Instant) { self.handle_timeout(now) }
            fn next(&self) -> Option<Instant> { self.poll_timeout() }
            fn transmit(&mut self) -> Option<Message> { self.poll_transmit() }
            fn event(&mut self) -> Option<Event> { self.poll_event() }
            fn done(&self) -> bool { self.is_terminated() }
        }
    )*};
}
machine!(ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite);

/// The virtual clock and the log of what happened when.
struct Harness {
    base: Instant,
    log: Vec<(u64, Out)>,
}

impl Harness {
    fn new() -> Harness {
        Harness { base: Instant::now(), log: Vec::new() }
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// Drains every output of `m` into the log, stamped `now`.
    fn drain(&mut self, m: &mut impl Machine, now: Instant) {
        let t = (now - self.base).as_millis() as u64;
        while let Some(msg) = m.transmit() {
            self.log.push((t, Out::Sent(label(&msg))));
        }
        while let Some(e) = m.event() {
            self.log.push((t, Out::Ev(event_name(&e))));
        }
    }

    /// Fires the machine's timers in order up to and including `until_ms`, as a driver would.
    fn run(&mut self, m: &mut impl Machine, until_ms: u64) {
        let mut steps = 0;
        while let Some(at) = m.next().filter(|at| *at <= self.at(until_ms)) {
            m.timeout(at);
            self.drain(m, at);
            steps += 1;
            assert!(steps < 1000, "timer loop does not converge");
        }
        if m.done() {
            assert_eq!(m.next(), None, "a terminated machine arms no timer");
        }
    }

    /// Takes the log so far.
    fn take(&mut self) -> Vec<(u64, Out)> {
        std::mem::take(&mut self.log)
    }
}

fn sent(at: &[u64], what: &str) -> Vec<(u64, Out)> {
    at.iter().map(|&t| (t, Out::Sent(what.to_string()))).collect()
}

#[test]
fn invite_client_timer_a_doubles_without_cap_and_timer_b_fires_at_32s() {
    let mut h = Harness::new();
    let mut tx = ClientInvite::new(request(Method::Invite, "UDP"), h.base, &config()).unwrap();
    assert_eq!(tx.next_timer(), Some((Timer::A, h.at(500))));
    h.drain(&mut tx, h.base);
    h.run(&mut tx, 60_000);
    let mut want = sent(&[0, 500, 1_500, 3_500, 7_500, 15_500, 31_500], "INVITE");
    want.push((32_000, Out::Ev("timeout")));
    want.push((32_000, Out::Ev("terminated")));
    assert_eq!(h.take(), want);
    assert!(tx.is_terminated());
    assert_eq!(tx.poll_timeout(), None);
}

#[test]
fn non_invite_client_timer_e_caps_at_t2_and_timer_f_fires_at_32s() {
    let mut h = Harness::new();
    let mut tx = ClientNonInvite::new(request(Method::Options, "UDP"), h.base, &config()).unwrap();
    h.drain(&mut tx, h.base);
    h.run(&mut tx, 60_000);
    let mut want = sent(&[0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500], "OPTIONS");
    want.push((32_000, Out::Ev("timeout")));
    want.push((32_000, Out::Ev("terminated")));
    assert_eq!(h.take(), want);
}

#[test]
fn non_invite_client_in_proceeding_retransmits_every_t2() {
    let mut h = Harness::new();
    let req = request(Method::Register, "UDP");
    let mut tx = ClientNonInvite::new(req.clone(), h.base, &config()).unwrap();
    h.drain(&mut tx, h.base);
    h.run(&mut tx, 600);
    tx.handle_response(response(&req, 100), h.at(600)).unwrap();
    assert_eq!(tx.state(), TransactionState::Proceeding);
    h.drain(&mut tx, h.at(600));
    h.run(&mut tx, 14_000);
    let mut want = sent(&[0, 500], "REGISTER");
    want.push((600, Out::Ev("response")));
    // E keeps its deadline (1.5 s), then runs at T2.
    want.extend(sent(&[1_500, 5_500, 9_500, 13_500], "REGISTER"));
    assert_eq!(h.take(), want);
}

#[test]
fn invite_server_timer_g_doubles_to_t2_until_timer_h_at_32s() {
    let mut h = Harness::new();
    let req = request(Method::Invite, "UDP");
    let mut tx = ServerInvite::new(req.clone(), h.base, &config()).unwrap();
    tx.handle_tu_response(response(&req, 486), h.base).unwrap();
    h.drain(&mut tx, h.base);
    h.run(&mut tx, 60_000);
    let mut want = sent(&[0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500], "486");
    want.push((32_000, Out::Ev("timeout")));
    want.push((32_000, Out::Ev("terminated")));
    assert_eq!(h.take(), want);
}

#[test]
fn invite_server_ack_stops_timer_g_and_timer_i_absorbs_acks() {
    let mut h = Harness::new();
    let req = request(Method::Invite, "UDP");
    let resp = response(&req, 404);
    let ack = switchboard::transaction::build_ack(&req, &resp).unwrap();
    let mut tx = ServerInvite::new(req.clone(), h.base, &config()).unwrap();
    tx.handle_tu_response(resp, h.base).unwrap();
    h.drain(&mut tx, h.base);
    h.run(&mut tx, 700);
    tx.handle_request(req.clone(), h.at(700)).unwrap(); // INVITE again: the 404 again
    h.drain(&mut tx, h.at(700));
    h.run(&mut tx, 1_000);
    tx.handle_request(ack.clone(), h.at(1_000)).unwrap();
    assert_eq!(tx.state(), TransactionState::Confirmed);
    assert_eq!(tx.next_timer(), Some((Timer::I, h.at(6_000))));
    // Late ACK and INVITE duplicates in Confirmed: nothing is sent.
    tx.handle_request(ack.clone(), h.at(2_000)).unwrap();
    tx.handle_request(req.clone(), h.at(3_000)).unwrap();
    h.drain(&mut tx, h.at(3_000));
    h.run(&mut tx, 60_000);
    let mut want = sent(&[0, 500, 700], "404");
    want.push((6_000, Out::Ev("terminated")));
    assert_eq!(h.take(), want);
}

#[test]
fn invite_client_timer_d_absorbs_final_retransmissions_for_32s() {
    let mut h = Harness::new();
    let req = request(Method::Invite, "UDP");
    let mut tx = ClientInvite::new(req.clone(), h.base, &config()).unwrap();
    h.drain(&mut tx, h.base);
    tx.handle_response(response(&req, 486), h.at(200)).unwrap();
    h.drain(&mut tx, h.at(200));
    assert_eq!(tx.next_timer(), Some((Timer::D, h.at(32_200))));
    // A retransmitted 486 is ACKed again but not reported; a stray 2xx or 1xx is ignored.
    tx.handle_response(response(&req, 486), h.at(1_000)).unwrap();
    tx.handle_response(response(&req, 180), h.at(1_100)).unwrap();
    h.drain(&mut tx, h.at(1_100));
    h.run(&mut tx, 60_000);
    let want = vec![
        (0, Out::Sent("INVITE".into())),
        (200, Out::Sent("ACK".into())),
        (200, Out::Ev("response")),
        (1_100, Out::Sent("ACK".into())),
        (32_200, Out::Ev("terminated")),
    ];
    assert_eq!(h.take(), want);
}

#[test]
fn invite_client_accepted_passes_every_2xx_until_timer_m() {
    // RFC 6026 §8.4: the first 2xx moves to Accepted with Timer M = 64*T1; a retransmitted 2xx
    // and another fork's 2xx (other To tag) still go to the TU, a late 1xx or 486 is absorbed,
    // and nothing is sent (the TU ACKs 2xx). Timer M applies on TCP too.
    let mut h = Harness::new();
    let req = request(Method::Invite, "UDP");
    let mut tx = ClientInvite::new(req.clone(), h.base, &config()).unwrap();
    h.drain(&mut tx, h.base);
    tx.handle_response(response(&req, 200), h.at(300)).unwrap();
    h.drain(&mut tx, h.at(300));
    assert_eq!(tx.state(), TransactionState::Accepted);
    assert_eq!(tx.next_timer(), Some((Timer::M, h.at(32_300))), "Timer A and B are stopped");
    tx.handle_response(response(&req, 200), h.at(1_000)).unwrap();
    let fork = req.response_to(200, "OK", Some("other-fork")).finish();
    tx.handle_response(fork, h.at(1_200)).unwrap();
    tx.handle_response(response(&req, 180), h.at(1_300)).unwrap();
    tx.handle_response(response(&req, 486), h.at(1_400)).unwrap();
    h.drain(&mut tx, h.at(1_400));
    assert!(tx.cancel().is_err(), "no CANCEL after a 2xx");
    h.run(&mut tx, 60_000);
    let want = vec![
        (0, Out::Sent("INVITE".into())),
        (300, Out::Ev("response")),
        (1_400, Out::Ev("response")),
        (1_400, Out::Ev("response")),
        (32_300, Out::Ev("terminated")),
    ];
    assert_eq!(h.take(), want);
    let tcp = request(Method::Invite, "TCP");
    let mut tx = ClientInvite::new(tcp.clone(), h.base, &config()).unwrap();
    tx.handle_response(response(&tcp, 200), h.at(100)).unwrap();
    assert_eq!(tx.next_timer(), Some((Timer::M, h.at(32_100))), "Timer M is not zero on a reliable transport");
}

#[test]
fn non_invite_client_timer_k_absorbs_duplicates_for_t4() {
    let mut h = Harness::new();
    let req = request(Method::Options, "UDP");
    let mut tx = ClientNonInvite::new(req.clone(), h.base, &config()).unwrap();
    h.drain(&mut tx, h.base);
    tx.handle_response(response(&req, 200), h.at(300)).unwrap();
    h.drain(&mut tx, h.at(300));
    tx.handle_response(response(&req, 200), h.at(900)).unwrap();
    h.drain(&mut tx, h.at(900));
    h.run(&mut tx, 60_000);
    let want = vec![(0, Out::Sent("OPTIONS".into())), (300, Out::Ev("response")), (5_300, Out::Ev("terminated"))];
    assert_eq!(h.take(), want);
}

#[test]
fn non_invite_server_answers_retransmissions_with_last_response_until_timer_j() {
    let mut h = Harness::new();
    let req = request(Method::Register, "UDP");
    let mut tx = ServerNonInvite::new(req.clone(), h.base, &config()).unwrap();
    tx.handle_request(req.clone(), h.at(100)).unwrap(); // Trying: absorbed
    tx.handle_tu_response(response(&req, 100), h.at(200)).unwrap();
    h.drain(&mut tx, h.at(200));
    tx.handle_request(req.clone(), h.at(300)).unwrap(); // resend the 100
    h.drain(&mut tx, h.at(300));
    tx.handle_tu_response(response(&req, 200), h.at(500)).unwrap();
    assert_eq!(tx.handle_tu_response(response(&req, 500), h.at(500)), Err(switchboard::transaction::Error::FinalAlreadySent));
    h.drain(&mut tx, h.at(500));
    for t in [1_000, 2_000, 31_000] {
        tx.handle_request(req.clone(), h.at(t)).unwrap();
        h.drain(&mut tx, h.at(t));
    }
    h.run(&mut tx, 60_000);
    let mut want = sent(&[200, 300], "100");
    want.extend(sent(&[500, 1_000, 2_000, 31_000], "200"));
    want.push((32_500, Out::Ev("terminated")));
    assert_eq!(h.take(), want);
    tx.handle_request(req, h.at(40_000)).unwrap();
    assert_eq!(tx.poll_transmit(), None);
}

#[test]
fn invite_server_sends_100_trying_after_exactly_200ms_when_tu_is_silent() {
    let h = Harness::new();
    let req = request(Method::Invite, "UDP");
    let mut tx = ServerInvite::new(req.clone(), h.base, &config()).unwrap();
    assert_eq!(tx.next_timer(), Some((Timer::Trying100, h.at(200))));
    tx.handle_timeout(h.at(199));
    assert_eq!(tx.poll_transmit(), None);
    tx.handle_timeout(h.at(200));
    let trying = tx.poll_transmit().expect("100 Trying at 200 ms");
    assert_eq!(trying.status(), Some(100));
    assert_eq!(trying.to().unwrap().tag(), None);
    assert_eq!(trying.cseq().unwrap(), req.cseq().unwrap());
    assert_eq!(trying.header(HeaderName::Via), req.header(HeaderName::Via));
    // The INVITE retransmission is answered with the last provisional: the same 100, byte for byte.
    tx.handle_request(req.clone(), h.at(500)).unwrap();
    assert_eq!(tx.poll_transmit().map(|m| m.as_bytes().clone()), Some(trying.as_bytes().clone()));
    assert_eq!(tx.poll_timeout(), None);
}

#[test]
fn invite_server_sends_no_100_when_tu_answers_first() {
    let mut h = Harness::new();
    let req = request(Method::Invite, "UDP");
    let mut tx = ServerInvite::new(req.clone(), h.base, &config()).unwrap();
    tx.handle_tu_response(response(&req, 180), h.at(150)).unwrap();
    h.drain(&mut tx, h.at(150));
    h.run(&mut tx, 10_000);
    tx.handle_request(req.clone(), h.at(1_000)).unwrap();
    h.drain(&mut tx, h.at(1_000));
    assert_eq!(h.take(), sent(&[150, 1_000], "180"));
    // A 2xx from the TU moves to Accepted (RFC 6026 §8.5): the INVITE retransmission at 3 s is
    // absorbed, the TU's 2xx retransmission at 2.5 s goes out, Timer L ends it at 2 s + 64*T1.
    tx.handle_tu_response(response(&req, 200), h.at(2_000)).unwrap();
    h.drain(&mut tx, h.at(2_000));
    assert_eq!(tx.next_timer(), Some((Timer::L, h.at(34_000))));
    tx.handle_tu_response(response(&req, 200), h.at(2_500)).unwrap();
    h.drain(&mut tx, h.at(2_500));
    tx.handle_request(req.clone(), h.at(3_000)).unwrap();
    h.drain(&mut tx, h.at(3_000));
    h.run(&mut tx, 40_000);
    assert_eq!(h.take(), vec![(2_000, Out::Sent("200".into())), (2_500, Out::Sent("200".into())), (34_000, Out::Ev("terminated"))]);
    assert!(tx.is_terminated());
}

#[test]
fn reliable_transport_neither_retransmits_nor_lingers() {
    let h = Harness::new();
    let inv = request(Method::Invite, "TCP");
    let mut ci = ClientInvite::new(inv.clone(), h.base, &config()).unwrap();
    assert_eq!(ci.next_timer(), Some((Timer::B, h.at(32_000))));
    ci.handle_response(response(&inv, 486), h.at(100)).unwrap();
    assert!(ci.is_terminated(), "Timer D is zero on TCP");
    let opt = request(Method::Options, "TLS");
    let mut cn = ClientNonInvite::new(opt.clone(), h.base, &config()).unwrap();
    assert_eq!(cn.next_timer(), Some((Timer::F, h.at(32_000))));
    cn.handle_response(response(&opt, 200), h.at(100)).unwrap();
    assert!(cn.is_terminated(), "Timer K is zero on TLS");
    let mut si = ServerInvite::new(inv.clone(), h.base, &config()).unwrap();
    si.handle_tu_response(response(&inv, 486), h.base).unwrap();
    assert_eq!(si.next_timer(), Some((Timer::H, h.at(32_000))), "no Timer G on TCP");
    si.handle_request(switchboard::transaction::build_ack(&inv, &response(&inv, 486)).unwrap(), h.at(100)).unwrap();
    assert!(si.is_terminated(), "Timer I is zero on TCP");
}

#[test]
fn spurious_and_late_timeouts() {
    let h = Harness::new();
    let mut tx = ClientInvite::new(request(Method::Invite, "UDP"), h.base, &config()).unwrap();
    let _ = tx.poll_transmit();
    tx.handle_timeout(h.at(499)); // spurious: nothing due
    assert_eq!(tx.poll_transmit(), None);
    assert_eq!(tx.poll_timeout(), Some(h.at(500)));
    // Reported 1.5 s late: one retransmission, next interval (1 s) counted from now.
    tx.handle_timeout(h.at(2_000));
    assert!(tx.poll_transmit().is_some());
    assert_eq!(tx.poll_transmit(), None);
    assert_eq!(tx.poll_timeout(), Some(h.at(3_000)));
}

#[test]
fn transport_error_is_an_event_and_terminates() {
    let h = Harness::new();
    let mut tx = ClientNonInvite::new(request(Method::Options, "UDP"), h.base, &config()).unwrap();
    let _ = tx.poll_transmit();
    tx.handle_transport_error(h.at(10));
    assert_eq!(tx.poll_event(), Some(Event::TransportError));
    assert_eq!(tx.poll_event(), Some(Event::Terminated));
    assert_eq!(tx.poll_timeout(), None);
    tx.handle_transport_error(h.at(20));
    assert_eq!(tx.poll_event(), None);
}

#[test]
fn the_transaction_layer_never_reads_the_clock_or_touches_io() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/transaction");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for banned in ["Instant::now", "SystemTime", "tokio", "UdpSocket", "std::thread"] {
            assert!(!text.contains(banned), "{} mentions {banned}", path.display());
        }
    }
}

/// Timer A resends the INVITE at T1 and 3*T1: two retransmissions; the first send is not one.
#[test]
fn timer_retransmissions_are_counted() {
    let invite = switchboard::message::Message::request(switchboard::message::Method::Invite, "sip:bob@127.0.0.1")
        .header(switchboard::message::HeaderName::Via, "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKcount")
        .header(switchboard::message::HeaderName::MaxForwards, 70)
        .header(switchboard::message::HeaderName::To, "<sip:bob@127.0.0.1>")
        .header(switchboard::message::HeaderName::From, "<sip:alice@127.0.0.1>;tag=1")
        .header(switchboard::message::HeaderName::CallId, "count@127.0.0.1")
        .header(switchboard::message::HeaderName::CSeq, "1 INVITE")
        .finish();
    let t0 = std::time::Instant::now();
    let mut table = switchboard::transaction::Transactions::new(switchboard::transaction::Config::default());
    assert!(table.start_client(invite, t0).is_ok());
    table.handle_timeout(t0 + std::time::Duration::from_millis(500));
    table.handle_timeout(t0 + std::time::Duration::from_millis(1500));
    assert_eq!(table.retransmissions(), 2);
    assert_eq!(std::iter::from_fn(|| table.poll_transmit()).count(), 3);
}
