//! Offers whose audio comes as alternative lines (RFC 3264 §5.1, §6): phones with optional SRTP
//! offer the same audio twice, an `RTP/SAVP` line with `a=crypto` (RFC 4568) and an `RTP/AVP`
//! line, and the answerer accepts one of them and refuses the others with port 0.
//!
//! - The offer passed on names the relay on every audio line with a non-zero port (the same relay
//!   port for all of them: the relay forwards packets as they come, SRTP included, and the keys
//!   travel end to end), so the answerer may pick any ([`super::sdp::rewrite`]).
//! - The answer's accepted line (its first audio line with a non-zero port) is where the
//!   answerer's leg of the relay goes; it corresponds by index to an offered line, which the
//!   offerer's leg follows ([`B2bua::follow_accepted_line`]). The answer passed back keeps the
//!   refused lines at port 0 and names the relay on the accepted one.
//! - Without the relay the SDP passes unchanged either way.

use super::sdp::{self, AudioStream};
use super::B2bua;
use crate::relay::{Leg, RelayId};
use std::time::Instant;

impl B2bua {
    /// `accepted` is the audio stream of the answer to `offerer`'s latest offer (its remote SDP):
    /// when the answer accepted another line than the one the relay took from the offer (its
    /// first audio line with a non-zero port), `offerer`'s leg of the relay follows the offered
    /// line with the accepted line's index. Nothing happens without the relay.
    pub(super) fn follow_accepted_line(&mut self, key: u64, offerer: Leg, accepted: &AudioStream, now: Instant) {
        let Some(c) = self.calls.get(&key).filter(|c| c.media.is_some()) else { return };
        let Some(id) = c.dialog(offerer) else { return };
        let Some(offer) = self.ua.dialogs_ref().get(id).and_then(|d| d.remote_sdp()) else { return };
        // The caller's first offer was read when the call began: the same bytes give the same line.
        let taken = match &c.caller_offer_line {
            Some((bytes, line)) if offerer == Leg::Caller && bytes == offer => Some(*line),
            _ => sdp::audio_of(offer).map(|taken| taken.line),
        };
        if taken.is_none_or(|taken| taken == accepted.line) {
            return;
        }
        if let Some(line) = sdp::audio_at(offer, accepted.line) {
            tracing::debug!(call = key, ?offerer, line = accepted.line, "the relay follows the offered line the answer accepted");
            self.relay.set_remote(RelayId(key), offerer, line.remote, now);
        }
    }
}
