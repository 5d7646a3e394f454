//! SDP on the two legs of a B2BUA call: what a phone's description says about its audio stream,
//! and the description the service sends the other phone, pointing at the relay (RFC 3264 §5, §8).

use crate::relay::RemoteMedia;
use crate::sdp::{Connection, Direction, Origin, SessionDescription};
use bytes::Bytes;
use std::net::SocketAddr;

/// Our `o=` line on one leg: a session id and a version raised on every new description we send
/// on that leg (RFC 3264 §8: each offer or answer after the first increments it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegOrigin {
    /// `<sess-id>`.
    pub session_id: u64,
    /// `<sess-version>` of the last description sent.
    pub version: u64,
}

/// The audio stream a phone's description offers or answers.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioStream {
    /// Where the phone wants RTP and RTCP, as the relay takes it.
    pub remote: RemoteMedia,
    /// The first codec, e.g. `PCMU/8000`.
    pub codec: Option<String>,
}

/// Reads the first audio stream of `body`; `None` if it does not parse or has no RTP audio.
pub fn audio_of(body: &[u8]) -> Option<AudioStream> {
    let sdp = SessionDescription::parse(&Bytes::copy_from_slice(body)).ok()?;
    let m = sdp.media.iter().find(|m| m.media.as_str() == "audio" && m.is_rtp())?;
    let ip = m.effective_connection(&sdp).and_then(|c| c.ip()).filter(|ip| !ip.is_unspecified());
    let (rtp, rtcp) = match ip {
        Some(ip) if m.port != 0 => {
            let rtcp_port = m.rtcp_port().unwrap_or(m.port.saturating_add(1));
            (Some(SocketAddr::new(ip, m.port)), Some(SocketAddr::new(ip, rtcp_port)))
        }
        _ => (None, None),
    };
    let dir = if m.port == 0 { Direction::Inactive } else { m.effective_direction(&sdp) };
    let first = m.payload_types().next();
    let codec = first.and_then(|pt| m.codec(pt));
    let clock_rate = codec.as_ref().map_or(8000, |c| c.clock_rate);
    Some(AudioStream {
        remote: RemoteMedia { rtp, rtcp, sends: dir.sends(), receives: dir.receives(), clock_rate },
        codec: codec.map(|c| format!("{}/{}", c.encoding_name.as_str(), c.clock_rate)),
    })
}

/// The description for the other leg: `body` with our origin (version raised), our relay address
/// in every `c=` and as the audio port, and what would bypass the relay removed (`a=rtcp`, ICE
/// candidates). Other streams (video, ...) are refused with port 0: the relay carries one audio
/// stream. A held stream (`c=0.0.0.0`, RFC 3264 §8.4) stays held. `None` if `body` is no SDP.
pub fn rewrite(body: &[u8], relay: SocketAddr, origin: &mut LegOrigin) -> Option<Bytes> {
    let mut sdp = SessionDescription::parse(&Bytes::copy_from_slice(body)).ok()?;
    origin.version += 1;
    sdp.origin = Origin::new("switchboard", origin.session_id, origin.version, relay.ip());
    let held_session = sdp.connection.as_ref().is_some_and(Connection::is_unspecified);
    if sdp.connection.is_some() && !held_session {
        sdp.set_connection(Connection::new(relay.ip()));
    }
    for name in ["candidate", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite"] {
        sdp.remove_attributes(name);
    }
    let mut audio_done = false;
    for m in &mut sdp.media {
        for name in ["rtcp", "candidate", "ice-ufrag", "ice-pwd", "rtcp-mux"] {
            m.remove_attributes(name);
        }
        if audio_done || m.media.as_str() != "audio" || !m.is_rtp() {
            m.reject();
            continue;
        }
        audio_done = true;
        if m.port == 0 {
            continue;
        }
        let held = m.connection().map_or(held_session, Connection::is_unspecified);
        if !held {
            m.set_connection(Connection::new(relay.ip()));
        }
        m.set_port(relay.port());
    }
    Some(sdp.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:4005\r\na=sendonly\r\n\
m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";

    #[test]
    fn reads_the_audio_stream() {
        let a = audio_of(OFFER.as_bytes()).unwrap();
        assert_eq!(a.remote.rtp, Some("192.0.2.10:4000".parse().unwrap()));
        assert_eq!(a.remote.rtcp, Some("192.0.2.10:4005".parse().unwrap()));
        assert!(a.remote.sends && !a.remote.receives);
        assert_eq!(a.codec.as_deref(), Some("PCMA/8000"));
    }

    #[test]
    fn rewrites_towards_the_relay() {
        let mut o = LegOrigin { session_id: 7, version: 1 };
        let out = rewrite(OFFER.as_bytes(), "127.0.0.1:30002".parse().unwrap(), &mut o).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(o.version, 2);
        assert!(text.contains("o=switchboard 7 2 IN IP4 127.0.0.1\r\n"), "{text}");
        assert!(text.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(text.contains("m=audio 30002 RTP/AVP 8 0 101\r\n"));
        assert!(text.contains("m=video 0 "));
        assert!(!text.contains("a=rtcp:"));
        assert!(text.contains("a=sendonly"), "direction kept");
        let back = audio_of(&out).unwrap();
        assert_eq!(back.remote.rtp, Some("127.0.0.1:30002".parse().unwrap()));
    }

    #[test]
    fn a_held_stream_stays_held() {
        let held = OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0");
        let mut o = LegOrigin { session_id: 7, version: 1 };
        let out = rewrite(held.as_bytes(), "127.0.0.1:30002".parse().unwrap(), &mut o).unwrap();
        assert_eq!(audio_of(&out).unwrap().remote.rtp, None);
        assert!(rewrite(b"garbage", "127.0.0.1:1".parse().unwrap(), &mut o).is_none());
    }
}
