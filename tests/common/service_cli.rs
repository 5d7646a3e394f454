//! The service's command line as the B2BUA tests use it: users with password files, the live
//! view (`switchboard calls --json`), and the tone a softphone recorded.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use switchboard::media::tone::analyse;
use switchboard::media::wav::read_wav;

pub const SB: &str = env!("CARGO_BIN_EXE_switchboard");
pub const PHONE: &str = env!("CARGO_BIN_EXE_softphone");

/// `switchboard users add NAME` for each name, with password `NAME-secret`, also written to
/// `DIR/NAME.pw` for `softphone --password-file`.
pub fn users(dir: &Path, names: &[&str]) {
    for user in names {
        let pw = format!("{user}-secret");
        let ok = Command::new(SB).args(["users", "--data"]).arg(dir).args(["add", user, "--password", &pw]).stdout(Stdio::null()).status();
        assert!(ok.expect("users add").success());
        std::fs::write(dir.join(format!("{user}.pw")), format!("{pw}\n")).expect("password file");
    }
}

/// `switchboard calls --json` of the service running on `dir`.
pub fn calls(dir: &Path) -> Vec<Value> {
    let out = Command::new(SB).args(["calls", "--json", "--data"]).arg(dir).output().expect("calls");
    assert!(out.status.success(), "calls: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("calls JSON")).collect()
}

/// A JSON number as u64 (0 if absent).
pub fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The dominant frequency and the seconds of sound in a recorded WAV.
pub fn tone(path: &Path) -> (f64, f64) {
    let wav = read_wav(&std::fs::read(path).expect("recording")).expect("WAV");
    let a = analyse(&wav.samples, 8000);
    (a.dominant.unwrap_or(0.0), a.active_seconds)
}
