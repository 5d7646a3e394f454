//! SDP offer/answer for one audio stream (RFC 3264), G.711 and telephone-event (RFC 4733).
//!
//! The answerer picks the codec by its own preference (§6.1), keeps the offerer's dynamic payload type
//! for telephone-event, answers every other m-line with port 0 (§6: same number of m-lines), and
//! mirrors the direction (§6.1: sendonly is answered recvonly or inactive). Secure RTP lines
//! (`RTP/SAVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVP`, ...) are taken only when SRTP is allowed
//! ([`MediaPrefs::srtp`]); otherwise they are refused with port 0 like any stream we cannot carry,
//! an `RTP/AVP` line beside them is the one answered, and an offer with nothing else is 488
//! ([`choose_audio`]). Hold is `sendonly` /
//! `inactive` or a `0.0.0.0` connection address (RFC 3264 §8.4, RFC 2543 style).

use crate::media::g711::Codec;
use crate::sdp::{Attribute, Connection, Direction, MediaDescription, Origin, RtpMap, SessionDescription};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// What we can do and prefer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPrefs {
    /// Audio codecs in our order of preference.
    pub codecs: Vec<Codec>,
    /// Payload type we offer for telephone-event/8000; `None` to offer no DTMF events.
    pub dtmf_payload_type: Option<u8>,
    /// Packet time we offer, in ms.
    pub ptime: u32,
    /// Secure RTP (`SAVP`) lines may be answered (`--srtp optional|required`); `false` (the
    /// default, `--srtp off`): they are refused with port 0 (RFC 3264 §6).
    pub srtp: bool,
}

impl Default for MediaPrefs {
    /// PCMU then PCMA, telephone-event on 101, 20 ms.
    fn default() -> Self {
        MediaPrefs { codecs: vec![Codec::Pcmu, Codec::Pcma], dtmf_payload_type: Some(101), ptime: 20, srtp: false }
    }
}

/// The agreed audio stream, from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP; `None` when the peer holds with `0.0.0.0` or gave no address.
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP (the `a=rtcp` port, else RTP port + 1).
    pub remote_rtcp: Option<SocketAddr>,
    /// The codec both send.
    pub codec: Codec,
    /// Payload type of telephone-event, when both sides have it.
    pub dtmf_payload_type: Option<u8>,
    /// Packet time in ms.
    pub ptime: u32,
    /// Our direction: whether we send and receive.
    pub direction: Direction,
}

/// Why an offer or answer cannot be used; answer an offer with 488 (RFC 3261 §13.3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NegotiationError {
    /// No audio m-line with a non-zero port.
    NoAudio,
    /// None of the offered (or answered) codecs is one we have.
    NoCommonCodec,
    /// The only audio offered is secure RTP (`SAVP`), and SRTP is not allowed.
    SrtpOnly,
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NegotiationError::NoAudio => "no usable audio stream",
            NegotiationError::NoCommonCodec => "no common codec",
            NegotiationError::SrtpOnly => "only secure RTP (SAVP) offered, and SRTP is off",
        })
    }
}

impl std::error::Error for NegotiationError {}

fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::Pcmu => "PCMU",
        Codec::Pcma => "PCMA",
    }
}

/// The direction both allow: we send if both the wish and the peer permit it, likewise receive.
pub fn intersect(ours: Direction, theirs_reversed: Direction) -> Direction {
    direction_of(ours.sends() && theirs_reversed.sends(), ours.receives() && theirs_reversed.receives())
}

fn direction_of(send: bool, recv: bool) -> Direction {
    match (send, recv) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    }
}

fn base(local_ip: IpAddr, session_id: u64, version: u64) -> SessionDescription {
    SessionDescription::new(Origin::new("switchboard", session_id, version, local_ip), "switchboard", Connection::new(local_ip))
}

fn audio_line(port: u16, codecs: &[Codec], dtmf: Option<u8>, ptime: u32, direction: Direction) -> MediaDescription {
    let mut formats: Vec<String> = codecs.iter().map(|c| c.payload_type().to_string()).collect();
    formats.extend(dtmf.map(|d| d.to_string()));
    let mut m = MediaDescription::new("audio", port, "RTP/AVP", formats);
    for &c in codecs {
        m.push_codec(RtpMap::new(c.payload_type(), codec_name(c), 8000, None));
    }
    if let Some(d) = dtmf {
        m.push_codec(RtpMap::new(d, "telephone-event", 8000, None));
        m.push_attribute(Attribute::new("fmtp", format!("{d} 0-16")));
    }
    m.set_ptime(ptime);
    m.set_direction(direction);
    m
}

