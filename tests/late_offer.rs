//! Late offer (RFC 3261 §13.3.1.4, RFC 3264 §4) and the SDP answer rule for secure RTP lines
//! (RFC 3264 §6), over real sockets on 127.0.0.1: the echo user, a `softphone answer` and the
//! B2BUA, driven by sipp scenarios under fixtures/sipp/ and by our own softphone.
//!
//! - late offer: an INVITE without SDP gets the offer in the 200 and the answer goes in the ACK
//!   (`uac_late_offer.xml`); sipp plays a tone to that offer's address, and the softphone's
//!   recording has it. Through the B2BUA, with and without the relay, softphone to softphone
//!   (`dial --late-offer`), audio checked both ways; and to a sipp callee (`uas_late_offer.xml`)
//!   that checks its INVITE has no SDP and its ACK brings the answer.
//! - an ACK without the answer ends the call with BYE (`uac_late_offer_no_answer.xml`).
//! - an offer of `RTP/SAVP` only is refused with 488 (`uac_savp_only.xml`); an offer of an SAVP
//!   and an AVP line gets the AVP line answered and the SAVP line refused with port 0
//!   (`uac_savp_mixed.xml`), from the echo user, a softphone, and through the B2BUA (both lines
//!   reach the callee at the relay; media checked both ways with sipp echoing it).
//!
//! A missing sipp skips the sipp tests with a printed reason, or fails them when `CI` is set.
//! Every wait is on an output line, a process exit or a bound socket, each with a deadline.
//!
//! The tests with sipp and the service run their scenario with `serve --workers 1` and with
//! `--workers 2` at once (issue 16: correctness under sharding; [`procs::each_worker_count`]),
//! each run with its own half of the fixed port ranges ([`procs::range_for`]).

#[path = "common/heard.rs"]
mod heard;
#[path = "common/pcap.rs"]
mod pcap;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;
#[path = "common/sipp.rs"]
mod sipp;

use procs::{Proc, Stream, TempDir};
use serde_json::Value;
use service_cli::{tone, PHONE, SB};
use sipp::{scenario, Outcome, Sipp};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use switchboard::media::g711::Codec;

const LIMIT: Duration = Duration::from_secs(60);
/// The tone sipp plays (PCMA), distinct from the softphones' tones.
const SIPP_HZ: f64 = 700.0;

/// One test at a time: each runs a service or phones with media, on a loaded 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// `switchboard serve --workers N` with its data in `dir`, no authentication (sipp callers), on an
/// ephemeral port.
fn serve(workers: usize, dir: &Path, extra: &[&str]) -> (Proc, u16) {
    let mut cmd = Command::new(SB);
    procs::set_workers(&mut cmd, workers);
    let rtp = procs::range_for(workers, 46000, 46999);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-auth", "--rate-limit", "0", "--rtp-ports", &rtp, "--data"]).arg(dir).args(extra);
    procs::spawn_service(&mut cmd, Duration::from_secs(15))
}

/// A `softphone answer` on its own port (no registrar) for one call, its RTP ports in the half of
/// 47000-47499 of the run with `workers`; returns it and its port.
fn softphone_answer(workers: usize, args: &[&str]) -> (Proc, u16) {
    let mut cmd = Command::new(PHONE);
    cmd.args(["--summary", "json", "--rtp-ports", &procs::range_for(workers, 47000, 47499)]).args(args).args(["answer", "--calls", "1"]);
    let p = Proc::spawn("softphone answer", &mut cmd);
    let line = p.wait_line("softphone listening on udp 127.0.0.1:", Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"));
    let port = line
        .split("udp 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in: {line}"));
    (p, port)
}

