//! Issue 15 points 4 and 5 against a real phone: baresip 1.0.0 (Debian). Its `contact` module
//! sends MESSAGE (`/message TEXT` to the current contact) and it answers the ones it receives;
//! its `menu` transfers the current call (`/transfer URI`, sent here through `ctrl_tcp`
//! once the call is up), and it carries out a REFER it receives. So:
//! - baresip (alice) -> the service -> bob (softphone): MESSAGE, challenged and answered;
//! - softphone alice -> the service -> baresip registered as bob: MESSAGE answered 200 by
//!   baresip (which, headless, prints received messages nowhere a test can read);
//! - baresip (alice) calls bob through the B2BUA and transfers him to carol: bob and carol talk;
//! - softphone alice calls baresip (bob) directly and transfers it to carol (softphone): baresip
//!   calls carol, who hears baresip's tone.
//!
//! Skips with a reason when baresip or its modules are missing; fails instead when `CI` is set.
//! Every wait is on an output line or a process exit, with a deadline.
//!
//! The three tests through the service run their scenario twice at once, against `serve
//! --workers 1` and `--workers 2` (issue 16: correctness under sharding;
//! [`procs::each_worker_count`]), each on its own RTP port ranges ([`ports`]).

#[path = "common/baresip.rs"]
mod baresip;
#[path = "common/heard.rs"]
mod heard;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;

use procs::{Proc, Stream, TempDir};
use service_cli::{tone, users, PHONE, SB};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// An RTP port range of the run with `workers`: as written for 1 worker, 1,000 lower for the
/// run with 2 that goes at the same time.
fn ports(workers: usize, range: &str) -> String {
    if workers == 1 {
        return range.to_owned();
    }
    let shift = |p: &str| p.parse::<u16>().map(|p| (p - 1000).to_string()).unwrap_or_else(|e| panic!("port range {range}: {e}"));
    let (lo, hi) = range.split_once('-').unwrap_or_else(|| panic!("port range {range}"));
    format!("{}-{}", shift(lo), shift(hi))
}

fn serve(workers: usize, dir: &Path) -> (Proc, u16) {
    let mut cmd = Command::new(SB);
    procs::set_workers(&mut cmd, workers);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", &ports(workers, "59400-59799"), "--data"]).arg(dir);
    procs::spawn_service(&mut cmd, LIMIT)
}

