//! Early media end to end (issue 15 point 2) through `switchboard serve` in its default B2BUA mode:
//! - `softphone dial` calls a sipp UAS (fixtures/sipp/uas_early_media.xml, reached by a static
//!   route) that answers 183 with SDP and plays a 600 Hz tone for 3 s, then 200 and a 1000 Hz tone:
//!   the softphone's recording starts with the 600 Hz tone, which only played before the 200, and
//!   goes on with the 1000 Hz one in the same file; its summary (JSON and human) says early media
//!   arrived. Skipped without sipp (failed when `CI` is set).
//! - plain sockets stand for a caller and for a forking proxy in front of two phones: two 183s
//!   with SDP and different To-tags reach the caller, and the relay follows the latest: the
//!   caller's media goes to the second branch only, and the first branch, still sending, is no
//!   longer heard.
//!
//! Everything runs on loopback with ephemeral ports and private temp dirs; every wait is on an
//! output line, a datagram, a process exit or a bound socket, each with a deadline.
//!
//! The two sipp tests run their call twice at once, through `serve --workers 1` and `--workers 2`
//! (issue 16: correctness under sharding; [`procs::each_worker_count`]), each on its own port
//! ranges ([`ranges`]).

#[path = "common/pcap.rs"]
mod pcap;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/sipp.rs"]
mod sipp;

use bytes::Bytes;
use procs::{Proc, Stream, TempDir};
use serde_json::Value;
use sipp::{scenario, Sipp};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard::media::g711::Codec;
use switchboard::media::tone::analyse;
use switchboard::media::wav::read_wav;
use switchboard::message::{HeaderName, Message, Method};

/// Start-up and call bound: generous for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);

/// The tests run a service with media each: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Port ranges (relay, softphone, sipp's media) of the run with `workers`: the sipp tests run with
/// 1 and 2 workers at once (issue 16: correctness under sharding; [`procs::each_worker_count`]).
fn ranges(workers: usize) -> (&'static str, &'static str, std::ops::RangeInclusive<u16>) {
    if workers == 1 {
        ("63500-63599", "63400-63499", 63600..=63699)
    } else {
        ("63900-63999", "63800-63899", 63700..=63799)
    }
}

/// `switchboard serve --workers N` with a static route sending `user` to `target`, no authentication.
fn serve(workers: usize, dir: &Path, user: &str, target: SocketAddr) -> (Proc, u16) {
    let config = dir.join("switchboard.toml");
    std::fs::write(&config, format!("[[route]]\nuser = \"{user}\"\ntarget = \"sip:{target}\"\n")).expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    procs::set_workers(&mut cmd, workers);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-auth", "--data", "none", "--rtp-ports", ranges(workers).0, "--config"])
        .arg(&config);
    procs::spawn_service(&mut cmd, LIMIT)
}

/// The dominant frequency and seconds of sound of `samples` (8 kHz).
fn tone_of(samples: &[i16]) -> (f64, f64) {
    let a = analyse(samples, 8000);
    (a.dominant.unwrap_or(0.0), a.active_seconds)
}

/// One call from `softphone dial` to the sipp UAS with early media; returns the softphone's
/// stdout and its recording.
fn call_with_early_media(workers: usize, tag: &str, json: bool) -> (Vec<String>, Vec<i16>) {
    let dir = TempDir::new(&format!("{tag}-w{workers}"));
    let (_, phone_ports, sipp_media) = ranges(workers);
    let uas_dir = dir.join("uas");
    std::fs::create_dir_all(uas_dir.join("pcap")).expect("pcap dir");
    std::fs::write(uas_dir.join("pcap/early.pcap"), pcap::g711_tone_pcap(Codec::Pcmu, 600.0, 16_384, 3.0)).expect("pcap");
    std::fs::write(uas_dir.join("pcap/answer.pcap"), pcap::g711_tone_pcap(Codec::Pcmu, 1000.0, 16_384, 4.0)).expect("pcap");
    let media_port = procs::free_udp_span(sipp_media, 4);
    let args: Vec<String> = ["-sf", &scenario("uas_early_media.xml"), "-mi", "127.0.0.1", "-mp", &media_port.to_string()]
        .into_iter()
        .map(String::from)
        .chain(["-m", "1", "-timeout", "60s", "-timeout_error"].map(String::from))
        .collect();
    let mut uas = Sipp::spawn("uas", dir.path(), sipp::free_port(), &args);
    if let Err(e) = uas.wait_bound(LIMIT) {
        panic!("{e}");
    }
    let (svc, port) = serve(workers, dir.path(), "early", SocketAddr::from(([127, 0, 0, 1], uas.port)));
    let rec = dir.join("caller.wav");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_softphone"));
    cmd.args(["--tone", "440", "--rtp-ports", phone_ports, "--record"]).arg(&rec);
    if json {
        cmd.args(["--summary", "json"]);
    }
    cmd.args(["dial", &format!("sip:early@127.0.0.1:{port}"), "--duration", "3"]);
    let mut phone = Proc::spawn("softphone", &mut cmd);
    let status = phone.expect_exit(LIMIT);
    let out = uas.finish(LIMIT);
    assert!(
        status.success() && out.exited_ok() && out.successful == 1,
        "softphone {status}:\n{}\nsipp {out:?}\n{}\nservice:\n{}",
        phone.transcript(),
        out.error_head(40),
        svc.transcript()
    );
    let wav = read_wav(&std::fs::read(&rec).expect("recording")).expect("WAV");
    (phone.lines(Stream::Stdout), wav.samples)
}

