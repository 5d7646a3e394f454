//! sipp as a silent caller: `softphone answer --rtp-timeout 2` must end the call with a BYE that
//! carries a Reason header (the scenario checks it). Skipped without sipp; required when `CI` is set.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sipp_available() -> bool {
    let found = Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(std::env::var_os("CI").is_none(), "sipp is required in CI (apt-get install sip-tester)");
        eprintln!("skipping: sipp not installed (apt-get install sip-tester)");
    }
    found
}

#[test]
fn silent_caller_gets_bye_with_reason_after_rtp_timeout() {
    if !sipp_available() {
        return;
    }
    let mut phone = Command::new(env!("CARGO_BIN_EXE_softphone"))
        .args(["--summary", "json", "--rtp-timeout", "2", "--rtp-ports", "47000-47999", "answer", "--calls", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("softphone");
    let mut out = BufReader::new(phone.stdout.take().expect("stdout"));
    // With --summary json the listening line is on stderr (stdout is JSON only).
    let mut err = BufReader::new(phone.stderr.take().expect("stderr")).lines();
    let line = err.by_ref().map_while(Result::ok).find(|l| l.contains("listening on udp")).expect("listening line");
    std::thread::spawn(move || err.for_each(drop));
    let port: u16 =
        line.split("udp 127.0.0.1:").nth(1).and_then(|r| r.split(';').next()).and_then(|p| p.trim().parse().ok()).expect("port");
    let scenario = format!("{}/fixtures/sipp/uac_silent.xml", env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("sipp")
        .args([
            "-sf",
            &scenario,
            "-s",
            "softphone",
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-mp",
            "48000",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run sipp");
    assert!(status.success(), "sipp: the BYE did not come, or had no Reason header");
    let t0 = Instant::now();
    while phone.try_wait().expect("wait").is_none() {
        assert!(t0.elapsed() < Duration::from_secs(20), "softphone did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(rest.contains("\"reason\":\"rtp-timeout\""), "{rest}");
}
