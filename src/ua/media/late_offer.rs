//! Late offer on the media side (RFC 3261 §13.3.1.4, RFC 3264 §4): as UAS, an INVITE without SDP
//! is answered with our offer in the 2xx and the media starts on the answer in the ACK; as UAC,
//! the 2xx to our INVITE without SDP carries the offer and our answer goes in the ACK.

use super::{CallKey, CallMedia, MediaSetupError};
use crate::application::Io;
use crate::call::Source;
use crate::dialog::DialogId;
use bytes::Bytes;
use std::time::Instant;

impl CallMedia {
    /// UAS, INVITE without SDP: binds ports and builds the offer for our 2xx; the media starts
    /// with [`CallMedia::apply_late_answer`] once the ACK brings the answer.
    pub fn offer_late(&mut self, io: &mut Io<'_>, id: &DialogId, source: Source) -> Result<Bytes, MediaSetupError> {
        let (prepared, offer) = self.prepare_offer(io)?;
        self.attach(id, prepared, source);
        Ok(offer)
    }

    /// True while the call `id` has made an offer and waits for its answer (ports bound, no
    /// media yet): after [`CallMedia::offer_late`], until the ACK.
    pub fn awaits_answer(&self, id: &DialogId) -> bool {
        self.calls.get(&CallKey::of(id)).is_some_and(|c| c.session.is_none())
    }

    /// UAS: the ACK of our late offer arrived with `answer` (its body, `None` if it had none).
    /// Starts media, or fails: a missing or unusable answer ends the call with BYE (RFC 3261
    /// §13.3.1.4 leaves no other way out of an accepted INVITE).
    pub fn apply_late_answer(&mut self, io: &Io<'_>, id: &DialogId, answer: Option<&Bytes>, now: Instant) -> Result<(), MediaSetupError> {
        let answer = answer.filter(|a| !a.is_empty()).ok_or(MediaSetupError::BadSdp)?;
        self.apply_answer(io, id, answer, now)
    }
}

impl CallMedia {
    /// UAS: answers the INVITE's offer, or makes ours when its body is empty (late offer).
    /// Returns the SDP of the 2xx.
    pub fn answer_or_offer(
        &mut self,
        io: &mut Io<'_>,
        id: &DialogId,
        body: &Bytes,
        source: Source,
        now: Instant,
    ) -> Result<Bytes, MediaSetupError> {
        if body.is_empty() {
            self.offer_late(io, id, source)
        } else {
            self.answer_offer(io, id, body, source, now)
        }
    }
}
