//! SDES-SRTP (RFC 4568, RFC 3711, AES_CM_128_HMAC_SHA1_80) in the softphone, on real loopback
//! sockets: two softphones with `--srtp required` hear each other directly and through the
//! service's B2BUA (which relays the packets as they are, `a=crypto` passed end to end); a test peer
//! that plays a phone sees only ciphertext on the wire, which decrypts with the softphone's SDP key
//! to its tone; `--srtp required` against a plain answerer ends with ACK+BYE and a non-zero exit;
//! `--srtp optional` falls back to plain RTP with a peer that has SRTP off.
//!
//! Every wait is on an output line, a process exit or a datagram with a deadline; the test peer
//! paces its own media with 20 ms sleeps (pacing, not synchronisation).

#[path = "common/baresip.rs"]
mod baresip;
#[path = "common/heard.rs"]
mod heard;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;
#[path = "common/service_cli.rs"]
mod service_cli;

use procs::{Proc, Stream, TempDir};
use raw_sip::{addr_of, header, recv_starting, socket, status};
use serde_json::Value;
use service_cli::{tone, users, PHONE, SB};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard::call::sdes::{parse_crypto, SUITE};
use switchboard::media::g711::Codec;
use switchboard::media::srtp::{MasterKey, SrtpSession};
use switchboard::media::tone::{tone_level, ToneGenerator};

const LIMIT: Duration = Duration::from_secs(40);

/// The tests run several phones with media each: one at a time on a loaded 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn softphone(args: &[&str]) -> Command {
    let mut cmd = Command::new(PHONE);
    cmd.args(["--summary", "json"]).args(args);
    cmd
}

