//! Commands from the application: start, answer, modify and end calls.

use super::build::{OurVia, ALLOW};
use super::id::DialogId;
use super::session;
use super::set::{CallParams, Dialogs, UacInvite};
use super::state::{DialogState, Purpose, Role};
use super::{DialogError, EndReason, Event};
use crate::message::{HeaderName, Message, Method, NameAddr};
use bytes::Bytes;
use std::time::Instant;

/// The host part of a `sent-by`, for Call-IDs.
fn host_of(sent_by: &str) -> &str {
    match sent_by.find(']') {
        Some(end) => &sent_by[..=end],
        None => sent_by.split(':').next().unwrap_or(sent_by),
    }
}

/// Checks the addresses of a new call; returns the Request-URI.
fn check_params(p: &CallParams) -> Result<String, DialogError> {
    let from = NameAddr::parse(&p.from).map_err(|_| DialogError::BadAddress)?;
    let to = NameAddr::parse(&p.to).map_err(|_| DialogError::BadAddress)?;
    if from.tag().is_some() || to.tag().is_some() {
        return Err(DialogError::BadAddress);
    }
    for r in &p.routes {
        NameAddr::parse_name_addr(r).map_err(|_| DialogError::BadAddress)?;
    }
    match &p.target {
        Some(t) => crate::message::Uri::parse(t).map(|_| t.clone()).map_err(|_| DialogError::BadAddress),
        None => Ok(to.uri_text.to_string()),
    }
}

// ===== impl Dialogs: commands =====

impl Dialogs {
    /// Sends an INVITE (RFC 3261 §13.2.1) with a new Call-ID and From tag, our Contact, session
    /// timer headers (RFC 4028 §7.1) and the SDP offer. Returns the pending id (empty remote tag)
    /// that names the INVITE until dialogs appear ([`Event::Early`], [`Event::Established`]).
    pub fn invite(&mut self, params: CallParams, now: Instant) -> Result<DialogId, DialogError> {
        let call_id = self.ids.call_id(host_of(&self.config.sent_by));
        self.invite_with_call_id(params, call_id, now)
    }

    /// [`Dialogs::invite`] with a Call-ID that maps to the same worker and instance as
    /// `caller_call_id` ([`crate::cluster::sticky_call_id`], 64 fresh random bits): the B2BUA's
    /// callee leg, so both legs of a call land where the caller's does (issue 16 point 1).
    pub fn invite_sticky(&mut self, params: CallParams, caller_call_id: &str, now: Instant) -> Result<DialogId, DialogError> {
        let call_id = crate::cluster::sticky_call_id(caller_call_id, self.ids.next_u64(), host_of(&self.config.sent_by));
        self.invite_with_call_id(params, call_id, now)
    }

    fn invite_with_call_id(&mut self, params: CallParams, call_id: String, _now: Instant) -> Result<DialogId, DialogError> {
        // Checked once here: the first INVITE of a call is built from the checked target (a load
        // run places thousands of calls a second; the check parses From and To).
        let target = self.checked_target(&params)?;
        let tag = self.ids.tag();
        let request = self.write_invite(&target, &params, &call_id, &tag, 1, 0, None);
        let id = DialogId::new(&call_id, &tag, "");
        let inv = UacInvite {
            params,
            request: Some(Box::new(request.clone())),
            seq: 1,
            cancelled: false,
            answered: false,
            min_se_seen: 0,
            remote_tags: Vec::new(),
            credentials: None,
            auth_attempts: 0,
        };
        self.invites.insert(id.clone(), Box::new(inv));
        self.push_transmit(request);
        Ok(id)
    }

    /// Our INVITE `key` as sent (rebuilt from its parameters if it was dropped after the answer),
    /// for dialogs its responses create.
    pub(crate) fn invite_request(&mut self, key: &DialogId) -> Option<Message> {
        let inv = self.invites.get(key)?;
        if let Some(r) = &inv.request {
            return Some(Message::clone(r));
        }
        let (params, seq, min, creds) = (inv.params.clone(), inv.seq, inv.min_se_seen, inv.credentials.clone());
        self.build_invite(&params, &key.call_id, &key.local_tag, seq, min, creds.as_ref()).ok()
    }

    /// Writes an initial INVITE; `min_se` is the largest Min-SE a 422 asked for (0 if none).
    pub(crate) fn build_invite(
        &mut self,
        p: &CallParams,
        call_id: &str,
        tag: &str,
        seq: u32,
        min_se: u32,
        credentials: Option<&(HeaderName, String)>,
    ) -> Result<Message, DialogError> {
        let target = check_params(p)?;
        Ok(self.write_invite(&target, p, call_id, tag, seq, min_se, credentials))
    }

