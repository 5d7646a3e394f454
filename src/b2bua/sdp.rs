//! SDP on the two legs of a B2BUA call: what a phone's description says about its audio stream,
//! and the description the service sends the other phone, pointing at the relay (RFC 3264 §5, §8).

use crate::relay::RemoteMedia;
use crate::sdp::{Connection, Direction, MediaDescription, Origin, SessionDescription};
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
    /// The index of its `m=` line among all of the description's (answer lines correspond to
    /// offer lines by index, RFC 3264 §6).
    pub line: usize,
}

/// Reads the audio stream of `body` the relay carries: the first RTP audio line with a non-zero
/// port, else the first RTP audio line (refused: no address, inactive). An offer may carry the
/// same audio as alternatives (an `RTP/SAVP` line with `a=crypto` and an `RTP/AVP` line, as phones
/// with optional SRTP offer it); the answer accepts one of them and refuses the others with port 0
/// (RFC 3264 §6), so in an answer this is the accepted line. `None` if `body` does not parse or
/// has no RTP audio.
pub fn audio_of(body: &[u8]) -> Option<AudioStream> {
    audio_in(&SessionDescription::parse(&Bytes::copy_from_slice(body)).ok()?)
}

/// [`audio_of`] that also returns the parsed description (for [`rewrite_parsed`]): `None` if
/// `body` does not parse or has no RTP audio.
pub fn read_offer(body: &[u8]) -> Option<(AudioStream, SessionDescription)> {
    let sdp = SessionDescription::parse(&Bytes::copy_from_slice(body)).ok()?;
    Some((audio_in(&sdp)?, sdp))
}

/// [`audio_of`] on a description already parsed.
fn audio_in(sdp: &SessionDescription) -> Option<AudioStream> {
    let audio = |m: &&MediaDescription| m.media.as_str() == "audio" && m.is_rtp();
    let m = sdp.media.iter().filter(audio).find(|m| m.port != 0).or_else(|| sdp.media.iter().find(audio))?;
    let line = sdp.media.iter().position(|x| std::ptr::eq(x, m))?;
    Some(stream(sdp, m, line))
}

/// Reads the RTP audio stream on `m=` line `line` of `body` (the offered line an answer's
/// accepted line corresponds to); `None` if it is no RTP audio line or `body` does not parse.
pub fn audio_at(body: &[u8], line: usize) -> Option<AudioStream> {
    let sdp = SessionDescription::parse(&Bytes::copy_from_slice(body)).ok()?;
    let m = sdp.media.get(line).filter(|m| m.media.as_str() == "audio" && m.is_rtp())?;
    Some(stream(&sdp, m, line))
}

fn stream(sdp: &SessionDescription, m: &MediaDescription, line: usize) -> AudioStream {
    let ip = m.effective_connection(sdp).and_then(|c| c.ip()).filter(|ip| !ip.is_unspecified());
    let (rtp, rtcp) = match ip {
        Some(ip) if m.port != 0 => {
            let rtcp_port = m.rtcp_port().unwrap_or(m.port.saturating_add(1));
            (Some(SocketAddr::new(ip, m.port)), Some(SocketAddr::new(ip, rtcp_port)))
        }
        _ => (None, None),
    };
    let dir = if m.port == 0 { Direction::Inactive } else { m.effective_direction(sdp) };
    let first = m.payload_types().next();
    let codec = first.and_then(|pt| m.codec(pt));
    let clock_rate = codec.as_ref().map_or(8000, |c| c.clock_rate);
    AudioStream {
        remote: RemoteMedia { rtp, rtcp, sends: dir.sends(), receives: dir.receives(), clock_rate },
        codec: codec.map(|c| codec_name(c.encoding_name.as_str(), c.clock_rate)),
        line,
    }
}

/// `NAME/RATE` (e.g. `PCMU/8000`), as `format!("{name}/{rate}")` writes it, without the
/// formatting machinery: it ran twice per call (offer and answer), ~1,900 instructions each
/// (issue 16).
fn codec_name(name: &str, rate: u32) -> String {
    let mut s = String::with_capacity(name.len() + 11);
    s.push_str(name);
    s.push('/');
    crate::decimal::push_decimal(&mut s, rate.into());
    s
}

