//! Requests from the peer: new INVITEs (§13.3), CANCEL (§9.2), and mid-dialog requests (§12.2.2):
//! ACK for our 2xx (§13.3.1.4), BYE (§15.1.2), re-INVITE and UPDATE (§14.2, RFC 3311, RFC 4028 §9),
//! OPTIONS and INFO.

use super::build::ALLOW;
use super::id::DialogId;
use super::session::{self, Negotiated};
use super::set::Dialogs;
use super::state::{Dialog, DialogState, Unacked};
use super::timer::DialogTimer;
use super::{EndReason, Event, InputError, NotAccepted, Side};
use crate::message::{HeaderName, Message, Method};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

// ===== impl Dialogs: requests =====

impl Dialogs {
    /// Takes in a request from the peer that the transaction layer delivered (a new server
    /// transaction, or an ACK for a 2xx). Responses it needs go to [`Dialogs::poll_transmit`].
    ///
    /// - INVITE without To tag: a new dialog ([`Event::Incoming`]); 422 if its Session-Expires is
    ///   below our Min-SE (RFC 4028 §9); 482 for a merged copy (§8.2.2.2).
    /// - CANCEL: 200 for it, and 487 for the INVITE it cancels if unanswered (§9.2); the dialog ends
    ///   with [`EndReason::Cancelled`].
    /// - Mid-dialog: a lower CSeq than the last one gets 500 (§12.2.2); BYE gets 200 and ends the
    ///   dialog; a re-INVITE while ours is pending gets 491 and one while the peer's previous one is
    ///   unanswered gets 500 with Retry-After (§14.2).
    ///
    /// Errors tell the caller what to do itself: [`InputError::UnknownDialog`] means answer 481 with
    /// [`super::reject_unknown`].
    pub fn handle_request(&mut self, req: &Message, now: Instant) -> Result<(), InputError> {
        let result = self.dispatch_request(req, now);
        self.prune();
        result
    }

    fn dispatch_request(&mut self, req: &Message, now: Instant) -> Result<(), InputError> {
        let method = req.method().ok_or(InputError::Malformed)?.clone();
        if method == Method::Cancel {
            return self.on_cancel(req, now);
        }
        if req.to_tag().map_err(|_| InputError::Malformed)?.is_none() {
            return match self.new_invite(req, now) {
                Ok(id) => {
                    self.push_event(Event::Incoming { id, request: req.clone() });
                    Ok(())
                }
                Err(NotAccepted::Input(e)) => Err(e),
                Err(NotAccepted::Answered(_) | NotAccepted::Retransmission) => Ok(()),
            };
        }
        let id = DialogId::of_request(req).ok_or(InputError::Malformed)?;
        let seq = req.cseq().map_err(|_| InputError::Malformed)?.seq;
        let Some(slot) = self.slot_of(&id) else {
            // An ACK is never answered (§17.2.3); a stray one is simply dropped.
            return if method == Method::Ack { Ok(()) } else { Err(InputError::UnknownDialog) };
        };
        if method == Method::Ack {
            self.on_ack(slot, req, seq, now);
            return Ok(());
        }
        let (d, cfg) = self.dm_cfg(slot);
        if d.state == DialogState::Terminated {
            return Err(InputError::UnknownDialog);
        }
        // §12.2.2: requests must come in CSeq order; a lower number is answered 500.
        if d.remote_seq.is_some_and(|r| seq < r) {
            let msg = d.answer(req, 500, cfg).finish();
            self.push_transmit(msg);
            return Ok(());
        }
        d.remote_seq = Some(seq);
        match method {
            Method::Bye => self.on_bye(slot, req, now),
            Method::Invite | Method::Update => self.on_offer(slot, req, now),
            Method::Prack => self.on_prack(slot, req, now),
            _ => self.on_other(slot, req, id),
        }
        Ok(())
    }

    /// OPTIONS (§11: 200 with what we support), INFO (200 and [`Event::Info`]), and 405 for the rest.
    fn on_other(&mut self, slot: usize, req: &Message, id: DialogId) {
        if matches!(req.method(), Some(Method::Refer | Method::Notify)) {
            return self.on_refer_or_notify(slot, req, id);
        }
        let (d, cfg) = self.dm_cfg(slot);
        let msg = match req.method() {
            Some(Method::Options) => d
                .answer(req, 200, cfg)
                .header(HeaderName::Allow, ALLOW)
                .header(HeaderName::Accept, "application/sdp")
                .header(HeaderName::Supported, "timer")
                .finish(),
            Some(Method::Info) => d.answer(req, 200, cfg).finish(),
            _ => d.answer(req, 405, cfg).header(HeaderName::Allow, ALLOW).finish(),
        };
        self.push_transmit(msg);
        if req.method() == Some(&Method::Info) {
            self.push_event(Event::Info { id, request: req.clone() });
        }
    }

