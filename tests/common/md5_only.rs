//! A loopback UDP relay that gives one SIP client an MD5-only view of the service's digest
//! challenges. The service answers 401/407 with two challenges, `algorithm=SHA-256` first and then
//! `algorithm=MD5` (RFC 8760 §2.4). Two real clients cannot cope with that:
//!
//! * sipp 3.6.1 reads the `algorithm=` of the first challenge only and stops the call with
//!   "createAuthHeader: authentication must use MD5 or AKAv1-MD5";
//! * baresip 1.0.0 (libre) walks every challenge header and gives up at the first one that is not
//!   MD5 with ENOSYS ("Register: Function not implemented"), so putting MD5 first does not help it.
//!
//! Until the service can be told to offer MD5 only, tests put this relay between such a client and
//! the service. It forwards every datagram unchanged both ways, except that it drops the
//! `WWW-Authenticate`/`Proxy-Authenticate` lines that offer SHA-256 from 401 and 407 responses.
//!
//! ```text
//!   client ──► front socket ─────────────► back socket ──► service
//!   client ◄── front socket ◄─ [filter] ◄─ back socket ◄── service
//! ```
//!
//! It also counts challenges to requests that already carried credentials (matched by the top
//! Via branch): with correct credentials those mean the service re-challenged a retransmission.
//!
//! The service sees the client at the back socket: that is where its REGISTER came from (the
//! binding's source) and where responses go when the client's Via has `rport`. Datagrams from the
//! service go to whoever last sent to the front socket, so a client that registers first (sipp's
//! REGISTER run, then a sipp UAS on the same port; or baresip) is reachable through it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running relay; its threads stop on drop.
pub struct Md5OnlyRelay {
    front: SocketAddr,
    back: SocketAddr,
    stop: Arc<AtomicBool>,
    stripped: Arc<AtomicU64>,
    rechallenged: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Md5OnlyRelay {
    /// Binds two loopback sockets on free ports and starts relaying to and from `service`.
    pub fn start(service: SocketAddr) -> Md5OnlyRelay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay front");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind relay back");
        // The read timeout only bounds how long a thread takes to notice `stop`.
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        }
        let (front_addr, back_addr) = (front.local_addr().expect("front addr"), back.local_addr().expect("back addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let stripped = Arc::new(AtomicU64::new(0));
        let rechallenged = Arc::new(AtomicU64::new(0));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        // Top Via branches of requests that carried Authorization or Proxy-Authorization.
        let with_credentials: Arc<Mutex<HashSet<String>>> = Arc::default();

        let upstream = {
            let (front, back, stop, client) =
                (front.try_clone().expect("clone"), back.try_clone().expect("clone"), stop.clone(), client.clone());
            let with_credentials = with_credentials.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().expect("client lock") = Some(from);
                        if let Some(branch) = credentials_branch(&buf[..n]) {
                            with_credentials.lock().expect("branches lock").insert(branch);
                        }
                        let _ = back.send_to(&buf[..n], service);
                    }
                }
            })
        };
        let downstream = {
            let (stop, stripped, rechallenged) = (stop.clone(), stripped.clone(), rechallenged.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, _)) = back.recv_from(&mut buf) else { continue };
                    let Some(to) = *client.lock().expect("client lock") else { continue };
                    let datagram = &buf[..n];
                    let challenge = datagram.starts_with(b"SIP/2.0 401 ") || datagram.starts_with(b"SIP/2.0 407 ");
                    if challenge && top_via_branch(datagram).is_some_and(|b| with_credentials.lock().expect("branches lock").contains(&b)) {
                        rechallenged.fetch_add(1, Ordering::Relaxed);
                    }
                    match strip_sha256_challenges(datagram) {
                        Some(filtered) => {
                            stripped.fetch_add(1, Ordering::Relaxed);
                            let _ = front.send_to(&filtered, to);
                        }
                        None => {
                            let _ = front.send_to(datagram, to);
                        }
                    }
                }
            })
        };
        Md5OnlyRelay { front: front_addr, back: back_addr, stop, stripped, rechallenged, threads: vec![upstream, downstream] }
    }

    /// Where the client sends: give this to it as the registrar / remote host.
    pub fn front(&self) -> SocketAddr {
        self.front
    }

    /// The address the service sees the client at.
    pub fn back(&self) -> SocketAddr {
        self.back
    }

    /// How many 401/407 responses had a SHA-256 challenge removed so far.
    pub fn stripped(&self) -> u64 {
        self.stripped.load(Ordering::Relaxed)
    }

    /// How many 401/407 responses (retransmissions included) answered a request that carried
    /// credentials.
    pub fn rechallenged(&self) -> u64 {
        self.rechallenged.load(Ordering::Relaxed)
    }
}

impl Drop for Md5OnlyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// For a 401 or 407 response: the datagram without its SHA-256 challenge header lines, or `None`
/// when there is nothing to remove (any other message is left alone).
pub fn strip_sha256_challenges(datagram: &[u8]) -> Option<Vec<u8>> {
    if !(datagram.starts_with(b"SIP/2.0 401 ") || datagram.starts_with(b"SIP/2.0 407 ")) {
        return None;
    }
    let head_end = datagram.windows(4).position(|w| w == b"\r\n\r\n")? + 2;
    let head = std::str::from_utf8(&datagram[..head_end]).ok()?;
    let mut kept = String::with_capacity(head.len());
    let mut removed = false;
    for line in head.split_inclusive("\r\n") {
        let lower = line.to_ascii_lowercase();
        let challenge = lower.starts_with("www-authenticate:") || lower.starts_with("proxy-authenticate:");
        if challenge && lower.contains("algorithm=sha-256") {
            removed = true;
        } else {
            kept.push_str(line);
        }
    }
    if !removed {
        return None;
    }
    let mut out = kept.into_bytes();
    out.extend_from_slice(&datagram[head_end..]);
    Some(out)
}

/// The top Via branch of a request with an Authorization or Proxy-Authorization header.
fn credentials_branch(datagram: &[u8]) -> Option<String> {
    if datagram.starts_with(b"SIP/2.0 ") {
        return None;
    }
    let head = head_text(datagram)?;
    let has = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("authorization:") || l.starts_with("proxy-authorization:")
    });
    if has {
        top_via_branch(datagram)
    } else {
        None
    }
}

/// The `branch` parameter of the first Via header line.
fn top_via_branch(datagram: &[u8]) -> Option<String> {
    let head = head_text(datagram)?;
    let via = head.lines().find(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("via:") || l.starts_with("v:")
    })?;
    let first = via.split(',').next()?;
    let branch = first.split(';').find_map(|p| p.trim().strip_prefix("branch="))?;
    Some(branch.trim().to_owned())
}

fn head_text(datagram: &[u8]) -> Option<&str> {
    let end = datagram.windows(4).position(|w| w == b"\r\n\r\n")?;
    std::str::from_utf8(&datagram[..end]).ok()
}