/// A softphone registered as `user` (password file `DIR/USER.pw`) that answers one call.
fn registered_answerer(dir: &Path, port: u16, user: &str, ports: &str, args: &[&str]) -> Proc {
    std::fs::write(dir.join(format!("{user}.pw")), "x\n").expect("password file");
    let mut cmd = Command::new(PHONE);
    cmd.args(["--user", user, "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
        .arg(dir.join(format!("{user}.pw")))
        .args(["--summary", "json", "--rtp-ports", ports])
        .args(args)
        .args(["answer", "--calls", "1"]);
    let p = Proc::spawn(user, &mut cmd);
    p.wait_line("registered aor=", Duration::from_secs(15)).expect("registered");
    p
}

/// The JSON summaries a softphone printed.
fn summaries(p: &Proc) -> Vec<Value> {
    p.lines(Stream::Stdout).iter().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Runs sipp scenario `file` as a caller of `user` at 127.0.0.1:`port` (one call, `extra` args),
/// with pcap/g711a.pcap (a PCMA tone) in its working directory and its media on 127.0.0.1.
fn sipp_call(dir: &Path, name: &str, file: &str, user: &str, port: u16, extra: &[&str]) -> (Sipp, Outcome) {
    let pcap_dir = dir.join(name).join("pcap");
    std::fs::create_dir_all(&pcap_dir).expect("pcap dir");
    std::fs::write(pcap_dir.join("g711a.pcap"), pcap::g711_tone_pcap(Codec::Pcma, SIPP_HZ, 16_384, 3.0)).expect("pcap");
    let media_port = procs::free_udp_span(48000..=48999, 4);
    let mut args = s(&["-sf", &scenario(file), "-s", user, "-m", "1", "-mi", "127.0.0.1", "-mp", &media_port.to_string()]);
    args.extend(s(&["-timeout", "40s", "-timeout_error", "-recv_timeout", "30s"]));
    args.extend(s(extra));
    args.push(format!("127.0.0.1:{port}"));
    let mut sipp = Sipp::spawn(name, dir, sipp::free_port(), &args);
    let out = sipp.finish(LIMIT);
    (sipp, out)
}

fn assert_sipp_ok(what: &str, sipp: &Sipp, out: &Outcome, others: &[&Proc]) {
    let others: String = others.iter().map(|p| format!("\n--- {}:\n{}", p.name(), p.transcript())).collect();
    assert!(
        out.exited_ok() && (out.successful, out.failed) == (1, 0),
        "{what}: {out:?}\n{}\nsipp:\n{}{others}",
        out.error_head(40),
        sipp.proc.transcript()
    );
}

/// The tone of a recording is `hz`, for a real stretch ([`heard::MIN_ACTIVE_S`]): not a share of
/// the call's seconds, which a loaded machine's late playout cuts (see tests/common/heard.rs).
fn assert_heard(what: &str, wav: &Path, hz: f64) {
    let (f, active) = tone(wav);
    let secs = heard::MIN_ACTIVE_S;
    assert!((f - hz).abs() < 15.0 && active >= secs, "{what} heard {f} Hz for {active} s, expected {hz} Hz for {secs} s");
}

// ===== late offer to the echo user =====

/// sipp sends an INVITE without SDP to echo: the 200 carries the offer, sipp's ACK the answer, and
/// the call completes. Then our softphone does the same (`dial --late-offer`) with a 440 Hz tone
/// and records what comes back: the echo sends it back, so the offer/answer in 200/ACK carried
/// media both ways.
#[test]
fn late_offer_to_the_echo_user() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(|workers| {
        let dir = TempDir::new("late-echo");
        let (svc, port) = serve(workers, dir.path(), &[]);
        let (sipp, out) = sipp_call(dir.path(), "sipp-echo", "uac_late_offer.xml", "echo", port, &["-d", "1000"]);
        assert_sipp_ok("late offer to echo", &sipp, &out, &[&svc]);

        let wav = dir.join("echoed.wav");
        let phone = Command::new(PHONE)
            .args([
                "--summary",
                "json",
                "--tone",
                "440",
                "--record",
                wav.to_str().unwrap(),
                "--rtp-ports",
                &procs::range_for(workers, 47500, 47999),
            ])
            .args(["dial", &format!("sip:echo@127.0.0.1:{port}"), "--duration", "3", "--late-offer"])
            .output()
            .expect("softphone dial");
        let stdout = String::from_utf8_lossy(&phone.stdout);
        assert!(phone.status.success(), "{stdout}\n{}\nservice:\n{}", String::from_utf8_lossy(&phone.stderr), svc.transcript());
        let summary: Value = serde_json::from_str(stdout.lines().find(|l| l.starts_with('{')).expect("summary")).expect("json");
        assert_eq!(summary["state"], "completed", "{summary}");
        assert_heard("the late-offer caller of echo", &wav, 440.0);
    });
}

// ===== late offer to the softphone =====

/// sipp calls a `softphone answer` with an INVITE without SDP, answers its offer in the ACK and
/// plays a 700 Hz tone to it: the softphone's recording has the tone, and the call ended with
/// sipp's BYE.
#[test]
fn late_offer_to_the_softphone() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new("late-phone");
    let wav = dir.join("phone.wav");
    let (mut phone, port) = softphone_answer(1, &["--record", wav.to_str().unwrap()]);
    let (sipp, out) = sipp_call(dir.path(), "sipp-phone", "uac_late_offer.xml", "softphone", port, &["-d", "3000"]);
    assert_sipp_ok("late offer to the softphone", &sipp, &out, &[&phone]);
    let status = phone.expect_exit(Duration::from_secs(20));
    assert!(status.success(), "{}", phone.transcript());
    let summary = summaries(&phone).pop().expect("summary");
    assert_eq!((summary["state"].as_str(), summary["reason"].as_str()), (Some("completed"), Some("bye-remote")), "{summary}");
    assert_eq!(summary["codec"], "PCMA", "the codec of sipp's answer: {summary}");
    assert_heard("the softphone", &wav, SIPP_HZ);
}

// ===== late offer through the B2BUA =====

/// sipp calls bob through the B2BUA with an INVITE without SDP: bob (a softphone) gets an INVITE
/// without SDP too, offers in its 200, which reaches sipp rewritten to the relay; sipp's answer in
/// the ACK reaches bob in the B2BUA's ACK, and sipp's tone reaches bob through the relay.
#[test]
fn late_offer_from_sipp_through_the_b2bua() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(|workers| {
        let dir = TempDir::new("late-b2bua-sipp");
        let (svc, port) = serve(workers, dir.path(), &[]);
        let wav = dir.join("bob.wav");
        let mut bob =
            registered_answerer(dir.path(), port, "bob", &procs::range_for(workers, 47000, 47499), &["--record", wav.to_str().unwrap()]);
        let (sipp, out) = sipp_call(dir.path(), "sipp-b2bua", "uac_late_offer.xml", "bob", port, &["-d", "3000"]);
        assert_sipp_ok("late offer through the B2BUA", &sipp, &out, &[&svc, &bob]);
        bob.expect_exit(Duration::from_secs(20));
        let summary = summaries(&bob).pop().expect("bob's summary");
        assert_eq!((summary["state"].as_str(), summary["reason"].as_str()), (Some("completed"), Some("bye-remote")), "{summary}");
        assert_eq!(summary["codec"], "PCMA", "sipp's answer reached bob in the ACK: {summary}");
        assert_heard("bob", &wav, SIPP_HZ);
    });
}