/// `softphone answer` with `args`; returns it and its SIP address.
fn answerer(args: &[&str]) -> (Proc, SocketAddr) {
    let p = Proc::spawn("softphone answer", &mut softphone(args));
    let line = p.wait_line("softphone listening on udp ", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let addr = line.split("udp ").nth(1).and_then(|r| r.split(';').next()).and_then(|a| a.trim().parse().ok());
    (p, addr.unwrap_or_else(|| panic!("no address in {line}")))
}

fn summaries(p: &Proc) -> Vec<Value> {
    p.lines(Stream::Stdout).iter().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The one summary of a phone that exited, and whether it exited 0.
fn finished(p: &mut Proc) -> (bool, Value) {
    let status = p.expect_exit(LIMIT);
    let s = summaries(p).pop().unwrap_or_else(|| panic!("no summary:\n{}", p.transcript()));
    (status.success(), s)
}

fn protected(p: &Proc) -> bool {
    p.lines(Stream::Stderr).iter().any(|l| l.contains("SRTP: media protected"))
}

/// The recording's tone is `hz` (decrypted right: garbage has no dominant tone), for a real
/// stretch; not a share of the call's seconds, which a loaded machine's late playout cuts (see
/// tests/common/heard.rs). How much media arrived is checked on the summaries' packet counts.
fn assert_heard(path: &std::path::Path, hz: f64, who: &str) {
    let (f, active) = tone(path);
    let min_s = heard::MIN_ACTIVE_S;
    assert!((f - hz).abs() < 15.0 && active >= min_s, "{who} heard {f} Hz for {active} s, expected {hz} Hz for {min_s} s");
}

#[test]
fn two_softphones_with_srtp_required_hear_each_other() {
    let _s = serial();
    let dir = TempDir::new("srtp-pair");
    let (a_wav, b_wav) = (dir.join("a.wav"), dir.join("b.wav"));
    let (mut bob, addr) = answerer(&[
        "--srtp",
        "required",
        "--tone",
        "1000",
        "--record",
        a_wav.to_str().unwrap(),
        "--rtp-ports",
        "64000-64099",
        "answer",
        "--calls",
        "1",
    ]);
    let uri = format!("sip:softphone@{addr}");
    let args = [
        "--srtp",
        "required",
        "--tone",
        "440",
        "--record",
        b_wav.to_str().unwrap(),
        "--rtp-ports",
        "64100-64199",
        "dial",
        &uri,
        "--duration",
        "4",
    ];
    let mut alice = Proc::spawn("softphone dial", &mut softphone(&args));
    let (ok_a, sa) = finished(&mut alice);
    let (ok_b, sb) = finished(&mut bob);
    assert!(ok_a && ok_b, "alice:\n{}\nbob:\n{}", alice.transcript(), bob.transcript());
    assert!(protected(&alice) && protected(&bob), "both say SRTP:\n{}\n{}", alice.transcript(), bob.transcript());
    assert_eq!((sa["state"].as_str(), sb["state"].as_str()), (Some("completed"), Some("completed")));
    assert!(sa["rtp_received"].as_u64() > Some(150) && sb["rtp_received"].as_u64() > Some(150), "{sa}\n{sb}");
    assert_heard(&a_wav, 440.0, "the answerer");
    assert_heard(&b_wav, 1000.0, "the caller");
}

/// A test peer's INVITE with an `RTP/SAVP` offer and its own key to `softphone answer --srtp
/// required`: the answer is `RTP/SAVP` with the softphone's key under our tag; what the softphone
/// sends is ciphertext on the wire (no tone in the G.711 payload), and decrypts with that key to
/// its 1000 Hz tone; what we send protected with our key is what the softphone records.
#[test]
fn the_wire_carries_ciphertext_that_decrypts_with_the_answered_key() {
    let _s = serial();
    let dir = TempDir::new("srtp-wire");
    let wav = dir.join("heard.wav");
    let (mut phone, addr) = answerer(&[
        "--srtp",
        "required",
        "--tone",
        "1000",
        "--record",
        wav.to_str().unwrap(),
        "--rtp-ports",
        "64200-64299",
        "answer",
        "--calls",
        "1",
    ]);
    let sip = socket();
    let (rtp, rtcp) = (socket(), socket());
    let ours = MasterKey::generate().expect("key");
    let me = addr_of(&rtp);
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtcp:{}\r\na=crypto:5 {SUITE} inline:{}|2^31\r\na=sendrecv\r\n",
        me.port(),
        addr_of(&rtcp).port(),
        ours.to_base64()
    );
    let call_id = format!("srtp-wire-{}", std::process::id());
    raw_sip::invite(&sip, addr, "softphone", &call_id, &offer);
    let ok = raw_sip::final_response(&sip, &call_id, LIMIT);
    assert_eq!(status(&ok), 200, "{ok}");
    let sdp = ok.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(sdp.contains(" RTP/SAVP 0"), "the answer keeps the profile: {sdp}");
    let crypto = sdp.lines().find_map(|l| l.strip_prefix("a=crypto:")).unwrap_or_else(|| panic!("no key in {sdp}"));
    let theirs = parse_crypto(crypto).unwrap_or_else(|| panic!("unusable {crypto}"));
    assert_eq!(theirs.tag, 5, "our tag comes back");
    assert_ne!(theirs.key, ours, "each side its own key");
    let port: u16 =
        sdp.lines().find_map(|l| l.strip_prefix("m=audio ")).and_then(|r| r.split(' ').next()).and_then(|p| p.parse().ok()).expect("port");
    let phone_media = SocketAddr::new(addr.ip(), port);
    send_in_dialog(&sip, addr, &ok, &call_id, "ACK", 1);

    let (seen, raw_tone, clear_tone) = exchange(&rtp, phone_media, &ours, &theirs.key, 440.0, 1000.0, 150);
    send_in_dialog(&sip, addr, &ok, &call_id, "BYE", 2);
    let (ok_exit, s) = finished(&mut phone);
    eprintln!("{seen} packets seen, {raw_tone} with the tone in clear, {clear_tone} after decryption; {s}");
    assert!(seen >= 100, "the softphone's media reached us: {seen}\n{}", phone.transcript());
    assert_eq!(raw_tone, 0, "no packet carries the tone in clear");
    assert!(clear_tone * 10 >= seen * 9, "decrypted, the packets carry the tone: {clear_tone} of {seen}");
    assert!(ok_exit, "{}", phone.transcript());
    assert!(s["rtp_received"].as_u64() >= Some(120), "the softphone decrypted what we sent: {s}");
    assert_heard(&wav, 440.0, "the softphone");
}

/// Plays a phone's media for `frames` × 20 ms on `rtp`: sends a `send_hz` tone protected with
/// `ours` to `dest`, and reads what arrives. Returns (packets seen, packets whose G.711 payload
/// carries `expect_hz` as it is on the wire, packets that carry it once decrypted with `theirs`).
fn exchange(
    rtp: &UdpSocket,
    dest: SocketAddr,
    ours: &MasterKey,
    theirs: &MasterKey,
    send_hz: f64,
    expect_hz: f64,
    frames: u16,
) -> (usize, usize, usize) {
    let mut srtp = SrtpSession::new(ours, theirs).expect("contexts");
    let mut tone_gen = ToneGenerator::new(send_hz, 12_000);
    let (mut seen, mut raw_tone, mut clear_tone) = (0, 0, 0);
    let mut buf = [0u8; 2048];
    // Sent on a fixed 20 ms schedule: the softphone's jitter buffer plays at that pace.
    let start = Instant::now();
    for i in 0..frames {
        let mut pkt = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xEE, 0x01];
        pkt[2..4].copy_from_slice(&i.to_be_bytes());
        pkt[4..8].copy_from_slice(&(u32::from(i) * 160).to_be_bytes());
        pkt.extend(Codec::Pcmu.encode(&tone_gen.next_frame()));
        let sent = srtp.protect(false, &pkt).expect("protect");
        rtp.send_to(&sent, dest).expect("send");
        let until = start + Duration::from_millis(20) * (u32::from(i) + 1);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            rtp.set_read_timeout(Some(left.max(Duration::from_millis(1)))).expect("timeout");
            let Ok((n, _)) = rtp.recv_from(&mut buf) else { continue };
            let wire = &buf[..n];
            if n < 12 + 160 + 10 || wire[0] >> 6 != 2 {
                continue;
            }
            seen += 1;
            // As plain G.711 the payload would be the tone; it is not.
            if tone_level(&Codec::Pcmu.decode(&wire[12..12 + 160]), expect_hz, 8000) > 0.5 {
                raw_tone += 1;
            }
            let clear = srtp.unprotect(false, wire).unwrap_or_else(|| panic!("packet {seen} does not authenticate"));
            if clear.len() == 12 + 160 && tone_level(&Codec::Pcmu.decode(&clear[12..]), expect_hz, 8000) > 0.5 {
                clear_tone += 1;
            }
        }
    }
    (seen, raw_tone, clear_tone)
}