    /// [`check_params`], remembered for the last From and To checked without routes or target: a
    /// load run starts every call from the same addresses, and the check parses both (about 1,900
    /// instructions a call). The answer is the same for the same text, so nothing else changes.
    fn checked_target(&mut self, p: &CallParams) -> Result<std::sync::Arc<str>, DialogError> {
        let plain = p.routes.is_empty() && p.target.is_none();
        if let Some((from, to, target)) = &self.checked {
            if plain && **from == *p.from && **to == *p.to {
                return Ok(target.clone());
            }
        }
        let target: std::sync::Arc<str> = check_params(p)?.into();
        if plain {
            self.checked = Some((p.from.as_str().into(), p.to.as_str().into(), target.clone()));
        }
        Ok(target)
    }

    /// [`Dialogs::build_invite`] after [`check_params`] gave `target`, the Request-URI.
    #[allow(clippy::too_many_arguments)]
    fn write_invite(
        &mut self,
        target: &str,
        p: &CallParams,
        call_id: &str,
        tag: &str,
        seq: u32,
        min_se: u32,
        credentials: Option<&(HeaderName, String)>,
    ) -> Message {
        let branch = self.ids.branch();
        let cfg = &self.config;
        let mut b = Message::request(Method::Invite, target);
        // `push_with`: the bytes `push` with `format_args!` writes, without `core::fmt`.
        b.push_with(HeaderName::Via, |v| OurVia(cfg, &branch).write(v));
        b.push_with(HeaderName::MaxForwards, |v| {
            v.num(p.max_forwards.unwrap_or(70).into());
        });
        for r in &p.routes {
            b.push_with(HeaderName::Route, |v| {
                v.str(r);
            });
        }
        b.push_with(HeaderName::From, |v| {
            v.str(&p.from).str(";tag=").str(tag);
        });
        b.push_with(HeaderName::To, |v| {
            v.str(&p.to);
        });
        b.push_with(HeaderName::CallId, |v| {
            v.str(call_id);
        });
        b.push_with(HeaderName::CSeq, |v| {
            v.num(seq.into()).str(" INVITE");
        });
        b.push_with(HeaderName::Contact, |v| {
            v.str("<").str(&cfg.contact).str(">");
        });
        b.push_with(HeaderName::Allow, |v| {
            v.str(ALLOW);
        });
        if let Some(pai) = &p.asserted_identity {
            b.push_raw(HeaderName::Other, "P-Asserted-Identity", pai.as_bytes());
        }
        if let Some(by) = &p.referred_by {
            b.push(HeaderName::ReferredBy, by);
        }
        if let Some((name, value)) = credentials {
            b.push(*name, value);
        }
        super::reliable::write_invite(&mut b, cfg.rel100);
        session::write_request(&mut b, session::offer(cfg, None, min_se));
        match &p.sdp {
            Some(sdp) => b.body("application/sdp", sdp),
            None => b.finish(),
        }
    }

    /// Notes that the application cancels our INVITE `id` (the pending id). Send the CANCEL itself
    /// through the transaction layer (§9.1); when the INVITE then fails (487) its dialogs end with
    /// [`EndReason::Cancelled`], and a 2xx that crossed the CANCEL is ACKed and ended with BYE.
    pub fn cancel(&mut self, id: &DialogId, _now: Instant) -> Result<(), DialogError> {
        let inv = self.invites.get_mut(id).ok_or(DialogError::UnknownDialog)?;
        if inv.answered {
            return Err(DialogError::WrongState);
        }
        inv.cancelled = true;
        Ok(())
    }

    /// Sends `180 Ringing` for the peer's INVITE, creating the early dialog (§12.1.1).
    pub fn ring(&mut self, id: &DialogId, now: Instant) -> Result<(), DialogError> {
        self.progress(id, 180, None, now)
    }

    /// Sends a provisional response (101-199) with our tag, Contact and optional early-media SDP
    /// for the peer's INVITE (§13.3.1.1), creating the early dialog. It goes reliably (RFC 3262)
    /// when the INVITE requires 100rel, or we do and the INVITE supports it.
    pub fn progress(&mut self, id: &DialogId, code: u16, sdp: Option<Bytes>, now: Instant) -> Result<(), DialogError> {
        if !(101..200).contains(&code) {
            return Err(DialogError::BadStatus);
        }
        let slot = self.slot_of(id).ok_or(DialogError::UnknownDialog)?;
        if self.rel_wanted(id, code) {
            let sent = self.send_reliable(slot, code, sdp, now);
            self.prune();
            return sent;
        }
        let (d, cfg) = self.dm_cfg(slot);
        if d.state != DialogState::Early || d.role != Role::Uas {
            return Err(DialogError::WrongState);
        }
        let req = d.awaiting_answer.clone().ok_or(DialogError::NothingToAnswer)?;
        let b = d.answer(&req, code, cfg);
        let msg = match sdp {
            Some(s) => b.body("application/sdp", &s),
            None => b.finish(),
        };
        let first = !std::mem::replace(&mut d.provisional_sent, true);
        self.push_transmit(msg);
        if first {
            self.push_event(Event::Early { id: id.clone() });
        }
        Ok(())
    }

