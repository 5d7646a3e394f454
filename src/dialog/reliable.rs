//! Reliable provisional responses (RFC 3262, "100rel") and UPDATE in early dialogs (RFC 3311 §5),
//! sans-IO like the rest of the dialog layer: every timer runs on the `now` given to the inputs.
//!
//! ```text
//!   UAS (we answer the INVITE)                     UAC (we sent the INVITE)
//!   ---------------------------------------        ----------------------------------------------
//!   18x + Require: 100rel + RSeq: n  ──────►       18x with Require: 100rel, RSeq n:
//!     resent at T1, 2*T1, 4*T1 ... (§3)              first one, or n = last + 1: PRACK, RAck "n c INVITE"
//!     until a PRACK with RAck "n c INVITE"           n <= last: a retransmission, not PRACKed again
//!     (200 to it; a PRACK matching nothing: 481)     n > last + 1: out of order, dropped (§4)
//!     64*T1 without PRACK: 500 to the INVITE
//!   next reliable 1xx waits for the PRACK (§3)
//!   2xx waits while an unPRACKed 1xx carries SDP
//! ```
//!
//! An INVITE that requires 100rel when we have it off gets 420 with `Unsupported: 100rel`
//! (RFC 3261 §8.2.2.3); with [`Rel100::Required`], an INVITE that does not support it gets 421
//! with `Require: 100rel` (RFC 3262 §3).
//!
//! UPDATE (RFC 3311 §5.1) may be sent in an early dialog once the INVITE's offer/answer completed
//! reliably: the answer went in a reliable 1xx (UAC side) or in our PRACKed reliable 1xx (UAS side).
//! The peer's early UPDATE waits for [`Dialogs::accept`] / [`Dialogs::reject`] like a re-INVITE, apart
//! from the INVITE that is still unanswered; an offer while ours is pending gets 491, and one while
//! the peer's previous offer is unanswered gets 500 with Retry-After (§5.2).

use super::set::Dialogs;
use super::state::{Dialog, DialogState, Purpose, Role};
use super::timer::DialogTimer;
use super::{reason_phrase, DialogConfig, DialogError, DialogId, EndReason};
use crate::message::{HeaderName, Message, MessageBuilder, Method};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The option tag of RFC 3262.
pub(crate) const TAG: &str = "100rel";

/// How a user agent uses reliable provisional responses (RFC 3262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rel100 {
    /// Not at all: our INVITEs do not mention 100rel, every 1xx of ours is sent once, and an INVITE
    /// that requires 100rel gets 420 Bad Extension.
    Off,
    /// `Supported: 100rel` in our INVITEs; a reliable 1xx we receive is PRACKed; our own 1xx are
    /// reliable when the INVITE requires it (or when asked with [`Dialogs::progress_reliable`]).
    #[default]
    Supported,
    /// `Require: 100rel` in our INVITEs; every 1xx of ours but 100 is reliable, and an INVITE that
    /// does not support 100rel gets 421 Extension Required.
    Required,
}

impl Rel100 {
    /// `off`, `supported` or `required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rel100::Off => "off",
            Rel100::Supported => "supported",
            Rel100::Required => "required",
        }
    }
}

impl fmt::Display for Rel100 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Rel100 {
    type Err = String;

    fn from_str(s: &str) -> Result<Rel100, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "no" | "none" => Ok(Rel100::Off),
            "supported" | "on" => Ok(Rel100::Supported),
            "required" | "require" => Ok(Rel100::Required),
            other => Err(format!("100rel mode must be off, supported or required, not {other:?}")),
        }
    }
}

/// Whether `msg` lists `tag` in the header `name`.
fn lists(msg: &Message, name: HeaderName, tag: &str) -> bool {
    msg.tokens(name).any(|t| t.is_ok_and(|t| t.eq_ignore_ascii_case(tag)))
}

/// Whether the message requires 100rel.
pub(crate) fn requires(msg: &Message) -> bool {
    lists(msg, HeaderName::Require, TAG)
}