/// ACK (CSeq 1) or BYE (CSeq 2) in the dialog the 200 `ok` made, from the test peer.
fn send_in_dialog(sock: &UdpSocket, to: SocketAddr, ok: &str, call_id: &str, method: &str, cseq: u32) {
    let me = addr_of(sock);
    let to_h = header(ok, "To").expect("To");
    let msg = format!(
        "{method} sip:softphone@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}-{call_id};rport\r\n\
         From: <sip:mallory@{ip}>;tag=t-{call_id}\r\nTo: {to_h}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ip = me.ip()
    );
    sock.send_to(msg.as_bytes(), to).expect("send");
}

/// A response to `req` with the status line `code reason`, a To tag, and `body` as SDP.
fn respond(sock: &UdpSocket, to: SocketAddr, req: &str, code: &str, body: &str) {
    let me = addr_of(sock);
    let vias: String = req.lines().filter(|l| l.starts_with("Via:")).map(|l| format!("{l}\r\n")).collect();
    let to_h = header(req, "To").expect("To");
    let to_h = if to_h.contains("tag=") { to_h.to_owned() } else { format!("{to_h};tag=plain") };
    let ct = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
    let msg = format!(
        "SIP/2.0 {code}\r\n{vias}From: {}\r\nTo: {to_h}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:plain@{me}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        header(req, "From").expect("From"),
        header(req, "Call-ID").expect("Call-ID"),
        header(req, "CSeq").expect("CSeq"),
        body.len()
    );
    sock.send_to(msg.as_bytes(), to).expect("send response");
}

