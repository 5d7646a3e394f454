//! Checks a 2xx to our INVITE before its call is kept (sans-IO): the checks of issue 15 point 7
//! that end a call with ACK + BYE instead of carrying on without usable media.
//!
//! - An INVITE that carried an offer must get its answer in the 2xx (RFC 3261 §13.2.1: "the
//!   answer MUST be in the 2xx"; the ACK may not carry one then, §13.2.2.4). A 2xx without SDP
//!   leaves the call without media.
//! - Each media line of the answer keeps the transport of the offer's line at the same index
//!   (RFC 3264 §6: the answer is for the offered stream; a changed `proto` is not an answer to
//!   it). A line refused with port 0 is fine. An answer whose only accepted lines are SRTP
//!   (`RTP/SAVP`, `UDP/TLS/RTP/SAVP`, ...) to a plain `RTP/AVP` offer would give a call with
//!   broken audio.
//!
//! The comparison is against what we actually offered, so an offer that allowed SRTP accepts an
//! SRTP answer.

use crate::sdp::SessionDescription;
use bytes::Bytes;

/// Why a 2xx's answer is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerProblem {
    /// Our INVITE carried an offer and the 2xx carried no SDP (§13.2.1).
    NoSdp,
    /// The 2xx's SDP does not parse.
    Unparsable,
    /// Answer line `index` uses transport `answered` where we offered `offered` (RFC 3264 §6).
    TransportChanged {
        /// Index of the media line.
        index: usize,
        /// Our offer's `proto` for it.
        offered: String,
        /// The answer's.
        answered: String,
    },
}

impl AnswerProblem {
    /// A short word for the call summary's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            AnswerProblem::NoSdp => "answer-without-sdp",
            AnswerProblem::Unparsable => "bad-answer-sdp",
            AnswerProblem::TransportChanged { answered, .. } if is_srtp(answered) => "srtp-not-allowed",
            // `--srtp required`: a plain answer to our RTP/SAVP offer (RFC 4568 §7.1.3).
            AnswerProblem::TransportChanged { offered, .. } if is_srtp(offered) => "srtp-refused",
            AnswerProblem::TransportChanged { .. } => "answer-transport-mismatch",
        }
    }
}

impl std::fmt::Display for AnswerProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerProblem::NoSdp => f.write_str("the 2xx carried no SDP answer to our offer (RFC 3261 §13.2.1)"),
            AnswerProblem::Unparsable => f.write_str("the 2xx's SDP answer does not parse"),
            AnswerProblem::TransportChanged { index, offered, answered } if is_srtp(answered) => write!(
                f,
                "the answer accepts media line {index} as SRTP ({answered}), but we offered {offered}: SRTP is not allowed (RFC 3264 §6)"
            ),
            AnswerProblem::TransportChanged { index, offered, answered } if is_srtp(offered) => {
                write!(f, "the answer refuses SRTP: media line {index} offered as {offered} was answered {answered} (RFC 4568 §7.1.3)")
            }
            AnswerProblem::TransportChanged { index, offered, answered } => {
                write!(f, "the answer changes media line {index} from {offered} to {answered} (RFC 3264 §6)")
            }
        }
    }
}

/// True for the SRTP profiles (RFC 3711 `RTP/SAVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVP`, ...).
fn is_srtp(proto: &str) -> bool {
    proto.to_ascii_uppercase().contains("SAVP")
}

/// Checks the answer in a 2xx (`answer`, its body) against `offer`, the SDP our INVITE carried.
/// Without an offer (a late-offer INVITE: the 2xx carries the offer) there is nothing to check.
pub fn check_answer(offer: Option<&Bytes>, answer: Option<&Bytes>) -> Result<(), AnswerProblem> {
    let Some(offer) = offer.filter(|o| !o.is_empty()) else { return Ok(()) };
    let answer = answer.filter(|a| !a.is_empty()).ok_or(AnswerProblem::NoSdp)?;
    let answer = SessionDescription::parse(answer).map_err(|_| AnswerProblem::Unparsable)?;
    // Our own offer parses (we wrote it); if it somehow does not, leave the rest to negotiation.
    let Ok(offer) = SessionDescription::parse(offer) else { return Ok(()) };
    for (index, (o, a)) in offer.media.iter().zip(answer.media.iter()).enumerate() {
        if a.port != 0 && !o.proto.as_str().eq_ignore_ascii_case(a.proto.as_str()) {
            return Err(AnswerProblem::TransportChanged {
                index,
                offered: o.proto.as_str().to_owned(),
                answered: a.proto.as_str().to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(m: &str) -> Bytes {
        Bytes::from(format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{m}"))
    }

    const AVP: &str = "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn an_answer_on_the_offered_transport_passes() {
        assert_eq!(check_answer(Some(&sdp(AVP)), Some(&sdp("m=audio 5000 RTP/AVP 0\r\n"))), Ok(()));
        // A late offer: the 2xx carries the offer; nothing to check here.
        assert_eq!(check_answer(None, None), Ok(()));
    }

    #[test]
    fn a_2xx_without_sdp_to_an_offer_is_refused() {
        assert_eq!(check_answer(Some(&sdp(AVP)), None), Err(AnswerProblem::NoSdp));
        assert_eq!(check_answer(Some(&sdp(AVP)), Some(&Bytes::new())), Err(AnswerProblem::NoSdp));
        assert_eq!(AnswerProblem::NoSdp.reason(), "answer-without-sdp");
    }

    #[test]
    fn an_srtp_answer_to_a_plain_offer_is_refused() {
        let e = check_answer(Some(&sdp(AVP)), Some(&sdp("m=audio 5000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n")));
        let e = e.expect_err("SRTP answer to an AVP offer");
        assert_eq!(e.reason(), "srtp-not-allowed");
        assert!(e.to_string().contains("RTP/SAVP"), "{e}");
        // A refused line (port 0) may name any transport.
        assert_eq!(check_answer(Some(&sdp(AVP)), Some(&sdp("m=audio 0 RTP/SAVP 0\r\n"))), Ok(()));
        // Had we offered SRTP, an SRTP answer would do.
        let savp = sdp("m=audio 4000 RTP/SAVP 0\r\n");
        assert_eq!(check_answer(Some(&savp), Some(&sdp("m=audio 5000 RTP/SAVP 0\r\n"))), Ok(()));
    }

    #[test]
    fn garbage_sdp_is_refused_without_panic() {
        assert_eq!(check_answer(Some(&sdp(AVP)), Some(&Bytes::from_static(b"\xff\x00 not sdp"))), Err(AnswerProblem::Unparsable));
    }
}