/// Whether the message supports (or requires) 100rel.
pub(crate) fn supports(msg: &Message) -> bool {
    requires(msg) || lists(msg, HeaderName::Supported, TAG)
}

/// The RSeq of a reliable provisional response (RFC 3262 §7.1): 1 to 2^32-1.
fn rseq_of(msg: &Message) -> Option<u32> {
    let v = std::str::from_utf8(msg.header(HeaderName::RSeq)?).ok()?;
    v.trim().parse().ok().filter(|n| *n > 0)
}

/// The RAck of a PRACK (RFC 3262 §7.2): response number, CSeq number, method.
fn rack_of(msg: &Message) -> Option<(u32, u32, Method)> {
    let v = std::str::from_utf8(msg.header(HeaderName::RAck)?).ok()?;
    let mut parts = v.split_ascii_whitespace();
    let rseq = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let method = Method::from_token(parts.next()?)?;
    Some((rseq, seq, method))
}

/// Writes what our INVITE says about 100rel (RFC 3262 §4).
pub(crate) fn write_invite(b: &mut MessageBuilder, mode: Rel100) {
    match mode {
        Rel100::Off => {}
        Rel100::Supported => b.push_with(HeaderName::Supported, |v| {
            v.str(TAG);
        }),
        Rel100::Required => b.push(HeaderName::Require, TAG),
    }
}

/// A reliable 1xx of ours waiting for its PRACK.
#[derive(Debug, Clone)]
struct Pending {
    response: Message,
    rseq: u32,
    invite_seq: u32,
    has_sdp: bool,
    interval: Duration,
    give_up: Instant,
}

/// A reliable 1xx built while another one still waits for its PRACK (§3: one at a time).
#[derive(Debug, Clone)]
struct Queued {
    response: Message,
    rseq: u32,
    invite_seq: u32,
    has_sdp: bool,
}

/// A dialog's 100rel and early-UPDATE state; created on first use.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rel {
    /// UAS: the last RSeq we used. UAC: the last RSeq we PRACKed (valid once `seen`).
    last_rseq: u32,
    /// UAC: a reliable 1xx arrived in this dialog.
    seen: bool,
    pending: Option<Pending>,
    queued: VecDeque<Queued>,
    /// Our 2xx to the INVITE, held until the PRACK of a reliable 1xx that carried SDP (§3).
    held: Option<(Box<Message>, Option<Bytes>)>,
    /// The INVITE's offer/answer completed through reliable 1xx (and PRACK): UPDATE may be used
    /// in the early dialog (RFC 3311 §5.1).
    answered: bool,
    /// The peer's UPDATE with an offer in the early dialog, waiting for our answer.
    update: Option<Box<Message>>,
}

// ===== impl Dialog =====

impl Dialog {
    fn rel_mut(&mut self) -> &mut Rel {
        self.rel.get_or_insert_with(Box::default)
    }

    /// Whether the peer sent us a reliable provisional response in this dialog (UAC).
    pub fn peer_sent_reliable(&self) -> bool {
        self.rel.as_ref().is_some_and(|r| r.seen)
    }

    /// Whether a reliable 1xx of ours is being retransmitted until its PRACK (UAS, early dialog).
    pub fn awaiting_prack(&self) -> bool {
        self.state == DialogState::Early && self.rel.as_ref().is_some_and(|r| r.pending.is_some())
    }

    /// The INVITE's offer/answer completed reliably, so UPDATE may be sent or taken while the
    /// dialog is early (RFC 3311 §5.1).
    pub(crate) fn early_offer_answer_done(&self) -> bool {
        self.state == DialogState::Early
            && self.rel.as_ref().is_some_and(|r| r.answered)
            && self.local_sdp.is_some()
            && self.remote_sdp.is_some()
    }