/// `--srtp required` against a peer that ignores the key and answers plain `RTP/AVP` (as a phone
/// without SRTP does): the softphone ACKs, sends BYE at once and exits non-zero; against a
/// softphone with `--srtp off`, the offer gets 488 and it exits non-zero too.
#[test]
fn srtp_required_hangs_up_on_a_plain_answer_and_exits_non_zero() {
    let _s = serial();
    let peer = socket();
    let media = socket();
    let uri = format!("sip:plain@{}", addr_of(&peer));
    let mut phone = Proc::spawn(
        "softphone dial",
        &mut softphone(&["--srtp", "required", "--rtp-ports", "64300-64399", "dial", &uri, "--duration", "5"]),
    );
    let invite = recv_starting(&peer, "INVITE ", LIMIT);
    let from = phone_addr(&invite);
    let offer = invite.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(offer.contains(" RTP/SAVP ") && offer.contains(&format!("a=crypto:1 {SUITE} inline:")), "{offer}");
    let plain = format!(
        "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        addr_of(&media).port()
    );
    respond(&peer, from, &invite, "200 OK", &plain);
    recv_starting(&peer, "ACK ", LIMIT);
    let bye = recv_starting(&peer, "BYE ", LIMIT);
    respond(&peer, from, &bye, "200 OK", "");
    let (ok, s) = finished(&mut phone);
    assert!(!ok, "a plain answer to --srtp required fails the call:\n{}", phone.transcript());
    assert_eq!((s["state"].as_str(), s["reason"].as_str()), (Some("failed"), Some("srtp-refused")), "{s}");

    let (mut off, addr) = answerer(&["--srtp", "off", "--rtp-ports", "64400-64499", "answer", "--calls", "1"]);
    let uri = format!("sip:softphone@{addr}");
    let mut phone = Proc::spawn("softphone dial", &mut softphone(&["--srtp", "required", "--rtp-ports", "64500-64599", "dial", &uri]));
    let (ok, s) = finished(&mut phone);
    assert!(!ok, "{}", phone.transcript());
    assert_eq!((s["state"].as_str(), s["reason"].as_str()), (Some("rejected"), Some("488")), "{s}");
    let _ = off.terminate(Duration::from_secs(5));
}

/// Where the softphone's INVITE came from: the sent-by of its Via.
fn phone_addr(invite: &str) -> SocketAddr {
    let via = header(invite, "Via").expect("Via");
    via.split_whitespace().nth(1).and_then(|h| h.split(';').next()).and_then(|a| a.parse().ok()).expect("sent-by")
}

/// `--srtp optional` offers `RTP/AVP` with a key: a peer with `--srtp off` answers plain and the
/// call goes on unprotected; a peer with `--srtp optional` or `required` answers with its key.
#[test]
fn srtp_optional_protects_when_the_peer_can_and_falls_back_to_plain_rtp() {
    let _s = serial();
    for (mode, expect_srtp, ports) in [("off", false, ("64600-64649", "64650-64699")), ("required", true, ("64700-64749", "64750-64799"))] {
        let dir = TempDir::new("srtp-optional");
        let wav = dir.join("heard.wav");
        let (mut bob, addr) = answerer(&["--srtp", mode, "--tone", "1000", "--rtp-ports", ports.0, "answer", "--calls", "1"]);
        let uri = format!("sip:softphone@{addr}");
        let args = ["--srtp", "optional", "--record", wav.to_str().unwrap(), "--rtp-ports", ports.1, "dial", &uri, "--duration", "3"];
        let mut alice = Proc::spawn("softphone dial", &mut softphone(&args));
        let (ok_a, _) = finished(&mut alice);
        let (ok_b, _) = finished(&mut bob);
        assert!(ok_a && ok_b, "optional to {mode}:\n{}\n{}", alice.transcript(), bob.transcript());
        assert_eq!((protected(&alice), protected(&bob)), (expect_srtp, expect_srtp), "optional to {mode}");
        assert_heard(&wav, 1000.0, "the caller");
    }
}

