//! SDES: SRTP keys in the SDP (RFC 4568), for one audio stream, suite AES_CM_128_HMAC_SHA1_80.
//!
//! `a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>]` (§9.1). Each
//! side sends its own key in its description; the answer repeats the tag of the offered line it
//! accepts (§5.1.2).
//!
//! The three [`SrtpMode`]s of the softphone (`--srtp`):
//!
//! | mode | our offer | offers we answer |
//! | --- | --- | --- |
//! | `off` | `RTP/AVP` | `RTP/AVP` lines only (their `a=crypto` ignored); `RTP/SAVP` refused with port 0 (RFC 3264 §6) |
//! | `optional` | `RTP/AVP` + `a=crypto` | `RTP/SAVP` + crypto first, then `RTP/AVP` + crypto (answered with ours), then plain `RTP/AVP` |
//! | `required` | `RTP/SAVP` + `a=crypto` | lines with a crypto line we support, `RTP/SAVP` first; a plain offer gets 488 |
//!
//! `optional` is "best-effort SRTP" as baresip's `srtp` media encryption (and other SIP phones) do
//! it: an `RTP/AVP` line that carries `a=crypto`. An answerer that knows SDES answers with its own
//! key and both sides protect the media; one that does not ignores the unknown attribute and the
//! call is plain RTP. Two m-lines (SAVP and AVP, RFC 3264 §10.2-style alternatives) would make
//! answerers that take only the first audio line, or accept both, misbehave; one line does not.
//! A `required` offerer hangs up (ACK, then BYE) on an answer without a usable key (§7.1.3 lets
//! the answer drop the attribute, which a phone that needs SRTP cannot accept).
//!
//! An offer line is answered with the offer's profile (`RTP/SAVP` stays `RTP/SAVP`); profiles
//! other than `RTP/AVP` and `RTP/SAVP` (`UDP/TLS/RTP/SAVP` for DTLS-SRTP, feedback profiles) are
//! refused with port 0. Lines other than the one chosen are refused with port 0 too; when no line
//! is acceptable, the offer gets 488 (RFC 3261 §13.3.1.1).

use super::negotiate::{self, MediaPrefs, Negotiated, NegotiationError};
use crate::media::srtp::MasterKey;
use crate::sdp::{Attribute, Direction, MediaDescription, SessionDescription};
use std::fmt;
use std::net::SocketAddr;

/// The only suite we offer and accept (RFC 4568 §6.2.1).
pub const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";

/// The tag of our offer's crypto line.
const OUR_TAG: u32 = 1;

/// Whether a phone protects its media (`--srtp off|optional|required`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SrtpMode {
    /// Plain RTP only: `RTP/AVP` offers, `RTP/SAVP` lines refused.
    #[default]
    Off,
    /// SRTP when the peer has it, plain RTP otherwise.
    Optional,
    /// SRTP or no call.
    Required,
}

impl SrtpMode {
    /// `off`, `optional` or `required`.
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpMode::Off => "off",
            SrtpMode::Optional => "optional",
            SrtpMode::Required => "required",
        }
    }
}

impl std::str::FromStr for SrtpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<SrtpMode, String> {
        match s {
            "off" => Ok(SrtpMode::Off),
            "optional" => Ok(SrtpMode::Optional),
            "required" => Ok(SrtpMode::Required),
            other => Err(format!("--srtp takes off, optional or required, got {other}")),
        }
    }
}

impl fmt::Display for SrtpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an offer or answer cannot be used with our SRTP mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdesError {
    /// The codecs or streams do not fit (as without SRTP).
    Negotiation(NegotiationError),
    /// An offer with no line we may accept in this mode (answer 488).
    NoAcceptableLine,
    /// We require SRTP and the answer has no usable key (or is not `RTP/SAVP`).
    SrtpRefused,
    /// The answer is `RTP/SAVP` although we offered plain RTP, or has `RTP/SAVP` without a key.
    UnexpectedSrtp,
}

impl fmt::Display for SdesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdesError::Negotiation(e) => e.fmt(f),
            SdesError::NoAcceptableLine => f.write_str("no audio line acceptable with our SRTP setting"),
            SdesError::SrtpRefused => f.write_str("SRTP required but the answer has no usable key"),
            SdesError::UnexpectedSrtp => f.write_str("the answer is RTP/SAVP without a key we offered for"),
        }
    }
}