    /// An offer of the peer that we have not answered (RFC 3311 §5.2): its UPDATE, or its INVITE
    /// unless that was answered reliably in the early dialog.
    pub(crate) fn peer_offer_unanswered(&self) -> bool {
        let update = self.rel.as_ref().is_some_and(|r| r.update.is_some());
        update || (self.awaiting_answer.is_some() && !self.early_offer_answer_done())
    }

    /// The INVITE whose 2xx waits for a PRACK, taken (a CANCEL ends it with 487 instead, §9.2).
    pub(crate) fn take_held_invite(&mut self) -> Option<Box<Message>> {
        self.rel.as_deref_mut().and_then(|r| r.held.take()).map(|(invite, _)| invite)
    }

    /// Our reliable 1xx with an offer (the INVITE had none) still waits for the PRACK's answer.
    pub(crate) fn own_reliable_offer_pending(&self) -> bool {
        let no_offer = self.awaiting_answer.as_ref().is_some_and(|r| r.body().is_empty());
        no_offer && self.rel.as_ref().and_then(|r| r.pending.as_ref()).is_some_and(|p| p.has_sdp)
    }
}

// ===== impl Dialogs =====

impl Dialogs {
    /// The 420 or 421 a new INVITE gets when our 100rel mode and its own do not fit (RFC 3261
    /// §8.2.2.3, RFC 3262 §3); `None` when they fit.
    pub(crate) fn rel_refusal(req: &Message, cfg: &DialogConfig, tag: &str) -> Option<(u16, Message)> {
        let (code, name) = match cfg.rel100 {
            Rel100::Off if requires(req) => (420, HeaderName::Unsupported),
            Rel100::Required if !supports(req) => (421, HeaderName::Require),
            _ => return None,
        };
        Some((code, req.response_to(code, reason_phrase(code), Some(tag)).header(name, TAG).finish()))
    }

    /// Whether the peer's INVITE in dialog `id` supports 100rel (we are its UAS).
    pub fn peer_supports_100rel(&self, id: &DialogId) -> bool {
        let Some(d) = self.get(id) else { return false };
        let invite = d.awaiting_answer.as_deref().or(d.rel.as_ref().and_then(|r| r.held.as_ref().map(|h| &*h.0)));
        self.config.rel100 != Rel100::Off && invite.is_some_and(supports)
    }

    /// Whether a provisional `code` for the INVITE of `id` must go reliably (RFC 3262 §3): the
    /// INVITE requires it, or we require it and the INVITE supports it.
    pub(crate) fn rel_wanted(&self, id: &DialogId, code: u16) -> bool {
        let Some(d) = self.get(id) else { return false };
        let Some(req) = d.awaiting_answer.as_deref() else { return false };
        let mode = self.config.rel100;
        code > 100 && d.role == Role::Uas && mode != Rel100::Off && (requires(req) || (mode == Rel100::Required && supports(req)))
    }

    /// Sends a provisional response (101-199) reliably (RFC 3262 §3): with `Require: 100rel` and
    /// the next RSeq, resent at T1, 2*T1, 4*T1 ... until its PRACK, for at most 64*T1 (then the
    /// INVITE is rejected with 500). While an earlier one waits for its PRACK this one is queued.
    /// [`DialogError::WrongState`] when the peer's INVITE does not support 100rel.
    pub fn progress_reliable(&mut self, id: &DialogId, code: u16, sdp: Option<Bytes>, now: Instant) -> Result<(), DialogError> {
        if !(101..200).contains(&code) {
            return Err(DialogError::BadStatus);
        }
        if !self.peer_supports_100rel(id) {
            return Err(DialogError::WrongState);
        }
        let slot = self.slot_of(id).ok_or(DialogError::UnknownDialog)?;
        self.send_reliable(slot, code, sdp, now)?;
        self.prune();
        Ok(())
    }

