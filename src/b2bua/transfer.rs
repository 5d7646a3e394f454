//! Call transfer in the B2BUA (RFC 3515 REFER, RFC 3892 Referred-By, RFC 5589 §6), handled as a
//! PBX does: a REFER from either leg is never passed on; the B2BUA itself calls the target and
//! connects the remaining party to it.
//!
//! ```text
//!   referrer ── REFER Refer-To: T ──► B2BUA: 202, NOTIFY 100 (implicit subscription, §2.4.4;
//!                                     the next NOTIFY is the final one)
//!                                     the service routes T as an INVITE from the referrer's user
//!                                     (TransferAsk) ─┬─ refused ─► final NOTIFY 403/404/480
//!                                                    └─ targets ─► INVITE T on the referrer's
//!                                        relay ports, From and P-Asserted-Identity the remaining
//!                                        party's, Referred-By the referrer's (RFC 3892)
//!   T answers ──► NOTIFY 200 (final) and BYE to the referrer; the new dialog takes the
//!                 referrer's place in the call; the remaining party is re-INVITEd with T's
//!                 answer (rewritten to its own relay ports), so media flows remaining ⇄ T
//!   T fails ────► final NOTIFY with T's status; the call goes on (or ends, if the referrer
//!                 already hung up)
//! ```
//!
//! The remaining party hanging up during the transfer cancels the new INVITE and ends the call as
//! usual. Attended transfer (Refer-To with Replaces, RFC 3891) is refused with a final NOTIFY 501.

use super::end::{CallEnd, Cause, Party};
use super::sdp;
use super::{B2bua, Phase};
use crate::application::Io;
use crate::dialog::{refer_target, CallParams, DialogId, EndReason, Event};
use crate::message::Message;
use crate::proxy::Target;
use crate::relay::{Leg, RelayId};
use crate::ua::log_unsent;
use std::net::SocketAddr;
use std::time::Instant;

/// A REFER the B2BUA accepted: the service routes `refer_to` as it would an INVITE from the
/// referrer's user, then answers with [`B2bua::start_transfer`] or [`B2bua::refuse_transfer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferAsk {
    /// The call.
    pub call: u64,
    /// The Refer-To URI (without headers).
    pub refer_to: String,
    /// The user of the referrer's leg (the authenticated caller, or the called user).
    pub referrer: Option<String>,
    /// The user of the remaining party's leg (the transferee).
    pub transferee: Option<String>,
    /// The referrer's address as its leg knows it (From of the caller's INVITE, or its To for
    /// the callee), for Referred-By when it has no user (auth off).
    pub referrer_address: String,
}

/// Identities the new leg carries, from the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferParties {
    /// `P-Asserted-Identity` of the transferee (RFC 3325).
    pub asserted: Option<String>,
    /// `Referred-By`: the referrer (RFC 3892).
    pub referred_by: Option<String>,
    /// The user the target leg belongs to (the called user).
    pub target_user: Option<String>,
}

/// A transfer in progress in one call.
#[derive(Debug)]
pub(super) struct Transfer {
    /// The leg whose phone sent the REFER; the new dialog takes its place.
    leg: Leg,
    referrer: DialogId,
    /// The Refer-To URI: the new leg's To.
    refer_to: String,
    /// The referrer hung up already (many phones BYE right after the 202).
    referrer_gone: bool,
    /// The INVITE to the target (pending id), once the service routed it.
    pending: Option<DialogId>,
    target_dest: Option<SocketAddr>,
    target_user: Option<String>,
}

impl B2bua {
    /// The next REFER for the service to route (see [`TransferAsk`]).
    pub fn poll_transfer(&mut self) -> Option<TransferAsk> {
        self.transfer_asks.pop_front()
    }

    fn notify(&mut self, referrer: &DialogId, code: u16, reason: &str, last: bool, now: Instant) {
        log_unsent(self.ua.dialogs().send_refer_notify(referrer, code, reason, last, now), "NOTIFY to the referrer", referrer);
    }