/// Softphone to softphone through the B2BUA, alice with `dial --late-offer`, with the relay and
/// with `--no-relay`: bob's offer reaches alice in the 200, alice's answer reaches bob in the ACK,
/// and each hears the other's tone.
#[test]
fn late_offer_between_softphones_through_the_b2bua_with_and_without_the_relay() {
    let _serial = serial();
    for (tag, extra) in [("relay", &[][..]), ("no-relay", &["--no-relay"][..])] {
        let dir = TempDir::new(&format!("late-b2bua-{tag}"));
        let (svc, port) = serve(1, dir.path(), extra);
        let bob_wav = dir.join("bob.wav");
        let mut bob = registered_answerer(
            dir.path(),
            port,
            "bob",
            &procs::range_for(1, 47000, 47499),
            &["--tone", "1000", "--record", bob_wav.to_str().unwrap()],
        );
        std::fs::write(dir.join("alice.pw"), "x\n").expect("password file");
        let alice_wav = dir.join("alice.wav");
        let alice = Command::new(PHONE)
            .args(["--user", "alice", "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
            .arg(dir.join("alice.pw"))
            .args([
                "--summary",
                "json",
                "--tone",
                "440",
                "--record",
                alice_wav.to_str().unwrap(),
                "--rtp-ports",
                &procs::range_for(1, 47500, 47999),
            ])
            .args(["dial", "sip:bob@127.0.0.1", "--duration", "3", "--late-offer"])
            .output()
            .expect("softphone dial");
        let alice_out = String::from_utf8_lossy(&alice.stdout).into_owned();
        assert!(
            alice.status.success(),
            "{tag}: {alice_out}\n{}\nservice:\n{}\nbob:\n{}",
            String::from_utf8_lossy(&alice.stderr),
            svc.transcript(),
            bob.transcript()
        );
        bob.expect_exit(Duration::from_secs(20));
        let b = summaries(&bob).pop().expect("bob's summary");
        assert_eq!(b["reason"], "bye-remote", "{tag}: {b}");
        assert_heard(&format!("{tag}: alice"), &alice_wav, 1000.0);
        assert_heard(&format!("{tag}: bob"), &bob_wav, 440.0);
    }
}

/// A softphone calls a sipp callee through the B2BUA with `dial --late-offer`: the callee's INVITE
/// has no SDP (Content-Length 0, checked by sipp), its offer goes to the caller in the 200, and
/// the caller's answer comes back to it in the ACK (checked by sipp).
#[test]
fn late_offer_reaches_a_sipp_callee_through_the_b2bua() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(|workers| {
        let dir = TempDir::new("late-b2bua-uas");
        let (svc, port) = serve(workers, dir.path(), &[]);
        let users = dir.join("users.csv");
        std::fs::write(&users, "SEQUENTIAL\nbob;\n").expect("users.csv");
        let mut bob_port = 0;
        for attempt in 1..=3 {
            bob_port = sipp::free_port();
            let args =
                s(&["-sf", &scenario("register_inf.xml"), "-inf", users.to_str().unwrap(), "-m", "1", "-timeout", "30s", "-timeout_error"]);
            let mut args = args;
            args.push(format!("127.0.0.1:{port}"));
            let mut reg = Sipp::spawn(&format!("register-{attempt}"), dir.path(), bob_port, &args);
            let out = reg.finish(LIMIT);
            if attempt < 3 && out.successful == 0 && out.errors.contains("Unable to bind") {
                continue;
            }
            assert_sipp_ok("REGISTER bob", &reg, &out, &[&svc]);
            break;
        }
        let media_port = procs::free_udp_span(48000..=48999, 4);
        let uas_args =
            s(&["-sf", &scenario("uas_late_offer.xml"), "-s", "bob", "-m", "1", "-mi", "127.0.0.1", "-mp", &media_port.to_string()]);
        let mut uas_args = uas_args;
        uas_args.extend(s(&["-timeout", "40s", "-timeout_error", &format!("127.0.0.1:{port}")]));
        let mut uas = Sipp::spawn("uas-bob", dir.path(), bob_port, &uas_args);
        uas.wait_bound(LIMIT).unwrap_or_else(|e| panic!("{e}"));

        std::fs::write(dir.join("alice.pw"), "x\n").expect("password file");
        let alice = Command::new(PHONE)
            .args(["--user", "alice", "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
            .arg(dir.join("alice.pw"))
            .args(["--summary", "json", "--rtp-ports", &procs::range_for(workers, 47500, 47999), "--rtp-timeout", "0"])
            .args(["dial", "sip:bob@127.0.0.1", "--duration", "1", "--late-offer"])
            .output()
            .expect("softphone dial");
        let alice_out = String::from_utf8_lossy(&alice.stdout).into_owned();
        let out = uas.finish(LIMIT);
        assert_sipp_ok("the late-offer callee", &uas, &out, &[&svc]);
        assert!(alice.status.success(), "{alice_out}\n{}", String::from_utf8_lossy(&alice.stderr));
        let a: Value = serde_json::from_str(alice_out.lines().find(|l| l.starts_with('{')).expect("summary")).expect("json");
        assert_eq!(a["codec"], "PCMU", "alice answered the callee's offer (PCMU first): {a}");
    });
}

// ===== an ACK without the answer =====

/// After a late offer, an ACK without SDP leaves the call without an answer (RFC 3264 §4): the
/// echo user, the softphone and the B2BUA each end it at once with BYE (Reason: 488), which sipp
/// checks. Through the B2BUA the callee's leg ends with BYE too.
#[test]
fn an_ack_without_the_answer_ends_the_call_with_bye() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(|workers| {
        let dir = TempDir::new("late-no-answer");
        let (svc, port) = serve(workers, dir.path(), &[]);
        let (sipp, out) = sipp_call(dir.path(), "sipp-echo", "uac_late_offer_no_answer.xml", "echo", port, &[]);
        assert_sipp_ok("echo", &sipp, &out, &[&svc]);

        let (mut phone, phone_port) = softphone_answer(workers, &[]);
        let (sipp, out) = sipp_call(dir.path(), "sipp-phone", "uac_late_offer_no_answer.xml", "softphone", phone_port, &[]);
        assert_sipp_ok("softphone", &sipp, &out, &[&phone]);
        let status = phone.expect_exit(Duration::from_secs(20));
        let summary = summaries(&phone).pop().expect("summary");
        assert_eq!((summary["state"].as_str(), summary["reason"].as_str()), (Some("failed"), Some("no-answer-in-ack")), "{summary}");
        assert!(!status.success(), "a call without an answer is a failure: {}", phone.transcript());

        let mut bob = registered_answerer(dir.path(), port, "bob", &procs::range_for(workers, 47000, 47499), &[]);
        let (sipp, out) = sipp_call(dir.path(), "sipp-b2bua", "uac_late_offer_no_answer.xml", "bob", port, &[]);
        assert_sipp_ok("B2BUA", &sipp, &out, &[&svc, &bob]);
        bob.expect_exit(Duration::from_secs(20));
        let b = summaries(&bob).pop().expect("bob's summary");
        // The B2BUA acknowledges bob's 2xx without a body, then sends BYE; bob may see the bodiless
        // ACK first and hang up itself: either way the leg ended at once.
        assert!(matches!(b["reason"].as_str(), Some("bye-remote" | "no-answer-in-ack")), "the callee leg ended: {b}");
        assert!(b["duration_s"].as_f64().is_some_and(|d| d < 5.0), "{b}");
    });
}

/// `softphone dial --late-offer` to a callee whose 200 has no offer either: the softphone
/// acknowledges the 200 without a body, hangs up with BYE (Reason 488), both checked by sipp, and
/// exits non-zero with reason `488`.
#[test]
fn a_late_offer_caller_hangs_up_on_a_200_without_offer() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new("late-no-offer");
    let port = sipp::free_port();
    let args = s(&["-sf", &scenario("uas_late_offer_no_offer.xml"), "-s", "bob", "-m", "1", "-timeout", "30s", "-timeout_error"]);
    let mut uas = Sipp::spawn("uas", dir.path(), port, &args);
    uas.wait_bound(LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let phone = Command::new(PHONE)
        .args(["--summary", "json", "--rtp-ports", &procs::range_for(1, 47500, 47999)])
        .args(["dial", &format!("sip:bob@127.0.0.1:{port}"), "--duration", "1", "--late-offer"])
        .output()
        .expect("softphone dial");
    let stdout = String::from_utf8_lossy(&phone.stdout).into_owned();
    let out = uas.finish(LIMIT);
    assert_sipp_ok("the callee without offer", &uas, &out, &[]);
    assert!(!phone.status.success(), "exit status {}: {stdout}", phone.status);
    let summary: Value = serde_json::from_str(stdout.lines().find(|l| l.starts_with('{')).expect("summary")).expect("json");
    assert_eq!((summary["state"].as_str(), summary["reason"].as_str()), (Some("failed"), Some("488")), "{summary}");
}

// ===== SAVP lines =====

/// An offer of secure RTP only gets 488 from the echo user and from a softphone (SRTP off).
#[test]
fn an_savp_only_offer_is_refused_with_488() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(|workers| {
        let dir = TempDir::new("savp-only");
        let (svc, port) = serve(workers, dir.path(), &[]);
        let (sipp, out) = sipp_call(dir.path(), "sipp-echo", "uac_savp_only.xml", "echo", port, &[]);
        assert_sipp_ok("echo", &sipp, &out, &[&svc]);

        let (mut phone, phone_port) = softphone_answer(workers, &[]);
        let (sipp, out) = sipp_call(dir.path(), "sipp-phone", "uac_savp_only.xml", "softphone", phone_port, &[]);
        assert_sipp_ok("softphone", &sipp, &out, &[&phone]);
        phone.expect_exit(Duration::from_secs(20));
        let summary = summaries(&phone).pop().expect("summary");
        assert_eq!((summary["state"].as_str(), summary["reason"].as_str()), (Some("rejected"), Some("488")), "{summary}");
    });
}

/// An offer of an SAVP and an AVP line gets the AVP line answered and the SAVP line refused with
/// port 0 (sipp checks the 200's body), from the echo user and from a softphone.
#[test]
fn a_mixed_offer_gets_the_avp_line_answered() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(|workers| {
        let dir = TempDir::new("savp-mixed");
        let (svc, port) = serve(workers, dir.path(), &[]);
        let (sipp, out) = sipp_call(dir.path(), "sipp-echo", "uac_savp_mixed.xml", "echo", port, &["-d", "500"]);
        assert_sipp_ok("echo", &sipp, &out, &[&svc]);

        let (mut phone, phone_port) = softphone_answer(workers, &["--rtp-timeout", "0"]);
        let (sipp, out) = sipp_call(dir.path(), "sipp-phone", "uac_savp_mixed.xml", "softphone", phone_port, &["-d", "500"]);
        assert_sipp_ok("softphone", &sipp, &out, &[&phone]);
        phone.expect_exit(Duration::from_secs(20));
        let summary = summaries(&phone).pop().expect("summary");
        assert_eq!((summary["state"].as_str(), summary["reason"].as_str()), (Some("completed"), Some("bye-remote")), "{summary}");
    });
}

