//! 100rel (RFC 3262) and UPDATE (RFC 3311) on the two legs of a call: each leg on its own.
//!
//! - Reliability is per leg. The callee legs' INVITEs say `Supported: 100rel` (the dialog layer's
//!   default), and the dialog layer PRACKs every reliable 18x a callee sends. The caller hears
//!   the ringing reliably only when its INVITE supports 100rel and the callee's 18x was reliable
//!   (or the caller requires it); otherwise it gets a plain 18x, while the service itself has
//!   PRACKed the callee.
//! - An UPDATE with an offer from one leg goes to the other leg as an UPDATE in that leg's
//!   dialog, its SDP pointed at the relay as for a re-INVITE; the answer comes back the same way
//!   ([`B2bua`]'s `on_answered` / `on_modify_failed`). In the early phase the other leg may not be
//!   able to take an UPDATE yet (its offer/answer did not complete reliably, RFC 3311 §5.1): then
//!   the service answers the offer itself from the relay, which follows the new address, and with
//!   no relay it refuses it with 500.
//!   An UPDATE without an offer (a session refresh, RFC 4028) is answered by the leg's dialog and
//!   never reaches here.

use super::call::Phase;
use super::sdp;
use super::B2bua;
use crate::dialog::{DialogId, DialogState};
use crate::message::Message;
use crate::relay::{Leg, RelayId};
use crate::ua::log_unsent;
use bytes::Bytes;
use std::time::Instant;

/// An answer made from an offer: the offer's streams, with the direction turned around
/// (RFC 3264 §6.1: sendonly is answered recvonly and the other way round).
fn mirrored(sdp: Bytes) -> Bytes {
    let text =
        String::from_utf8_lossy(&sdp).replace("a=sendonly", "a=\u{1}").replace("a=recvonly", "a=sendonly").replace("a=\u{1}", "a=recvonly");
    Bytes::from(text)
}

impl B2bua {
    /// The caller's 18x for the callee's first provisional answer: reliable when the caller's
    /// INVITE supports 100rel and the callee's 18x was reliable, plain otherwise (the dialog layer
    /// still sends it reliably if the caller requires 100rel).
    pub(super) fn ring_caller(&mut self, caller: &DialogId, callee: &DialogId, now: Instant) {
        self.progress_to_caller(caller, callee, 180, None, now);
    }

    /// Sends the caller provisional `code` (with early-media `sdp`, already pointed at the relay)
    /// for what callee dialog `callee` sent, with the reliability rule of [`B2bua::ring_caller`].
    /// A reliable 18x with SDP makes the caller's 2xx wait for its PRACK (RFC 3262 §3).
    pub(super) fn progress_to_caller(&mut self, caller: &DialogId, callee: &DialogId, code: u16, sdp: Option<Bytes>, now: Instant) {
        let d = self.ua.dialogs();
        let reliable = d.get(callee).is_some_and(|c| c.peer_sent_reliable()) && d.peer_supports_100rel(caller);
        let sent = if reliable { d.progress_reliable(caller, code, sdp, now) } else { d.progress(caller, code, sdp, now) };
        log_unsent(sent, "18x to the caller", caller);
    }

    /// The peer's UPDATE with an offer in dialog `id` (see the module doc).
    pub(super) fn on_update(&mut self, id: &DialogId, request: &Message, now: Instant) {
        let refuse = |me: &mut B2bua, code| {
            log_unsent(me.ua.dialogs().reject(id, code, now), "refusal of an UPDATE", id);
        };
        let Some((key, leg)) = self.by_call_id.get(&*id.call_id).copied() else { return refuse(self, 481) };
        let Some(c) = self.calls.get(&key) else { return refuse(self, 481) };
        if c.phase == Phase::Ending {
            return refuse(self, 481);
        }
        if c.reoffer_from.is_some() {
            return refuse(self, 491);
        }
        let other = match (c.phase, leg) {
            (Phase::Up, _) => c.dialog(leg.other()).cloned(),
            (_, Leg::Callee) => Some(c.caller.clone()),
            (_, Leg::Caller) => self.early_callee(key),
        };
        let offer = Bytes::copy_from_slice(request.body());
        let Some(stream) = sdp::audio_of(&offer) else { return refuse(self, 488) };
        let Some(c) = self.calls.get_mut(&key) else { return };
        let Some(body) = c.sdp_for(leg.other(), &offer) else { return refuse(self, 488) };
        if let Some(other) = other {
            if self.ua.dialogs().send_update(&other, Some(body), now).is_ok() {
                if let Some(c) = self.calls.get_mut(&key) {
                    c.reoffer_from = Some(leg);
                }
                self.relay.set_remote(RelayId(key), leg, stream.remote, now);
                return;
            }
        }
        // The other leg cannot take it now (early, RFC 3311 §5.1): answer from the relay.
        let Some(c) = self.calls.get_mut(&key) else { return };
        if c.phase == Phase::Up || c.ports(leg).is_none() {
            let code = if c.phase == Phase::Up { 491 } else { 500 };
            return refuse(self, code);
        }
        // One of alternative audio lines (e.g. RTP/SAVP and RTP/AVP) is accepted (RFC 3264 §6).
        let stream = sdp::line_to_accept(&offer).unwrap_or(stream);
        let answer = c.sdp_for(leg, &offer).and_then(|b| sdp::accept_only(&b, stream.line)).map(mirrored);
        let Some(answer) = answer else { return refuse(self, 488) };
        self.relay.set_remote(RelayId(key), leg, stream.remote, now);
        log_unsent(self.ua.dialogs().accept(id, Some(answer), now), "answer to an early UPDATE", id);
    }

    /// The callee dialog of ringing call `key` whose early offer/answer completed reliably, if
    /// there is exactly one (an UPDATE from the caller has nowhere else to go).
    fn early_callee(&self, key: u64) -> Option<DialogId> {
        let c = self.calls.get(&key)?;
        let d = self.ua.dialogs_ref();
        let mut found = d
            .ids()
            .filter(|id| c.forks.iter().any(|f| f.call_id == id.call_id))
            .filter(|id| d.get(id).is_some_and(|x| x.state() == DialogState::Early && x.peer_sent_reliable() && x.remote_sdp().is_some()));
        let first = found.next()?.clone();
        found.next().is_none().then_some(first)
    }
}