impl std::error::Error for SdesError {}

/// One `a=crypto` line we can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// `<tag>` (§9.1: 1-9 digits).
    pub tag: u32,
    /// The key and salt of `inline:`.
    pub key: MasterKey,
}

/// Reads an `a=crypto` value; `None` unless the suite is [`SUITE`], the single key is `inline:`
/// with 30 bytes, its lifetime (if any) is a number or `2^n`, it has no MKI other than `1:n`-style
/// (we cannot pick keys by MKI, so an MKI line is refused) and no session parameters (§6.3: an
/// unknown one makes the line unusable; we support none).
pub fn parse_crypto(value: &str) -> Option<Crypto> {
    let mut fields = value.split_ascii_whitespace();
    let tag = fields.next()?;
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tag: u32 = tag.parse().ok()?;
    if !fields.next()?.eq_ignore_ascii_case(SUITE) {
        return None;
    }
    let key_params = fields.next()?;
    if fields.next().is_some() || key_params.contains(';') {
        return None; // session parameters, or several keys
    }
    let inline = key_params.strip_prefix("inline:")?;
    let mut parts = inline.split('|');
    let key = MasterKey::from_base64(parts.next()?)?;
    for extra in parts {
        if extra.contains(':') {
            return None; // MKI
        }
        let valid = match extra.strip_prefix("2^") {
            Some(exp) => exp.parse::<u8>().is_ok_and(|e| e <= 48),
            None => !extra.is_empty() && extra.bytes().all(|b| b.is_ascii_digit()),
        };
        if !valid {
            return None;
        }
    }
    Some(Crypto { tag, key })
}

/// The `a=crypto` attribute carrying `key` under `tag`.
pub fn crypto_attribute(tag: u32, key: &MasterKey) -> Attribute {
    Attribute::new("crypto", format!("{tag} {SUITE} inline:{}", key.to_base64()))
}

/// The first crypto line of `m` we can use.
fn usable_crypto(m: &MediaDescription) -> Option<Crypto> {
    m.attributes_named("crypto").find_map(|a| a.value.as_ref().and_then(|v| parse_crypto(v.as_str())))
}

fn is_avp(m: &MediaDescription) -> bool {
    m.proto.as_str().eq_ignore_ascii_case("RTP/AVP")
}

fn is_savp(m: &MediaDescription) -> bool {
    m.proto.as_str().eq_ignore_ascii_case("RTP/SAVP")
}

/// Makes `offer` (from [`negotiate::offer`]) ask for SRTP as `mode` says, with our `key`.
pub fn secure_offer(offer: &mut SessionDescription, mode: SrtpMode, key: &MasterKey) {
    let Some(m) = offer.media.iter_mut().find(|m| m.media.as_str() == "audio" && m.port != 0) else { return };
    match mode {
        SrtpMode::Off => {}
        SrtpMode::Optional => m.push_attribute(crypto_attribute(OUR_TAG, key)),
        SrtpMode::Required => {
            m.proto = "RTP/SAVP".into();
            m.push_attribute(crypto_attribute(OUR_TAG, key));
        }
    }
}

/// An offer for one audio stream, as [`negotiate::offer`], secured as `mode` says.
pub fn offer(
    local: SocketAddr,
    prefs: &MediaPrefs,
    direction: Direction,
    session_id: u64,
    version: u64,
    mode: SrtpMode,
    key: &MasterKey,
) -> SessionDescription {
    let mut sdp = negotiate::offer(local, prefs, direction, session_id, version);
    secure_offer(&mut sdp, mode, key);
    sdp
}

