//! The B2BUA core in memory: a caller and a callee built from our own sans-IO stack (Endpoint +
//! UaCore + Dialogs) make one call through `switchboard::b2bua::B2bua`, with no sockets and a
//! virtual clock. A B2BUA (RFC 3261 §6, RFC 7092) keeps two dialogs per call, each with its own
//! Call-ID, and rewrites each SDP so that both phones send their RTP to its relay ports.
//!
//! `cargo run --example b2bua`

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::Io;
use switchboard::b2bua::{sdp::audio_of, B2bua, B2buaConfig};
use switchboard::call::{answer, offer, MediaPrefs};
use switchboard::dialog::{CallParams, DialogConfig, Dialogs, Event};
use switchboard::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use switchboard::media::rtp::{RtpSender, SenderConfig};
use switchboard::proxy::Target;
use switchboard::relay::RelayConfig;
use switchboard::sdp::{Direction, SessionDescription};
use switchboard::store::StoreOp;
use switchboard::testing::MemoryMedia;
use switchboard::ua::core::{UaCore, UaEvent};

const ADDRS: [&str; 3] = ["127.0.0.1:5061", "127.0.0.1:5062", "127.0.0.1:5060"]; // caller, callee, service
fn addr(i: usize) -> SocketAddr {
    ADDRS[i].parse().expect("an address")
}

/// Three endpoints on an in-memory network: 0 and 1 are phones (UaCore each), 2 is the B2BUA.
struct World {
    eps: [Endpoint; 3],
    phones: [UaCore; 2],
    events: [Vec<Event>; 2],
    b2b: B2bua,
    media: MemoryMedia,
    now: Instant,
    t0: Instant,
}

impl World {
    /// Delivers every datagram and event until nothing moves (no loss, no latency).
    fn settle(&mut self) {
        let now = self.now;
        // Call records carry wall-clock times; here they follow the virtual clock.
        let wall_clock = Duration::from_secs(1_800_000_000) + (now - self.t0);
        for (i, phone) in self.phones.iter_mut().enumerate() {
            phone.flush(&mut self.eps[i], now); // send what the commands given to the dialogs produced
        }
        let mut moved = true;
        while moved {
            moved = false;
            for from in 0..3 {
                while let Some(t) = self.eps[from].poll_transmit() {
                    let to = ADDRS.iter().position(|a| *a == t.dest.to_string()).expect("a known address");
                    self.eps[to].handle_datagram(addr(from), t.payload, now);
                    moved = true;
                }
            }
            for i in 0..2 {
                while let Some(ev) = self.eps[i].poll_event() {
                    self.phones[i].handle_endpoint_event(&mut self.eps[i], ev, now);
                    moved = true;
                }
                while let Some(ev) = self.phones[i].poll_event() {
                    if let UaEvent::Dialog(ev) = ev {
                        self.events[i].push(ev);
                    }
                }
            }
            while let Some(ev) = self.eps[2].poll_event() {
                moved = true;
                let mut io = Io { endpoint: &mut self.eps[2], media: &mut self.media, wall_clock };
                match ev {
                    // A new INVITE: the callee is the target (in `switchboard serve`, the registrar says).
                    EndpointEvent::Request { tx, request, source } if !self.b2b.knows(&request) => {
                        let targets = vec![Target { uri: format!("sip:bob@{}", ADDRS[1]), dest: addr(1) }];
                        self.b2b.start_call(&mut io, tx, request, source, targets, now);
                    }
                    ev => self.b2b.handle_event(&mut io, ev, now),
                }
                // What the driver does after each input: bind the relay ports the B2BUA picked.
                assert!(self.media.apply().is_empty(), "no other process holds a port here");
            }
        }
    }
}

