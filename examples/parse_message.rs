//! Parse SIP messages from files (or a built-in INVITE) and print their key fields.
//!
//! `cargo run --example parse_message -- fixtures/sip/invite.sip`

use bytes::Bytes;
use switchboard::message::Message;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Length: 0\r\n\r\n";

fn show(name: &str, bytes: Bytes) {
    match Message::parse(bytes) {
        Err(e) => println!("{name}: parse error: {e}"),
        Ok(m) => {
            let first = match (m.method(), m.status()) {
                (Some(method), _) => format!("{method} {}", m.request_uri_str().unwrap_or("")),
                (_, Some(code)) => format!("{code} {}", String::from_utf8_lossy(m.reason().unwrap_or(b""))),
                _ => String::new(),
            };
            println!("{name}: {first}");
            println!("  Call-ID: {:?}", m.call_id().map_err(|e| e.to_string()));
            println!("  CSeq:    {:?}", m.cseq().map(|c| c.to_string()).map_err(|e| e.to_string()));
            println!("  branch:  {:?}", m.via().map(|v| v.branch().map(str::to_owned)).map_err(|e| e.to_string()));
            println!("  CL/body: {:?}/{}", m.content_length(), m.body().len());
            println!("  validate: {:?}", m.validate().map_err(|e| e.to_string()));
            println!("  required: {:?}", m.check_required().map_err(|e| e.to_string()));
        }
    }
}

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        show("built-in INVITE", Bytes::from_static(INVITE));
    }
    for f in files {
        match std::fs::read(&f) {
            Ok(b) => show(&f, Bytes::from(b)),
            Err(e) => eprintln!("{f}: {e}"),
        }
    }
}