/// The description for the other leg: `body` with our origin (version raised), our relay address
/// in every `c=` and as the port of every RTP audio line with a non-zero port, and what would
/// bypass the relay removed (`a=rtcp`, ICE candidates). Lines with port 0 stay refused; other
/// streams (video, ...) are refused with port 0: the relay carries one audio stream. Several
/// audio lines in an offer are alternatives of that stream (e.g. `RTP/SAVP` and `RTP/AVP`): they
/// all name the same relay port, which forwards whatever arrives (SRTP included, its `a=crypto`
/// untouched), and the answerer accepts one of them (RFC 3264 §6), which the relay then follows
/// (see [`audio_of`], [`audio_at`]). A held stream (`c=0.0.0.0`, RFC 3264 §8.4) stays held. `None`
/// if `body` is no SDP.
pub fn rewrite(body: &[u8], relay: SocketAddr, origin: &mut LegOrigin) -> Option<Bytes> {
    let sdp = SessionDescription::parse(&Bytes::copy_from_slice(body)).ok()?;
    Some(rewrite_parsed(sdp, relay, origin))
}

/// [`audio_of`] and [`rewrite`] of the same `body` from one parse: the audio stream it carries
/// and the description for the other leg. `None` if `body` is no SDP.
pub fn read_and_rewrite(body: &[u8], relay: SocketAddr, origin: &mut LegOrigin) -> Option<(Option<AudioStream>, Bytes)> {
    let sdp = SessionDescription::parse(&Bytes::copy_from_slice(body)).ok()?;
    let stream = audio_in(&sdp);
    Some((stream, rewrite_parsed(sdp, relay, origin)))
}

/// [`rewrite`] of a description already parsed.
pub fn rewrite_parsed(mut sdp: SessionDescription, relay: SocketAddr, origin: &mut LegOrigin) -> Bytes {
    origin.version += 1;
    sdp.origin = Origin::new("switchboard", origin.session_id, origin.version, relay.ip());
    let held_session = sdp.connection.as_ref().is_some_and(Connection::is_unspecified);
    if sdp.connection.is_some() && !held_session {
        sdp.set_connection(Connection::new(relay.ip()));
    }
    for name in ["candidate", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite"] {
        sdp.remove_attributes(name);
    }
    for m in &mut sdp.media {
        for name in ["rtcp", "candidate", "ice-ufrag", "ice-pwd", "rtcp-mux"] {
            m.remove_attributes(name);
        }
        if m.media.as_str() != "audio" || !m.is_rtp() {
            m.reject();
            continue;
        }
        if m.port == 0 {
            continue;
        }
        let held = m.connection().map_or(held_session, Connection::is_unspecified);
        if !held {
            m.set_connection(Connection::new(relay.ip()));
        }
        m.set_port(relay.port());
    }
    sdp.to_bytes()
}

/// The audio line the service itself accepts in an offer it answers (see `prack`): the first
/// plain RTP audio line (`RTP/AVP`, `RTP/AVPF`) with a non-zero port, as the service holds no SRTP
/// key of its own to answer an `RTP/SAVP` line with; else the line [`audio_of`] reads.
pub fn line_to_accept(offer: &[u8]) -> Option<AudioStream> {
    let sdp = SessionDescription::parse(&Bytes::copy_from_slice(offer)).ok()?;
    let plain = sdp.media.iter().position(|m| m.media.as_str() == "audio" && m.port != 0 && m.proto.as_str().starts_with("RTP/AVP"));
    match plain {
        Some(line) => audio_at(offer, line),
        None => audio_of(offer),
    }
}