    /// A REFER from the phone of dialog `id` (answered 202 by the dialog layer).
    pub(super) fn on_refer(&mut self, io: &mut Io<'_>, id: DialogId, request: &Message, now: Instant) {
        let Some((key, leg)) = self.by_call_id.get(&*id.call_id).copied() else { return };
        let busy = self.transfers.contains_key(&key);
        let Some(c) = self.calls.get(&key).filter(|c| c.phase == Phase::Up && c.reoffer_from.is_none() && !busy) else {
            self.notify(&id, 491, "Request Pending", true, now);
            return;
        };
        if c.dialog(leg).is_none_or(|d| *d != id) {
            self.notify(&id, 481, "Call/Transaction Does Not Exist", true, now);
            return;
        }
        let refer_to = match refer_target(request) {
            Ok(t) => t,
            Err((code, reason)) => return self.notify(&id, code, reason, true, now),
        };
        let user = |l: Leg| if l == Leg::Caller { c.caller_user.clone() } else { c.callee_user.clone() };
        let referrer_address = if leg == Leg::Caller { c.record.from.clone() } else { c.record.to.clone() };
        let ask = TransferAsk { call: key, refer_to, referrer: user(leg), transferee: user(leg.other()), referrer_address };
        tracing::info!(call = %c.record.id, ?leg, refer_to = %ask.refer_to, "REFER: transfer asked");
        self.notify(&id, 100, "Trying", false, now);
        self.transfers.insert(
            key,
            Transfer {
                leg,
                referrer: id,
                refer_to: ask.refer_to.clone(),
                referrer_gone: false,
                pending: None,
                target_dest: None,
                target_user: None,
            },
        );
        self.transfer_asks.push_back(ask);
        self.drain(io, now);
    }

    /// The service refused the transfer of `call` (the referrer could not call the target):
    /// final NOTIFY with `code`; the call goes on.
    pub fn refuse_transfer(&mut self, io: &mut Io<'_>, call: u64, code: u16, reason: &str, now: Instant) {
        let Some(t) = self.transfers.remove(&call) else { return };
        tracing::info!(call, code, "transfer refused");
        if t.referrer_gone {
            self.end_both(io, call, CallEnd::new(Cause::Status(code), Party::Service), now);
        } else {
            self.notify(&t.referrer, code, reason, true, now);
        }
        self.drain(io, now);
    }

    /// Calls `targets[0]` for the transfer of `call`, offering the remaining party's session on
    /// the referrer's relay ports.
    pub fn start_transfer(&mut self, io: &mut Io<'_>, call: u64, targets: &[Target], parties: TransferParties, now: Instant) {
        let Some((leg, refer_to)) = self.transfers.get(&call).map(|t| (t.leg, t.refer_to.clone())) else { return };
        let Some(target) = targets.first() else { return self.refuse_transfer(io, call, 480, "Temporarily Unavailable", now) };
        let Some(c) = self.calls.get_mut(&call) else { return };
        let Some(remaining) = c.dialog(leg.other()).cloned() else { return };
        let Some(session) = self.ua.dialogs_ref().get(&remaining).and_then(|d| d.remote_sdp().cloned()) else {
            return self.refuse_transfer(io, call, 488, "Not Acceptable Here", now);
        };
        let Some(offer) = c.sdp_for(leg, &session) else { return self.refuse_transfer(io, call, 488, "Not Acceptable Here", now) };
        // The new leg speaks for the remaining party: the From of its own dialog with us.
        let from = if leg == Leg::Caller { c.record.to.clone() } else { c.record.from.clone() };
        let params = CallParams {
            from,
            to: format!("<{refer_to}>"),
            target: Some(target.uri.clone()),
            sdp: Some(offer),
            asserted_identity: parties.asserted,
            referred_by: parties.referred_by,
            ..CallParams::default()
        };
        // Sticky like the first callee leg: the new leg maps where the remaining one does.
        match self.ua.dialogs().invite_sticky(params, &remaining.call_id, now) {
            Ok(pending) => {
                self.ua.pin_peer(pending.call_id.clone(), target.dest);
                self.by_call_id.insert(pending.call_id.clone(), (call, leg));
                c.call_ids.push(pending.call_id.clone());
                if let Some(t) = self.transfers.get_mut(&call) {
                    t.pending = Some(pending);
                    t.target_dest = Some(target.dest);
                    t.target_user = parties.target_user;
                }
                tracing::info!(call = %c.record.id, target = %target.uri, "calling the transfer target");
            }
            Err(e) => {
                tracing::debug!(error = %e, "transfer target not called");
                return self.refuse_transfer(io, call, 500, "Server Internal Error", now);
            }
        }
        self.drain(io, now);
    }