    /// Builds and sends (or queues) reliable provisional `code` for the INVITE of `slot`.
    pub(crate) fn send_reliable(&mut self, slot: usize, code: u16, sdp: Option<Bytes>, now: Instant) -> Result<(), DialogError> {
        let first_rseq = 1 + self.ids.below(1 << 30) as u32;
        let t1 = self.config.t1;
        let (d, cfg) = self.dm_cfg(slot);
        if d.state != DialogState::Early || d.role != Role::Uas {
            return Err(DialogError::WrongState);
        }
        let req = d.awaiting_answer.clone().ok_or(DialogError::NothingToAnswer)?;
        let invite_seq = req.cseq().map_err(|_| DialogError::WrongState)?.seq;
        let rel = d.rel_mut();
        rel.last_rseq = if rel.last_rseq == 0 { first_rseq } else { rel.last_rseq.wrapping_add(1).max(1) };
        let rseq = rel.last_rseq;
        let mut b = d.answer(&req, code, cfg);
        b.push(HeaderName::Require, TAG);
        b.push(HeaderName::RSeq, rseq);
        let has_sdp = sdp.is_some();
        let response = match &sdp {
            Some(s) => b.body("application/sdp", s),
            None => b.finish(),
        };
        if let Some(s) = sdp {
            d.local_sdp = Some(s);
        }
        let first = !std::mem::replace(&mut d.provisional_sent, true);
        let id = d.id.clone();
        let rel = d.rel_mut();
        if rel.pending.is_some() {
            rel.queued.push_back(Queued { response, rseq, invite_seq, has_sdp });
        } else {
            rel.pending = Some(Pending { response: response.clone(), rseq, invite_seq, has_sdp, interval: t1, give_up: now + t1 * 64 });
            self.push_transmit(response);
            self.arm(slot, DialogTimer::RetransmitRel, now + t1);
        }
        if first {
            self.push_event(super::Event::Early { id });
        }
        Ok(())
    }

    /// [`DialogTimer::RetransmitRel`]: the reliable 1xx again at twice the last interval, or, after
    /// 64*T1 without PRACK, a 500 to the INVITE (RFC 3262 §3) and the end of the dialog.
    pub(crate) fn on_rel_timer(&mut self, slot: usize, now: Instant) {
        let (d, cfg) = self.dm_cfg(slot);
        let Some(rel) = d.rel.as_deref_mut().filter(|_| d.state == DialogState::Early) else { return };
        let Some(p) = rel.pending.as_mut() else { return };
        if now < p.give_up {
            p.interval *= 2;
            let msg = p.response.clone();
            let next = (now + p.interval).min(p.give_up);
            self.push_transmit(msg);
            self.arm(slot, DialogTimer::RetransmitRel, next);
            return;
        }
        rel.pending = None;
        rel.queued.clear();
        let held = rel.held.take().map(|h| h.0);
        let invite = d.awaiting_answer.take().or(held);
        if let Some(inv) = invite {
            let msg = d.answer(&inv, 500, cfg).finish();
            self.push_transmit(msg);
        }
        self.terminate(slot, EndReason::Rejected(500), now);
    }

    /// A PRACK from the peer (RFC 3262 §3): 200 when its RAck names the reliable 1xx that waits,
    /// which stops its retransmissions, sends the next queued one or the held 2xx; 481 otherwise.
    pub(crate) fn on_prack(&mut self, slot: usize, req: &Message, now: Instant) {
        let rack = rack_of(req);
        let (d, cfg) = self.dm_cfg(slot);
        let matched = d.rel.as_ref().and_then(|r| r.pending.as_ref()).is_some_and(|p| rack == Some((p.rseq, p.invite_seq, Method::Invite)));
        if !matched {
            let msg = d.answer(req, 481, cfg).finish();
            self.push_transmit(msg);
            return;
        }
        let ok = d.answer(req, 200, cfg).finish();
        let offer_in_invite =
            d.awaiting_answer.as_ref().or(d.rel.as_ref().and_then(|r| r.held.as_ref().map(|h| &h.0))).is_some_and(|r| !r.body().is_empty());
        if !req.body().is_empty() {
            // The answer to the offer in our reliable 1xx (the INVITE had none, RFC 3262 §5).
            d.take_remote_sdp(req);
        }
        let rel = d.rel_mut();
        let acked = rel.pending.take();
        if acked.as_ref().is_some_and(|p| p.has_sdp) && (offer_in_invite || !req.body().is_empty()) {
            rel.answered = true;
        }
        self.push_transmit(ok);
        self.disarm(slot, DialogTimer::RetransmitRel);
        let t1 = self.config.t1;
        let rel = self.dm(slot).rel_mut();
        if let Some((invite, sdp)) = rel.held.take() {
            rel.queued.clear();
            self.answer_offer(slot, &invite, sdp, now);
        } else if let Some(q) = rel.queued.pop_front() {
            rel.pending = Some(Pending {
                response: q.response.clone(),
                rseq: q.rseq,
                invite_seq: q.invite_seq,
                has_sdp: q.has_sdp,
                interval: t1,
                give_up: now + t1 * 64,
            });
            self.push_transmit(q.response);
            self.arm(slot, DialogTimer::RetransmitRel, now + t1);
        }
    }