/// The recording starts with the tone played only before the 200, and goes on with the one
/// played after it.
fn check_recording(samples: &[i16]) {
    let secs = samples.len() as f64 / 8000.0;
    assert!(secs >= 5.0, "3 s of early media and 3 s of call make about 6 s, recorded {secs:.1} s");
    let (early_hz, early_s) = tone_of(&samples[..16_000]);
    assert!((early_hz - 600.0).abs() < 15.0 && early_s >= 1.5, "the first 2 s: {early_hz} Hz for {early_s} s, expected the early 600 Hz");
    let (late_hz, late_s) = tone_of(&samples[samples.len() - 16_000..]);
    assert!((late_hz - 1000.0).abs() < 15.0 && late_s >= 1.5, "the last 2 s: {late_hz} Hz for {late_s} s, expected 1000 Hz");
}

#[test]
fn early_media_from_a_sipp_uas_through_the_b2bua_is_recorded_before_the_200() {
    if !sipp::available() {
        return;
    }
    let _one = serial();
    procs::each_worker_count(|workers| {
        let (stdout, samples) = call_with_early_media(workers, "early-json", true);
        let summary: Value =
            stdout.iter().find(|l| l.starts_with('{')).and_then(|l| serde_json::from_str(l).ok()).expect("a JSON summary on stdout");
        assert_eq!(summary["state"], "completed", "{summary}");
        assert_eq!(summary["early_media"], true, "{summary}");
        assert_eq!(summary["responses"].as_array().map(|r| r.contains(&Value::from(183))), Some(true), "{summary}");
        check_recording(&samples);
    });
}

#[test]
fn the_human_summary_says_early_media_arrived() {
    if !sipp::available() {
        return;
    }
    let _one = serial();
    procs::each_worker_count(|workers| {
        let (stdout, samples) = call_with_early_media(workers, "early-human", false);
        let line = stdout.iter().find(|l| l.starts_with("call ")).expect("a summary line");
        assert!(line.contains("completed") && line.contains("early media"), "{line}");
        check_recording(&samples);
    });
}

// ===== Two forked 183s on plain sockets =====

fn bind(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    s
}

/// The next SIP message on `sock` for which `pick` holds, within [`LIMIT`].
fn recv_sip(sock: &UdpSocket, what: &str, pick: impl Fn(&Message) -> bool) -> Message {
    let deadline = Instant::now() + LIMIT;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            if let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) {
                if pick(&m) {
                    return m;
                }
            }
        }
    }
    panic!("no {what} within {LIMIT:?}");
}

/// RTP packets on `sock` until one from `ssrc` with sequence number `last` came; returns the SSRCs
/// of all of them, in order.
fn rtp_until(sock: &UdpSocket, ssrc: u32, last: u16) -> Vec<u32> {
    let deadline = Instant::now() + LIMIT;
    let mut buf = [0u8; 2048];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            if n < 12 {
                continue;
            }
            let s = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            seen.push(s);
            if s == ssrc && u16::from_be_bytes([buf[2], buf[3]]) == last {
                return seen;
            }
        }
    }
    panic!("RTP {ssrc:x}/{last} did not come within {LIMIT:?}; saw {seen:x?}");
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

fn sdp_at(media: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        ip = media.ip(),
        port = media.port()
    )
}

