//! sipp scenarios for the softphone's robustness (issue 15 point 7; one scenario per point under
//! fixtures/sipp/): a forking UAS that answers twice (the extra dialog gets a BYE, the call ends
//! normally), a UAS whose 2xx has no To tag (no ACK, the INVITE times out, non-zero exit), and
//! ACKs sent to `softphone answer` that must get no response. Skipped without sipp; required
//! when `CI` is set.

#[path = "common/procs.rs"]
mod procs;
#[path = "common/sipp.rs"]
mod sipp;

use procs::{Proc, Stream, TempDir};
use sipp::{free_port, scenario, Sipp};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);
const PHONE: &str = env!("CARGO_BIN_EXE_softphone");

fn s(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// A sipp UAS running `name` for one call, bound and ready.
fn uas(dir: &TempDir, name: &str) -> Sipp {
    let port = free_port();
    let mut sipp = Sipp::spawn(name, dir.path(), port, &s(&["-sf", &scenario(name), "-m", "1", "-timeout", "30s", "-timeout_error"]));
    if let Err(e) = sipp.wait_bound(LIMIT) {
        panic!("{e}");
    }
    sipp
}

/// `softphone dial sip:sipp@127.0.0.1:PORT` with `--t1-ms T1` and `--summary json`.
fn dial(port: u16, t1: &str, duration: &str) -> Proc {
    let mut cmd = Command::new(PHONE);
    cmd.args(["--summary", "json", "--t1-ms", t1, "--rtp-timeout", "0", "--rtp-ports", "34000-34099"]).args([
        "dial",
        &format!("sip:sipp@127.0.0.1:{port}"),
        "--duration",
        duration,
    ]);
    Proc::spawn("softphone dial", &mut cmd)
}

fn summary(p: &Proc) -> serde_json::Value {
    let out = p.lines(Stream::Stdout);
    assert_eq!(out.len(), 1, "stdout is the one JSON summary:\n{}", p.transcript());
    serde_json::from_str(&out[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out[0]))
}

#[test]
fn sipp_forked_2xx_gets_a_bye_to_the_extra_dialog() {
    if !sipp::available() {
        return;
    }
    let dir = TempDir::new("sipp-fork");
    let mut sipp = uas(&dir, "uas_forked_2xx.xml");
    let mut phone = dial(sipp.port, "50", "1");
    let status = phone.expect_exit(LIMIT);
    let out = sipp.finish(LIMIT);
    assert!(
        out.exited_ok() && (out.successful, out.failed) == (1, 0),
        "sipp: {out:?}\n{}\nphone:\n{}",
        out.error_head(20),
        phone.transcript()
    );
    assert!(status.success(), "the kept call ended normally: {status}\n{}", phone.transcript());
    assert_eq!(summary(&phone)["state"], "completed");
}

#[test]
fn sipp_2xx_without_to_tag_times_out_with_a_non_zero_exit() {
    if !sipp::available() {
        return;
    }
    let dir = TempDir::new("sipp-notag");
    let mut sipp = uas(&dir, "uas_2xx_no_to_tag.xml");
    let mut phone = dial(sipp.port, "20", "1");
    let status = phone.expect_exit(LIMIT);
    assert!(!status.success(), "a call whose only 2xx was malformed failed:\n{}", phone.transcript());
    let reasons: Vec<String> = phone
        .lines(Stream::Stderr)
        .into_iter()
        .filter(|l| l.starts_with("softphone: call") && !l.starts_with("softphone: calling"))
        .collect();
    assert_eq!(reasons.len(), 1, "one line of reason:\n{}", phone.transcript());
    // Timer B (64*T1 = 1.28 s) fires while sipp still waits 3 s for an ACK; were sipp gone
    // first, the next retransmission would meet an ICMP error instead.
    assert!(reasons[0].contains("no response") || reasons[0].contains("connection refused"), "{}", reasons[0]);
    let s = summary(&phone);
    assert_eq!((s["state"].as_str(), s["responses"].clone()), (Some("failed"), serde_json::json!([])), "{s}");
    let out = sipp.finish(LIMIT);
    assert!(out.exited_ok() && (out.successful, out.failed) == (1, 0), "sipp saw an ACK: {out:?}\n{}", out.error_head(20));
}

#[test]
fn sipp_acks_to_the_softphone_get_no_response() {
    if !sipp::available() {
        return;
    }
    let dir = TempDir::new("sipp-ack");
    let mut cmd = Command::new(PHONE);
    cmd.args(["--rtp-ports", "34100-34199", "answer"]);
    let mut phone = Proc::spawn("softphone answer", &mut cmd);
    let line = phone.wait_line("softphone listening on udp 127.0.0.1:", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let port = line.split("udp 127.0.0.1:").nth(1).and_then(|r| r.split(';').next()).map(str::trim).expect("port").to_owned();
    let mut uac = Sipp::spawn(
        "uac-ack",
        dir.path(),
        free_port(),
        &s(&["-sf", &scenario("uac_ack_unanswered.xml"), "-s", "softphone", "-m", "1", "-timeout", "20s", "-timeout_error"])
            .into_iter()
            .chain([format!("127.0.0.1:{port}")])
            .collect::<Vec<_>>(),
    );
    let out = uac.finish(LIMIT);
    phone.terminate(Duration::from_secs(5));
    assert!(out.exited_ok() && (out.successful, out.failed) == (1, 0), "an ACK got a response: {out:?}\n{}", out.error_head(20));
}
