//! Late offer through the B2BUA (RFC 3261 §13.3.1.4 and §13.2.2.4, RFC 3264 §4).
//!
//! A caller's INVITE without SDP is passed on as an INVITE without SDP to every callee leg. The
//! answering callee's 2xx carries the offer: it goes to the caller in our 200 (pointed at the
//! caller leg's relay port, or unchanged with `--no-relay`), and the callee's ACK waits (the
//! dialog layer holds it: [`crate::dialog::Dialog::awaits_late_ack`]). The caller's ACK carries
//! the answer: it goes to the callee in that ACK (pointed at the callee leg's relay port). An ACK
//! from the caller without a usable answer ends the call on both legs with BYE (the callee's ACK
//! goes out first, without a body: every 2xx is acknowledged), recorded as `488` by the service.
//!
//! ```text
//!   caller ──INVITE (no SDP)──► B2BUA ──INVITE (no SDP)──► callee
//!          ◄──200 (offer')────        ◄──200 (offer)─────
//!          ───ACK (answer)───►        ───ACK (answer')───►
//! ```

use super::end::{CallEnd, Cause, Party};
use super::sdp;
use super::B2bua;
use crate::application::Io;
use crate::dialog::DialogId;
use crate::relay::{Leg, RelayId};
use crate::ua::log_unsent;
use std::time::Instant;

impl B2bua {
    /// Whether the caller's INVITE may start a call as far as its SDP goes: an audio offer, or no
    /// body at all (late offer). A body without usable audio is refused with 488. `Some(offer)`
    /// when it may (the offer's audio stream and its parse, `None` for a late offer), so the call
    /// that starts reads them from here instead of parsing the SDP again.
    #[allow(clippy::option_option)]
    pub(super) fn invite_sdp_acceptable(body: &[u8]) -> Option<Option<(sdp::AudioStream, crate::sdp::SessionDescription)>> {
        if body.is_empty() {
            return Some(None);
        }
        sdp::read_offer(body).map(Some)
    }

    /// The ACK for our 2xx to a leg (`Event::Acked`): after a late offer, the caller's ACK brings
    /// the answer, which the callee gets in its ACK.
    pub(super) fn on_acked(&mut self, io: &mut Io<'_>, id: &DialogId, now: Instant) {
        let Some((key, Leg::Caller)) = self.by_call_id.get(&*id.call_id).copied() else { return };
        let Some(callee) = self.calls.get(&key).and_then(|c| c.callee.clone()) else { return };
        if !self.ua.dialogs_ref().get(&callee).is_some_and(|d| d.awaits_late_ack()) {
            return;
        }
        let answer = self.ua.dialogs_ref().get(id).and_then(|d| d.remote_sdp().cloned());
        let stream = answer.as_deref().and_then(sdp::audio_of);
        let Some(c) = self.calls.get_mut(&key) else { return };
        let body = answer.as_ref().and_then(|a| c.sdp_for(Leg::Callee, a));
        match (stream, body) {
            (Some(s), Some(body)) => {
                self.relay.set_remote(RelayId(key), Leg::Caller, s.remote, now);
                self.follow_accepted_line(key, Leg::Callee, &s, now);
                log_unsent(self.ua.dialogs().send_late_ack(&callee, Some(body), now), "ACK with the caller's answer", &callee);
                // Saved once more, now with the caller's media (the 200 was saved without it).
                self.state_put(key);
            }
            _ => {
                tracing::debug!(call = key, "late offer: the caller's ACK has no usable answer; ending the call");
                self.end_both(io, key, CallEnd::new(Cause::Status(488), Party::Service), now);
            }
        }
    }
}
