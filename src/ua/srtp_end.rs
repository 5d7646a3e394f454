//! How the softphone reports a call it hung up at once because the answer could not be used (a
//! plain answer to `--srtp required`, an SRTP answer to `--srtp off`, no common codec): ACK, BYE,
//! and a failed call, so the softphone exits non-zero (RFC 4568 §7.1.3: the offerer decides
//! whether a plain answer is acceptable).

use super::media::MediaSetupError;
use super::phone::EndState;
use crate::call::sdes::SdesError;

/// The summary's reason for a call hung up after an unusable answer.
pub(super) fn unusable_answer(e: &MediaSetupError) -> &'static str {
    match e {
        MediaSetupError::Sdes(SdesError::SrtpRefused) => "srtp-refused",
        MediaSetupError::Sdes(SdesError::UnexpectedSrtp) => "srtp-unexpected",
        MediaSetupError::Srtp(_) => "srtp-failed",
        _ => "488",
    }
}

/// The state of a call that ended for `reason`: a call we hung up because its answer was unusable
/// (or, after our late-offer 2xx, the ACK brought none: `no-answer-in-ack`) failed, even though it ended with our BYE.
pub(super) fn state_after(state: EndState, reason: &str) -> EndState {
    match reason {
        "488" | "no-answer-in-ack" | "srtp-refused" | "srtp-unexpected" | "srtp-failed" => EndState::Failed,
        _ => state,
    }
}
