//! Issue 14 point 10, local files, against the real binary.
//!
//! The attack: another local user reads `switchboard.sqlite3` (HA1 hashes: each is enough to log
//! in) or `nonce-secret`, or talks to the control socket. `serve` on a fresh data directory makes
//! the directory 0700 and the store, its WAL files, the nonce secret and the control socket 0600;
//! files left 0644 (and a 0755 directory) from before are narrowed at start with a warning. In both
//! cases the service still answers (the echo user's OPTIONS gets 200). `users add --password`
//! warns that the password is visible and points to `--password-stdin`.

#[path = "common/procs.rs"]
mod procs;

use procs::{Proc, TempDir};
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SB: &str = env!("CARGO_BIN_EXE_switchboard");

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

fn serve(data: &Path) -> (Proc, u16) {
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", "53200-53299", "--data"]).arg(data);
    procs::spawn_service(&mut cmd, Duration::from_secs(15))
}

/// The legitimate use in each test: OPTIONS to echo gets 200.
fn options_ok(port: u16) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let local = sock.local_addr().expect("addr");
    let req = format!(
        "OPTIONS sip:echo@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfiles{}\r\nMax-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag=f\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: files@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        local.port()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.send_to(req.as_bytes(), ("127.0.0.1", port)).expect("send");
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            assert!(buf[..n].starts_with(b"SIP/2.0 200"), "{}", String::from_utf8_lossy(&buf[..n]));
            return;
        }
    }
    panic!("no answer to OPTIONS");
}

/// Waits until `path` exists (the control socket is bound just after the listening line).
fn exists(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_fresh_data_directory_is_private_to_its_owner() {
    let tmp = TempDir::new("files-fresh");
    let data = tmp.join("data");
    let (mut svc, port) = serve(&data);
    options_ok(port);
    exists(&data.join("switchboard.sock"));
    assert_eq!(mode(&data), 0o700, "data directory");
    for f in ["switchboard.sqlite3", "switchboard.sqlite3-wal", "switchboard.sqlite3-shm", "nonce-secret", "switchboard.sock"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert!(
        svc.lines(procs::Stream::Stderr).iter().all(|l| !l.contains("readable by other local users")),
        "no warning on a fresh directory"
    );
    svc.terminate(Duration::from_secs(10));
}

#[test]
fn loose_files_from_before_are_fixed_with_a_warning() {
    let tmp = TempDir::new("files-loose");
    let data = tmp.join("data");
    let (mut first, port) = serve(&data);
    options_ok(port);
    first.terminate(Duration::from_secs(10));
    // As an older version (or a copy with the default umask) left them.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    for f in ["switchboard.sqlite3", "nonce-secret"] {
        std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let (mut svc, port) = serve(&data);
    for f in ["switchboard.sqlite3", "nonce-secret"] {
        let needle = format!("{} was mode 644, readable by other local users; set to 600", data.join(f).display());
        svc.wait_line(&needle, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    }
    svc.wait_line("was mode 755, readable by other local users; set to 700", Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("switchboard.sqlite3")), 0o600);
    assert_eq!(mode(&data.join("nonce-secret")), 0o600);
    options_ok(port);
    svc.terminate(Duration::from_secs(10));
}

#[test]
fn a_password_on_the_command_line_is_warned_about() {
    let tmp = TempDir::new("files-pw");
    let out = Command::new(SB)
        .args(["users", "--data"])
        .arg(tmp.join("data"))
        .args(["add", "alice", "--password", "alice-secret"])
        .stdin(Stdio::null())
        .output()
        .expect("users add");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("other local users") && err.contains("--password-stdin"), "stderr: {err}");
    // The quiet way works and says nothing.
    let mut child = Command::new(SB)
        .args(["users", "--data"])
        .arg(tmp.join("data"))
        .args(["add", "bob", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("users add");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"bob-secret\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("--password-stdin"));
    assert_eq!(mode(&tmp.join("data/switchboard.sqlite3")), 0o600);
}