    /// Dialog events of a transfer: the new leg's progress, and the ends of the referrer's and the
    /// remaining party's dialogs while it runs. Returns true when the event was the transfer's.
    pub(super) fn transfer_event(&mut self, io: &mut Io<'_>, ev: &Event, now: Instant) -> bool {
        let id = match ev {
            Event::Early { id } | Event::Established { id } | Event::Terminated { id, .. } => id,
            _ => return false,
        };
        let Some((key, leg)) = self.by_call_id.get(&*id.call_id).copied() else { return false };
        // On the caller's side only a transfer makes a dialog of ours as UAC.
        let transfer_leg = leg == Leg::Caller && self.ua.dialogs_ref().get(id).is_some_and(|d| d.role == crate::dialog::Role::Uac);
        if matches!(ev, Event::Established { .. }) && transfer_leg && !self.calls.contains_key(&key) {
            // A transfer target that answered after its call ended (its CANCEL came too early,
            // §9.1, or crossed the 200): nobody to connect it to.
            log_unsent(self.ua.dialogs().send_bye(id, now), "BYE to a transfer target of an ended call", id);
            return true;
        }
        let Some(t) = self.transfers.get_mut(&key) else { return false };
        let is_new = t.pending.as_ref().is_some_and(|p| p.call_id == id.call_id);
        match ev {
            // The referrer hears 100 and the final status only (RFC 3515 §2.4.5 needs no more):
            // a referrer that hangs up after the 202 gets no NOTIFY racing its BYE.
            Event::Early { .. } if is_new => true,
            Event::Established { id } if is_new => {
                self.complete_transfer(io, key, id, now);
                true
            }
            Event::Terminated { reason, .. } if is_new => {
                let code = match *reason {
                    EndReason::Rejected(c) if (300..700).contains(&c) => c,
                    EndReason::Cancelled => 487,
                    EndReason::Timeout => 408,
                    _ => 500,
                };
                tracing::info!(call = key, code, "transfer target did not answer");
                self.refuse_transfer(io, key, code, "Transfer Failed", now);
                true
            }
            Event::Terminated { .. } if t.referrer == *id => {
                // The referrer left after the 202 (RFC 5589 §6.1 allows it): the call waits for
                // the target instead of ending.
                t.referrer_gone = true;
                true
            }
            Event::Terminated { .. } => {
                // The remaining party hung up: the transfer is moot.
                if let Some(p) = self.transfers.remove(&key).and_then(|t| t.pending) {
                    log_unsent(self.ua.cancel(io.endpoint, &p, now), "CANCEL of the transfer target", &p);
                }
                false
            }
            _ => false,
        }
    }

    /// Call `key` ends: a transfer still in progress goes with it (its INVITE cancelled).
    pub(super) fn drop_transfer(&mut self, io: &mut Io<'_>, key: u64, now: Instant) {
        if let Some(p) = self.transfers.remove(&key).and_then(|t| t.pending) {
            log_unsent(self.ua.cancel(io.endpoint, &p, now), "CANCEL of the transfer target", &p);
        }
    }

    /// The target answered: it takes the referrer's place; the referrer gets the final NOTIFY
    /// and a BYE; the remaining party a re-INVITE towards the target's media.
    fn complete_transfer(&mut self, io: &mut Io<'_>, key: u64, new: &DialogId, now: Instant) {
        let Some(t) = self.transfers.remove(&key) else { return };
        let answer = self.ua.dialogs_ref().get(new).and_then(|d| d.remote_sdp().cloned());
        let Some(c) = self.calls.get_mut(&key) else { return };
        let leg = t.leg;
        match leg {
            Leg::Caller => {
                c.caller = new.clone();
                if let Some(d) = t.target_dest {
                    c.caller_peer = d;
                }
                c.caller_user = t.target_user.clone();
            }
            Leg::Callee => {
                c.callee = Some(new.clone());
                c.callee_peer = t.target_dest.or(c.callee_peer);
                c.callee_user = t.target_user.clone();
            }
        }
        let remaining = c.dialog(leg.other()).cloned();
        let reoffer = answer.as_ref().and_then(|a| c.sdp_for(leg.other(), a));
        if let Some(s) = answer.as_deref().and_then(sdp::audio_of) {
            self.relay.set_peer_ip(RelayId(key), leg, t.target_dest.map(|d| d.ip()));
            self.relay.set_remote(RelayId(key), leg, s.remote, now);
        }
        if !t.referrer_gone {
            self.notify(&t.referrer, 200, "OK", true, now);
            log_unsent(self.ua.dialogs().send_bye(&t.referrer, now), "BYE to the referrer", &t.referrer);
        }
        // The remaining party learns the target's session (on its own relay ports, or the
        // target's address without the relay); its answer updates the relay (`on_answered`).
        if let (Some(remaining), Some(body)) = (remaining, reoffer) {
            match self.ua.dialogs().send_reinvite(&remaining, body, now) {
                Ok(()) => {
                    if let Some(c) = self.calls.get_mut(&key) {
                        c.reoffer_from = Some(leg);
                    }
                }
                Err(e) => tracing::debug!(call = key, error = %e, "no re-INVITE to the remaining party"),
            }
        }
        tracing::info!(call = key, ?leg, "transfer done");
        self.state_put(key);
        self.drain(io, now);
    }
}