/// alice and bob registered to `switchboard serve` (B2BUA, relay on), both `--srtp required`:
/// the service passes `RTP/SAVP` and each side's `a=crypto` to the other leg and relays the SRTP
/// packets untouched, so each hears the other.
#[test]
fn srtp_through_the_b2bua_relay() {
    let _s = serial();
    let dir = TempDir::new("srtp-b2bua");
    users(dir.path(), &["alice", "bob"]);
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", "63500-63999", "--data"]).arg(dir.path());
    let (_svc, port) = procs::spawn_service(&mut cmd, Duration::from_secs(15));
    let registrar = format!("sip:127.0.0.1:{port}");
    let (a_wav, b_wav) = (dir.join("alice.wav"), dir.join("bob.wav"));
    let mut bob = Proc::spawn(
        "bob",
        Command::new(PHONE)
            .args(["--user", "bob", "--register", &registrar, "--password-file"])
            .arg(dir.join("bob.pw"))
            .args(["--summary", "json", "--srtp", "required", "--tone", "1000", "--record", b_wav.to_str().unwrap()])
            .args(["--rtp-ports", "64800-64899", "answer", "--calls", "1"]),
    );
    bob.wait_line("registered aor=", Duration::from_secs(15)).expect("bob registered");
    let mut alice = Proc::spawn(
        "alice",
        Command::new(PHONE)
            .args(["--user", "alice", "--register", &registrar, "--password-file"])
            .arg(dir.join("alice.pw"))
            .args(["--summary", "json", "--srtp", "required", "--tone", "440", "--record", a_wav.to_str().unwrap()])
            .args(["--rtp-ports", "64900-64999", "dial", "sip:bob@127.0.0.1", "--duration", "4"]),
    );
    let (ok_a, sa) = finished(&mut alice);
    let (ok_b, sb) = finished(&mut bob);
    assert!(ok_a && ok_b, "alice:\n{}\nbob:\n{}", alice.transcript(), bob.transcript());
    assert!(protected(&alice) && protected(&bob), "{}\n{}", alice.transcript(), bob.transcript());
    assert_ne!(sa["call_id"], sb["call_id"], "two legs");
    assert_heard(&b_wav, 440.0, "bob");
    assert_heard(&a_wav, 1000.0, "alice");
}

/// The relay's view: a test peer registered as bob behind `switchboard serve --no-auth` gets
/// alice's INVITE through the B2BUA with `RTP/SAVP` and her `a=crypto` intact (only the address is
/// the relay's), answers with its own key, and then reads from the relay packets that are not the
/// G.711 tone on the wire, authenticate under alice's key (the relay changed no byte the tag
/// covers) and carry her 440 Hz; what bob sends protected reaches alice's recording.
#[test]
fn the_b2bua_relays_srtp_untouched_with_the_keys_end_to_end() {
    let _s = serial();
    let dir = TempDir::new("srtp-relay-wire");
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--no-auth", "--listen", "127.0.0.1:0", "--rtp-ports", "63500-63999", "--data"]).arg(dir.path());
    let (_svc, port) = procs::spawn_service(&mut cmd, Duration::from_secs(15));
    let service: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let bob = socket();
    let contact = format!("sip:bob@{}", addr_of(&bob));
    let reg_id = format!("srtp-reg-{}", std::process::id());
    raw_sip::register(&bob, service, "bob", &contact, &reg_id, 1);
    let reg = raw_sip::final_response(&bob, &reg_id, LIMIT);
    assert_eq!(status(&reg), 200, "{reg}");

    let wav = dir.join("alice.wav");
    let args = ["--srtp", "required", "--tone", "440", "--record", wav.to_str().unwrap(), "--rtp-ports", "63400-63499"];
    let target = format!("sip:bob@{service}");
    let mut alice = Proc::spawn("alice", softphone(&args).args(["dial", &target, "--duration", "4"]));
    let invite = recv_starting(&bob, "INVITE ", LIMIT);
    let offer = invite.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(offer.contains(" RTP/SAVP 0"), "the profile passes the B2BUA: {offer}");
    let crypto = offer.lines().find_map(|l| l.strip_prefix("a=crypto:")).unwrap_or_else(|| panic!("no key passed on: {offer}"));
    let alice_key = parse_crypto(crypto).unwrap_or_else(|| panic!("unusable {crypto}"));
    let relay_port: u16 = offer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert!((63500..=63999).contains(&relay_port), "the media goes through the relay: {offer}");

    let (rtp, rtcp) = (socket(), socket());
    let bob_key = MasterKey::generate().expect("key");
    let answer = format!(
        "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtcp:{}\r\na=crypto:{} {SUITE} inline:{}\r\na=sendrecv\r\n",
        addr_of(&rtp).port(),
        addr_of(&rtcp).port(),
        alice_key.tag,
        bob_key.to_base64()
    );
    let b2bua = phone_addr(&invite);
    respond(&bob, b2bua, &invite, "200 OK", &answer);
    let relay = SocketAddr::new(service.ip(), relay_port);
    let (seen, raw_tone, clear_tone) = exchange(&rtp, relay, &bob_key, &alice_key.key, 1000.0, 440.0, 175);
    let bye = recv_starting(&bob, "BYE ", LIMIT);
    respond(&bob, b2bua, &bye, "200 OK", "");
    let (ok, s) = finished(&mut alice);
    eprintln!("{seen} packets from the relay, {raw_tone} with the tone in clear, {clear_tone} after decryption; {s}");
    assert!(ok && protected(&alice), "{}", alice.transcript());
    assert!(seen >= 100, "alice's media crossed the relay: {seen}");
    assert_eq!(raw_tone, 0, "no packet carries the tone in clear");
    assert!(clear_tone * 10 >= seen * 9, "decrypted with alice's key: {clear_tone} of {seen}");
    assert_heard(&wav, 1000.0, "alice");
}

