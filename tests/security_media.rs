//! Issue 14 point 6, media theft, against the real service binary on loopback sockets: strangers
//! spray RTP and RTCP at every port of the relay range (so the random choice of ports does not
//! hide the call from them), one from before the call is placed (so before either phone's first
//! packet, and through the callee's ringing, which lasts longer than the learning window) and one
//! from after audio flows. Alice calls bob through the B2BUA meanwhile.
//!
//! Asserts: neither stranger receives a single datagram; the relay counted their packets as stray
//! on both legs (the spray did hit the call's ports); alice hears bob's 1000 Hz and bob hears
//! alice's 440 Hz for the whole call. The service runs with `--rtp-learning-ms 300`, so a window
//! opened by the spray is over long before the call is answered.
//!
//! Every wait is on an output line, a process exit or a polled condition with a deadline.

#[path = "common/heard.rs"]
mod heard;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;

use procs::{Proc, Stream, TempDir};
use serde_json::Value;
use service_cli::{calls, n, users, PHONE, SB};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The relay range: 10 RTP/RTCP pairs, above Linux's ephemeral ports, used by no other test.
const RELAY: std::ops::RangeInclusive<u16> = 61000..=61019;

/// A stranger at `ip` spraying RTP at every even port of [`RELAY`] and RTCP at every odd one,
/// every 10 ms, and counting whatever comes back.
struct Stranger {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    from: Arc<Mutex<Vec<SocketAddr>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Stranger {
    fn spray_from(ip: &str) -> Stranger {
        let socket = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
        let (stop, received, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let from = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let (socket, stop, received, from) = (socket.try_clone().expect("clone"), stop.clone(), received.clone(), from.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, src)) = socket.recv_from(&mut buf) {
                        received.fetch_add(1, Ordering::Relaxed);
                        from.lock().expect("lock").push(src);
                    }
                }
            })
        };
        let writer = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut seq = 0u16;
                while !stop.load(Ordering::Relaxed) {
                    seq = seq.wrapping_add(1);
                    let mut rtp = vec![0x80, 0];
                    rtp.extend_from_slice(&seq.to_be_bytes());
                    rtp.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                    rtp.extend_from_slice(&0x5EED_0BADu32.to_be_bytes());
                    rtp.extend_from_slice(&[0xFF; 160]);
                    let rr = [0x80, 201, 0, 1, 0x5E, 0xED, 0x0B, 0xAD];
                    for port in RELAY {
                        let packet: &[u8] = if port % 2 == 0 { &rtp } else { &rr };
                        if socket.send_to(packet, ("127.0.0.1", port)).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Stranger { stop, received, sent, from, threads: vec![reader, writer] }
    }

    /// Stops spraying; returns (datagrams sent, datagrams received, their distinct sources).
    fn finish(self) -> (u64, u64, Vec<SocketAddr>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("stranger thread");
        }
        let mut from = self.from.lock().expect("lock").clone();
        from.sort();
        from.dedup();
        (self.sent.load(Ordering::Relaxed), self.received.load(Ordering::Relaxed), from)
    }
}

#[test]
fn rtp_sprayed_at_the_relay_before_and_after_the_phones_first_packet_steals_nothing() {
    let dir = TempDir::new("security-media");
    users(dir.path(), &["alice", "bob"]);
    let relay = format!("{}-{}", RELAY.start(), RELAY.end());
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", &relay, "--rtp-learning-ms", "300", "--data"]).arg(dir.path());
    let (_svc, port) = procs::spawn_service(&mut cmd, Duration::from_secs(15));
    let registrar = format!("sip:127.0.0.1:{port}");

    // Bob rings for 1.5 s (five learning windows) before answering.
    let bob_wav = dir.join("bob.wav");
    let mut bob_cmd = Command::new(PHONE);
    bob_cmd
        .args(["--user", "bob", "--register", &registrar, "--password-file"])
        .arg(dir.join("bob.pw"))
        .args(["--summary", "json", "--tone", "1000", "--record", bob_wav.to_str().unwrap(), "--rtp-ports", "61100-61199"])
        .args(["answer", "--calls", "1", "--after", "1.5"]);
    let mut bob = Proc::spawn("bob", &mut bob_cmd);
    bob.wait_line("registered aor=", Duration::from_secs(15)).expect("bob registered");

    // The first stranger sprays from before the INVITE.
    let early = Stranger::spray_from("127.0.0.2");
    let alice_wav = dir.join("alice.wav");
    let mut alice_cmd = Command::new(PHONE);
    alice_cmd
        .args(["--user", "alice", "--register", &registrar, "--password-file"])
        .arg(dir.join("alice.pw"))
        .args(["--summary", "json", "--tone", "440", "--record", alice_wav.to_str().unwrap(), "--rtp-ports", "61200-61299"])
        .args(["dial", "sip:bob@127.0.0.1", "--duration", "4"]);
    let mut alice = Proc::spawn("alice", &mut alice_cmd);

    // Audio flows both ways while the first stranger sprays; then the second one starts, after
    // both phones' first packets.
    let t0 = Instant::now();
    let flowing = loop {
        let c = calls(dir.path());
        if c.len() == 1 && n(&c[0]["caller"]["forwarded"]) > 25 && n(&c[0]["callee"]["forwarded"]) > 25 {
            break c;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no audio both ways: {c:#?}\n{}\n{}", alice.transcript(), bob.transcript());
        std::thread::sleep(Duration::from_millis(100));
    };
    let late = Stranger::spray_from("127.0.0.3");
    // Wait until the relay has counted the late stranger's packets too (a stray count that grows
    // on both legs after this point), then let the call end.
    let before = (n(&flowing[0]["caller"]["stray"]), n(&flowing[0]["callee"]["stray"]));
    let t1 = Instant::now();
    let during = loop {
        let c = calls(dir.path());
        if c.len() == 1 && n(&c[0]["caller"]["stray"]) > before.0 + 50 && n(&c[0]["callee"]["stray"]) > before.1 + 50 {
            break c;
        }
        assert!(t1.elapsed() < Duration::from_secs(5), "strays not counted: {c:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let alice_status = alice.expect_exit(Duration::from_secs(20));
    bob.expect_exit(Duration::from_secs(20));
    let (early_sent, early_received, early_from) = early.finish();
    let (late_sent, late_received, late_from) = late.finish();
    eprintln!("relay figures during the spray: {during:#?}");
    eprintln!("early stranger sent {early_sent}, late stranger sent {late_sent}");

    assert!(alice_status.success(), "{}", alice.transcript());
    assert_eq!(early_received, 0, "the early stranger received audio from {early_from:?}");
    assert_eq!(late_received, 0, "the late stranger received audio from {late_from:?}");
    assert!(before.0 > 0 && before.1 > 0, "the early spray reached both legs' ports: {flowing:#?}");

    // The phones talked all along.
    let summary = |p: &Proc| -> Value {
        let line = p.lines(Stream::Stdout).into_iter().find(|l| l.starts_with('{')).expect("summary");
        serde_json::from_str(&line).expect("summary JSON")
    };
    let (a, b) = (summary(&alice), summary(&bob));
    assert_eq!(b["reason"], "bye-remote", "{b:#}");
    heard::assert_heard("alice", &alice_wav, 1000.0, n(&a["rtp_received"]), n(&b["rtp_sent"]));
    heard::assert_heard("bob", &bob_wav, 440.0, n(&b["rtp_received"]), n(&a["rtp_sent"]));
}
