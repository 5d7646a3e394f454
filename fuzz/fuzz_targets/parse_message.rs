//! Feeds arbitrary bytes to the SIP parser and every typed accessor: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::message::{HeaderName, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(bytes::Bytes::copy_from_slice(data)) {
        let _ = m.validate();
        let _ = m.check_required();
        let _ = (m.via(), m.call_id(), m.cseq(), m.from(), m.to(), m.max_forwards(), m.content_type());
        let _ = m.vias().count() + m.contacts().count() + m.routes().count() + m.record_routes().count();
        let _ = m.tokens(HeaderName::Supported).count() + m.auth_headers(HeaderName::Authorization).count();
        let _ = m.request_uri().map(|u| u.to_string());
        if let Ok(back) = Message::parse(m.as_bytes().clone()) {
            assert_eq!(back, m, "a parsed message re-parses to itself");
        }
    }
});