/// Interop with baresip 1.0.0 and its `srtp` module (`;mediaenc=srtp-mand`: `RTP/SAVP` with
/// `a=crypto`, AES_CM_128_HMAC_SHA1_80), both ways, with the softphone at `--srtp required`.
mod with_baresip {
    use super::*;
    use crate::baresip::{self, Baresip};

    /// baresip with its srtp module (in Debian's baresip package), else skip (or fail in CI).
    fn available() -> bool {
        if !baresip::available() {
            return false;
        }
        let found = baresip::module_path().is_some_and(|m| m.join("srtp.so").is_file());
        if !found {
            procs::skip_or_fail("baresip's srtp.so module not found (apt-get install baresip)");
        }
        found
    }

    fn baresip_secure(bs: &Baresip) {
        let line = bs.proc.wait_line("SRTP is Enabled", Duration::ZERO);
        assert!(line.is_ok(), "baresip did not enable SRTP:\n{}", bs.proc.transcript());
    }

    fn baresip_heard(bs: &Baresip, hz: f64) {
        let dumps = bs.received_recordings();
        let dump = dumps.first().unwrap_or_else(|| panic!("baresip made no decoder dump:\n{}", bs.proc.transcript()));
        assert_heard(dump, hz, "baresip");
    }

    /// `softphone dial --srtp required` (440 Hz) to baresip auto-answering with `srtp-mand` (1000 Hz).
    #[test]
    fn softphone_dials_baresip_with_srtp() {
        if !available() {
            return;
        }
        let _s = serial();
        let dir = TempDir::new("srtp-dial-baresip");
        let bs_dir = TempDir::new("srtp-baresip-callee");
        let opts =
            baresip::Options { user: "test", auto_answer: true, tone_hz: 1000.0, rtp_ports: "18040-18059", dial: None, quit_after: 60 };
        let mut bs = Baresip::start_with(&bs_dir, &opts, ";mediaenc=srtp-mand", LIMIT);
        let wav = dir.join("heard.wav");
        let uri = format!("sip:test@127.0.0.1:{}", bs.port);
        let args = [
            "--srtp",
            "required",
            "--tone",
            "440",
            "--record",
            wav.to_str().unwrap(),
            "--rtp-ports",
            "18060-18079",
            "dial",
            &uri,
            "--duration",
            "5",
        ];
        let mut phone = Proc::spawn("softphone dial", &mut softphone(&args));
        let (ok, s) = finished(&mut phone);
        bs.proc.wait_line("terminated (duration", LIMIT).unwrap_or_else(|e| panic!("{e}"));
        bs.proc.terminate(Duration::from_secs(20));
        assert!(ok, "softphone:\n{}\nbaresip:\n{}", phone.transcript(), bs.proc.transcript());
        assert!(protected(&phone), "{}", phone.transcript());
        baresip_secure(&bs);
        assert_eq!((s["state"].as_str(), s["reason"].as_str()), (Some("completed"), Some("bye-local")), "{s}");
        assert_heard(&wav, 1000.0, "the softphone");
        baresip_heard(&bs, 440.0);
    }