fn main() {
    let t0 = Instant::now();
    let dialogs = |i: usize| {
        Dialogs::new(DialogConfig {
            contact: format!("sip:phone@{}", ADDRS[i]),
            sent_by: ADDRS[i].into(),
            rng_seed: i as u64,
            ..DialogConfig::default()
        })
    };
    let b2b = B2bua::new(B2buaConfig {
        local: addr(2),
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        media_ip: [127, 0, 0, 1].into(),
        rtp_ports: 30000..=30999, // two port pairs per call: one facing each phone
        relay: RelayConfig { inactivity: None, ..RelayConfig::default() },
        no_answer: Duration::from_secs(10),
        relay_media: true,
        seed: 42,
    });
    let mut w = World {
        eps: std::array::from_fn(|_| Endpoint::new(EndpointConfig::default())),
        phones: [UaCore::new(dialogs(0), None), UaCore::new(dialogs(1), None)],
        events: Default::default(),
        b2b,
        media: MemoryMedia::default(),
        now: t0,
        t0,
    };
    let (alice_rtp, bob_rtp) = (SocketAddr::from(([127, 0, 0, 1], 4000)), SocketAddr::from(([127, 0, 0, 1], 6000)));

    // 1. Alice dials bob at the service, offering RTP on port 4000.
    let to_sb = Some(format!("sip:bob@{}", ADDRS[2]));
    let params = CallParams {
        from: "<sip:alice@example.com>".into(),
        to: "<sip:bob@example.com>".into(),
        target: to_sb,
        routes: Vec::new(),
        sdp: Some(offer(alice_rtp, &MediaPrefs::default(), Direction::SendRecv, 1, 1).to_bytes()),
        max_forwards: None,
        asserted_identity: None,
        referred_by: None,
    };
    w.phones[0].dialogs().invite(params, w.now).expect("an INVITE");
    w.settle();
    // 2. Bob's phone gets the B2BUA's own INVITE (a new dialog) and answers it from port 6000.
    let incoming = w.events[1].iter().find(|e| matches!(e, Event::Incoming { .. })).cloned();
    let Some(Event::Incoming { id, request }) = incoming else { panic!("bob's phone rings") };
    let offered = SessionDescription::parse(&request.body_bytes()).expect("an SDP offer");
    let (bob_sdp, _) = answer(&offered, bob_rtp, &MediaPrefs::default(), Direction::SendRecv, 2).expect("a common codec");
    w.phones[1].dialogs().accept(&id, Some(bob_sdp.to_bytes()), w.now).expect("accept");
    w.settle();
    let up = |i: usize| w.events[i].iter().find_map(|e| if let Event::Established { id } = e { Some(id.clone()) } else { None });
    let (alice, bob) = (up(0).expect("alice's call is up"), up(1).expect("bob's call is up"));
    // The SDP each phone was given (the 200 for alice, the INVITE for bob) names a relay port.
    let given = |i: usize, id| w.phones[i].dialogs_ref().get(id).and_then(|d| d.remote_sdp().cloned()).expect("an SDP");
    let (alice_sdp, bob_sdp) = (given(0, &alice), given(1, &bob));
    let relay_of = |sdp: &[u8]| audio_of(sdp).and_then(|a| a.remote.rtp).expect("an audio stream");
    let (alice_relay, bob_relay) = (relay_of(&alice_sdp), relay_of(&bob_sdp));
    let m_line = |sdp: &[u8]| String::from_utf8_lossy(sdp).lines().find(|l| l.starts_with("m=")).unwrap_or("").to_owned();
    println!("alice's leg: Call-ID {}\n  her SDP: {} -> send RTP to {alice_relay}", alice.call_id, m_line(&alice_sdp));
    println!("bob's leg:   Call-ID {}\n  his SDP: {} -> send RTP to {bob_relay}", bob.call_id, m_line(&bob_sdp));
    assert_ne!(alice.call_id, bob.call_id, "two dialogs, two Call-IDs");
    let relay_ports = 30000..=30999;
    assert!(relay_ports.contains(&alice_relay.port()) && relay_ports.contains(&bob_relay.port()), "both phones send to the relay");
    assert_ne!(alice_relay, bob_relay, "one relay port per leg, not each other's");

    // 3. Two seconds of alice's RTP (50 packets/s) into her relay port: the relay passes it to bob.
    let flow = w.media.open.iter().find(|(_, a)| **a == alice_relay).map(|(f, _)| *f).expect("the relay port");
    let mut rtp = RtpSender::new(SenderConfig::from_seed(0, 7)).expect("PCMU is a valid payload type");
    for _ in 0..100 {
        w.now += Duration::from_millis(20);
        let mut io = Io { endpoint: &mut w.eps[2], media: &mut w.media, wall_clock: Duration::from_secs(1_800_000_000) + (w.now - t0) };
        let packet = Bytes::from(rtp.send_audio(&[0xff; 160])); // 20 ms of µ-law silence
        assert!(w.b2b.handle_media(&mut io, flow, alice_rtp, &packet, w.now), "the relay owns this port");
        assert!(w.media.apply().is_empty()); // as the driver does after each input: send the relayed datagram
    }

    // 4. Alice hangs up (§15.1.1): the B2BUA answers her BYE, sends its own to bob, closes the record.
    w.phones[0].dialogs().send_bye(&alice, w.now).expect("a BYE");
    w.settle();
    // The B2BUA hands call records to the store writer; here we just keep the last one.
    let records = std::iter::from_fn(|| w.b2b.poll_store()).filter_map(|op| if let StoreOp::PutCall(r) = op { Some(r) } else { None });
    let r = records.last().expect("a call record");
    let duration = r.ended_at.zip(r.answered_at).map(|(e, a)| (e - a) as f64 / 1000.0);
    let (reason, by, codec) = (r.end_reason.as_deref(), r.ended_by.as_deref(), r.codec.as_deref());
    println!("call record {}: {} -> {}, codec {}", r.id, r.from, r.to, codec.unwrap_or("-"));
    println!("  Call-IDs: caller {}, callee {}", r.caller_call_id, r.callee_call_id.as_deref().unwrap_or("-"));
    println!("  ended: {} by {} after {:.1} s", reason.unwrap_or("-"), by.unwrap_or("-"), duration.unwrap_or(0.0));
    println!("  RTP from alice: {} packets, {} lost; relayed to bob: {}", r.caller_packets, r.caller_lost, w.media.sent.len());
    assert_eq!((r.end_reason.as_deref(), r.ended_by.as_deref()), (Some("bye"), Some("caller")));
    assert_eq!((r.caller_packets, w.media.sent.len(), duration), (100, 100, Some(2.0)));
    assert!(w.events[1].iter().any(|e| matches!(e, Event::Terminated { .. })), "bob's leg ended too");
}
