//! Late offer as UAC (RFC 3261 §13.2.2.4, RFC 3264 §4): an INVITE we send without SDP gets the
//! offer in its 2xx, and the ACK carries our answer. The dialog layer does not ACK such a 2xx by
//! itself: [`Event::Established`](super::Event::Established) comes with
//! [`Dialog::awaits_late_ack`](super::Dialog::awaits_late_ack) set, the application reads the offer
//! ([`Dialog::remote_sdp`](super::Dialog::remote_sdp)) and sends the ACK with
//! [`Dialogs::send_late_ack`]. Retransmissions of the 2xx meanwhile get no ACK (the peer keeps
//! retransmitting, §13.3.1.4); once sent, each gets the same ACK again, answer included. A BYE
//! before the answer (the application gives up, or the call was cancelled) is preceded by an ACK
//! without a body, as every 2xx must be acknowledged (§13.2.2.4).

use super::id::DialogId;
use super::set::Dialogs;
use super::state::LateOffer;
use super::DialogError;
use bytes::Bytes;
use std::time::Instant;

impl Dialogs {
    /// Sends the ACK of a late offer's 2xx with `answer` as its SDP body (RFC 3264 §4), or
    /// without a body when `None` (the offer was unusable: end the call with BYE then, RFC 3261
    /// §13.2.2.4). [`DialogError::WrongState`] if the dialog does not wait for such an ACK.
    pub fn send_late_ack(&mut self, id: &DialogId, answer: Option<Bytes>, _now: Instant) -> Result<(), DialogError> {
        let slot = self.slot_of(id).ok_or(DialogError::UnknownDialog)?;
        let d = self.dm(slot);
        let Some(LateOffer::Pending(seq)) = d.late_offer else { return Err(DialogError::WrongState) };
        match answer {
            Some(sdp) => {
                d.local_sdp = Some(sdp);
                d.late_offer = Some(LateOffer::Acked(seq));
            }
            None => d.late_offer = None,
        }
        self.send_ack(slot, seq);
        Ok(())
    }

    /// Before a BYE: the ACK of a late offer's 2xx still owed, without a body.
    pub(crate) fn ack_before_bye(&mut self, slot: usize) {
        let d = self.dm(slot);
        if let Some(LateOffer::Pending(seq)) = d.late_offer {
            d.late_offer = None;
            self.send_ack(slot, seq);
        }
    }
}
