//! The softphone's late offer as caller (`softphone dial --late-offer`, RFC 3261 §13.2.2.4, RFC
//! 3264 §4): the INVITE goes without SDP, the 2xx brings the offer, and our answer goes in the ACK.
//! An offer we cannot answer (none, SRTP only, no common codec) is acknowledged without a body and
//! the call ends at once with BYE; the call's reason is then `488`. As callee the phone makes the
//! offer itself ([`CallMedia::answer_or_offer`](super::CallMedia::answer_or_offer)) and takes the
//! answer from the ACK ([`crate::ua::late_offer::on_acked`]).

use super::{log_unsent, Phone};
use crate::application::Io;
use crate::dialog::DialogId;
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Instant;

/// The Reason of our BYE after a 2xx whose offer we could not answer (RFC 3326).
const UNUSABLE_OFFER: &str = "SIP;cause=488;text=\"no usable SDP offer in the 2xx\"";

impl Phone {
    /// Calls `uri` at `target` with an INVITE without SDP (late offer).
    pub fn dial_late_offer(&mut self, uri: &str, target: SocketAddr) {
        self.late_offer = true;
        self.dial(uri, target);
    }

    /// The ACK for our 2xx: after our late offer it brings the answer; without one the call ends
    /// (reason `no-answer-in-ack`).
    pub(super) fn on_acked(&mut self, io: &mut Io<'_>, id: &DialogId, now: Instant) {
        if crate::ua::late_offer::on_acked(&mut self.ua, &mut self.media, io, id, now).is_err() {
            if let Some(c) = self.calls.get_mut(&self.key_of(id)) {
                c.end_reason = Some("no-answer-in-ack".into());
            }
        }
    }

    /// The 2xx to our INVITE without SDP arrived with `offer` (its body, if any): answer it in the
    /// ACK and start media, or ACK without a body and hang up.
    pub(super) fn answer_late_offer(&mut self, io: &mut Io<'_>, id: &DialogId, offer: Option<Bytes>, now: Instant) {
        let source = self.config.source.make();
        let answered = match offer {
            Some(offer) => self.media.answer_offer(io, id, &offer, source, now).map_err(|e| format!("{e:?}")),
            None => Err("the 2xx has no SDP".to_owned()),
        };
        match answered {
            Ok(answer) => log_unsent(self.ua.dialogs().send_late_ack(id, Some(answer), now), "ACK with our answer", id),
            Err(e) => {
                tracing::warn!(call_id = %id.call_id, error = %e, "late offer: cannot answer the 2xx's offer, hanging up");
                if let Some(c) = self.calls.get_mut(&self.key_of(id)) {
                    c.end_reason = Some("488".into());
                }
                log_unsent(self.ua.dialogs().send_late_ack(id, None, now), "ACK without answer", id);
                log_unsent(self.ua.dialogs().send_bye_with_reason(id, Some(UNUSABLE_OFFER), now), "BYE after an unusable offer", id);
            }
        }
    }
}