/// Reads the peer's answer to our offer made in `mode` (RFC 3264 §7, RFC 4568 §7.1.3): the
/// stream, and the peer's key when the media is to be protected.
pub fn apply_answer(answer: &SessionDescription, prefs: &MediaPrefs, mode: SrtpMode) -> Result<(Negotiated, Option<MasterKey>), SdesError> {
    // Negotiation reads the answer's SRTP line only when our offer allowed SRTP; the mode below
    // decides whether what was answered is acceptable.
    let allowed = MediaPrefs { srtp: mode != SrtpMode::Off, ..prefs.clone() };
    let neg = match negotiate::apply_answer(answer, &allowed) {
        Err(NegotiationError::SrtpOnly) => return Err(SdesError::UnexpectedSrtp),
        other => other.map_err(SdesError::Negotiation)?,
    };
    // The line apply_answer read: the first audio line with a port.
    let m = answer.media.iter().find(|m| m.media.as_str() == "audio" && m.port != 0 && m.is_rtp());
    let Some(m) = m else { return Err(SdesError::Negotiation(NegotiationError::NoAudio)) };
    let crypto = usable_crypto(m).filter(|c| c.tag == OUR_TAG);
    match mode {
        SrtpMode::Off if is_avp(m) => Ok((neg, None)),
        SrtpMode::Off => Err(SdesError::UnexpectedSrtp),
        SrtpMode::Optional => match crypto {
            Some(c) if is_avp(m) || is_savp(m) => Ok((neg, Some(c.key))),
            None if is_avp(m) => Ok((neg, None)),
            _ => Err(SdesError::UnexpectedSrtp),
        },
        SrtpMode::Required => match crypto {
            Some(c) if is_savp(m) => Ok((neg, Some(c.key))),
            _ => Err(SdesError::SrtpRefused),
        },
    }
}

/// The offer's audio line we answer in `mode`, with the crypto line we take from it (`None`: plain
/// RTP). Order: `RTP/SAVP` with a usable key, then `RTP/AVP` with one (not in `off`, where crypto
/// is ignored), then plain `RTP/AVP` (not in `required`).
pub fn choose_line(offer: &SessionDescription, mode: SrtpMode) -> Option<(usize, Option<Crypto>)> {
    let audio = || offer.media.iter().enumerate().filter(|(_, m)| m.media.as_str() == "audio" && m.port != 0);
    let keyed = |want_savp: bool| {
        audio().find_map(|(i, m)| {
            let profile = if want_savp { is_savp(m) } else { is_avp(m) };
            profile.then(|| usable_crypto(m).map(|c| (i, Some(c)))).flatten()
        })
    };
    let plain = || audio().find(|(_, m)| is_avp(m)).map(|(i, _)| (i, None));
    match mode {
        SrtpMode::Off => plain(),
        SrtpMode::Optional => keyed(true).or_else(|| keyed(false)).or_else(plain),
        SrtpMode::Required => keyed(true).or_else(|| keyed(false)),
    }
}

/// What [`answer`] agreed.
#[derive(Debug, Clone)]
pub struct Answered {
    /// Our answer.
    pub sdp: SessionDescription,
    /// The stream.
    pub negotiated: Negotiated,
    /// The peer's key when the media is protected (we protect ours with the key we answered with).
    pub peer_key: Option<MasterKey>,
}