    /// Takes in a dialog-creating INVITE (§12.1.1) and returns the id of the dialog its answers
    /// create; the caller answers it with [`Dialogs::ring`], [`Dialogs::accept`] or
    /// [`Dialogs::reject`]. No [`Event::Incoming`] is produced: the id is the answer, so an
    /// application that keeps state per call knows at once whether there is a call to keep it for.
    ///
    /// [`NotAccepted::Answered`] means the dialog layer answered the INVITE itself (422 when its
    /// Session-Expires is below our Min-SE, RFC 4028 §9; 482 for a merged copy, §8.2.2.2); the
    /// answer is in [`Dialogs::poll_transmit`]. Every other error means no answer was written.
    pub fn accept_invite(&mut self, req: &Message, now: Instant) -> Result<DialogId, NotAccepted> {
        if req.method() != Some(&Method::Invite) || req.to_tag().map_err(|_| InputError::Malformed)?.is_some() {
            return Err(NotAccepted::Input(InputError::OutOfDialog));
        }
        let result = self.new_invite(req, now);
        self.prune();
        result
    }

    /// An INVITE without To tag: the merge check (§8.2.2.2), then choose our tag, negotiate the
    /// session timer, and hold the request for the application's answer.
    fn new_invite(&mut self, req: &Message, now: Instant) -> Result<DialogId, NotAccepted> {
        if let Some(loop_detected) = self.merge.check(req, now) {
            self.push_transmit(loop_detected);
            return Err(NotAccepted::Answered(482));
        }
        if req.method() != Some(&Method::Invite) {
            return Err(NotAccepted::Input(InputError::OutOfDialog));
        }
        let call_id = req.call_id().map_err(|_| InputError::Malformed)?;
        let from_tag = req.from_tag().map_err(|_| InputError::Malformed)?.ok_or(InputError::Malformed)?;
        let seq = req.cseq().map_err(|_| InputError::Malformed)?.seq;
        let key: (Arc<str>, Arc<str>) = (call_id.into(), from_tag.into());
        if self.uas_invites.get(&key).is_some_and(|&(_, s)| s == seq) {
            return Err(NotAccepted::Retransmission);
        }
        let tag = self.ids.tag();
        if let Some((code, msg)) = Dialogs::rel_refusal(req, &self.config, &tag) {
            self.push_transmit(msg);
            return Err(NotAccepted::Answered(code));
        }
        if let Negotiated::TooSmall(min) = session::negotiate_uas(req, &self.config) {
            self.push_transmit(session::too_small(req, &tag, min));
            return Err(NotAccepted::Answered(422));
        }
        let d = Dialog::uas(req, &tag).ok_or(InputError::Malformed)?;
        let id = d.id.clone();
        let slot = self.insert(d);
        // Keyed by the id's own strings (the remote tag is the From tag), shared rather than copied.
        self.uas_invites.insert((id.call_id.clone(), id.remote_tag.clone()), (slot, seq));
        Ok(id)
    }

    /// CANCEL (§9.2): matched to the peer's INVITE by Call-ID, From tag and CSeq number.
    fn on_cancel(&mut self, req: &Message, now: Instant) -> Result<(), InputError> {
        let call_id = req.call_id().map_err(|_| InputError::Malformed)?;
        let from_tag = req.from_tag().map_err(|_| InputError::Malformed)?.ok_or(InputError::Malformed)?;
        let seq = req.cseq().map_err(|_| InputError::Malformed)?.seq;
        let key: (Arc<str>, Arc<str>) = (call_id.into(), from_tag.into());
        let Some(&(slot, invite_seq)) = self.uas_invites.get(&key) else {
            return Err(InputError::UnknownDialog);
        };
        if invite_seq != seq {
            return Err(InputError::UnknownDialog);
        }
        let (d, cfg) = self.dm_cfg(slot);
        // §9.2: the CANCEL's response carries the same To tag as the INVITE's responses.
        let ok = req.response_to(200, "OK", Some(&d.id.local_tag)).finish();
        let pending = if d.state == DialogState::Early { d.awaiting_answer.take().or_else(|| d.take_held_invite()) } else { None };
        let terminated = pending.as_ref().map(|inv| d.answer(inv, 487, cfg).finish());
        self.push_transmit(ok);
        if let Some(msg) = terminated {
            self.push_transmit(msg);
            self.terminate(slot, EndReason::Cancelled, now);
        }
        Ok(())
    }

    /// ACK for our 2xx (§13.3.1.4): stop retransmitting; send a BYE that was waiting for it.
    fn on_ack(&mut self, slot: usize, req: &Message, seq: u32, now: Instant) {
        let d = self.dm(slot);
        if d.unacked.as_ref().is_none_or(|u| u.seq != seq) {
            return; // a duplicate ACK, or one for a 2xx already acknowledged
        }
        d.unacked = None;
        d.take_remote_sdp(req);
        let bye = std::mem::take(&mut d.bye_after_ack);
        let id = d.id.clone();
        self.disarm(slot, DialogTimer::Retransmit2xx);
        self.disarm(slot, DialogTimer::NoAck);
        self.push_event(Event::Acked { id });
        if bye {
            self.bye(slot, EndReason::Bye(Side::Local), now);
        }
    }

