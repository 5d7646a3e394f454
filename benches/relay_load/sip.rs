//! The `switchboard` backend: this tool is both phones of every call, over one SIP socket.
//!
//! It registers user `sink` with its SIP socket as Contact, then sets up one call at a time: an
//! INVITE to `sip:sink@<service>` whose SDP names the media socket S; the service's INVITE to
//! `sink` (the callee leg) is answered 200 with the same S; the service's 200 on the caller leg is
//! ACKed. The caller leg's SDP answer holds the caller-leg relay port (A), the callee leg's offer
//! the callee-leg port (B). Retransmissions get the same answer again. At the end every caller leg
//! sends BYE and every BYE to `sink` is answered.
//!
//! Messages are built with the crate's builder and every datagram received is read with the crate's
//! parser; SDP ports with the B2BUA's own SDP reader. The service is its own UAS on both legs, so
//! there is no route set to follow (a Record-Route would be ignored).

use crate::{CallPorts, Teardown};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard::b2bua::sdp::audio_of;
use switchboard::message::{HeaderName, Message, Method};

/// How long one call's setup (or one REGISTER) may take.
const STEP_LIMIT: Duration = Duration::from_secs(5);
/// How long all BYEs may take.
const BYE_LIMIT: Duration = Duration::from_secs(15);
/// BYEs in flight at once (keeps the service's socket buffer from overflowing).
const BYE_WINDOW: usize = 32;

/// One call, as its caller-leg phone sees it.
#[derive(Debug, Default)]
struct Call {
    call_id: String,
    from_tag: String,
    /// The service's To tag and Contact, from its 200.
    to_tag: Option<String>,
    target: Option<String>,
    /// The ACK sent for the 200, resent if the 200 is.
    ack: Option<Bytes>,
    caller_to: Option<SocketAddr>,
    callee_to: Option<SocketAddr>,
    bye_answered: bool,
}

/// Drives the calls over one SIP socket.
pub(crate) struct SipDriver {
    sock: UdpSocket,
    server: SocketAddr,
    local: SocketAddr,
    run: u64,
    branch: u64,
    calls: Vec<Call>,
    /// Callee legs (service Call-ID) → our 200, resent if the INVITE is.
    callee_ok: HashMap<String, Bytes>,
    registered: bool,
    /// The call whose callee-leg INVITE is awaited (calls are set up one at a time).
    current: usize,
    /// The callee's SDP answer (names the media socket).
    answer_sdp: String,
}