/// An offer for one audio stream on `local` (RTP address; RTCP on the next port).
pub fn offer(local: SocketAddr, prefs: &MediaPrefs, direction: Direction, session_id: u64, version: u64) -> SessionDescription {
    let mut sdp = base(local.ip(), session_id, version);
    sdp.push_media(audio_line(local.port(), &prefs.codecs, prefs.dtmf_payload_type, prefs.ptime, direction));
    sdp
}

/// The remote addresses of an audio m-line: RTP (None when held with 0.0.0.0) and RTCP.
fn remote_addrs(sdp: &SessionDescription, m: &MediaDescription) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let ip = m.effective_connection(sdp).and_then(|c| c.ip()).filter(|ip| !ip.is_unspecified());
    match ip {
        Some(ip) if m.port != 0 => {
            let rtcp_port = m.rtcp_port().unwrap_or(m.port.saturating_add(1));
            (Some(SocketAddr::new(ip, m.port)), Some(SocketAddr::new(ip, rtcp_port)))
        }
        _ => (None, None),
    }
}

fn telephone_event(m: &MediaDescription) -> Option<u8> {
    m.payload_types()
        .find(|&pt| m.codec(pt).is_some_and(|c| c.encoding_name.as_str().eq_ignore_ascii_case("telephone-event") && c.clock_rate == 8000))
}

/// Whether an m-line's transport is secure RTP (RFC 3711 `RTP/SAVP`, RFC 5124 `RTP/SAVPF`,
/// RFC 5764 `UDP/TLS/RTP/SAVP(F)`).
pub fn is_srtp(m: &MediaDescription) -> bool {
    m.proto.as_str().to_ascii_uppercase().contains("/SAVP")
}

/// The audio m-line to use of an offer or answer (RFC 3264 §6): the first audio RTP line with a
/// non-zero port whose transport we may take. Without `srtp_allowed` an SAVP line is never taken
/// (it is refused with port 0 in the answer), so an offer with an SAVP and an AVP line gets the
/// AVP line answered. With it, an SAVP line is preferred over a plain one. The one place this rule
/// lives: the echo user, the softphone and the B2BUA's own answers all go through it.
pub fn choose_audio(sdp: &SessionDescription, srtp_allowed: bool) -> Result<usize, NegotiationError> {
    let usable = |m: &&MediaDescription| m.media.as_str() == "audio" && m.port != 0 && m.is_rtp();
    let lines: Vec<(usize, bool)> = sdp.media.iter().enumerate().filter(|(_, m)| usable(m)).map(|(i, m)| (i, is_srtp(m))).collect();
    let pick = |secure: bool| lines.iter().find(|(_, s)| *s == secure).map(|(i, _)| *i);
    let chosen = if srtp_allowed { pick(true).or_else(|| pick(false)) } else { pick(false) };
    match chosen {
        Some(i) => Ok(i),
        None if lines.is_empty() => Err(NegotiationError::NoAudio),
        None => Err(NegotiationError::SrtpOnly),
    }
}

/// Answers `offer` from `local`, choosing by our preference. `wish` is the direction we want (e.g.
/// `SendRecv`, or `SendOnly` to hold). Fails with [`NegotiationError`]: answer 488.
pub fn answer(
    offer: &SessionDescription,
    local: SocketAddr,
    prefs: &MediaPrefs,
    wish: Direction,
    session_id: u64,
) -> Result<(SessionDescription, Negotiated), NegotiationError> {
    let idx = choose_audio(offer, prefs.srtp)?;
    let m = &offer.media[idx];
    let offered: Vec<u8> = m.payload_types().collect();
    let codec = prefs.codecs.iter().copied().find(|c| offered.contains(&c.payload_type())).ok_or(NegotiationError::NoCommonCodec)?;
    let dtmf = prefs.dtmf_payload_type.and(telephone_event(m));
    let direction = intersect(wish, m.effective_direction(offer).reverse());
    let ptime = m.ptime().unwrap_or(prefs.ptime);
    let (remote_rtp, remote_rtcp) = remote_addrs(offer, m);
    let mut sdp = base(local.ip(), session_id, session_id);
    for (i, other) in offer.media.iter().enumerate() {
        if i == idx {
            sdp.push_media(audio_line(local.port(), &[codec], dtmf, ptime, direction));
        } else {
            // RFC 3264 §6: every offered stream gets an m-line; port 0 rejects it.
            let formats: Vec<String> = other.formats.iter().map(|f| f.to_string()).collect();
            let mut rejected = MediaDescription::new(other.media.clone(), 0, other.proto.clone(), formats);
            rejected.reject();
            sdp.push_media(rejected);
        }
    }
    Ok((sdp, Negotiated { remote_rtp, remote_rtcp, codec, dtmf_payload_type: dtmf, ptime, direction }))
}

