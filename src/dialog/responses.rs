//! Responses to our requests: the INVITE that creates dialogs (§12.1.2, §13.2.2, RFC 4028 §7.4) and
//! in-dialog requests (§12.2.1.2, §14.1), plus timeouts the transaction layer reports.

use super::id::DialogId;
use super::session;
use super::set::Dialogs;
use super::state::{Dialog, DialogState, Outgoing, Purpose};
use super::timer::DialogTimer;
use super::{EndReason, Event, InputError};
use crate::message::{Message, Method};
use std::time::Instant;

// ===== impl Dialogs: responses =====

impl Dialogs {
    /// Takes in a response to one of our requests (from a client transaction, or a retransmitted
    /// 2xx the transaction layer passed on as stray, §13.2.2.4).
    ///
    /// - to our INVITE: a 1xx with a To tag creates an early dialog per tag; a 2xx confirms (or
    ///   creates) the dialog and is ACKed, and each retransmission of it gets the same ACK again;
    ///   a 422 is retried once with the Min-SE it asks for (RFC 4028 §7.4); other failures end the
    ///   early dialogs (or the pending INVITE) with [`EndReason::Rejected`] / `Cancelled`.
    /// - in a dialog: a 2xx to a re-INVITE is ACKed; 481 and 408 end the dialog (§12.2.1.2); 491 to
    ///   our re-INVITE or UPDATE schedules a retry (§14.1).
    ///
    /// [`InputError::Stray`]: nothing of ours matches; drop it.
    pub fn handle_response(&mut self, resp: &Message, now: Instant) -> Result<(), InputError> {
        let result = self.dispatch_response(resp, now);
        self.prune();
        result
    }

    /// Reports that the client transaction of `request` (one we sent) timed out (Timer B or F) or
    /// hit a transport error: handled like a 408 (§12.2.1.2, §8.1.3.1).
    pub fn handle_request_timeout(&mut self, request: &Message, now: Instant) -> Result<(), InputError> {
        let cseq = request.cseq().map_err(|_| InputError::Malformed)?;
        // Our request: From carries our tag, To the peer's, just as in a response to it.
        let id = DialogId::of_response(request).ok_or(InputError::Malformed)?;
        let key = id.invite_id();
        if cseq.method == Method::Invite && self.invites.get(&key).is_some_and(|i| i.seq == cseq.seq) {
            self.fail_invite(&key, 408, now);
        } else {
            let slot = self.slot_of(&id).ok_or(InputError::Stray)?;
            self.on_dialog_response(slot, cseq.seq, &cseq.method, 408, None, now);
        }
        self.prune();
        Ok(())
    }

    fn dispatch_response(&mut self, resp: &Message, now: Instant) -> Result<(), InputError> {
        let code = resp.status().ok_or(InputError::Malformed)?;
        let cseq = resp.cseq().map_err(|_| InputError::Malformed)?;
        let id = DialogId::of_response(resp).ok_or(InputError::Malformed)?;
        let key = id.invite_id();
        if cseq.method == Method::Invite && self.invites.get(&key).is_some_and(|i| i.seq == cseq.seq) {
            match code {
                100..=199 if id.remote_tag.is_empty() || code == 100 => {}
                100..=199 => {
                    self.early_dialog(&key, &id, resp);
                    self.on_provisional(&id, resp);
                }
                200..=299 if id.remote_tag.is_empty() => return Err(InputError::Malformed),
                200..=299 => self.invite_2xx(&key, &id, resp, now),
                422 if self.retry_422(&key, resp, now) => {}
                401 | 407 if self.retry_auth(&key, resp, now) => {}
                _ => self.fail_invite(&key, code, now),
            }
            return Ok(());
        }
        let slot = self.slot_of(&id).ok_or(InputError::Stray)?;
        self.on_dialog_response(slot, cseq.seq, &cseq.method, code, Some(resp), now);
        Ok(())
    }