fn text(m: &Message, name: HeaderName) -> String {
    m.header(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

fn sdp(media: SocketAddr, id: u64) -> String {
    let ip = media.ip();
    let v = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=relay_load {id} 1 IN {v} {ip}\r\ns=-\r\nc=IN {v} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        media.port()
    )
}

impl SipDriver {
    /// A SIP socket on `ip` towards the service at `server`.
    pub(crate) fn new(server: SocketAddr, ip: IpAddr) -> Result<SipDriver, String> {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(|e| format!("SIP socket: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| format!("SIP socket: {e}"))?;
        let local = sock.local_addr().map_err(|e| format!("SIP socket: {e}"))?;
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Ok(SipDriver {
            sock,
            server,
            local,
            run,
            branch: 0,
            calls: Vec::new(),
            callee_ok: HashMap::new(),
            registered: false,
            current: 0,
            answer_sdp: String::new(),
        })
    }

    fn via(&mut self) -> String {
        self.branch += 1;
        format!("SIP/2.0/UDP {};branch=z9hG4bK-rl{:x}-{};rport", self.local, self.run, self.branch)
    }

    fn send(&self, bytes: &[u8], to: SocketAddr) -> Result<(), String> {
        self.sock.send_to(bytes, to).map(|_| ()).map_err(|e| format!("SIP send: {e}"))
    }

    fn register(&mut self) -> Result<(), String> {
        let host = self.server.ip();
        let via = self.via();
        let m = Message::request(Method::Register, format!("sip:{}", self.server))
            .header(HeaderName::Via, via)
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, format!("<sip:sink@{host}>;tag=reg{:x}", self.run))
            .header(HeaderName::To, format!("<sip:sink@{host}>"))
            .header(HeaderName::CallId, format!("rl-reg-{:x}", self.run))
            .header(HeaderName::CSeq, "1 REGISTER")
            .header(HeaderName::Contact, format!("<sip:sink@{}>", self.local))
            .header(HeaderName::Expires, 3600)
            .finish();
        self.send(m.as_bytes(), self.server)?;
        self.pump_until(STEP_LIMIT, |d| d.registered).map_err(|_| "no 200 to REGISTER from the service".to_string())
    }

    fn invite(&mut self, i: usize, media: SocketAddr) -> Result<(), String> {
        let host = self.server.ip();
        let (call_id, from_tag) = (format!("rl-{:x}-{i}", self.run), format!("c{i}"));
        let via = self.via();
        let m = Message::request(Method::Invite, format!("sip:sink@{}", self.server))
            .header(HeaderName::Via, via)
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, format!("<sip:caller{i}@{}>;tag={from_tag}", self.local.ip()))
            .header(HeaderName::To, format!("<sip:sink@{host}>"))
            .header(HeaderName::CallId, &call_id)
            .header(HeaderName::CSeq, "1 INVITE")
            .header(HeaderName::Contact, format!("<sip:caller{i}@{}>", self.local))
            .body("application/sdp", sdp(media, i as u64).as_bytes());
        self.calls.push(Call { call_id, from_tag, ..Call::default() });
        self.current = i;
        self.send(m.as_bytes(), self.server)
    }

    /// Registers `sink`, then sets up `calls` calls one after the other.
    pub(crate) fn setup(&mut self, media: SocketAddr, calls: usize) -> Result<Vec<CallPorts>, String> {
        self.answer_sdp = sdp(media, u64::MAX / 2);
        self.register()?;
        for i in 0..calls {
            self.invite(i, media)?;
            self.pump_until(STEP_LIMIT, |d| d.calls[i].ack.is_some() && d.calls[i].callee_to.is_some())
                .map_err(|_| format!("call {i} not set up within {STEP_LIMIT:?}"))?;
        }
        self.calls
            .iter()
            .map(|c| match (c.caller_to, c.callee_to) {
                (Some(caller_to), Some(callee_to)) => Ok(CallPorts { caller_to, callee_to }),
                _ => Err("a call without relay ports".to_string()),
            })
            .collect()
    }

    /// Handles datagrams until `done` holds; `Err(())` after `limit`.
    fn pump_until(&mut self, limit: Duration, done: impl Fn(&SipDriver) -> bool) -> Result<(), ()> {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 65_536];
        while !done(self) {
            if Instant::now() >= end {
                return Err(());
            }
            let Ok((n, src)) = self.sock.recv_from(&mut buf) else { continue };
            match Message::parse(Bytes::copy_from_slice(&buf[..n])) {
                Ok(m) if m.is_request() => self.on_request(&m, src),
                Ok(m) => self.on_response(&m),
                Err(e) => eprintln!("# unparsable SIP datagram from {src}: {e:?}"),
            }
        }
        Ok(())
    }

    fn on_response(&mut self, m: &Message) {
        let (Ok(call_id), Ok(cseq), Some(code)) = (m.call_id(), m.cseq(), m.status()) else { return };
        if call_id.starts_with("rl-reg-") {
            self.registered |= (200..300).contains(&code);
            return;
        }
        let Some(i) = self.calls.iter().position(|c| c.call_id == call_id) else { return };
        match cseq.method {
            Method::Invite if (200..300).contains(&code) => self.on_invite_ok(i, m),
            Method::Invite if code >= 300 => eprintln!("# call {i}: INVITE answered {code}"),
            Method::Bye if code >= 200 => self.calls[i].bye_answered = true,
            _ => {}
        }
    }

    fn on_invite_ok(&mut self, i: usize, m: &Message) {
        if let Some(ack) = &self.calls[i].ack {
            // A retransmitted 200: our ACK was lost (RFC 3261 §13.2.2.4).
            let _ = self.send(&ack.clone(), self.server);
            return;
        }
        let to_tag = m.to().ok().and_then(|t| t.tag().map(str::to_string));
        let target = m.contacts().next().and_then(Result::ok).map(|c| c.uri_text.to_string());
        let caller_to = audio_of(m.body()).and_then(|a| a.remote.rtp);
        let (Some(to_tag), Some(target)) = (to_tag, target) else {
            eprintln!("# call {i}: 200 without To tag or Contact");
            return;
        };
        let via = self.via();
        let c = &self.calls[i];
        let ack = Message::request(Method::Ack, &target)
            .header(HeaderName::Via, via)
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, format!("<sip:caller{i}@{}>;tag={}", self.local.ip(), c.from_tag))
            .header(HeaderName::To, text(m, HeaderName::To))
            .header(HeaderName::CallId, &c.call_id)
            .header(HeaderName::CSeq, "1 ACK")
            .finish();
        let _ = self.send(ack.as_bytes(), self.server);
        let c = &mut self.calls[i];
        (c.to_tag, c.target, c.caller_to, c.ack) = (Some(to_tag), Some(target), caller_to, Some(ack.as_bytes().clone()));
    }

    fn on_request(&mut self, m: &Message, src: SocketAddr) {
        let Ok(call_id) = m.call_id().map(str::to_string) else { return };
        match m.method() {
            Some(Method::Invite) => {
                if let Some(ok) = self.callee_ok.get(&call_id) {
                    let _ = self.send(&ok.clone(), src);
                    return;
                }
                let callee_to = audio_of(m.body()).and_then(|a| a.remote.rtp);
                let Some(call) = self.calls.get_mut(self.current).filter(|c| c.callee_to.is_none()) else {
                    let _ = self.send(m.response_to(486, "Busy Here", Some("busy")).finish().as_bytes(), src);
                    return;
                };
                call.callee_to = callee_to;
                let ok = m
                    .response_to(200, "OK", Some(&format!("s{}", self.current)))
                    .header(HeaderName::Contact, format!("<sip:sink@{}>", self.local))
                    .body("application/sdp", self.answer_sdp.as_bytes());
                let _ = self.send(ok.as_bytes(), src);
                self.callee_ok.insert(call_id, ok.as_bytes().clone());
            }
            Some(Method::Ack) => {}
            Some(Method::Bye) => {
                let _ = self.send(m.response_to(200, "OK", None).finish().as_bytes(), src);
                self.callee_ok.remove(&call_id);
            }
            Some(_) => {
                let _ = self.send(m.response_to(200, "OK", Some("rl")).finish().as_bytes(), src);
            }
            None => {}
        }
    }
}

