//! Early media through the B2BUA (RFC 3960 §2, RFC 3261 §13.2.1): a callee's 18x with SDP reaches
//! the caller as an 18x with SDP, pointed at the caller's relay port (passed as is without the
//! relay), and the relay carries media both ways from then on, before the answer.
//!
//! - The relay learns the callee leg from that SDP ([`crate::relay::Relay::set_remote`]): once
//!   both phones' SDP is known media may latch, under the relay's usual rules (module doc of
//!   [`crate::relay`]); nothing is relaxed for early media.
//! - With several branches sending 18x with SDP (forking: other To-tags, or our own parallel
//!   INVITEs), the latest one wins: the caller gets its SDP (a new `o=` version, RFC 3264 §8) and
//!   the relay's callee leg follows its address.
//! - The 200 re-uses the same relay ports. When it repeats the SDP of the early answer passed on
//!   (same branch, same body), the caller's 200 carries exactly the description of its 18x, `o=`
//!   version included; otherwise (another branch answered, or the SDP changed) the 200's SDP is
//!   rewritten anew and the relay follows it.

use super::call::{Call, Phase};
use super::sdp;
use super::B2bua;
use crate::dialog::DialogId;
use crate::relay::{Leg, RelayId};
use bytes::Bytes;
use std::time::Instant;

/// The early answer passed to the caller last.
#[derive(Debug)]
pub(crate) struct EarlyAnswer {
    /// The callee branch's early dialog that sent it.
    pub(crate) branch: DialogId,
    /// Its SDP as the callee sent it.
    pub(crate) received: Bytes,
    /// The SDP the caller got for it.
    pub(crate) sent: Bytes,
}

impl B2bua {
    /// True if the callee branch's new early dialog `id` came with a usable SDP that will be passed
    /// on: its 18x goes to the caller with that SDP ([`B2bua::on_early_media`]), so no bare 180 is
    /// sent first.
    pub(super) fn early_media_follows(&self, id: &DialogId) -> bool {
        let usable = self.ua.dialogs_ref().get(id).and_then(|d| d.remote_sdp()).is_some_and(|b| sdp::audio_of(b).is_some());
        usable && self.by_call_id.get(&*id.call_id).and_then(|(key, _)| self.calls.get(key)).is_some_and(|c| self.caller_offered(c))
    }

    /// The caller's INVITE carried an offer, so an SDP in a callee's 18x is an answer the caller
    /// may get as early media (RFC 3261 §13.2.1: an unreliable 1xx carries no offer).
    fn caller_offered(&self, c: &Call) -> bool {
        self.ua.dialogs_ref().get(&c.caller).is_some_and(|d| d.remote_sdp().is_some())
    }

    /// A callee branch's 1xx with `body` (dialog event `EarlyMedia`): passed on to the caller with
    /// the same status code and the SDP rewritten to the caller's relay port; the relay's callee leg
    /// follows it. Ignored once the call is answered or ending, from the caller's leg, when the
    /// caller's INVITE had no offer, and when the body has no RTP audio stream (the caller then
    /// hears the ringing of [`B2bua::on_early`]).
    pub(super) fn on_early_media(&mut self, id: &DialogId, code: u16, body: &Bytes, now: Instant) {
        let Some(&(key, Leg::Callee)) = self.by_call_id.get(&*id.call_id) else { return };
        let Some(c) = self.calls.get(&key) else { return };
        if c.phase != Phase::Setup || !c.forks.contains(&id.invite_id()) || !self.caller_offered(c) {
            return;
        }
        let Some(c) = self.calls.get_mut(&key) else { return };
        let Some(stream) = sdp::audio_of(body) else {
            tracing::debug!(call = key, "18x with an SDP without RTP audio: not passed on");
            return;
        };
        if c.early.as_ref().is_some_and(|e| e.branch == *id && e.received == *body) {
            // The same early answer again (a repeated 183): the caller has it.
            return;
        }
        let Some(sent) = c.sdp_for(Leg::Caller, body) else { return };
        let caller = c.caller.clone();
        c.rang = true;
        c.early = Some(Box::new(EarlyAnswer { branch: id.clone(), received: body.clone(), sent: sent.clone() }));
        // Reliable to the caller under the same rule as its ringing (RFC 3262; see `prack`).
        self.progress_to_caller(&caller, id, code, Some(sent), now);
        tracing::debug!(call = key, code, remote_tag = %id.remote_tag, "early media passed to the caller");
        let peer = self.ua.pinned_peer(&id.call_id).map(|p| p.ip());
        self.relay.set_peer_ip(RelayId(key), Leg::Callee, peer);
        self.relay.set_remote(RelayId(key), Leg::Callee, stream.remote, now);
        self.follow_accepted_line(key, Leg::Caller, &stream, now);
    }
}

impl Call {
    /// The SDP for the caller's 200 from the callee's `answer` on branch `id`: the early answer's
    /// description again when the 200 repeats it (RFC 3264 §8: an unchanged description keeps
    /// its version), else `answer` rewritten (see [`Call::sdp_for`]).
    /// Also returns the audio stream of `answer` ([`sdp::audio_of`]), read from the same parse.
    pub(crate) fn answer_for_caller(&mut self, id: &DialogId, answer: &Bytes) -> (Option<sdp::AudioStream>, Option<Bytes>) {
        match self.early.as_deref() {
            Some(e) if e.branch == *id && e.received == *answer => (sdp::audio_of(answer), Some(e.sent.clone())),
            _ => self.read_and_sdp_for(Leg::Caller, answer),
        }
    }
}
