//! `softphone message URI TEXT` (RFC 3428: one MESSAGE, digest credentials on a challenge), and
//! the lines received messages print as they arrive.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;
use switchboard::application::{Application, FlowId, Io};
use switchboard::auth::DigestClient;
use switchboard::endpoint::{Endpoint, EndpointEvent};
use switchboard::transport::udp::UdpTransport;
use switchboard::ua::message::{answer_out_of_dialog, MessageConfig, MessageSender, MessageState, ReceivedMessage};
use switchboard::ua::phone::Phone;

/// One received message as one line: `message from URI: TEXT`, or with `json` an object with
/// `"type": "message"`. Line breaks and other control characters in the text become spaces.
pub(crate) fn line(m: &ReceivedMessage, json: bool) -> String {
    if json {
        return serde_json::json!({
            "type": "message", "from": m.from, "asserted_identity": m.asserted, "content_type": m.content_type, "text": m.text,
        })
        .to_string();
    }
    let text: String = m.text.trim_end().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("message from {}: {text}", m.from)
}

/// A phone that prints each MESSAGE on stdout as it arrives (`dial`, `answer`).
pub(crate) struct Printing {
    pub(crate) phone: Phone,
    printed: usize,
    json: bool,
}

impl Printing {
    pub(crate) fn new(phone: Phone, json: bool) -> Printing {
        Printing { phone, printed: 0, json }
    }

    /// A phone whose messages were shown already (the prompt's, for the summary).
    pub(crate) fn quiet(phone: Phone) -> Printing {
        Printing { printed: phone.messages.len(), phone, json: false }
    }

    fn news(&mut self) {
        for m in &self.phone.messages[self.printed..] {
            println!("{}", line(m, self.json));
        }
        self.printed = self.phone.messages.len();
    }
}

impl std::ops::Deref for Printing {
    type Target = Phone;
    fn deref(&self) -> &Phone {
        &self.phone
    }
}

impl std::ops::DerefMut for Printing {
    fn deref_mut(&mut self) -> &mut Phone {
        &mut self.phone
    }
}

impl Application for Printing {
    fn start(&mut self, io: &mut Io<'_>, now: Instant) {
        self.phone.start(io, now);
    }
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.phone.handle_event(io, event, now);
        self.news();
    }
    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: bytes::Bytes, now: Instant) {
        self.phone.handle_media(io, flow, source, payload, now);
    }
    fn handle_bind_failed(&mut self, io: &mut Io<'_>, flow: FlowId, now: Instant) {
        self.phone.handle_bind_failed(io, flow, now);
    }
    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.phone.handle_timeout(io, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.phone.poll_timeout()
    }
    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant) {
        self.phone.shutdown(io, now);
    }
    fn is_done(&self) -> bool {
        self.phone.is_done()
    }
    fn poll_move(&mut self) -> Option<SocketAddr> {
        self.phone.poll_move()
    }
    fn moved(&mut self, io: &mut Io<'_>, local: std::io::Result<SocketAddr>, now: Instant) {
        self.phone.moved(io, local, now);
    }
}

/// The application that sends one MESSAGE and ends with its answer.
struct Sending {
    sender: MessageSender,
    stopping: bool,
}

impl Application for Sending {
    fn start(&mut self, io: &mut Io<'_>, now: Instant) {
        self.sender.send(io.endpoint, now);
    }
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        match event {
            EndpointEvent::Response { tx, response, .. } => self.sender.handle_response(io.endpoint, tx, &response, now),
            EndpointEvent::Timeout { tx, .. } => self.sender.handle_timeout_of(tx),
            EndpointEvent::Request { tx, request, .. } => {
                io.endpoint.respond_or_log(tx, answer_out_of_dialog(&request, "softphone").0, now);
            }
            _ => {}
        }
    }
    fn handle_timeout(&mut self, _io: &mut Io<'_>, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn shutdown(&mut self, _io: &mut Io<'_>, _now: Instant) {
        self.stopping = true;
    }
    fn is_done(&self) -> bool {
        self.stopping || *self.sender.state() != MessageState::Pending
    }
}

/// Sends `config`'s MESSAGE; exit status 0 on a 2xx, 1 with the reason on one line otherwise.
pub(crate) async fn send(
    transport: UdpTransport,
    config: MessageConfig,
    credentials: Option<(String, String)>,
    realm: Option<String>,
) -> ExitCode {
    let digest = credentials.map(|(user, password)| {
        let client = DigestClient::new(user, password);
        match realm {
            Some(r) => client.only_realm(r),
            None => client,
        }
    });
    let to = config.to.clone();
    let sender = MessageSender::new(config, digest, switchboard::dialog::IdGen::os_seed());
    let endpoint = Endpoint::new(switchboard::endpoint::EndpointConfig::default());
    let app = Sending { sender, stopping: false };
    let app = switchboard::driver::run(transport, endpoint, app, switchboard::driver::interrupted()).await;
    match app.sender.state() {
        MessageState::Delivered(code) => {
            eprintln!("softphone: message to {to} delivered ({code})");
            ExitCode::SUCCESS
        }
        MessageState::Failed(code, reason) => {
            eprintln!("softphone: message to {to} failed: {code} {reason}");
            ExitCode::FAILURE
        }
        MessageState::Pending => {
            eprintln!("softphone: message to {to} interrupted before an answer");
            ExitCode::FAILURE
        }
    }
}