    /// Accepts what the peer waits on with a 200 carrying `sdp`: its INVITE (the dialog becomes
    /// Confirmed, §13.3.1.4), or a re-INVITE / UPDATE offer ([`Event::Reoffer`]). A 2xx to an INVITE
    /// is retransmitted until the ACK comes.
    pub fn accept(&mut self, id: &DialogId, sdp: Option<Bytes>, now: Instant) -> Result<(), DialogError> {
        let slot = self.slot_of(id).ok_or(DialogError::UnknownDialog)?;
        // The peer's UPDATE in the early dialog is answered first (RFC 3311 §5.2).
        if let Some(update) = self.take_early_update(slot) {
            self.answer_offer(slot, &update, sdp, now);
            self.prune();
            return Ok(());
        }
        let req = self.dm(slot).awaiting_answer.take().ok_or(DialogError::NothingToAnswer)?;
        // RFC 3262 §3: the 2xx may wait for the PRACK of a reliable 1xx that carried SDP.
        if let Some((req, sdp)) = self.hold_2xx(slot, req, sdp) {
            self.answer_offer(slot, &req, sdp, now);
        }
        self.prune();
        Ok(())
    }

    /// Rejects what the peer waits on with `code` (300-699). For its INVITE the dialog ends with
    /// [`EndReason::Rejected`]; a rejected re-INVITE or UPDATE leaves the session as it was (§14.2).
    pub fn reject(&mut self, id: &DialogId, code: u16, now: Instant) -> Result<(), DialogError> {
        if !(300..700).contains(&code) {
            return Err(DialogError::BadStatus);
        }
        let slot = self.slot_of(id).ok_or(DialogError::UnknownDialog)?;
        let update = self.take_early_update(slot);
        let (d, cfg) = self.dm_cfg(slot);
        if let Some(update) = update {
            // The peer's early UPDATE (RFC 3311 §5.2): refused, the INVITE still waits.
            let msg = d.answer(&update, code, cfg).finish();
            self.push_transmit(msg);
            return Ok(());
        }
        let req = d.awaiting_answer.take().ok_or(DialogError::NothingToAnswer)?;
        let msg = d.answer(&req, code, cfg).finish();
        let initial = d.state == DialogState::Early;
        self.push_transmit(msg);
        if initial {
            self.terminate(slot, EndReason::Rejected(code), now);
        }
        self.prune();
        Ok(())
    }

    /// Ends a confirmed dialog with BYE (§15.1.1) and [`EndReason::Bye`]`(Local)`. A request of the
    /// peer still waiting is answered 487 first. As UAS before the ACK of our 2xx, the BYE waits for
    /// that ACK (§15). Early dialogs end with [`Dialogs::cancel`] (UAC) or [`Dialogs::reject`] (UAS).
    pub fn send_bye(&mut self, id: &DialogId, now: Instant) -> Result<(), DialogError> {
        self.send_bye_with_reason(id, None, now)
    }

    /// Like [`Dialogs::send_bye`], with a Reason header (RFC 3326) saying why, e.g.
    /// `SIP;cause=408;text="RTP timeout"`.
    pub fn send_bye_with_reason(&mut self, id: &DialogId, reason: Option<&str>, now: Instant) -> Result<(), DialogError> {
        let slot = self.slot_of(id).ok_or(DialogError::UnknownDialog)?;
        let (d, cfg) = self.dm_cfg(slot);
        if d.state != DialogState::Confirmed {
            return Err(DialogError::WrongState);
        }
        if let Some(req) = d.awaiting_answer.take() {
            let msg = d.answer(&req, 487, cfg).finish();
            self.push_transmit(msg);
        }
        if self.dm(slot).unacked.is_some() {
            self.dm(slot).bye_after_ack = true;
            return Ok(());
        }
        match reason {
            Some(r) => {
                if self.dm(slot).state != DialogState::Terminated {
                    self.send_request(slot, Method::Bye, Purpose::Other, None, |b| b.push(crate::message::HeaderName::Reason, r));
                    self.terminate(slot, EndReason::Bye(super::Side::Local), now);
                }
            }
            None => self.bye(slot, EndReason::Bye(super::Side::Local), now),
        }
        self.prune();
        Ok(())
    }