    /// Before our 2xx to the INVITE (RFC 3262 §3): held while a reliable 1xx that carried SDP waits
    /// for its PRACK (returns `None`); otherwise the retransmissions of reliable 1xx stop (a PRACK
    /// that crosses the 2xx still gets its 200; queued ones are never sent) and the request and
    /// SDP come back to be answered now.
    pub(crate) fn hold_2xx(&mut self, slot: usize, req: Box<Message>, sdp: Option<Bytes>) -> Option<(Box<Message>, Option<Bytes>)> {
        let d = self.dm(slot);
        let is_invite = req.method() == Some(&Method::Invite);
        let Some(rel) = d.rel.as_deref_mut().filter(|_| is_invite && d.state == DialogState::Early) else { return Some((req, sdp)) };
        if rel.pending.as_ref().is_some_and(|p| p.has_sdp) {
            rel.held = Some((req, sdp));
            return None;
        }
        rel.queued.clear();
        self.disarm(slot, DialogTimer::RetransmitRel);
        Some((req, sdp))
    }

    /// A provisional response to our INVITE in the early dialog `id` (RFC 3262 §4): a reliable one
    /// in sequence is PRACKed; a retransmission (RSeq not above the last) or one out of order
    /// is not.
    pub(crate) fn on_provisional(&mut self, id: &DialogId, resp: &Message) {
        if self.config.rel100 == Rel100::Off || !requires(resp) {
            return;
        }
        let (Some(rseq), Ok(cseq)) = (rseq_of(resp), resp.cseq()) else { return };
        let Some(slot) = self.slot_of(id) else { return };
        let d = self.dm(slot);
        if d.state != DialogState::Early || d.role != Role::Uac {
            return;
        }
        let rel = d.rel_mut();
        if rel.seen && rseq != rel.last_rseq.wrapping_add(1) {
            return; // a retransmission (already PRACKed), or out of order: wait for the next copy
        }
        rel.seen = true;
        rel.last_rseq = rseq;
        if !resp.body().is_empty() {
            // The answer to our offer (or an offer to answer in the PRACK; we do not make one).
            rel.answered = true;
            d.take_remote_sdp(resp);
        }
        let rack = format!("{rseq} {} INVITE", cseq.seq);
        self.send_request(slot, Method::Prack, Purpose::Other, None, |b| b.push(HeaderName::RAck, rack));
    }

    /// The peer's UPDATE in the early dialog waiting for our answer, taken.
    pub(crate) fn take_early_update(&mut self, slot: usize) -> Option<Box<Message>> {
        self.dm(slot).rel.as_deref_mut().and_then(|r| r.update.take())
    }

    /// Keeps the peer's early UPDATE for the application's answer (its INVITE still waits too).
    pub(crate) fn keep_early_update(&mut self, slot: usize, req: &Message) {
        self.dm(slot).rel_mut().update = Some(Box::new(req.clone()));
    }
}
