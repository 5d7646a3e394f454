//! Late offer in the user agents (RFC 3261 §13.3.1.4, RFC 3264 §4), shared by the echo user and
//! the softphone: the ACK of a 2xx that carried our offer brings the answer; without a usable
//! one the call ends with BYE at once.

use super::core::UaCore;
use super::log_unsent;
use super::media::{CallMedia, MediaSetupError};
use crate::application::Io;
use crate::dialog::DialogId;
use std::time::Instant;

/// The Reason of the BYE that ends a call whose ACK brought no usable answer (RFC 3326).
pub const NO_ANSWER_IN_ACK: &str = "SIP;cause=488;text=\"no usable SDP answer in the ACK\"";

/// The ACK for our 2xx to `id` arrived (`Event::Acked`). If that 2xx carried a late offer, starts
/// the media on the ACK's answer, or sends BYE when it has none or it is unusable and returns why.
/// `Ok(())` also for an ordinary call (nothing to do).
pub fn on_acked(ua: &mut UaCore, media: &mut CallMedia, io: &mut Io<'_>, id: &DialogId, now: Instant) -> Result<(), MediaSetupError> {
    if !media.awaits_answer(id) {
        return Ok(());
    }
    let answer = ua.dialogs_ref().get(id).and_then(|d| d.remote_sdp().cloned());
    let result = media.apply_late_answer(io, id, answer.as_ref(), now);
    if let Err(e) = &result {
        tracing::info!(call_id = %id.call_id, error = ?e, "late offer: no usable answer in the ACK, hanging up");
        log_unsent(ua.dialogs().send_bye_with_reason(id, Some(NO_ANSWER_IN_ACK), now), "BYE after an ACK without answer", id);
    }
    result
}
