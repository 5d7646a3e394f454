//! The `rtpengine` backend: rtpengine's NG control protocol, as a SIP proxy (Kamailio's rtpengine
//! module) would drive it for each call.
//!
//! NG is one UDP datagram per command and per reply: `<cookie> <bencoded dictionary>`, the reply
//! carrying the command's cookie. Per call: `offer` with the caller's SDP (Call-ID, from-tag) returns
//! the SDP for the callee, whose port is the callee-leg relay port (B); `answer` with the callee's
//! SDP (plus to-tag) returns the SDP for the caller, whose port is the caller-leg port (A);
//! `delete` ends the call. Both SDPs name the media socket S.

use crate::{CallPorts, Teardown};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard::b2bua::sdp::audio_of;

/// One try's wait for a reply; a command is sent at most [`TRIES`] times.
const REPLY_WAIT: Duration = Duration::from_secs(2);
const TRIES: usize = 3;
/// Bencode nesting we accept in replies.
const MAX_DEPTH: usize = 16;

/// A bencoded value (the subset NG uses).
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(Vec<u8>),
    Int(i64),
    List(Vec<Value>),
    Dict(Vec<(Vec<u8>, Value)>),
}

impl Value {
    fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Bencodes a dictionary of string values, keys in sorted order as bencode requires.
fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut sorted = pairs.to_vec();
    sorted.sort_by_key(|(k, _)| *k);
    let mut out = b"d".to_vec();
    for (k, v) in sorted {
        for s in [k, v] {
            out.extend_from_slice(format!("{}:", s.len()).as_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out.push(b'e');
    out
}

/// Decodes one bencoded value at the start of `b`; returns it and the bytes after it.
fn decode(b: &[u8], depth: usize) -> Option<(Value, &[u8])> {
    if depth > MAX_DEPTH {
        return None;
    }
    match *b.first()? {
        b'i' => {
            let end = b.iter().position(|&c| c == b'e')?;
            let n = std::str::from_utf8(&b[1..end]).ok()?.parse().ok()?;
            Some((Value::Int(n), &b[end + 1..]))
        }
        b'l' => {
            let (mut rest, mut items) = (&b[1..], Vec::new());
            while *rest.first()? != b'e' {
                let (v, r) = decode(rest, depth + 1)?;
                items.push(v);
                rest = r;
            }
            Some((Value::List(items), &rest[1..]))
        }
        b'd' => {
            let (mut rest, mut items) = (&b[1..], Vec::new());
            while *rest.first()? != b'e' {
                let (Value::Str(k), r) = decode(rest, depth + 1)? else { return None };
                let (v, r) = decode(r, depth + 1)?;
                items.push((k, v));
                rest = r;
            }
            Some((Value::Dict(items), &rest[1..]))
        }
        b'0'..=b'9' => {
            let colon = b.iter().position(|&c| c == b':')?;
            let len: usize = std::str::from_utf8(&b[..colon]).ok()?.parse().ok()?;
            let body = b.get(colon + 1..colon.checked_add(1)?.checked_add(len)?)?;
            Some((Value::Str(body.to_vec()), &b[colon + 1 + len..]))
        }
        _ => None,
    }
}

/// Drives rtpengine over one NG socket.
pub(crate) struct NgDriver {
    sock: UdpSocket,
    server: SocketAddr,
    run: u64,
    cookie: u64,
    /// (Call-ID, from-tag) of every call set up.
    calls: Vec<(String, String)>,
}

fn sdp(media: SocketAddr, id: usize) -> String {
    let ip = media.ip();
    let v = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=relay_load {id} 1 IN {v} {ip}\r\ns=-\r\nc=IN {v} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        media.port()
    )
}

impl NgDriver {
    /// An NG socket on `ip` towards rtpengine's `--listen-ng` address `server`.
    pub(crate) fn new(server: SocketAddr, ip: IpAddr) -> Result<NgDriver, String> {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(|e| format!("NG socket: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| format!("NG socket: {e}"))?;
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Ok(NgDriver { sock, server, run, cookie: 0, calls: Vec::new() })
    }

    /// Sends one command and returns the reply's dictionary once `result` is `ok`.
    fn command(&mut self, pairs: &[(&str, &str)]) -> Result<Value, String> {
        self.cookie += 1;
        let cookie = format!("{:x}_{}", self.run, self.cookie);
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend_from_slice(&encode(pairs));
        let mut buf = vec![0u8; 65_536];
        for _ in 0..TRIES {
            self.sock.send_to(&msg, self.server).map_err(|e| format!("NG send: {e}"))?;
            let end = Instant::now() + REPLY_WAIT;
            while Instant::now() < end {
                let Ok(n) = self.sock.recv(&mut buf) else { continue };
                let Some(body) = buf[..n].strip_prefix(cookie.as_bytes()).and_then(|b| b.strip_prefix(b" ")) else { continue };
                let (reply, _) = decode(body, 0).ok_or("NG reply is not bencode")?;
                return match reply.get("result").and_then(Value::str) {
                    Some(b"ok") => Ok(reply),
                    other => {
                        let reason = reply.get("error-reason").and_then(Value::str).unwrap_or(b"?");
                        Err(format!(
                            "NG {} failed: {} ({})",
                            pairs.iter().find(|(k, _)| *k == "command").map_or("?", |(_, v)| v),
                            String::from_utf8_lossy(other.unwrap_or(b"no result")),
                            String::from_utf8_lossy(reason)
                        ))
                    }
                };
            }
        }
        Err(format!("no NG reply from {} after {TRIES} tries", self.server))
    }

    /// The RTP address in the `sdp` of a reply.
    fn port_of(reply: &Value) -> Result<SocketAddr, String> {
        let body = reply.get("sdp").and_then(Value::str).ok_or("NG reply without sdp")?;
        audio_of(body).and_then(|a| a.remote.rtp).ok_or_else(|| "NG reply SDP without an audio address".to_string())
    }

    /// `offer` + `answer` for each of `calls` calls.
    pub(crate) fn setup(&mut self, media: SocketAddr, calls: usize) -> Result<Vec<CallPorts>, String> {
        let mut out = Vec::with_capacity(calls);
        for i in 0..calls {
            let (call_id, from_tag, to_tag) = (format!("rl-{:x}-{i}", self.run), format!("c{i}"), format!("s{i}"));
            let offer = self.command(&[("command", "offer"), ("call-id", &call_id), ("from-tag", &from_tag), ("sdp", &sdp(media, i))])?;
            let callee_to = Self::port_of(&offer)?;
            let answer = self.command(&[
                ("command", "answer"),
                ("call-id", &call_id),
                ("from-tag", &from_tag),
                ("to-tag", &to_tag),
                ("sdp", &sdp(media, i + calls)),
            ])?;
            let caller_to = Self::port_of(&answer)?;
            self.calls.push((call_id, from_tag));
            out.push(CallPorts { caller_to, callee_to });
        }
        Ok(out)
    }
}

impl Teardown for NgDriver {
    /// `delete` for every call; returns how many rtpengine confirmed.
    fn teardown(&mut self) -> Result<usize, String> {
        let calls = std::mem::take(&mut self.calls);
        let mut ok = 0;
        for (call_id, from_tag) in &calls {
            if self.command(&[("command", "delete"), ("call-id", call_id), ("from-tag", from_tag)]).is_ok() {
                ok += 1;
            }
        }
        Ok(ok)
    }
}
