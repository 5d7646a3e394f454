//! The service as a B2BUA (the default `--mode b2bua`): every call is two dialogs with an RTP relay
//! between them. Phones registered to a real `switchboard serve` call each other through it; the
//! tests check what reaches each phone, the relay's figures (`switchboard calls`), the call records
//! (`switchboard cdr`), hold and resume, a silent phone, sipp's `uac_pcap`, and 20 calls that
//! survive `kill -9` of the service.
//!
//! Every wait is on an output line, a process exit or a polled condition with a deadline.
//!
//! The sipp and kill -9 tests run their scenario twice at once, against `serve --workers 1` and
//! `--workers 2` (issue 16: correctness under sharding; [`procs::each_worker_count`]), each on
//! its own port ranges ([`by_workers`]). The other tests run one worker.

#[path = "common/heard.rs"]
mod heard;
#[path = "common/pcap.rs"]
mod pcap;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;

use procs::{skip_or_fail, tool_available, Proc, Stream, TempDir};
use serde_json::Value;
use service_cli::{calls, n, users, PHONE, SB};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tests each run a service and several phones with media: one at a time, so a loaded 2-core
/// machine never starves one of them past its deadlines.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Relay ports of the service in these tests: below Linux's ephemeral range (32768-60999), so
/// no socket bound to port 0 (the phones' SIP sockets, any other test's) can hold one. A burst of
/// calls outruns the pre-bound spare ports, and a port found taken after the SDP named it ends
/// that call ("relay port taken by another process"; the phones do the same).
const RELAY_PORTS: &str = "12000-12999";
/// [`RELAY_PORTS`] of the service with 2 workers, which runs at the same time as the one with 1.
const RELAY_PORTS_2: &str = "15000-15999";

/// A fixed port range by worker count: `one` for the run with 1 worker, `other` for the run
/// with 2 that goes at the same time (or with SWITCHBOARD_WORKERS=N, alone).
fn by_workers<'a>(workers: usize, one: &'a str, other: &'a str) -> &'a str {
    if workers == 1 {
        one
    } else {
        other
    }
}

/// `switchboard serve --workers N` on `listen` with its data in `dir`; returns it and its port.
fn serve(workers: usize, dir: &Path, listen: &str, extra: &[&str]) -> (Proc, u16) {
    let mut cmd = Command::new(SB);
    procs::set_workers(&mut cmd, workers);
    cmd.args(["serve", "--listen", listen, "--rtp-ports", by_workers(workers, RELAY_PORTS, RELAY_PORTS_2), "--data"]).arg(dir).args(extra);
    procs::spawn_service(&mut cmd, Duration::from_secs(15))
}