/// The audio address of an SDP body.
fn audio_addr(body: &[u8]) -> SocketAddr {
    let text = String::from_utf8_lossy(body);
    let ip = text.lines().find_map(|l| l.strip_prefix("c=IN IP4 ")).expect("c= line");
    let port = text.lines().find_map(|l| l.strip_prefix("m=audio ")).and_then(|m| m.split(' ').next()).expect("m= line");
    format!("{ip}:{port}").parse().expect("address")
}

#[test]
fn with_two_forked_183s_the_relay_follows_the_latest() {
    let _one = serial();
    let dir = TempDir::new("early-fork");
    // The callee side: one SIP socket (a forking proxy) and two phones' media on other addresses.
    let proxy = bind("127.0.0.1");
    let (media_a, media_b) = (bind("127.0.0.3"), bind("127.0.0.4"));
    let (svc, port) = serve(1, dir.path(), "fork", proxy.local_addr().expect("addr"));
    let service = SocketAddr::from(([127, 0, 0, 1], port));

    let caller = bind("127.0.0.2");
    let caller_media = bind("127.0.0.2");
    let me = caller.local_addr().expect("addr");
    let invite = Message::request(Method::Invite, format!("sip:fork@{service}"))
        .header(HeaderName::Via, format!("SIP/2.0/UDP {me};rport;branch=z9hG4bK-early-fork"))
        .header(HeaderName::MaxForwards, "70")
        .header(HeaderName::From, "<sip:alice@127.0.0.1>;tag=alice1")
        .header(HeaderName::To, "<sip:fork@127.0.0.1>")
        .header(HeaderName::CallId, format!("early-fork-{}@127.0.0.2", me.port()))
        .header(HeaderName::CSeq, "1 INVITE")
        .header(HeaderName::Contact, format!("<sip:alice@{me}>"))
        .body("application/sdp", sdp_at(caller_media.local_addr().expect("addr")).as_bytes());
    caller.send_to(invite.as_bytes(), service).expect("send INVITE");

    let forwarded = recv_sip(&proxy, "INVITE from the service", |m| m.method() == Some(&Method::Invite));
    let callee_relay = audio_addr(forwarded.body());
    let from_service = |m: &Message| m.status() == Some(183);
    let reply = |tag: &str, media: &UdpSocket| {
        let body = sdp_at(media.local_addr().expect("addr"));
        let resp = forwarded
            .response_to(183, "Session Progress", Some(tag))
            .header(HeaderName::Contact, format!("<sip:{tag}@{}>", proxy.local_addr().expect("addr")))
            .body("application/sdp", body.as_bytes());
        proxy.send_to(resp.as_bytes(), service).expect("send 183");
    };

    // Branch A's 183: the caller gets it with its relay port, and hears A.
    reply("branch-a", &media_a);
    let first = recv_sip(&caller, "the first 183", from_service);
    let caller_relay = audio_addr(first.body());
    assert_eq!(caller_relay.ip(), service.ip(), "the caller sends to the relay");
    for seq in 1..=3 {
        media_a.send_to(&rtp(0xA, seq), callee_relay).expect("rtp");
    }
    assert_eq!(rtp_until(&caller_media, 0xA, 3), [0xA; 3], "branch A is heard during early media");

    // Branch B's 183 (another To-tag): the latest wins.
    reply("branch-b", &media_b);
    let second = recv_sip(&caller, "the second 183", from_service);
    assert_eq!(audio_addr(second.body()), caller_relay, "the same relay port for the caller");
    // A goes on sending; B starts; the caller hears B only.
    for seq in 4..=6 {
        media_a.send_to(&rtp(0xA, seq), callee_relay).expect("rtp");
    }
    for seq in 1..=3 {
        media_b.send_to(&rtp(0xB, seq), callee_relay).expect("rtp");
        media_a.send_to(&rtp(0xA, 6 + seq), callee_relay).expect("rtp");
    }
    media_b.send_to(&rtp(0xB, 4), callee_relay).expect("rtp");
    let heard = rtp_until(&caller_media, 0xB, 4);
    assert!(heard.iter().all(|s| *s == 0xB), "after the second 183 the caller hears branch B only: {heard:x?}");
    // The caller's media goes to B, not to A.
    for seq in 1..=5 {
        caller_media.send_to(&rtp(0xC, seq), caller_relay).expect("rtp");
    }
    assert_eq!(rtp_until(&media_b, 0xC, 5), [0xC; 5], "B hears the caller");
    media_a.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 2048];
    let mut to_a = Vec::new();
    while let Ok(n) = media_a.recv(&mut buf) {
        to_a.push(n);
    }
    assert!(to_a.is_empty(), "the first branch still got the caller's media: {} packets", to_a.len());
    drop(svc);
}