    /// baresip (`srtp-mand`, 440 Hz) dials `softphone answer --srtp required` (1000 Hz); baresip's
    /// `-t 10` ends the call.
    #[test]
    fn baresip_dials_softphone_with_srtp() {
        if !available() {
            return;
        }
        let _s = serial();
        let dir = TempDir::new("srtp-baresip-dials");
        let bs_dir = TempDir::new("srtp-baresip-caller");
        let wav = dir.join("heard.wav");
        let (mut phone, addr) = answerer(&[
            "--srtp",
            "required",
            "--tone",
            "1000",
            "--record",
            wav.to_str().unwrap(),
            "--rtp-ports",
            "18080-18099",
            "answer",
            "--calls",
            "1",
        ]);
        let uri = format!("sip:softphone@{addr}");
        let opts = baresip::Options {
            user: "caller",
            auto_answer: false,
            tone_hz: 440.0,
            rtp_ports: "18100-18119",
            dial: Some(&uri),
            quit_after: 8,
        };
        let mut bs = Baresip::start_with(&bs_dir, &opts, ";mediaenc=srtp-mand", LIMIT);
        let bs_status = bs.proc.expect_exit(LIMIT);
        let (ok, s) = finished(&mut phone);
        assert!(bs_status.success() && ok, "softphone:\n{}\nbaresip:\n{}", phone.transcript(), bs.proc.transcript());
        assert!(protected(&phone), "{}", phone.transcript());
        baresip_secure(&bs);
        assert_eq!((s["state"].as_str(), s["reason"].as_str()), (Some("completed"), Some("bye-remote")), "{s}");
        assert_heard(&wav, 440.0, "the softphone");
        baresip_heard(&bs, 1000.0);
    }

    /// `--srtp optional` is the best-effort SRTP of baresip's `srtp` mode: `softphone dial --srtp
    /// optional` offers `RTP/AVP` with `a=crypto`, baresip (`;mediaenc=srtp`) answers with its key,
    /// and both protect the media.
    #[test]
    fn srtp_optional_matches_baresips_best_effort_mode() {
        if !available() {
            return;
        }
        let _s = serial();
        let dir = TempDir::new("srtp-optional-baresip");
        let bs_dir = TempDir::new("srtp-baresip-best-effort");
        let opts =
            baresip::Options { user: "test", auto_answer: true, tone_hz: 1000.0, rtp_ports: "18000-18019", dial: None, quit_after: 60 };
        let mut bs = Baresip::start_with(&bs_dir, &opts, ";mediaenc=srtp", LIMIT);
        let wav = dir.join("heard.wav");
        let uri = format!("sip:test@127.0.0.1:{}", bs.port);
        let args = [
            "--srtp",
            "optional",
            "--tone",
            "440",
            "--record",
            wav.to_str().unwrap(),
            "--rtp-ports",
            "18020-18039",
            "dial",
            &uri,
            "--duration",
            "4",
        ];
        let mut phone = Proc::spawn("softphone dial", &mut softphone(&args));
        let (ok, _) = finished(&mut phone);
        bs.proc.wait_line("terminated (duration", LIMIT).unwrap_or_else(|e| panic!("{e}"));
        bs.proc.terminate(Duration::from_secs(20));
        assert!(ok && protected(&phone), "softphone:\n{}\nbaresip:\n{}", phone.transcript(), bs.proc.transcript());
        baresip_secure(&bs);
        assert_heard(&wav, 1000.0, "the softphone");
        baresip_heard(&bs, 440.0);
    }
}