    /// BYE (§15.1.2): 200, a 487 for any request of the peer still unanswered, and the end.
    fn on_bye(&mut self, slot: usize, req: &Message, now: Instant) {
        let (d, cfg) = self.dm_cfg(slot);
        let ok = d.answer(req, 200, cfg).finish();
        let pending = d.awaiting_answer.take().map(|p| d.answer(&p, 487, cfg).finish());
        self.push_transmit(ok);
        if let Some(msg) = pending {
            self.push_transmit(msg);
        }
        self.terminate(slot, EndReason::Bye(Side::Remote), now);
    }

    /// re-INVITE or UPDATE (§14.2, RFC 3311 §5.2): glare checks, the session timer, then either an
    /// automatic answer (a session refresh that offers nothing new) or [`Event::Reoffer`].
    fn on_offer(&mut self, slot: usize, req: &Message, now: Instant) {
        let is_invite = req.method() == Some(&Method::Invite);
        let has_body = !req.body().is_empty();
        let retry_after = self.ids.below(11);
        let (d, cfg) = self.dm_cfg(slot);
        let offers = is_invite || has_body;
        let reply = if offers && (d.offer_pending() || d.own_reliable_offer_pending()) {
            // §14.2: our own offer is in flight; the peer retries after a random wait.
            Some(d.answer(req, 491, cfg).finish())
        } else if offers && (d.peer_offer_unanswered() || (is_invite && d.unacked.is_some())) {
            // §14.2: the peer's previous INVITE is not finished yet.
            Some(d.answer(req, 500, cfg).header(HeaderName::RetryAfter, retry_after).finish())
        } else if let Negotiated::TooSmall(min) = session::negotiate_uas(req, cfg) {
            Some(session::too_small(req, &d.id.local_tag, min))
        } else {
            None
        };
        if let Some(msg) = reply {
            self.push_transmit(msg);
            return;
        }
        let unchanged = !has_body || d.remote_sdp.as_deref() == Some(req.body());
        if unchanged && (!is_invite || d.local_sdp.is_some()) {
            // A refresh (RFC 4028 §10) or an unchanged offer: answer with what we had.
            let sdp = if is_invite || has_body { d.local_sdp.clone() } else { None };
            self.answer_offer(slot, req, sdp, now);
            return;
        }
        let id = d.id.clone();
        if d.state == DialogState::Early {
            // An UPDATE in the early dialog (RFC 3311 §5.1): the INVITE keeps waiting beside it.
            self.keep_early_update(slot, req);
        } else {
            d.awaiting_answer = Some(Box::new(req.clone()));
        }
        self.push_event(Event::Reoffer { id, request: req.clone() });
    }

    /// Sends our 200 to the peer's INVITE, re-INVITE or UPDATE with `sdp`, and takes what it
    /// changes: remote target, SDP, session timer (RFC 4028 §9). A 2xx to INVITE is retransmitted
    /// at T1, 2*T1, ... T2 until the ACK, for at most 64*T1 (§13.3.1.4).
    pub(crate) fn answer_offer(&mut self, slot: usize, req: &Message, sdp: Option<Bytes>, now: Instant) {
        let timer = match session::negotiate_uas(req, &self.config) {
            Negotiated::On(t) => Some(t),
            Negotiated::Off | Negotiated::TooSmall(_) => None,
        };
        let t1 = self.config.t1;
        let (d, cfg) = self.dm_cfg(slot);
        let mut b = d.answer(req, 200, cfg);
        session::write_response(&mut b, timer);
        let msg = match &sdp {
            Some(s) => b.body("application/sdp", s),
            None => b.finish(),
        };
        // An UPDATE in the early dialog answers an offer but confirms nothing (RFC 3311 §5.1).
        let initial = d.state == DialogState::Early && req.method() == Some(&Method::Invite);
        d.refresh_target(req);
        d.take_remote_sdp(req);
        if sdp.is_some() {
            d.local_sdp = sdp;
        }
        let invite_seq = req.cseq().ok().filter(|c| c.method == Method::Invite).map(|c| c.seq);
        if let Some(seq) = invite_seq {
            d.unacked = Some(Box::new(Unacked { response: msg.clone(), seq, interval: t1 }));
        }
        let id = d.id.clone();
        self.push_transmit(msg);
        if invite_seq.is_some() {
            self.arm(slot, DialogTimer::Retransmit2xx, now + t1);
            self.arm(slot, DialogTimer::NoAck, now + t1 * 64);
        }
        self.apply_session(slot, timer, now);
        if initial {
            self.on_confirmed(slot, now);
        } else if let Some(t) = timer {
            self.push_event(Event::Refreshed { id, interval: t.duration() });
        }
    }
}