/// A softphone registered as `user` that answers; returns once it is registered.
fn answerer(dir: &Path, port: u16, user: &str, ports: &str, args: &[&str], answer: &[&str]) -> Proc {
    let mut cmd = Command::new(PHONE);
    cmd.args(["--user", user, "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
        .arg(dir.join(format!("{user}.pw")))
        .args(["--summary", "json", "--rtp-ports", ports])
        .args(args)
        .arg("answer")
        .args(answer);
    let p = Proc::spawn(user, &mut cmd);
    p.wait_line("registered aor=", Duration::from_secs(15)).expect("registered");
    p
}

/// The JSON summaries a softphone printed.
fn summaries(p: &Proc) -> Vec<Value> {
    p.lines(Stream::Stdout).iter().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// `switchboard cdr --json` of `dir`.
fn cdr(dir: &Path) -> Vec<Value> {
    let out = Command::new(SB).args(["cdr", "--json", "--data"]).arg(dir).output().expect("cdr");
    assert!(out.status.success(), "cdr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("cdr JSON")).collect()
}

/// Waits until `n` call records in `dir` are closed.
fn closed_records(dir: &Path, n: usize, limit: Duration) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let records = cdr(dir);
        if records.iter().filter(|r| !r["ended_at"].is_null()).count() >= n {
            return records;
        }
        assert!(t0.elapsed() < limit, "{n} closed records expected within {limit:?}: {records:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `calls` until `ok` holds for the list, or panics after `limit`.
fn wait_calls(dir: &Path, what: &str, limit: Duration, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let c = calls(dir);
        if ok(&c) {
            return c;
        }
        assert!(t0.elapsed() < limit, "{what} within {limit:?}: {c:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Packets that may be in flight when a call ends: a loaded machine handles the BYE while the
/// last RTP still waits in a socket (the phone's or the relay's), and those are never counted
/// on the far side. Half a second of 20 ms packets.
const IN_FLIGHT_AT_HANGUP: u64 = 25;

/// `down` (counted after a hop) is `up` (counted before it) but for what was in flight at the
/// hangup: never more, and at most 1% or [`IN_FLIGHT_AT_HANGUP`] fewer.
fn all_but_in_flight(up: u64, down: u64) -> bool {
    down <= up && up - down <= (up / 100).max(IN_FLIGHT_AT_HANGUP)
}

#[test]
fn alice_and_bob_talk_through_the_relay_and_the_record_counts_every_packet() {
    let _serial = serial();
    let dir = TempDir::new("b2bua-call");
    users(dir.path(), &["alice", "bob"]);
    let (_svc, port) = serve(1, dir.path(), "127.0.0.1:0", &[]);
    let bob_wav = dir.join("bob.wav");
    let bob =
        answerer(dir.path(), port, "bob", "53000-53499", &["--tone", "1000", "--record", bob_wav.to_str().unwrap()], &["--calls", "1"]);
    let alice_wav = dir.join("alice.wav");
    let alice = Command::new(PHONE)
        .args(["--user", "alice", "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
        .arg(dir.join("alice.pw"))
        .args(["--summary", "json", "--tone", "440", "--record", alice_wav.to_str().unwrap(), "--rtp-ports", "53500-53999"])
        .args(["dial", "sip:bob@127.0.0.1", "--duration", "5"])
        .output()
        .expect("softphone dial");
    let alice_out = String::from_utf8_lossy(&alice.stdout).into_owned();
    assert!(alice.status.success(), "{alice_out}");
    let a: Value = serde_json::from_str(alice_out.lines().find(|l| l.starts_with('{')).expect("summary")).expect("json");
    let mut bob = bob;
    bob.expect_exit(Duration::from_secs(20));
    let b = summaries(&bob).pop().expect("bob's summary");
    assert_eq!(a["responses"][0], 407, "the INVITE was challenged: {alice_out}");
    assert_ne!(a["call_id"], b["call_id"], "two dialogs with their own Call-IDs");
    assert_eq!(b["reason"], "bye-remote", "alice's BYE reached bob");

    heard::assert_heard("alice", &alice_wav, 1000.0, n(&a["rtp_received"]), n(&b["rtp_sent"]));
    heard::assert_heard("bob", &bob_wav, 440.0, n(&b["rtp_received"]), n(&a["rtp_sent"]));

    let records = closed_records(dir.path(), 1, Duration::from_secs(10));
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!((r["caller_call_id"].as_str(), r["callee_call_id"].as_str()), (a["call_id"].as_str(), b["call_id"].as_str()));
    assert_eq!((r["end_reason"].as_str(), r["ended_by"].as_str()), (Some("bye"), Some("caller")), "{r:#}");
    assert!(r["from"].as_str().is_some_and(|f| f.contains("alice")) && r["to"].as_str().is_some_and(|t| t.contains("bob")), "{r:#}");
    assert!(r["duration_s"].as_f64().is_some_and(|d| d >= 4.5), "{r:#}");
    assert_eq!(r["codec"], "PCMU/8000");
    // Every packet each phone sent crossed the relay (the phones only know the relay's ports) and
    // what each received came from it.
    let (sent_a, sent_b) = (n(&a["rtp_sent"]), n(&b["rtp_sent"]));
    let (relay_a, relay_b) = (n(&r["caller"]["packets"]), n(&r["callee"]["packets"]));
    eprintln!(
        "alice sent {sent_a} received {}; bob sent {sent_b} received {}; relay from alice {relay_a}, from bob {relay_b}",
        a["rtp_received"], b["rtp_received"]
    );
    assert!(sent_a > 200 && all_but_in_flight(sent_a, relay_a), "alice sent {sent_a}, relay got {relay_a}");
    assert!(sent_b > 200 && all_but_in_flight(sent_b, relay_b), "bob sent {sent_b}, relay got {relay_b}");
    assert!(all_but_in_flight(relay_a, n(&b["rtp_received"])), "bob received {} of {relay_a}", b["rtp_received"]);
    assert!(all_but_in_flight(relay_b, n(&a["rtp_received"])), "alice received {} of {relay_b}", a["rtp_received"]);
    assert_eq!(r["caller"]["lost"], 0);
    assert_eq!(r["callee"]["lost"], 0);
}

#[test]
fn hold_stops_audio_to_the_held_party_and_resume_brings_it_back() {
    let _serial = serial();
    let dir = TempDir::new("b2bua-hold");
    users(dir.path(), &["alice", "bob"]);
    let (_svc, port) = serve(1, dir.path(), "127.0.0.1:0", &[]);
    let _bob = answerer(dir.path(), port, "bob", "54000-54499", &["--tone", "1000"], &["--calls", "1"]);
    let mut alice = Command::new(PHONE)
        .args(["--user", "alice", "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
        .arg(dir.join("alice.pw"))
        .args(["--tone", "440", "--rtp-ports", "54500-54999"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("softphone prompt");
    let mut stdin = alice.stdin.take().expect("stdin");
    let _drain = [alice.stdout.take().map(drain), alice.stderr.take().map(drain)];
    let mut say = |cmd: &str| writeln!(stdin, "{cmd}").expect("prompt");
    let alice_guard = ChildGuard(alice);

    say("dial sip:bob@127.0.0.1");
    let flowing = |c: &[Value]| c.len() == 1 && n(&c[0]["caller"]["forwarded"]) > 50 && n(&c[0]["callee"]["forwarded"]) > 50;
    wait_calls(dir.path(), "media both ways", Duration::from_secs(20), flowing);

    say("hold");
    // The relay follows the re-INVITE: once neither side's counters move, hold is in effect.
    let mut last = wait_calls(dir.path(), "the call", Duration::from_secs(5), |c| c.len() == 1);
    let t0 = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = calls(dir.path());
        let still = |leg: &str| now[0][leg]["forwarded"] == last[0][leg]["forwarded"];
        if still("caller") && still("callee") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "audio still flows on hold: {now:#?}");
        last = now;
    }
    // Two more seconds on hold: nothing reaches either phone.
    let held = calls(dir.path());
    std::thread::sleep(Duration::from_secs(2));
    let after = calls(dir.path());
    for leg in ["caller", "callee"] {
        assert_eq!(after[0][leg]["forwarded"], held[0][leg]["forwarded"], "{leg} audio during hold: {after:#?}");
    }

    say("resume");
    let base = (n(&after[0]["caller"]["forwarded"]), n(&after[0]["callee"]["forwarded"]));
    wait_calls(dir.path(), "audio after resume", Duration::from_secs(10), |c| {
        c.len() == 1 && n(&c[0]["caller"]["forwarded"]) > base.0 + 50 && n(&c[0]["callee"]["forwarded"]) > base.1 + 50
    });
    say("hangup");
    say("quit");
    drop(alice_guard);
    let records = closed_records(dir.path(), 1, Duration::from_secs(10));
    assert_eq!(records[0]["end_reason"], "bye");
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn drain(r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::BufReader::new(r), &mut std::io::sink());
    })
}

#[test]
fn sipp_uac_pcap_through_the_service_reaches_a_softphone() {
    if !tool_available("sipp", &["-v"], "apt-get install sip-tester") {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(sipp_uac_pcap_reaches_a_softphone);
}

fn sipp_uac_pcap_reaches_a_softphone(workers: usize) {
    let dir = TempDir::new(&format!("b2bua-pcap-w{workers}"));
    let sipp_dir = dir.join("sipp");
    std::fs::create_dir_all(sipp_dir.join("pcap")).expect("pcap dir");
    std::fs::write(sipp_dir.join("pcap/g711a.pcap"), pcap::g711_tone_pcap(switchboard::media::g711::Codec::Pcma, 1000.0, 16_384, 6.0))
        .expect("pcap");
    let dtmf = Path::new("/usr/share/sip-tester/dtmf_2833_1.pcap");
    if !dtmf.is_file() {
        skip_or_fail(&format!("{} not found (Debian's sip-tester ships it)", dtmf.display()));
        return;
    }
    let (bob_ports, sipp_media) = if workers == 1 { ("55000-55499", 55500..=55999) } else { ("57000-57499", 57500..=57999) };
    std::fs::copy(dtmf, sipp_dir.join("pcap/dtmf_2833_1.pcap")).expect("dtmf pcap");
    let (_svc, port) = serve(workers, dir.path(), "127.0.0.1:0", &["--no-auth"]);
    std::fs::write(dir.join("bob.pw"), "x\n").expect("pw");
    let rec = dir.join("bob.wav");
    let mut bob = answerer(dir.path(), port, "bob", bob_ports, &["--record", rec.to_str().unwrap()], &["--calls", "1"]);
    let media_port = procs::free_udp_span(sipp_media, 4);
    let mut cmd = Command::new("sipp");
    cmd.current_dir(&sipp_dir)
        .args(["-sn", "uac_pcap", &format!("127.0.0.1:{port}"), "-s", "bob", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-m", "1", "-nostdin"])
        .args([
            "-p",
            &procs::free_port_udp_tcp().to_string(),
            "-mp",
            &media_port.to_string(),
            "-cp",
            &procs::free_port_udp_tcp().to_string(),
        ])
        .args(["-timeout", "40s", "-timeout_error", "-recv_timeout", "30s"]);
    let mut sipp = Proc::spawn("sipp", &mut cmd);
    let status = sipp.expect_exit(Duration::from_secs(45));
    assert!(status.success(), "sipp: {}\nbob: {}", sipp.transcript(), bob.transcript());
    bob.expect_exit(Duration::from_secs(20));
    let s = summaries(&bob).pop().expect("summary");
    // The pcap is 6 s of 20 ms packets.
    heard::assert_heard("bob", &rec, 1000.0, n(&s["rtp_received"]), 300);
    assert_eq!(s["codec"], "PCMA", "{s}");
    let records = closed_records(dir.path(), 1, Duration::from_secs(10));
    assert_eq!(records[0]["codec"], "PCMA/8000");
}

#[test]
fn a_silent_caller_gets_bye_on_both_legs_after_the_relay_timeout() {
    if !tool_available("sipp", &["-v"], "apt-get install sip-tester") {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(silent_caller_gets_bye_after_the_relay_timeout);
}

fn silent_caller_gets_bye_after_the_relay_timeout(workers: usize) {
    let dir = TempDir::new(&format!("b2bua-silent-w{workers}"));
    let (_svc, port) = serve(workers, dir.path(), "127.0.0.1:0", &["--no-auth", "--rtp-timeout", "3"]);
    std::fs::write(dir.join("bob.pw"), "x\n").expect("pw");
    // Bob would wait a minute for media himself: the service must be the one that ends the call.
    let mut bob = answerer(
        dir.path(),
        port,
        "bob",
        by_workers(workers, "56000-56499", "56500-56999"),
        &["--tone", "1000", "--rtp-timeout", "60"],
        &["--calls", "1"],
    );
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sipp/uac_silent.xml");
    let mut cmd = Command::new("sipp");
    cmd.args(["-sf"])
        .arg(&scenario)
        .args([&format!("127.0.0.1:{port}"), "-s", "bob", "-i", "127.0.0.1", "-m", "1", "-nostdin"])
        .args(["-p", &procs::free_port_udp_tcp().to_string(), "-cp", &procs::free_port_udp_tcp().to_string()])
        .args(["-timeout", "30s", "-timeout_error"]);
    let mut sipp = Proc::spawn("sipp", &mut cmd);
    let status = sipp.expect_exit(Duration::from_secs(35));
    assert!(status.success(), "sipp got no BYE with Reason: {}", sipp.transcript());
    bob.expect_exit(Duration::from_secs(10));
    assert_eq!(summaries(&bob).pop().expect("summary")["reason"], "bye-remote", "{}", bob.transcript());
    let r = closed_records(dir.path(), 1, Duration::from_secs(10)).remove(0);
    assert_eq!((r["end_reason"].as_str(), r["ended_by"].as_str()), (Some("rtp-timeout"), Some("service")), "{r:#}");
    assert_eq!(r["caller"]["packets"], 0);
    assert!(n(&r["callee"]["packets"]) > 50, "{r:#}");
}

#[test]
fn twenty_calls_survive_kill_9_of_the_service() {
    let _serial = serial();
    procs::each_worker_count(twenty_calls_survive_kill_9);
}

fn twenty_calls_survive_kill_9(workers: usize) {
    let dir = TempDir::new(&format!("b2bua-crash-w{workers}"));
    let listen = format!("127.0.0.1:{}", procs::free_port_udp_tcp());
    let (mut svc, port) = serve(workers, dir.path(), &listen, &["--no-auth"]);
    std::fs::write(dir.join("bob.pw"), "x\n").expect("pw");
    const CALLS: usize = 20;
    // bob answers 20 calls at once, past his spare ports: his range and the callers' are below
    // the ephemeral range too (see RELAY_PORTS), or one of his calls can end at once, never up.
    let mut bob = answerer(
        dir.path(),
        port,
        "bob",
        by_workers(workers, "13000-13999", "16000-16999"),
        &["--tone", "1000"],
        &["--calls", &CALLS.to_string()],
    );
    // The callers stay in their calls until the test hangs them up (SIGTERM: BYE, `bye-local`),
    // so no step below races a call's own end: on a loaded machine 20 calls of a fixed length
    // could all be over before "20 calls up" was ever seen, or hang up during the restart.
    let mut callers: Vec<Proc> = (0..CALLS)
        .map(|i| {
            let mut cmd = Command::new(PHONE);
            cmd.args([
                "--user",
                &format!("caller{i}"),
                "--summary",
                "json",
                "--tone",
                "440",
                "--rtp-ports",
                by_workers(workers, "14000-14999", "17000-17999"),
            ])
            .args(["dial", &format!("sip:bob@127.0.0.1:{port}"), "--duration", "600"]);
            Proc::spawn(&format!("caller{i}"), &mut cmd)
        })
        .collect();
    let up = |c: &[Value]| {
        c.len() == CALLS && c.iter().all(|c| c["phase"] == "up" && n(&c["caller"]["packets"]) > 0 && n(&c["callee"]["packets"]) > 0)
    };
    wait_calls(dir.path(), "20 calls up with media", Duration::from_secs(60), up);

    svc.kill();
    let (_svc2, port2) = serve(workers, dir.path(), &listen, &["--no-auth"]);
    assert_eq!(port2, port);
    let restarted = Instant::now();
    let flows = |c: &[Value]| {
        c.len() == CALLS
            && c.iter().all(|c| c["recovered"] == true && n(&c["caller"]["forwarded"]) > 10 && n(&c["callee"]["forwarded"]) > 10)
    };
    wait_calls(dir.path(), "media again on every recovered call", Duration::from_secs(30), flows);
    // How fast is a figure, not a check (no timing assertions in tests): BENCHMARKS.md records it.
    eprintln!("--workers {workers}: media flowed again on all {CALLS} calls {} ms after the restart", restarted.elapsed().as_millis());

    for c in &mut callers {
        let status = c.terminate(Duration::from_secs(30)).unwrap_or_else(|| panic!("{} did not hang up: {}", c.name(), c.transcript()));
        let s = summaries(c).pop().unwrap_or_default();
        assert!(status.success() && s["reason"] == "bye-local", "{}: {}", c.name(), c.transcript());
        assert_eq!(s["bye_status"], 200, "{}'s BYE was answered after the restart: {}", c.name(), c.transcript());
    }
    bob.expect_exit(Duration::from_secs(20));
    let bob_ends: Vec<Value> = summaries(&bob);
    assert_eq!(bob_ends.len(), CALLS, "{}", bob.transcript());
    assert!(bob_ends.iter().all(|s| s["reason"] == "bye-remote"), "every BYE reached bob: {bob_ends:#?}");
    let records = closed_records(dir.path(), CALLS, Duration::from_secs(10));
    assert_eq!(records.len(), CALLS);
    assert!(records.iter().all(|r| r["end_reason"] == "restart-recovered" && r["ended_by"] == "caller"), "{records:#?}");
}