/// The same mixed offer through the B2BUA to bob, a registered softphone with `--srtp off`: bob
/// gets both lines at the relay, answers the AVP line and refuses the SAVP line, and sipp gets
/// that answer (200, not 488; checked in its body) with the AVP line at the relay. sipp echoes
/// the RTP it gets (`-rtp_echo`), so bob's recording has its own tone: media went through the
/// relay both ways.
#[test]
fn a_mixed_offer_through_the_b2bua_reaches_a_callee_without_srtp() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(|workers| {
        let dir = TempDir::new("savp-mixed-b2bua");
        let (svc, port) = serve(workers, dir.path(), &[]);
        let wav = dir.join("bob.wav");
        let mut bob = registered_answerer(
            dir.path(),
            port,
            "bob",
            &procs::range_for(workers, 47000, 47499),
            &["--srtp", "off", "--tone", "1000", "--record", wav.to_str().unwrap()],
        );
        let (sipp, out) = sipp_call(dir.path(), "sipp-b2bua", "uac_savp_mixed.xml", "bob", port, &["-d", "3000", "-rtp_echo"]);
        assert_sipp_ok("mixed offer through the B2BUA", &sipp, &out, &[&svc, &bob]);
        bob.expect_exit(Duration::from_secs(20));
        let summary = summaries(&bob).pop().expect("bob's summary");
        assert_eq!((summary["state"].as_str(), summary["reason"].as_str()), (Some("completed"), Some("bye-remote")), "{summary}");
        assert_heard("bob (its tone echoed by sipp through the relay)", &wav, 1000.0);
    });
}