/// Reads the peer's answer to our offer (RFC 3264 §7).
pub fn apply_answer(answer: &SessionDescription, prefs: &MediaPrefs) -> Result<Negotiated, NegotiationError> {
    let idx = choose_audio(answer, prefs.srtp)?;
    let m = &answer.media[idx];
    let codec = m
        .payload_types()
        .find_map(|pt| prefs.codecs.iter().copied().find(|c| c.payload_type() == pt))
        .ok_or(NegotiationError::NoCommonCodec)?;
    let dtmf = prefs.dtmf_payload_type.and(telephone_event(m));
    let (remote_rtp, remote_rtcp) = remote_addrs(answer, m);
    let direction = m.effective_direction(answer).reverse();
    Ok(Negotiated { remote_rtp, remote_rtcp, codec, dtmf_payload_type: dtmf, ptime: m.ptime().unwrap_or(prefs.ptime), direction })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn parse(s: &str) -> SessionDescription {
        SessionDescription::parse(&Bytes::from(s.replace('\n', "\r\n"))).unwrap()
    }

    const LOCAL: &str = "127.0.0.1:30000";

    fn local() -> SocketAddr {
        LOCAL.parse().unwrap()
    }

    #[test]
    fn answerer_preference_picks_the_codec_and_keeps_the_event_payload_type() {
        let o = parse("v=0\no=a 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 8 0 96\na=rtpmap:96 telephone-event/8000\na=ptime:20\n");
        let (a, n) = answer(&o, local(), &MediaPrefs::default(), Direction::SendRecv, 7).unwrap();
        assert_eq!(n.codec, Codec::Pcmu, "our preference, not the offer's order");
        assert_eq!(n.dtmf_payload_type, Some(96));
        assert_eq!(n.remote_rtp, "192.0.2.1:4000".parse().ok());
        assert_eq!(n.remote_rtcp, "192.0.2.1:4001".parse().ok());
        assert_eq!(a.media[0].payload_types().collect::<Vec<_>>(), vec![0, 96]);
        // PCMA-only preference (softphone --codec pcma) takes PCMA.
        let prefs = MediaPrefs { codecs: vec![Codec::Pcma], ..MediaPrefs::default() };
        assert_eq!(answer(&o, local(), &prefs, Direction::SendRecv, 7).unwrap().1.codec, Codec::Pcma);
    }

    #[test]
    fn no_common_codec_or_no_audio_is_488() {
        let g729 = parse("v=0\no=a 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 18\n");
        assert_eq!(answer(&g729, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap_err(), NegotiationError::NoCommonCodec);
        let video = parse("v=0\no=a 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=video 4000 RTP/AVP 31\n");
        assert_eq!(answer(&video, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap_err(), NegotiationError::NoAudio);
    }

    #[test]
    fn hold_and_resume() {
        let hold = parse("v=0\no=a 1 2 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\na=sendonly\n");
        let (a, n) = answer(&hold, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
        assert_eq!(a.media[0].effective_direction(&a), Direction::RecvOnly);
        let inactive = parse("v=0\no=a 1 2 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\na=inactive\n");
        assert_eq!(answer(&inactive, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap().1.direction, Direction::Inactive);
        let old_style = parse("v=0\no=a 1 2 IN IP4 192.0.2.1\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 4000 RTP/AVP 0\n");
        assert_eq!(answer(&old_style, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap().1.remote_rtp, None);
        let resume = parse("v=0\no=a 1 3 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\na=sendrecv\n");
        assert_eq!(answer(&resume, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap().1.direction, Direction::SendRecv);
        // We hold: our wish sendonly against their sendrecv.
        assert_eq!(answer(&resume, local(), &MediaPrefs::default(), Direction::SendOnly, 1).unwrap().1.direction, Direction::SendOnly);
    }

    #[test]
    fn other_streams_are_rejected_with_port_zero() {
        let o = parse("v=0\no=a 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=video 5000 RTP/AVP 31\nm=audio 4000 RTP/AVP 0\n");
        let (a, _) = answer(&o, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap();
        assert_eq!(a.media.len(), 2);
        assert_eq!((a.media[0].media.as_str(), a.media[0].port), ("video", 0));
        assert_eq!(a.media[1].port, 30000);
        // A rejected audio stream in the offer is not used.
        let rejected = parse("v=0\no=a 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 0 RTP/AVP 0\n");
        assert_eq!(answer(&rejected, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap_err(), NegotiationError::NoAudio);
    }

    #[test]
    fn offer_and_answer_round_trip() {
        let prefs = MediaPrefs::default();
        let o = offer("127.0.0.1:20000".parse().unwrap(), &prefs, Direction::SendRecv, 1, 1);
        let o = SessionDescription::parse(&o.to_bytes()).unwrap();
        let (a, theirs) =
            answer(&o, local(), &MediaPrefs { codecs: vec![Codec::Pcma, Codec::Pcmu], ..prefs.clone() }, Direction::SendRecv, 2).unwrap();
        let ours = apply_answer(&SessionDescription::parse(&a.to_bytes()).unwrap(), &prefs).unwrap();
        assert_eq!((ours.codec, theirs.codec), (Codec::Pcma, Codec::Pcma));
        assert_eq!(ours.remote_rtp, Some(local()));
        assert_eq!(theirs.remote_rtp, "127.0.0.1:20000".parse().ok());
        assert_eq!(ours.dtmf_payload_type, Some(101));
    }

    const SAVP_ONLY: &str = "v=0\no=a 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n";

    #[test]
    fn an_srtp_only_offer_is_488_whatever_its_transport() {
        for proto in ["RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF"] {
            let o = parse(&SAVP_ONLY.replace("RTP/SAVP", proto));
            let err = answer(&o, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap_err();
            assert_eq!(err, NegotiationError::SrtpOnly, "{proto}");
            assert_eq!(choose_audio(&o, false), Err(NegotiationError::SrtpOnly));
        }
        // With SRTP allowed (the srtp helper's --srtp optional), the line is usable.
        assert_eq!(choose_audio(&parse(SAVP_ONLY), true), Ok(0));
    }

    #[test]
    fn a_mixed_offer_gets_the_avp_line_and_the_savp_line_port_zero() {
        // The SAVP line first, as phones with optional SRTP (best-effort, two m-lines) offer it.
        let o = parse(&format!("{SAVP_ONLY}m=audio 4002 RTP/AVP 8 0\n"));
        let (a, n) = answer(&o, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap();
        assert_eq!(a.media.len(), 2, "RFC 3264 §6: one m-line per offered stream");
        assert_eq!((a.media[0].port, a.media[0].proto.as_str()), (0, "RTP/SAVP"), "SAVP refused with port 0");
        assert_eq!((a.media[1].port, a.media[1].proto.as_str()), (30000, "RTP/AVP"));
        assert!(a.media[0].attributes.iter().all(|x| x.name.as_str() != "crypto"), "no key material answered");
        assert_eq!(n.remote_rtp, "192.0.2.1:4002".parse().ok(), "media goes to the AVP line's port");
        // The AVP line first: the same choice.
        let o = parse(&format!(
            "v=0\no=a 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4002 RTP/AVP 0\n{}",
            &SAVP_ONLY[SAVP_ONLY.find("m=").unwrap()..]
        ));
        let (a, n) = answer(&o, local(), &MediaPrefs::default(), Direction::SendRecv, 1).unwrap();
        assert_eq!((a.media[0].port, a.media[1].port), (30000, 0));
        assert_eq!(n.remote_rtp, "192.0.2.1:4002".parse().ok());
    }

    #[test]
    fn an_srtp_answer_to_our_plain_offer_is_unusable() {
        let a = parse(SAVP_ONLY);
        assert_eq!(apply_answer(&a, &MediaPrefs::default()).unwrap_err(), NegotiationError::SrtpOnly);
    }
}