    /// A 1xx with a To tag: an early dialog for that tag (§12.1.2, §13.2.2.1). One with an SDP
    /// body is early media ([`Event::EarlyMedia`]); the early dialog keeps that SDP.
    fn early_dialog(&mut self, key: &DialogId, id: &DialogId, resp: &Message) {
        if let Some(slot) = self.slot_of(id) {
            let d = self.dm(slot);
            if d.state != DialogState::Early {
                return;
            }
            d.refresh_target(resp);
            d.take_remote_sdp(resp);
        } else {
            let Some(request) = self.invite_request(key) else { return };
            let Some(inv) = self.invites.get_mut(key) else { return };
            let Some(d) = Dialog::uac(&request, inv.params.sdp.clone(), resp, id) else { return };
            inv.remote_tags.push(id.remote_tag.clone());
            self.insert(d);
            self.push_event(Event::Early { id: id.clone() });
        }
        if let (Some(code), false) = (resp.status(), resp.body().is_empty()) {
            let sdp = self.slot_of(id).and_then(|s| self.dm(s).remote_sdp.clone());
            if let Some(sdp) = sdp {
                self.push_event(Event::EarlyMedia { id: id.clone(), code, sdp });
            }
        }
    }

    /// A 2xx to our INVITE (§13.2.2.4): confirm or create the dialog of its tag and ACK it; a
    /// retransmission gets the same ACK again. A 2xx that crossed our CANCEL is ACKed and ended.
    fn invite_2xx(&mut self, key: &DialogId, id: &DialogId, resp: &Message, now: Instant) {
        let existing = self.slot_of(id);
        let Some(inv) = self.invites.get_mut(key) else { return };
        inv.answered = true;
        let (seq, cancelled) = (inv.seq, inv.cancelled);
        let slot = match existing {
            Some(slot) => {
                let d = self.dm(slot);
                if d.state != DialogState::Early {
                    self.resend_ack(slot, seq);
                    return;
                }
                d.confirm_from_2xx(resp);
                slot
            }
            None => {
                let Some(request) = self.invite_request(key) else { return };
                let Some(inv) = self.invites.get_mut(key) else { return };
                let Some(mut d) = Dialog::uac(&request, inv.params.sdp.clone(), resp, id) else { return };
                inv.remote_tags.push(id.remote_tag.clone());
                // A dialog made from this 2xx already has its route set, target and SDP (what
                // `confirm_from_2xx` would read from the same message again): it only changes state.
                d.state = DialogState::Confirmed;
                self.insert(d)
            }
        };
        let late = self.invites.get(key).is_some_and(|i| i.params.sdp.is_none());
        if let Some(inv) = self.invites.get_mut(key) {
            inv.request = None;
        }
        if late {
            // RFC 3264 §4: the 2xx carries the offer; the ACK waits for the application's answer.
            self.dm(slot).late_offer = Some(super::state::LateOffer::Pending(seq));
        } else {
            self.send_ack(slot, seq);
        }
        self.apply_session(slot, session::from_response(resp), now);
        self.on_confirmed(slot, now);
        // Forking (§13.2.2.4): the early dialogs of the other branches will never be confirmed
        // now that the call is answered here; end them so nothing waits on them.
        let others: Vec<std::sync::Arc<str>> =
            self.invites.get(key).map(|i| i.remote_tags.iter().filter(|t| **t != id.remote_tag).cloned().collect()).unwrap_or_default();
        self.end_early(key, &others, EndReason::Cancelled, now);
        if cancelled {
            self.bye(slot, EndReason::Cancelled, now);
        }
    }

    /// Builds, remembers and sends the ACK for the 2xx to INVITE `seq` (§13.2.2.4).
    pub(crate) fn send_ack(&mut self, slot: usize, seq: u32) {
        let branch = self.ids.branch();
        let (d, cfg) = self.dm_cfg(slot);
        let ack = d.ack(seq, &branch, cfg);
        d.last_ack = Some((seq, branch.into()));
        self.push_transmit(ack);
    }

    /// The ACK of [`Dialogs::send_ack`] again, for a retransmission of the 2xx to INVITE `seq`
    /// (§13.2.2.4): same branch, same headers, rebuilt from the dialog.
    fn resend_ack(&mut self, slot: usize, seq: u32) {
        let (d, cfg) = self.dm_cfg(slot);
        let Some((_, branch)) = d.last_ack.as_ref().filter(|(s, _)| *s == seq) else { return };
        let ack = d.ack(seq, branch, cfg);
        self.push_transmit(ack);
    }