/// `body` with every audio line but `line` refused (port 0, without the offer's SDES keys): an
/// answer accepts at most one of the alternative audio lines of an offer (RFC 3264 §6). `None`
/// if `body` is no SDP.
pub fn accept_only(body: &[u8], line: usize) -> Option<Bytes> {
    let mut sdp = SessionDescription::parse(&Bytes::copy_from_slice(body)).ok()?;
    for (i, m) in sdp.media.iter_mut().enumerate() {
        if i != line && m.media.as_str() == "audio" {
            m.reject();
            m.remove_attributes("crypto");
        }
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
    fn codec_name_is_what_format_writes() {
        for (name, rate) in [("PCMU", 8000), ("opus", 48000), ("G722", 0), ("x", 9), ("L16", 10), ("y", u32::MAX)] {
            assert_eq!(codec_name(name, rate), format!("{name}/{rate}"));
        }
    }

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
    fn one_parse_reads_and_rewrites_as_the_two_calls_do() {
        let relay = "127.0.0.1:30002".parse().unwrap();
        for body in [OFFER, MIXED, "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n"] {
            let (mut a, mut b) = (LegOrigin { session_id: 7, version: 1 }, LegOrigin { session_id: 7, version: 1 });
            let (stream, out) = read_and_rewrite(body.as_bytes(), relay, &mut a).unwrap();
            assert_eq!(stream, audio_of(body.as_bytes()), "{body}");
            assert_eq!(Some(out), rewrite(body.as_bytes(), relay, &mut b), "{body}");
            assert_eq!(a, b);
            let (offer, parsed) = match read_offer(body.as_bytes()) {
                Some(o) => o,
                None => {
                    assert!(audio_of(body.as_bytes()).is_none());
                    continue;
                }
            };
            assert_eq!(Some(offer), audio_of(body.as_bytes()));
            assert_eq!(Some(rewrite_parsed(parsed, relay, &mut a)), rewrite(body.as_bytes(), relay, &mut b));
        }
        let mut o = LegOrigin { session_id: 7, version: 1 };
        assert!(read_and_rewrite(b"garbage", relay, &mut o).is_none() && read_offer(b"garbage").is_none());
        assert_eq!(o.version, 1, "no description, no new version");
    }

    #[test]
    fn a_held_stream_stays_held() {
        let held = OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0");
        let mut o = LegOrigin { session_id: 7, version: 1 };
        let out = rewrite(held.as_bytes(), "127.0.0.1:30002".parse().unwrap(), &mut o).unwrap();
        assert_eq!(audio_of(&out).unwrap().remote.rtp, None);
        assert!(rewrite(b"garbage", "127.0.0.1:1".parse().unwrap(), &mut o).is_none());
    }

    const MIXED: &str = "v=0\r\no=bob 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n\
m=audio 6002 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
m=video 0 RTP/AVP 96\r\n";

    #[test]
    fn every_offered_audio_line_names_the_relay_and_keeps_its_key() {
        let mut o = LegOrigin { session_id: 7, version: 1 };
        let out = rewrite(MIXED.as_bytes(), "127.0.0.1:30002".parse().unwrap(), &mut o).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("m=audio 30002 RTP/SAVP 0\r\n"), "{text}");
        assert!(text.contains("m=audio 30002 RTP/AVP 0\r\n"), "{text}");
        assert!(text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"), "{text}");
        assert!(text.contains("m=video 0 "), "{text}");
        assert!(!text.contains("192.0.2.20"), "{text}");
        let first = audio_of(MIXED.as_bytes()).unwrap();
        assert_eq!((first.line, first.remote.rtp), (0, Some("192.0.2.20:6002".parse().unwrap())));
        let second = audio_at(MIXED.as_bytes(), 1).unwrap();
        assert_eq!((second.line, second.remote.rtp), (1, Some("192.0.2.20:6000".parse().unwrap())));
        assert!(audio_at(MIXED.as_bytes(), 2).is_none() && audio_at(MIXED.as_bytes(), 9).is_none());
    }

    #[test]
    fn an_answer_accepting_the_second_line_keeps_the_first_refused() {
        let answer = MIXED.replace("m=audio 6002 RTP/SAVP", "m=audio 0 RTP/SAVP");
        let accepted = audio_of(answer.as_bytes()).unwrap();
        assert_eq!((accepted.line, accepted.remote.rtp), (1, Some("192.0.2.20:6000".parse().unwrap())));
        let mut o = LegOrigin { session_id: 7, version: 1 };
        let out = rewrite(answer.as_bytes(), "127.0.0.1:30004".parse().unwrap(), &mut o).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("m=audio 0 RTP/SAVP 0\r\n") && text.contains("m=audio 30004 RTP/AVP 0\r\n"), "{text}");
        assert_eq!(audio_of(&out).unwrap().line, 1);
        // Every audio line refused: the first one is read, without an address.
        let none = answer.replace("m=audio 6000 RTP/AVP", "m=audio 0 RTP/AVP");
        let refused = audio_of(none.as_bytes()).unwrap();
        assert_eq!((refused.line, refused.remote.rtp, refused.remote.sends), (0, None, false));
    }

    #[test]
    fn the_service_accepts_one_plain_line() {
        let line = line_to_accept(MIXED.as_bytes()).unwrap();
        assert_eq!((line.line, line.remote.rtp), (1, Some("192.0.2.20:6000".parse().unwrap())));
        let only = accept_only(MIXED.as_bytes(), line.line).unwrap();
        let text = std::str::from_utf8(&only).unwrap();
        assert!(text.contains("m=audio 0 RTP/SAVP 0\r\n") && text.contains("m=audio 6000 RTP/AVP 0\r\n"), "{text}");
        assert!(!text.contains("crypto"), "{text}");
        let savp_only = MIXED.replace("m=audio 6000 RTP/AVP", "m=audio 0 RTP/AVP");
        assert_eq!(line_to_accept(savp_only.as_bytes()).unwrap().line, 0);
    }
}