fn registered(dir: &Path, port: u16, user: &str) -> Vec<String> {
    [
        "--user",
        user,
        "--register",
        &format!("sip:127.0.0.1:{port}"),
        "--password-file",
        &dir.join(format!("{user}.pw")).display().to_string(),
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// A registered answering softphone (`extra`: flags and the `answer` command).
fn answerer(dir: &Path, port: u16, user: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(PHONE);
    cmd.args(registered(dir, port, user)).args(extra);
    let p = Proc::spawn(user, &mut cmd);
    p.wait_line("registered aor=", LIMIT).expect("registered");
    p
}

/// A baresip in `dir` with `account` (an accounts line), `contacts`, a `tone_hz` microphone, the
/// menu, contact and ctrl_tcp modules; `commands` run at start (`-e`); it quits after
/// `quit_after` seconds. Returns it, its SIP port and its ctrl_tcp port once "baresip is ready.".
fn baresip(
    dir: &TempDir,
    account: &str,
    contacts: &str,
    tone_hz: f64,
    rtp_ports: &str,
    commands: &[&str],
    quit_after: u32,
) -> (Proc, u16, u16) {
    let modules = baresip::module_path().expect("baresip modules");
    let tone = dir.join("tone.wav");
    baresip::write_tone_wav(&tone, tone_hz, 40);
    let player = if modules.join("alsa.so").is_file() { "module alsa.so\naudio_player alsa,null\naudio_alert alsa,null\n" } else { "" };
    // baresip also binds TLS on the SIP port + 1, which a free-port check cannot reserve: another
    // process may take it meanwhile. Fresh ports and a new start then, as `Baresip::start_with`.
    let mut last_err = String::new();
    for _attempt in 0..3 {
        let (sip, ctrl) = (procs::free_port_udp_tcp(), procs::free_port_udp_tcp());
        let config = format!(
            "module_path {}\nsip_listen 127.0.0.1:{sip}\nnet_interface 127.0.0.1\ncall_local_timeout 120\n\
         audio_source aufile,{}\nausrc_srate 8000\nausrc_channels 1\nrtp_ports {rtp_ports}\nrtcp_mux no\n\
         module g711.so\nmodule aufile.so\n{player}module_tmp account.so\nmodule_app menu.so\nmodule_app contact.so\n\
         module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl}\nstatmode_default off\nringback_disabled yes\nmenu_bell no\n",
            modules.display(),
            tone.display()
        );
        std::fs::write(dir.join("config"), config).expect("config");
        std::fs::write(dir.join("accounts"), format!("{}\n", account.replace("SIPPORT", &sip.to_string()))).expect("accounts");
        std::fs::write(dir.join("contacts"), contacts).expect("contacts");
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(dir.path()).args(["-t", &quit_after.to_string()]);
        for c in commands {
            cmd.args(["-e", c]);
        }
        let p = Proc::spawn("baresip", &mut cmd);
        match p.wait_line("baresip is ready.", LIMIT) {
            Ok(_) => return (p, sip, ctrl),
            Err(e) if e.contains("Address already in use") => last_err = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("baresip found its ports taken three times: {last_err}");
}

/// Sends one ctrl_tcp command (a netstring of `{"command", "params", "token"}`).
fn ctrl(port: u16, command: &str, params: &str) {
    let json = serde_json::json!({ "command": command, "params": params, "token": "t1" }).to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("ctrl_tcp");
    write!(s, "{}:{json},", json.len()).expect("ctrl_tcp write");
    s.set_read_timeout(Some(LIMIT)).expect("timeout");
    // Netstrings come back (events, then the command's response): read until the response.
    let mut r = BufReader::new(s);
    loop {
        let mut len = Vec::new();
        r.read_until(b':', &mut len).expect("ctrl_tcp reply");
        let n: usize = String::from_utf8_lossy(&len).trim_end_matches(':').trim().parse().expect("netstring length");
        let mut body = vec![0u8; n + 1];
        std::io::Read::read_exact(&mut r, &mut body).expect("netstring body");
        let reply = String::from_utf8_lossy(&body[..n]).into_owned();
        if reply.contains("\"response\"") {
            assert!(reply.contains("\"ok\":true"), "ctrl_tcp {command} {params}: {reply}");
            return;
        }
    }
}

#[test]
fn baresip_messages_bob_through_the_service() {
    if !baresip::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(baresip_messages_bob);
}

fn baresip_messages_bob(workers: usize) {
    let dir = TempDir::new(&format!("interop-message-out-w{workers}"));
    users(dir.path(), &["alice", "bob"]);
    let (_svc, port) = serve(workers, dir.path());
    let mut bob = answerer(dir.path(), port, "bob", &["--summary", "json", "answer"]);
    let bs_dir = TempDir::new(&format!("interop-message-out-bs-w{workers}"));
    let account = format!("<sip:alice@127.0.0.1:{port}>;auth_pass=alice-secret;regint=0");
    let contacts = format!("\"bob\" <sip:bob@127.0.0.1:{port}>\n");
    let (_bs, _, _) =
        baresip(&bs_dir, &account, &contacts, 440.0, &ports(workers, "59800-59819"), &["/message hello bob from baresip"], 40);
    let line = bob.wait_line("hello bob from baresip", LIMIT).expect("bob printed baresip's message");
    let m: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(m["type"], "message");
    assert!(m["from"].as_str().is_some_and(|f| f.contains("alice")), "{m}");
    assert!(m["asserted_identity"].as_str().is_some_and(|a| a.contains("sip:alice@")), "authenticated by the service: {m}");
    bob.terminate(Duration::from_secs(10));
}

#[test]
fn a_softphone_messages_baresip_registered_as_bob() {
    if !baresip::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(a_softphone_messages_baresip);
}

fn a_softphone_messages_baresip(workers: usize) {
    let dir = TempDir::new(&format!("interop-message-in-w{workers}"));
    users(dir.path(), &["alice", "bob"]);
    let (_svc, port) = serve(workers, dir.path());
    let bs_dir = TempDir::new(&format!("interop-message-in-bs-w{workers}"));
    let account = format!("<sip:bob@127.0.0.1:{port}>;auth_pass=bob-secret;regint=60");
    let (bs, _, _) = baresip(&bs_dir, &account, "", 440.0, &ports(workers, "59820-59839"), &[], 40);
    bs.wait_line("200 OK", LIMIT).expect("baresip registered");
    let out = Command::new(PHONE)
        .args(registered(dir.path(), port, "alice"))
        .args(["message", "sip:bob@127.0.0.1", "hello baresip"])
        .output()
        .expect("softphone message");
    // baresip's 200 came back through the service: it took the MESSAGE. (Headless, baresip
    // 1.0.0 shows a received message nowhere we can read: its menu prints nothing with or
    // without the stdio UI, as a manual run with -s shows; so the 2xx is what is checked.)
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("delivered (200)"), "{err}\nbaresip:\n{}", bs.transcript());
}

#[test]
fn baresip_transfers_bob_to_carol_through_the_b2bua() {
    if !baresip::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(baresip_transfers_bob_to_carol);
}

fn baresip_transfers_bob_to_carol(workers: usize) {
    let dir = TempDir::new(&format!("interop-refer-b2bua-w{workers}"));
    users(dir.path(), &["alice", "bob", "carol"]);
    let (svc, port) = serve(workers, dir.path());
    let carol_wav = dir.join("carol.wav");
    let mut bob = answerer(
        dir.path(),
        port,
        "bob",
        &["--tone", "440", "--summary", "json", "--rtp-ports", &ports(workers, "59840-59899"), "answer", "--calls", "1"],
    );
    let mut carol = answerer(
        dir.path(),
        port,
        "carol",
        &[
            "--tone",
            "1000",
            "--rtp-ports",
            &ports(workers, "59900-59959"),
            "--record",
            carol_wav.to_str().unwrap(),
            "answer",
            "--calls",
            "1",
            "--duration",
            "4",
        ],
    );
    let bs_dir = TempDir::new(&format!("interop-refer-b2bua-bs-w{workers}"));
    let account = format!("<sip:alice@127.0.0.1:{port}>;auth_pass=alice-secret;regint=0;audio_codecs=PCMU,PCMA");
    let (bs, _, ctrl_port) =
        baresip(&bs_dir, &account, "", 300.0, &ports(workers, "59960-59979"), &[&format!("/dial sip:bob@127.0.0.1:{port}")], 40);
    bs.wait_line("Call established", LIMIT).expect("baresip's call established");
    ctrl(ctrl_port, "transfer", &format!("sip:carol@127.0.0.1:{port}"));
    // The B2BUA ends baresip's leg once carol answered; carol hangs up after 4 s and bob follows.
    assert!(carol.wait_exit(LIMIT).is_some_and(|s| s.success()), "carol:\n{}\nservice:\n{}", carol.transcript(), svc.transcript());
    assert!(bob.wait_exit(LIMIT).is_some_and(|s| s.success()), "bob:\n{}", bob.transcript());
    let (fc, active_c) = tone(&carol_wav);
    assert!((fc - 440.0).abs() < 15.0 && active_c >= heard::MIN_ACTIVE_S, "carol heard {fc} Hz for {active_c} s");
    let b: Vec<String> = bob.lines(Stream::Stdout).into_iter().filter(|l| l.starts_with('{')).collect();
    assert_eq!(b.len(), 1, "one call for bob, re-INVITEd: {b:?}");
}

#[test]
fn a_softphone_transfers_baresip_to_carol() {
    if !baresip::available() {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new("interop-refer-direct");
    let carol_wav = dir.join("carol.wav");
    let mut carol =
        Proc::spawn(
            "carol",
            Command::new(PHONE)
                .args(["--user", "carol", "--tone", "1000", "--rtp-ports", "59980-59989", "--record"])
                .arg(&carol_wav)
                .args(["answer", "--calls", "1", "--duration", "4"]),
        );
    let carol_addr = carol
        .wait_line("softphone listening on udp ", LIMIT)
        .expect("carol")
        .split("udp ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("addr")
        .to_owned();
    let bs_dir = TempDir::new("interop-refer-direct-bs");
    let (bs, sip, _) =
        baresip(&bs_dir, "<sip:bob@127.0.0.1:SIPPORT>;regint=0;answermode=auto;audio_codecs=PCMU,PCMA", "", 440.0, "59990-59999", &[], 40);
    let mut alice = Command::new(PHONE)
        .args(["--user", "alice", "--tone", "300", "--rtp-ports", "59960-59969"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("softphone");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = alice.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut stdin = alice.stdin.take().expect("stdin");
    let mut seen = Vec::new();
    let mut expect = |what: &str| -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.contains(what) => return l,
                Ok(l) => seen.push(l),
                Err(_) => panic!("no '{what}'; saw:\n{}", seen.join("\n")),
            }
        }
    };
    expect("commands:");
    writeln!(stdin, "dial sip:bob@127.0.0.1:{sip}").expect("dial");
    bs.wait_line("Call established", LIMIT).expect("baresip answered");
    let deadline = Instant::now() + LIMIT;
    loop {
        writeln!(stdin, "status").expect("status");
        let l = expect("@127.0.0.1");
        if l.contains(" active ") {
            break;
        }
        assert!(Instant::now() < deadline, "alice's call never became active");
        std::thread::sleep(Duration::from_millis(100));
    }
    writeln!(stdin, "transfer sip:carol@{carol_addr}").expect("transfer");
    expect("transfer accepted (202)");
    expect("transfer: SIP/2.0 200");
    let ended = expect("ended: completed");
    assert!(ended.contains("bye-"), "{ended}");
    assert!(carol.wait_exit(LIMIT).is_some_and(|s| s.success()), "carol:\n{}\nbaresip:\n{}", carol.transcript(), bs.transcript());
    let (fc, active_c) = tone(&carol_wav);
    assert!((fc - 440.0).abs() < 15.0 && active_c >= heard::MIN_ACTIVE_S, "carol heard {fc} Hz (baresip's tone) for {active_c} s");
    let _ = writeln!(stdin, "quit");
    let _ = alice.wait();
}