    /// 422 to our INVITE (RFC 4028 §7.4): send it again once per larger Min-SE, with a new CSeq.
    fn retry_422(&mut self, key: &DialogId, resp: &Message, now: Instant) -> bool {
        let min = resp.min_se().ok().flatten().map_or(0, |m| m.seconds);
        let Some(inv) = self.invites.get(key) else { return false };
        if min <= inv.min_se_seen {
            return false;
        }
        let (params, seq, tags) = (inv.params.clone(), inv.seq.wrapping_add(1), inv.remote_tags.clone());
        let creds = self.invites.get(key).and_then(|i| i.credentials.clone());
        let Ok(msg) = self.build_invite(&params, &key.call_id, &key.local_tag, seq, min, creds.as_ref()) else { return false };
        self.end_early(key, &tags, EndReason::Rejected(422), now);
        if let Some(inv) = self.invites.get_mut(key) {
            inv.seq = seq;
            inv.request = Some(Box::new(msg.clone()));
            inv.min_se_seen = min;
            inv.remote_tags.clear();
        }
        self.push_transmit(msg);
        true
    }

    /// 401/407 to our INVITE (RFC 3261 §22.2): send it again with credentials from the
    /// authorizer and a new CSeq; at most twice (a second challenge may say the nonce was stale).
    fn retry_auth(&mut self, key: &DialogId, resp: &Message, now: Instant) -> bool {
        let Some(inv) = self.invites.get(key) else { return false };
        if inv.auth_attempts >= 2 {
            return false;
        }
        let Some(request) = inv.request.as_deref().cloned() else { return false };
        let Some(creds) = self.authorizer.0.as_mut().and_then(|a| a(&request, resp)) else { return false };
        let Some(inv) = self.invites.get(key) else { return false };
        let (params, seq, tags, min) = (inv.params.clone(), inv.seq.wrapping_add(1), inv.remote_tags.clone(), inv.min_se_seen);
        let Ok(msg) = self.build_invite(&params, &key.call_id, &key.local_tag, seq, min, Some(&creds)) else { return false };
        self.end_early(key, &tags, EndReason::Rejected(resp.status().unwrap_or(401)), now);
        if let Some(inv) = self.invites.get_mut(key) {
            inv.seq = seq;
            inv.request = Some(Box::new(msg.clone()));
            inv.remote_tags.clear();
            inv.credentials = Some(creds);
            inv.auth_attempts += 1;
        }
        self.push_transmit(msg);
        true
    }

    /// A final failure of our INVITE: its early dialogs end, or its pending id when it has none.
    pub(crate) fn fail_invite(&mut self, key: &DialogId, code: u16, now: Instant) {
        let Some(inv) = self.invites.remove(key) else { return };
        let reason = match code {
            408 => EndReason::Timeout,
            487 if inv.cancelled => EndReason::Cancelled,
            c => EndReason::Rejected(c),
        };
        let ended = self.end_early(key, &inv.remote_tags, reason, now);
        if ended == 0 && !inv.answered {
            self.push_event(Event::Terminated { id: key.clone(), reason });
        }
    }

    /// Ends the early dialogs among `tags`; returns how many.
    fn end_early(&mut self, key: &DialogId, tags: &[std::sync::Arc<str>], reason: EndReason, now: Instant) -> usize {
        let mut n = 0;
        for tag in tags {
            let id = DialogId { remote_tag: tag.clone(), ..key.clone() };
            if let Some(slot) = self.slot_of(&id).filter(|&s| self.dm(s).state == DialogState::Early) {
                self.terminate(slot, reason, now);
                n += 1;
            }
        }
        n
    }

    /// A response (or, with `resp` `None`, a timeout) to one of our in-dialog requests.
    fn on_dialog_response(&mut self, slot: usize, seq: u32, method: &Method, code: u16, resp: Option<&Message>, now: Instant) {
        if code < 200 {
            return;
        }
        let d = self.dm(slot);
        let Some(pos) = d.outgoing.iter().position(|o| o.seq == seq && o.method == *method) else {
            // A retransmitted 2xx to a re-INVITE already ACKed: the same ACK again (§13.2.2.4).
            if *method == Method::Invite && (200..300).contains(&code) {
                self.resend_ack(slot, seq);
            }
            return;
        };
        let out = d.outgoing.remove(pos);
        // Most dialogs send one request at a time (a BYE, last of all): free the buffer once it is
        // answered, or an ended dialog would hold room for four until its purge (64*T1).
        if d.outgoing.is_empty() {
            d.outgoing = Vec::new();
        }
        match (code, resp) {
            (200..=299, Some(resp)) => self.on_dialog_2xx(slot, out, resp, now),
            _ => self.on_dialog_failure(slot, out, code, resp, now),
        }
    }

