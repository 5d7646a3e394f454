//! `softphone send FILE --to HOST:PORT`: sends a raw SIP message file over UDP, byte for byte, and
//! prints every datagram that comes back until nothing arrives for `--wait` seconds. This is how to
//! feed a SIP fixture to any SIP element.

use bytes::Bytes;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use switchboard::message::Message;

/// Sends `file` from `bind` to `to`; prints replies until `wait` passes without one.
pub(crate) fn run(file: &Path, to: &str, bind: SocketAddr, wait: Duration) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("softphone: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let dest = match to.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(d) => d,
        None => {
            eprintln!("softphone: --to must be HOST:PORT, got {to}");
            return ExitCode::from(2);
        }
    };
    let socket = match std::net::UdpSocket::bind(bind) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("softphone: cannot bind {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = socket.set_read_timeout(Some(wait)).and_then(|()| socket.send_to(&bytes, dest).map(drop)) {
        eprintln!("softphone: cannot send to {dest}: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("softphone: sent {} ({} bytes) to {dest}; waiting {:.1} s for replies", file.display(), bytes.len(), wait.as_secs_f64());
    let mut buf = vec![0u8; 65_535];
    let mut replies = 0;
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, src)) => {
                replies += 1;
                let data = &buf[..n];
                let summary = match Message::parse(Bytes::copy_from_slice(data)) {
                    Ok(m) => match m.status() {
                        Some(code) => format!("{code} {}", String::from_utf8_lossy(m.reason().unwrap_or(b""))),
                        None => format!("request {}", m.method().map(|x| x.to_string()).unwrap_or_default()),
                    },
                    Err(e) => format!("unparsable reply: {e}"),
                };
                println!("--- reply {replies} from {src}: {summary}");
                println!("{}", String::from_utf8_lossy(data).trim_end());
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
            Err(e) => {
                // ICMP port unreachable shows up here on Linux.
                eprintln!("softphone: receive failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!("softphone: {replies} replies");
    if replies > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
