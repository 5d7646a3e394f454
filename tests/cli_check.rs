//! `switchboard check` run as a binary: one line (or JSON object) per file, exit status by verdict.

mod common;

use std::process::Command;

fn check(args: &[&str], files: &[std::path::PathBuf]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard")).arg("check").args(args).args(files).output().expect("run switchboard")
}

#[test]
fn torture_rfc4475_prints_a_line_per_file_and_fails() {
    let files = common::files_with_ext(&common::root().join("fixtures/torture/rfc4475"), "dat");
    assert_eq!(files.len(), 49);
    let out = check(&[], &files);
    assert!(!out.status.success(), "there are invalid RFC 4475 messages");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), files.len());
    for f in &files {
        let name = f.display().to_string();
        assert!(stdout.lines().any(|l| l.starts_with(&name)), "no line for {name}");
    }
    assert!(stdout.contains("badvers.dat: invalid: SIP version not supported"));
    assert!(stdout.lines().any(|l| l.contains("wsinv.dat: valid INVITE Call-ID wsinv.ndaksdj@192.0.2.1")));
}

#[test]
fn everyday_fixtures_are_all_valid() {
    let files = common::files_with_ext(&common::root().join("fixtures/sip"), "sip");
    let files: Vec<_> = files.into_iter().filter(|f| !f.components().any(|c| c.as_os_str() == "invalid")).collect();
    assert!(files.len() >= 12, "everyday fixtures present");
    let out = check(&[], &files);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(": valid ")).count(), files.len());
}

#[test]
fn json_output_is_one_object_per_file() {
    let root = common::root().join("fixtures/torture/rfc4475");
    let files = vec![root.join("badvers.dat"), root.join("wsinv.dat")];
    let out = check(&["--json"], &files);
    assert!(!out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["valid"], false);
    assert_eq!(lines[0]["error_kind"], "VersionNotSupported");
    assert_eq!(lines[0]["answer"], "505 Version Not Supported");
    assert_eq!(lines[1]["valid"], true);
    assert_eq!(lines[1]["method"], "INVITE");
    assert_eq!(lines[1]["call_id"], "wsinv.ndaksdj@192.0.2.1");
}

#[test]
fn missing_file_is_a_one_line_error() {
    let out = check(&[], &[std::path::PathBuf::from("/nonexistent/x.sip")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unreadable"));
}
