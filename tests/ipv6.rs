//! The service and the softphone over IPv6 loopback: a call to the echo user with media. Skipped,
//! with a printed reason, on a machine without `::1`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn call_to_echo_over_ipv6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback on this machine");
        return;
    }
    let mut svc = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--data", "none", "--listen", "[::1]:0", "--rtp-ports", "53000-53499"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    BufReader::new(svc.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("listening line");
    let addr = line.split("udp ").nth(1).and_then(|r| r.split(';').next()).expect("address").trim().to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_softphone"))
        .args([
            "--bind",
            "[::1]:0",
            "--tone",
            "440",
            "--summary",
            "json",
            "--rtp-ports",
            "53500-53999",
            "dial",
            &format!("sip:echo@{addr}"),
            "--duration",
            "1",
        ])
        .output()
        .expect("softphone");
    let _ = svc.kill();
    let _ = svc.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(stdout.lines().find(|l| l.starts_with('{')).expect("summary")).expect("json");
    assert_eq!(json["state"], "completed");
    assert!(json["rtp_received"].as_u64().unwrap_or(0) > 40, "echoed media came back over IPv6: {stdout}");
}
