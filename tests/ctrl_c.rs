//! Ctrl-C (SIGINT) ends things cleanly: `switchboard serve` sends BYE for live calls before it exits,
//! and `softphone dial` cancels a call that is still ringing. Real processes on loopback, ephemeral
//! ports; every wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child when the test ends, pass or fail.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(extra: &[&str]) -> (Guard, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--data", "none", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("listening line");
    let port = line.split("udp 127.0.0.1:").nth(1).and_then(|r| r.split(';').next()).and_then(|p| p.trim().parse().ok()).expect("port");
    (Guard(child), port)
}

fn sigint(child: &Child) {
    let ok = Command::new("kill").args(["-INT", &child.id().to_string()]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "kill -INT failed");
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(t0.elapsed() < limit, "process did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `f` says yes about the process's stderr so far.
fn wait_stderr(child: &mut Child, limit: Duration, what: &str) -> String {
    let mut err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Keep draining until EOF even after the test stopped listening, so the process never
        // writes into a closed pipe.
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let t0 = Instant::now();
    let mut seen = String::new();
    while !seen.contains(what) {
        let left = limit.checked_sub(t0.elapsed()).unwrap_or_else(|| panic!("no '{what}' within {limit:?}; stderr: {seen}"));
        match rx.recv_timeout(left) {
            Ok(s) => seen.push_str(&s),
            Err(_) => panic!("no '{what}' within {limit:?}; stderr: {seen}"),
        }
    }
    seen
}

#[test]
fn serve_sends_bye_to_live_calls_on_ctrl_c() {
    let (mut svc, port) = serve(&[]);
    let mut phone = Command::new(env!("CARGO_BIN_EXE_softphone"))
        .args(["--summary", "json", "dial", &format!("sip:echo@127.0.0.1:{port}"), "--duration", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("softphone");
    wait_stderr(&mut phone, Duration::from_secs(10), "call answered");
    sigint(&svc.0);
    let out = phone.wait_with_output().expect("softphone output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.lines().find(|l| l.starts_with('{')).expect("summary")).expect("json");
    assert_eq!(json["state"], "completed", "{stdout}");
    assert_eq!(json["reason"], "bye-remote", "the service hung up: {stdout}");
    assert!(wait(&mut svc.0, Duration::from_secs(10)).success());
}

#[test]
fn softphone_cancels_a_ringing_call_on_ctrl_c() {
    let (svc, port) = serve(&["--answer-delay", "30"]);
    let mut phone = Command::new(env!("CARGO_BIN_EXE_softphone"))
        .args(["--summary", "json", "dial", &format!("sip:echo@127.0.0.1:{port}"), "--duration", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("softphone");
    wait_stderr(&mut phone, Duration::from_secs(10), "status=180");
    sigint(&phone);
    let out = phone.wait_with_output().expect("softphone output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.lines().find(|l| l.starts_with('{')).expect("summary")).expect("json");
    assert_eq!(json["state"], "cancelled", "{stdout}");
    assert_eq!(json["responses"], serde_json::json!([180, 487]), "{stdout}");
    drop(svc);
}