    /// Sends a re-INVITE with a new SDP offer (§14.1), e.g. `a=sendonly` to hold and `a=sendrecv`
    /// to resume. Not while another INVITE or offer is in progress in either direction.
    pub fn send_reinvite(&mut self, id: &DialogId, sdp: Bytes, now: Instant) -> Result<(), DialogError> {
        self.modify(id, Method::Invite, Some(sdp), now)
    }

    /// Sends an UPDATE (RFC 3311), with a new offer or (`None`) as a bare session refresh.
    pub fn send_update(&mut self, id: &DialogId, sdp: Option<Bytes>, now: Instant) -> Result<(), DialogError> {
        self.modify(id, Method::Update, sdp, now)
    }

    fn modify(&mut self, id: &DialogId, method: Method, sdp: Option<Bytes>, _now: Instant) -> Result<(), DialogError> {
        let slot = self.slot_of(id).ok_or(DialogError::UnknownDialog)?;
        let d = self.dm(slot);
        // UPDATE also in an early dialog whose offer/answer completed reliably (RFC 3311 §5.1).
        if d.state != DialogState::Confirmed && !(method == Method::Update && d.early_offer_answer_done()) {
            return Err(DialogError::WrongState);
        }
        let busy = match method {
            Method::Invite => d.invite_in_progress() || d.offer_pending(),
            _ => sdp.is_some() && (d.offer_pending() || d.peer_offer_unanswered()),
        };
        if busy {
            return Err(DialogError::RequestPending);
        }
        let current = d.session;
        let offer = session::offer(&self.config, current, 0);
        let body = sdp.clone().map(|s| ("application/sdp", s));
        self.send_request(slot, method, Purpose::Modify(sdp), body, |b| session::write_request(b, offer));
        Ok(())
    }

    /// Sends an in-dialog OPTIONS (§11); its answer changes nothing unless it is 408/481.
    pub fn send_options(&mut self, id: &DialogId, now: Instant) -> Result<(), DialogError> {
        self.send_plain(id, Method::Options, None, now)
    }

    /// Sends an INFO (RFC 6086) with `body` of type `content_type`.
    pub fn send_info(&mut self, id: &DialogId, content_type: &str, body: Bytes, now: Instant) -> Result<(), DialogError> {
        self.send_plain(id, Method::Info, Some((content_type, body)), now)
    }

    fn send_plain(&mut self, id: &DialogId, method: Method, body: Option<(&str, Bytes)>, _now: Instant) -> Result<(), DialogError> {
        let slot = self.slot_of(id).ok_or(DialogError::UnknownDialog)?;
        if self.dm(slot).state != DialogState::Confirmed {
            return Err(DialogError::WrongState);
        }
        self.send_request(slot, method, Purpose::Other, body, |_| {});
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::DialogConfig;

    fn params(from: &str, to: &str) -> CallParams {
        CallParams { from: from.into(), to: to.into(), ..CallParams::default() }
    }

    /// The remembered check answers as the check itself: each call's Request-URI is its own To,
    /// a bad address is refused even right after a good one, and routes or a target are checked.
    #[test]
    fn remembered_check_gives_each_call_its_own_target() {
        let mut d = Dialogs::new(DialogConfig::default());
        let now = Instant::now();
        let (a, b) = (params("<sip:alice@192.0.2.1>", "<sip:echo@127.0.0.1:5070>"), params("<sip:alice@192.0.2.1>", "<sip:bob@192.0.2.7>"));
        for p in [&a, &a, &b, &a, &b] {
            d.invite(p.clone(), now).expect("sent");
            let sent = d.poll_transmit().expect("the INVITE");
            assert_eq!(sent.request_uri_str(), Some(&p.to[1..p.to.len() - 1]));
        }
        assert_eq!(d.invite(params("<sip:alice@192.0.2.1>;tag=x", &a.to), now), Err(DialogError::BadAddress));
        assert_eq!(d.invite(params(&a.from, "<sip:bob@>"), now), Err(DialogError::BadAddress));
        let routed = CallParams { routes: vec!["<sip:nope".into()], ..a.clone() };
        assert_eq!(d.invite(routed, now), Err(DialogError::BadAddress));
        let targeted = CallParams { target: Some("sip:carol@192.0.2.8".into()), ..a.clone() };
        d.invite(targeted, now).expect("sent");
        assert_eq!(d.poll_transmit().expect("the INVITE").request_uri_str(), Some("sip:carol@192.0.2.8"));
        d.invite(a.clone(), now).expect("sent");
        assert_eq!(d.poll_transmit().expect("the INVITE").request_uri_str(), Some("sip:echo@127.0.0.1:5070"));
    }
}
