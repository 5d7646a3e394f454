//! User agents built on the endpoint (sans-IO): the service's echo UAS ([`echo::EchoUas`]) and the
//! softphone's dialer ([`dialer::Dialer`]). They implement [`crate::driver::Application`].
//!
//! The SDP here is the minimal audio offer/answer of RFC 3264 (PCMU/PCMA, telephone-event); the call
//! manager of the media layer takes it over.

pub mod dialer;
pub mod echo;

use crate::message::{HeaderName, Message, Method};
use crate::sdp::{Connection, Direction, MediaDescription, Origin, RtpMap, SessionDescription};
use crate::transport::via_value;
use std::net::{IpAddr, SocketAddr};

/// A small deterministic RNG (splitmix64) for tags, branches and Call-IDs; seeded by the caller so
/// tests are repeatable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A tag (RFC 3261 §19.3: at least 32 bits of randomness).
    pub fn tag(&mut self) -> String {
        format!("{:016x}", self.next_u64())
    }

    /// A branch with the RFC 3261 cookie (§8.1.1.7).
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{:016x}", self.next_u64())
    }

    /// A Call-ID (§8.1.1.4).
    pub fn call_id(&mut self, host: IpAddr) -> String {
        format!("{:016x}{:08x}@{host}", self.next_u64(), self.next_u64() as u32)
    }
}

/// What one side of a dialog needs to build its next request (§12.2.1.1), without route sets: enough
/// for the echo UAS and a direct softphone call. The dialog layer replaces this.
#[derive(Debug, Clone)]
pub struct DialogInfo {
    /// Call-ID.
    pub call_id: String,
    /// Our URI and tag (From of our requests).
    pub local: (String, String),
    /// The peer's URI and tag (To of our requests).
    pub remote: (String, String),
    /// The peer's Contact URI: the Request-URI of our requests.
    pub remote_target: String,
    /// Our next CSeq.
    pub local_cseq: u32,
    /// Where to send.
    pub peer: SocketAddr,
}

impl DialogInfo {
    /// Builds an in-dialog request (BYE, INFO, re-INVITE without body) from `local` addr.
    pub fn request(&mut self, method: Method, local: SocketAddr, branch: &str) -> Message {
        self.local_cseq += 1;
        self.build(method, self.local_cseq, local, branch)
    }

    /// Builds a request with a given CSeq number: the ACK for a 2xx reuses the INVITE's (§13.2.2.4).
    pub fn build(&self, method: Method, cseq: u32, local: SocketAddr, branch: &str) -> Message {
        Message::request(method.clone(), &self.remote_target)
            .header(HeaderName::Via, via_value(local, branch))
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, format_args!("<{}>;tag={}", self.local.0, self.local.1))
            .header(HeaderName::To, format_args!("<{}>;tag={}", self.remote.0, self.remote.1))
            .header(HeaderName::CallId, &self.call_id)
            .header(HeaderName::CSeq, format_args!("{cseq} {method}"))
            .finish()
    }
}

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

    #[test]
    fn rng_is_deterministic() {
        assert_eq!(Rng::new(7).branch(), Rng::new(7).branch());
        assert!(Rng::new(7).branch().starts_with("z9hG4bK"));
    }
}