    fn on_dialog_2xx(&mut self, slot: usize, out: Outgoing, resp: &Message, now: Instant) {
        if out.method == Method::Invite {
            self.send_ack(slot, out.seq);
        }
        let d = self.dm(slot);
        d.auth_tries = 0;
        if d.state == DialogState::Terminated || !matches!(out.method, Method::Invite | Method::Update) {
            return;
        }
        // A target refresh (§12.2.1.2) and, for session timers, a refresh (RFC 4028 §7.2).
        d.refresh_target(resp);
        d.take_remote_sdp(resp);
        if let Purpose::Modify(Some(sdp)) = &out.purpose {
            d.local_sdp = Some(sdp.clone());
        }
        let id = d.id.clone();
        let timer = session::from_response(resp);
        self.apply_session(slot, timer, now);
        match (out.purpose, timer) {
            (Purpose::Modify(_), _) => self.push_event(Event::Answered { id, response: resp.clone() }),
            (Purpose::Refresh, Some(t)) => self.push_event(Event::Refreshed { id, interval: t.duration() }),
            _ => {}
        }
    }

    fn on_dialog_failure(&mut self, slot: usize, out: Outgoing, code: u16, resp: Option<&Message>, now: Instant) {
        if let (401 | 407, Some(resp)) = (code, resp) {
            if self.retry_in_dialog_auth(slot, &out, resp) {
                return;
            }
        }
        let ping = out.purpose == Purpose::Ping;
        match code {
            // §12.2.1.2: the peer has no such dialog; nothing to say BYE to.
            481 => self.terminate(slot, if ping { EndReason::PingFailed } else { EndReason::Gone }, now),
            408 => self.bye(slot, if ping { EndReason::PingFailed } else { EndReason::Timeout }, now),
            _ if self.dm(slot).state == DialogState::Terminated => {}
            491 => {
                let role = self.dm(slot).role;
                let at = now + self.glare_delay(role);
                match out.purpose {
                    Purpose::Modify(sdp) => {
                        self.dm(slot).retry = Some(Box::new((out.method, sdp)));
                        self.arm(slot, DialogTimer::GlareRetry, at);
                        let id = self.dm(slot).id.clone();
                        self.push_event(Event::ModifyFailed { id, code });
                    }
                    Purpose::Refresh => self.arm(slot, DialogTimer::Refresh, at),
                    _ => {}
                }
            }
            _ => {
                if let Purpose::Modify(_) = out.purpose {
                    let id = self.dm(slot).id.clone();
                    self.push_event(Event::ModifyFailed { id, code });
                }
            }
        }
    }

    /// 401/407 to our re-INVITE or UPDATE (RFC 3261 §22.2; §22.1 lets a proxy challenge any
    /// request, and the service does for a phone that signals from a new address, issue 14
    /// point 7): the same offer again with credentials from the authorizer and a new CSeq; at most
    /// twice in a row (a second challenge may say the nonce was stale).
    ///
    /// A BYE is sent again the same way (the dialog has already ended on our side, §15.1.1): a
    /// phone that moved to a new address hangs up from there and the service challenges it.
    fn retry_in_dialog_auth(&mut self, slot: usize, out: &Outgoing, resp: &Message) -> bool {
        let bye = out.method == Method::Bye;
        let sdp = match &out.purpose {
            Purpose::Modify(sdp) => sdp,
            _ if bye => &None,
            _ => return false,
        };
        let (d, cfg) = self.dm_cfg(slot);
        if (!bye && d.state != DialogState::Confirmed) || d.auth_tries >= 2 {
            return false;
        }
        // The challenged request as sent (method, Request-URI): what the digest covers.
        let challenged = d.request(out.method.clone(), out.seq, "z9hG4bKchallenged", cfg, 70).finish();
        let Some((name, value)) = self.authorizer.0.as_mut().and_then(|a| a(&challenged, resp)) else { return false };
        self.dm(slot).auth_tries += 1;
        if bye {
            self.send_request(slot, Method::Bye, out.purpose.clone(), None, |b| b.push(name, value));
            return true;
        }
        let current = self.dm(slot).session;
        let offer = session::offer(&self.config, current, 0);
        let body = sdp.clone().map(|s| ("application/sdp", s));
        self.send_request(slot, out.method.clone(), Purpose::Modify(sdp.clone()), body, |b| {
            session::write_request(b, offer);
            b.push(name, value);
        });
        true
    }
}