impl Teardown for SipDriver {
    /// BYE on every caller leg that is up, [`BYE_WINDOW`] at a time; answers the service's BYEs
    /// to `sink` meanwhile. Returns how many BYEs were answered.
    fn teardown(&mut self) -> Result<usize, String> {
        let end = Instant::now() + BYE_LIMIT;
        let up: Vec<usize> = (0..self.calls.len()).filter(|&i| self.calls[i].target.is_some()).collect();
        for chunk in up.chunks(BYE_WINDOW) {
            for &i in chunk {
                let via = self.via();
                let c = &self.calls[i];
                let (Some(target), Some(to_tag)) = (&c.target, &c.to_tag) else { continue };
                let bye = Message::request(Method::Bye, target)
                    .header(HeaderName::Via, via)
                    .header(HeaderName::MaxForwards, 70)
                    .header(HeaderName::From, format!("<sip:caller{i}@{}>;tag={}", self.local.ip(), c.from_tag))
                    .header(HeaderName::To, format!("<sip:sink@{}>;tag={to_tag}", self.server.ip()))
                    .header(HeaderName::CallId, &c.call_id)
                    .header(HeaderName::CSeq, "2 BYE")
                    .finish();
                self.send(bye.as_bytes(), self.server)?;
            }
            let left = end.saturating_duration_since(Instant::now());
            let _ = self.pump_until(left, |d| chunk.iter().all(|&i| d.calls[i].bye_answered));
        }
        // The service's BYEs to `sink` follow ours: answer them for a moment so its callee legs end.
        let _ = self.pump_until(Duration::from_millis(500).min(end.saturating_duration_since(Instant::now())), |d| d.callee_ok.is_empty());
        Ok(self.calls.iter().filter(|c| c.bye_answered).count())
    }
}
