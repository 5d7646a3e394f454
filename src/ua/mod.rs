//! User agents built on the endpoint and the dialog layer (sans-IO): [`core::UaCore`] joins the two,
//! and on it stand the service's echo UAS ([`echo::EchoUas`]) and the softphone's dialer
//! ([`dialer::Dialer`]). Both implement [`crate::driver::Application`].
//!
//! The SDP here is the minimal audio offer/answer of RFC 3264 (PCMU/PCMA, telephone-event); the call
//! manager of the media layer takes it over.

pub mod core;
pub mod dialer;
pub mod echo;

use crate::sdp::{Connection, Direction, MediaDescription, Origin, RtpMap, SessionDescription};
use std::net::IpAddr;

/// The payload types we can send and receive (RFC 3551): PCMU, PCMA.
const AUDIO_CODECS: [(u8, &str); 2] = [(0, "PCMU"), (8, "PCMA")];

/// An audio offer: PCMU, PCMA and telephone-event/8000 (101), ptime 20, sendrecv.
pub fn audio_offer(ip: IpAddr, port: u16, session_id: u64) -> SessionDescription {
    let mut sdp = SessionDescription::new(Origin::new("switchboard", session_id, session_id, ip), "switchboard", Connection::new(ip));
    let mut m = MediaDescription::new("audio", port, "RTP/AVP", ["0", "8", "101"]);
    for (pt, name) in AUDIO_CODECS {
        m.push_codec(RtpMap::new(pt, name, 8000, None));
    }
    m.push_codec(RtpMap::new(101, "telephone-event", 8000, None));
    m.push_attribute(crate::sdp::Attribute::new("fmtp", "101 0-16"));
    m.set_ptime(20);
    m.set_direction(Direction::SendRecv);
    sdp.push_media(m);
    sdp
}

/// Answers an offer (RFC 3264 §6): the first offered audio codec we support, telephone-event if
/// offered, the reverse direction. `None` when nothing matches (the caller answers 488).
pub fn audio_answer(offer: &SessionDescription, ip: IpAddr, port: u16, session_id: u64) -> Option<SessionDescription> {
    let audio = offer.media.iter().find(|m| m.media.as_str() == "audio" && m.port != 0)?;
    let pt = audio.payload_types().find(|pt| AUDIO_CODECS.iter().any(|(p, _)| p == pt))?;
    let name = AUDIO_CODECS.iter().find(|(p, _)| *p == pt).map(|(_, n)| *n)?;
    let event =
        audio.payload_types().find(|&p| audio.codec(p).is_some_and(|c| c.encoding_name.as_str().eq_ignore_ascii_case("telephone-event")));
    let mut formats = vec![pt.to_string()];
    formats.extend(event.map(|e| e.to_string()));
    let mut sdp = SessionDescription::new(Origin::new("switchboard", session_id, session_id, ip), "switchboard", Connection::new(ip));
    let mut m = MediaDescription::new("audio", port, "RTP/AVP", formats);
    m.push_codec(RtpMap::new(pt, name, 8000, None));
    if let Some(e) = event {
        m.push_codec(RtpMap::new(e, "telephone-event", 8000, None));
        m.push_attribute(crate::sdp::Attribute::new("fmtp", format!("{e} 0-16")));
    }
    m.set_ptime(20);
    m.set_direction(audio.effective_direction(offer).reverse());
    sdp.push_media(m);
    Some(sdp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_picks_first_supported_codec_and_reverses_direction() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut offer = audio_offer(ip, 4000, 1);
        offer.media[0].set_direction(Direction::SendOnly);
        let offer = SessionDescription::parse(&offer.to_bytes()).unwrap();
        let a = audio_answer(&offer, ip, 5000, 2).unwrap();
        assert_eq!(a.media[0].payload_types().collect::<Vec<_>>(), vec![0, 101]);
        assert_eq!(a.media[0].effective_direction(&a), Direction::RecvOnly);
        let mut g729 = SessionDescription::new(Origin::new("x", 1, 1, ip), "x", Connection::new(ip));
        g729.push_media(MediaDescription::new("audio", 4000, "RTP/AVP", ["18"]));
        assert!(audio_answer(&g729, ip, 5000, 2).is_none());
    }
}
