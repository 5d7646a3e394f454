//! A user agent server in about 50 lines, over real UDP on 127.0.0.1: the tokio driver owns the
//! socket and the clock, and our `Application` answers every INVITE with 200 and an SDP answer
//! (RFC 3261 §13.3, RFC 3264) and accepts BYE (§15.1.2). To finish by itself, the example also plays
//! the caller from a plain `std::net::UdpSocket` (INVITE, ACK, BYE) and exits after one call.
//!
//! `cargo run --example uas`

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard::application::{Application, Io};
use switchboard::call::{answer, offer, MediaPrefs};
use switchboard::dialog::{DialogConfig, Dialogs, EndReason, Event, Side};
use switchboard::driver;
use switchboard::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use switchboard::message::{HeaderName, Message, Method};
use switchboard::sdp::{Direction, SessionDescription};
use switchboard::transport::udp::UdpTransport;
use switchboard::ua::core::{UaCore, UaEvent};

// ----- the UAS -----

/// `UaCore` joins the endpoint's transactions to the dialog layer; we only make the decisions.
struct Uas {
    ua: UaCore,
    ended: Option<EndReason>,
}

impl Uas {
    /// After every input: act on each dialog event, then `flush` what the dialogs want sent.
    fn drain(&mut self, io: &mut Io<'_>, now: Instant) {
        while let Some(event) = self.ua.poll_event() {
            match event {
                UaEvent::Dialog(Event::Incoming { id, request }) => {
                    // Answer the offer (RFC 3264 §6) from an RTP port: picked now, bound by the driver next.
                    let (_, _, rtp) = io.media.bind_pair([127, 0, 0, 1].into(), 40000..=40999, true).expect("a free RTP port");
                    println!("  UAS: INVITE for {}, answering with media on {rtp}", request.request_uri_str().unwrap_or("?"));
                    let sdp = SessionDescription::parse(&request.body_bytes()).ok();
                    let reply = sdp.and_then(|o| answer(&o, rtp, &MediaPrefs::default(), Direction::SendRecv, 1).ok());
                    match reply {
                        Some((sdp, _)) => drop(self.ua.dialogs().accept(&id, Some(sdp.to_bytes()), now)),
                        None => drop(self.ua.dialogs().reject(&id, 488, now)), // no usable offer (§13.3.1.1)
                    }
                }
                UaEvent::Dialog(Event::Acked { .. }) => println!("  UAS: ACK received, the call is up"),
                UaEvent::Dialog(Event::Terminated { reason, .. }) => self.ended = Some(reason),
                _ => {}
            }
            self.ua.flush(io.endpoint, now);
        }
    }
}

impl Application for Uas {
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.ua.handle_endpoint_event(io.endpoint, event, now);
        self.drain(io, now);
    }
    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.ua.handle_timeout(io.endpoint, now); // 2xx retransmissions until the ACK (§13.3.1.4)
        self.drain(io, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.ua.poll_timeout()
    }
    fn shutdown(&mut self, _io: &mut Io<'_>, _now: Instant) {}
    fn is_done(&self) -> bool {
        self.ended.is_some() // one call, then the driver returns
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let transport = UdpTransport::bind("127.0.0.1:0".parse().expect("an address")).await?;
    let me = transport.local_addr();
    println!("UAS listening on {me}");
    let config = DialogConfig { contact: format!("sip:uas@{me}"), sent_by: me.to_string(), ..DialogConfig::default() };
    let uas = Uas { ua: UaCore::new(Dialogs::new(config), None), ended: None };
    let caller = std::thread::spawn(move || call(me));
    let run = driver::run(transport, Endpoint::new(EndpointConfig::default()), uas, std::future::pending());
    let uas = tokio::time::timeout(Duration::from_secs(10), run).await.expect("the call ends within 10 s");
    caller.join().expect("the caller thread")?;
    println!("UAS done: the call ended with {:?}", uas.ended);
    assert_eq!(uas.ended, Some(EndReason::Bye(Side::Remote)));
    Ok(())
}

// ----- the caller: any SIP phone would do; this one is a bare socket -----

fn call(uas: SocketAddr) -> std::io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let me = socket.local_addr()?;
    let request = |method: Method, uri: &str, to: &str, cseq: u32| {
        Message::request(method.clone(), uri)
            .header(HeaderName::Via, format!("SIP/2.0/UDP {me};rport;branch=z9hG4bK{cseq}{method}"))
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, format!("<sip:caller@{me}>;tag=c1"))
            .header(HeaderName::To, to)
            .header(HeaderName::CallId, "uas-example@127.0.0.1")
            .header(HeaderName::CSeq, format!("{cseq} {method}"))
            .header(HeaderName::Contact, format!("<sip:caller@{me}>"))
    };
    let send = |msg: Message| -> std::io::Result<()> {
        println!("  caller -> {}", first_line(&msg));
        socket.send_to(msg.as_bytes(), uas)?;
        Ok(())
    };
    let final_response = || -> std::io::Result<Message> {
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.recv(&mut buf)?;
            let reply = Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])).expect("the UAS sends valid SIP");
            println!("  caller <- {}", first_line(&reply));
            if reply.status().is_some_and(|c| c >= 200) {
                return Ok(reply);
            }
        }
    };
    let sdp = offer("127.0.0.1:4000".parse().expect("an address"), &MediaPrefs::default(), Direction::SendRecv, 7, 7);
    let invite = request(Method::Invite, &format!("sip:uas@{uas}"), &format!("<sip:uas@{uas}>"), 1);
    send(invite.body("application/sdp", &sdp.to_bytes()))?;
    let ok = final_response()?;
    assert_eq!(ok.status(), Some(200));
    println!("  answer SDP: {}", String::from_utf8_lossy(ok.body()).lines().find(|l| l.starts_with("m=")).unwrap_or("none"));
    // ACK and BYE go to the remote target, the 200's Contact, with the To tag it chose (§12.1.2).
    let to = String::from_utf8_lossy(ok.header(HeaderName::To).expect("a To header")).into_owned();
    let target = ok.contacts().next().and_then(Result::ok).map(|c| c.uri_text.to_owned()).expect("a Contact");
    send(request(Method::Ack, &target, &to, 1).finish())?;
    std::thread::sleep(Duration::from_millis(200)); // the call lasts a moment
    send(request(Method::Bye, &target, &to, 2).finish())?;
    assert_eq!(final_response()?.status(), Some(200));
    Ok(())
}

fn first_line(msg: &Message) -> String {
    String::from_utf8_lossy(msg.as_bytes()).lines().next().unwrap_or("").to_owned()
}
