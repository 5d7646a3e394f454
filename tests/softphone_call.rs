//! Two `softphone` processes on loopback call each other: each records the other's tone, DTMF digits
//! arrive, and a peer that stops sending media is hung up with a BYE carrying a Reason header.

#[path = "common/heard.rs"]
mod heard;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sb-{name}-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The port of a `softphone listening on udp 127.0.0.1:PORT; ...` line.
fn listening_port(line: &str) -> u16 {
    line.split("udp 127.0.0.1:").nth(1).and_then(|r| r.split(';').next()).and_then(|p| p.trim().parse().ok()).expect("port")
}

/// Starts `softphone --summary json ... answer ...` and returns it with the port from its
/// listening line (on stderr: with `--summary json` stdout carries JSON only); the rest of stderr
/// is drained in the background.
fn answerer(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_softphone"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("softphone answer");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut err = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = err.by_ref().map_while(Result::ok).find(|l| l.contains("listening on udp")).expect("listening line");
    std::thread::spawn(move || err.for_each(drop));
    (child, out, listening_port(&line))
}

fn finish(mut child: Child, mut out: BufReader<std::process::ChildStdout>, limit: Duration) -> (bool, String) {
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("softphone did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    (status.success(), rest)
}

fn summary(stdout: &str) -> serde_json::Value {
    let line = stdout.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON summary in {stdout}"));
    serde_json::from_str(line).expect("summary JSON")
}

fn dial(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softphone")).args(args).output().expect("softphone dial")
}

#[test]
fn two_softphones_hear_each_other() {
    let dir = tmpdir("pair");
    let (a_wav, b_wav) = (dir.join("a.wav"), dir.join("b.wav"));
    let (child, out, port) = answerer(&[
        "--summary",
        "json",
        "--tone",
        "1000",
        "--record",
        a_wav.to_str().unwrap(),
        "--rtp-ports",
        "41000-41999",
        "answer",
        "--calls",
        "1",
    ]);
    let dialer = dial(&[
        "--summary",
        "json",
        "--tone",
        "440",
        "--record",
        b_wav.to_str().unwrap(),
        "--rtp-ports",
        "42000-42999",
        "dial",
        &format!("sip:softphone@127.0.0.1:{port}"),
        "--duration",
        "5",
    ]);
    let (ok, answer_out) = finish(child, out, Duration::from_secs(30));
    let dial_out = String::from_utf8_lossy(&dialer.stdout).into_owned();
    assert!(dialer.status.success(), "{dial_out}");
    assert!(ok, "{answer_out}");
    let (sa, sb) = (summary(&answer_out), summary(&dial_out));
    assert_eq!(sa["call_id"], sb["call_id"], "both describe the same call");
    assert_eq!((sa["rtp_lost"].as_i64(), sb["rtp_lost"].as_i64()), (Some(0), Some(0)));
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    heard::assert_heard("answerer", &a_wav, 440.0, n(&sa["rtp_received"]), n(&sb["rtp_sent"]));
    heard::assert_heard("caller", &b_wav, 1000.0, n(&sb["rtp_received"]), n(&sa["rtp_sent"]));
}

#[test]
fn dtmf_digits_sent_by_one_softphone_are_reported_by_the_other() {
    let (child, out, port) = answerer(&["--summary", "json", "--rtp-ports", "43000-43999", "answer", "--calls", "1"]);
    let dialer = dial(&[
        "--summary",
        "json",
        "--dtmf",
        "159#",
        "--dtmf-after",
        "0.5",
        "--rtp-ports",
        "44000-44999",
        "dial",
        &format!("sip:softphone@127.0.0.1:{port}"),
        "--duration",
        "3",
    ]);
    assert!(dialer.status.success());
    let (ok, answer_out) = finish(child, out, Duration::from_secs(30));
    assert!(ok, "{answer_out}");
    assert_eq!(summary(&answer_out)["dtmf_received"], "159#");
}

#[test]
fn a_peer_that_stops_sending_media_is_hung_up_with_a_reason() {
    // The answerer gives up after 2 s without media. The caller is frozen (SIGSTOP) once media
    // flows (the answerer reports the caller's DTMF digit, so the ACK is long delivered), so its
    // RTP and RTCP stop as they would if the peer died or the path broke.
    let mut answer = Command::new(env!("CARGO_BIN_EXE_softphone"))
        .args(["--summary", "json", "--rtp-timeout", "2", "--rtp-ports", "45000-45999", "answer", "--calls", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("softphone answer");
    let out = BufReader::new(answer.stdout.take().expect("stdout"));
    let (tx, answer_log) = std::sync::mpsc::channel::<String>();
    let answer_err = answer.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for l in BufReader::new(answer_err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // With --summary json the listening line is on stderr (stdout is JSON only).
    let first = loop {
        let l = answer_log.recv_timeout(Duration::from_secs(10)).expect("listening line");
        if l.contains("listening on udp") {
            break l;
        }
    };
    let port = listening_port(&first);
    let child = answer;
    let mut caller = Command::new(env!("CARGO_BIN_EXE_softphone"))
        .args(["--summary", "json", "--rtp-timeout", "0", "--rtp-ports", "46000-46999", "--dtmf", "5", "--dtmf-after", "0.3"])
        .args(["dial", &format!("sip:softphone@127.0.0.1:{port}"), "--duration", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("caller");
    let t0 = Instant::now();
    loop {
        let left = Duration::from_secs(20).checked_sub(t0.elapsed()).expect("no DTMF from the caller within 20 s");
        if answer_log.recv_timeout(left).expect("answerer log").contains("DTMF received") {
            break;
        }
    }
    let stop = Command::new("kill").args(["-STOP", &caller.id().to_string()]).status().expect("kill -STOP");
    assert!(stop.success());
    let (_, answer_out) = finish(child, out, Duration::from_secs(30));
    let _ = Command::new("kill").args(["-CONT", &caller.id().to_string()]).status();
    let _ = caller.kill();
    let _ = caller.wait();
    let s = summary(&answer_out);
    assert_eq!(s["reason"], "rtp-timeout", "{answer_out}");
    assert_eq!(s["state"], "completed");
}
