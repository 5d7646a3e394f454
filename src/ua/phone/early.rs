//! Early media in the softphone (RFC 3960 §2): an 18x with SDP to our INVITE starts the call's
//! media at once, as the answer would (RFC 3261 §13.2.1: the SDP of a 1xx is the answer's
//! preview), so the caller hears ringback or an announcement and its tone, WAV or silence goes
//! out. The 200 updates the same session ([`super::CallMedia::apply_answer`]), so what is recorded
//! before the answer and after it lands in the one recording. The call's report says early media
//! arrived ([`super::CallReport::early_media`]).

use super::{CallKey, Phone};
use crate::application::Io;
use crate::dialog::DialogId;
use bytes::Bytes;
use std::time::Instant;

impl Phone {
    /// A 1xx with SDP on our outgoing call's early dialog `id` (any branch: the latest wins, and
    /// the session follows where the media comes from, RFC 4961).
    pub(super) fn on_early_media(&mut self, io: &mut Io<'_>, id: &DialogId, code: u16, sdp: &Bytes, now: Instant) {
        // Without our offer in the INVITE, an SDP in an unreliable 1xx is no answer (§13.2.1).
        let offered = self.ua.dialogs_ref().get(id).is_some_and(|d| d.local_sdp().is_some());
        let Some(call) = self.calls.get_mut(&CallKey::of(id)) else { return };
        if !call.outgoing || call.answered.is_some() || !offered {
            return;
        }
        match self.media.apply_answer(io, id, sdp, now) {
            Ok(()) => {
                if !std::mem::replace(&mut call.early_media, true) {
                    tracing::info!(call_id = %id.call_id, code, remote_tag = %id.remote_tag, "early media");
                }
            }
            // The 200 may still bring a usable answer: keep ringing.
            Err(e) => tracing::info!(call_id = %id.call_id, code, error = ?e, "unusable early media SDP ignored"),
        }
    }
}