/// Answers `offer` as [`negotiate::answer`] does, choosing the line by [`choose_line`]: every other
/// line is refused with port 0, the chosen one answered with its own profile and, when it carries a
/// key we take, our `key` under its tag (`None` with [`SrtpMode::Off`], where no key is taken).
/// [`SdesError::NoAcceptableLine`]: answer 488.
pub fn answer(
    offer: &SessionDescription,
    local: SocketAddr,
    prefs: &MediaPrefs,
    wish: Direction,
    session_id: u64,
    mode: SrtpMode,
    key: Option<&MasterKey>,
) -> Result<Answered, SdesError> {
    let (idx, crypto) = choose_line(offer, mode).ok_or(SdesError::NoAcceptableLine)?;
    let crypto = crypto.zip(key);
    // negotiate::answer takes the first audio line with a port: leave it only the chosen one.
    let mut only = offer.clone();
    for (i, m) in only.media.iter_mut().enumerate() {
        if i != idx {
            m.port = 0;
        } else {
            m.proto = "RTP/AVP".into();
        }
    }
    let (mut sdp, negotiated) = negotiate::answer(&only, local, prefs, wish, session_id).map_err(SdesError::Negotiation)?;
    let Some(line) = sdp.media.get_mut(idx) else { return Err(SdesError::NoAcceptableLine) };
    line.proto = offer.media[idx].proto.clone();
    if let Some((c, ours)) = &crypto {
        line.push_attribute(crypto_attribute(c.tag, ours));
    }
    Ok(Answered { sdp, negotiated, peer_key: crypto.map(|(c, _)| c.key) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn parse(s: &str) -> SessionDescription {
        SessionDescription::parse(&Bytes::from(s.replace('\n', "\r\n"))).unwrap()
    }

    fn head() -> String {
        "v=0\no=a 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n".to_owned()
    }

    fn line(proto: &str, port: u16, crypto: bool) -> String {
        let c = if crypto { format!("a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20\n") } else { String::new() };
        format!("m=audio {port} {proto} 0\n{c}")
    }

    fn local() -> SocketAddr {
        "127.0.0.1:30000".parse().unwrap()
    }

    fn ours() -> MasterKey {
        MasterKey::generate().unwrap()
    }

    #[test]
    fn crypto_lines_parse_only_when_usable() {
        let c = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")).unwrap();
        assert_eq!((c.tag, c.key.to_base64()), (1, KEY.to_owned()));
        assert!(parse_crypto(&format!("12 aes_cm_128_hmac_sha1_80 inline:{KEY}|2^31")).is_some());
        assert!(parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1048576")).is_some());
        for bad in [
            format!("1 AES_CM_128_HMAC_SHA1_32 inline:{KEY}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY};inline:{KEY}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^99"),
            "1 AES_CM_128_HMAC_SHA1_80 inline:Zm9vYmFy".to_owned(),
            format!("x AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
            format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 uri:{KEY}"),
            "1".to_owned(),
            String::new(),
        ] {
            assert_eq!(parse_crypto(&bad), None, "{bad}");
        }
        let k = ours();
        let a = crypto_attribute(3, &k);
        assert_eq!(parse_crypto(a.value.as_ref().unwrap().as_str()), Some(Crypto { tag: 3, key: k }));
    }

    #[test]
    fn offers_per_mode() {
        let k = ours();
        let prefs = MediaPrefs::default();
        let o = |mode| offer(local(), &prefs, Direction::SendRecv, 1, 1, mode, &k);
        let off = o(SrtpMode::Off);
        assert_eq!(off.media[0].proto.as_str(), "RTP/AVP");
        assert!(off.media[0].attribute("crypto").is_none());
        let opt = o(SrtpMode::Optional);
        assert_eq!(opt.media[0].proto.as_str(), "RTP/AVP");
        assert_eq!(usable_crypto(&opt.media[0]).map(|c| (c.tag, c.key)), Some((1, k.clone())));
        let req = SessionDescription::parse(&o(SrtpMode::Required).to_bytes()).unwrap();
        assert_eq!(req.media[0].proto.as_str(), "RTP/SAVP");
        assert_eq!(usable_crypto(&req.media[0]).map(|c| c.key), Some(k.clone()));
    }

    #[test]
    fn answerer_picks_the_line_its_mode_allows() {
        let savp = parse(&(head() + &line("RTP/SAVP", 4000, true)));
        let savp_no_key = parse(&(head() + &line("RTP/SAVP", 4000, false)));
        let dtls = parse(&(head() + &line("UDP/TLS/RTP/SAVP", 4000, false)));
        let avp_key = parse(&(head() + &line("RTP/AVP", 4000, true)));
        let plain = parse(&(head() + &line("RTP/AVP", 4000, false)));
        let mixed = parse(&(head() + &line("RTP/SAVP", 4000, true) + &line("RTP/AVP", 4002, false)));
        use SrtpMode::*;
        type Case<'a> = (&'a SessionDescription, SrtpMode, Option<(usize, bool)>);
        let cases: &[Case] = &[
            (&savp, Off, None),
            (&savp, Optional, Some((0, true))),
            (&savp, Required, Some((0, true))),
            (&savp_no_key, Optional, None),
            (&savp_no_key, Required, None),
            (&dtls, Off, None),
            (&dtls, Optional, None),
            (&dtls, Required, None),
            (&avp_key, Off, Some((0, false))),
            (&avp_key, Optional, Some((0, true))),
            (&avp_key, Required, Some((0, true))),
            (&plain, Off, Some((0, false))),
            (&plain, Optional, Some((0, false))),
            (&plain, Required, None),
            (&mixed, Off, Some((1, false))),
            (&mixed, Optional, Some((0, true))),
            (&mixed, Required, Some((0, true))),
        ];
        for (i, (o, mode, want)) in cases.iter().enumerate() {
            let got = choose_line(o, *mode).map(|(i, c)| (i, c.is_some()));
            assert_eq!(got, *want, "case {i} ({mode})");
        }
    }

    #[test]
    fn answers_keep_the_profile_refuse_the_rest_and_send_our_key_under_their_tag() {
        let k = ours();
        let prefs = MediaPrefs::default();
        let mixed = parse(&(head() + &line("RTP/SAVP", 4000, true) + &line("RTP/AVP", 4002, false)));
        let a = answer(&mixed, local(), &prefs, Direction::SendRecv, 9, SrtpMode::Required, Some(&k)).unwrap();
        let sdp = SessionDescription::parse(&a.sdp.to_bytes()).unwrap();
        assert_eq!((sdp.media[0].proto.as_str(), sdp.media[0].port), ("RTP/SAVP", 30000));
        assert_eq!((sdp.media[1].proto.as_str(), sdp.media[1].port), ("RTP/AVP", 0));
        let c = usable_crypto(&sdp.media[0]).unwrap();
        assert_eq!((c.tag, c.key), (7, k.clone()));
        assert_eq!(a.peer_key.map(|k| k.to_base64()), Some(KEY.to_owned()));
        assert_eq!(a.negotiated.remote_rtp, "192.0.2.1:4000".parse().ok());

        let off = answer(&mixed, local(), &prefs, Direction::SendRecv, 9, SrtpMode::Off, None).unwrap();
        assert_eq!((off.sdp.media[0].port, off.sdp.media[1].port), (0, 30000));
        assert_eq!(off.sdp.media[0].proto.as_str(), "RTP/SAVP");
        assert!(off.sdp.media[1].attribute("crypto").is_none() && off.peer_key.is_none());
        assert_eq!(off.negotiated.remote_rtp, "192.0.2.1:4002".parse().ok());

        let savp = parse(&(head() + &line("RTP/SAVP", 4000, true)));
        assert_eq!(answer(&savp, local(), &prefs, Direction::SendRecv, 9, SrtpMode::Off, None).unwrap_err(), SdesError::NoAcceptableLine);
        let pcma = parse(&(head() + "m=audio 4000 RTP/SAVP 18\n" + &format!("a=crypto:1 {SUITE} inline:{KEY}\n")));
        assert_eq!(
            answer(&pcma, local(), &prefs, Direction::SendRecv, 9, SrtpMode::Required, Some(&k)).unwrap_err(),
            SdesError::Negotiation(NegotiationError::NoCommonCodec)
        );
    }

    #[test]
    fn offerer_reads_the_answer_per_mode() {
        let prefs = MediaPrefs::default();
        let theirs = format!("a=crypto:1 {SUITE} inline:{KEY}\n");
        let ans = |proto: &str, crypto: bool| parse(&(head() + &format!("m=audio 4000 {proto} 0\n") + if crypto { &theirs } else { "" }));
        use SrtpMode::*;
        let key_of = |r: Result<(Negotiated, Option<MasterKey>), SdesError>| r.map(|(_, k)| k.is_some());
        assert_eq!(key_of(apply_answer(&ans("RTP/AVP", false), &prefs, Off)), Ok(false));
        assert_eq!(key_of(apply_answer(&ans("RTP/AVP", true), &prefs, Off)), Ok(false));
        assert_eq!(key_of(apply_answer(&ans("RTP/SAVP", true), &prefs, Off)), Err(SdesError::UnexpectedSrtp));
        assert_eq!(key_of(apply_answer(&ans("RTP/AVP", true), &prefs, Optional)), Ok(true));
        assert_eq!(key_of(apply_answer(&ans("RTP/AVP", false), &prefs, Optional)), Ok(false));
        assert_eq!(key_of(apply_answer(&ans("RTP/SAVP", false), &prefs, Optional)), Err(SdesError::UnexpectedSrtp));
        assert_eq!(key_of(apply_answer(&ans("RTP/SAVP", true), &prefs, Required)), Ok(true));
        assert_eq!(key_of(apply_answer(&ans("RTP/AVP", false), &prefs, Required)), Err(SdesError::SrtpRefused));
        assert_eq!(key_of(apply_answer(&ans("RTP/AVP", true), &prefs, Required)), Err(SdesError::SrtpRefused));
        assert_eq!(key_of(apply_answer(&ans("RTP/SAVP", false), &prefs, Required)), Err(SdesError::SrtpRefused));
        // A key under another tag than the one we offered answers nothing of ours.
        let other_tag = parse(&(head() + "m=audio 4000 RTP/SAVP 0\n" + &format!("a=crypto:2 {SUITE} inline:{KEY}\n")));
        assert_eq!(key_of(apply_answer(&other_tag, &prefs, Required)), Err(SdesError::SrtpRefused));
    }
}
