//! Hijack versus handover (issue 14 point 7): what the service's admission asks the B2BUA about a
//! request in one of its dialogs that comes from somewhere else than the leg's phone, and the move
//! of that leg to the phone's new address once the request proved it comes from the leg's user.
//!
//! ```text
//!   in-dialog request ─┬─ from the leg's peer ───────────────────────────► the leg's dialog
//!                      └─ from elsewhere ── 407 (RFC 3261 §22.1) ─┬─ authenticated as the leg's
//!                                                                 │  user: peer and relay move,
//!                                                                 │  then the leg's dialog
//!                                                                 └─ anyone else: 403, nothing moves
//!   ACK from elsewhere ── only for a 2xx of ours that waits for it (§13.3.1.4), else dropped
//! ```
//!
//! A leg's user is the authenticated caller for the caller leg and the called user for a callee
//! leg (the one whose registered phone answered).

use super::B2bua;
use crate::dialog::DialogId;
use crate::message::Message;
use crate::relay::{Leg, RelayId};
use std::net::SocketAddr;
use std::time::Instant;

/// Who a call's legs belong to: the callee legs' `P-Asserted-Identity` (RFC 3325 §9.1) and the
/// users a leg's phone must authenticate as to move (issue 14 point 7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parties {
    /// `P-Asserted-Identity` for every callee leg's INVITE.
    pub asserted: Option<String>,
    /// The authenticated caller (the caller leg's user).
    pub caller: Option<String>,
    /// The called user (the callee leg's user).
    pub callee: Option<String>,
}

impl B2bua {
    /// The live call and leg `msg` belongs to (by Call-ID).
    fn leg_of(&self, msg: &Message) -> Option<(u64, Leg)> {
        let (key, leg) = *self.by_call_id.get(msg.call_id().ok()?)?;
        self.calls.contains_key(&key).then_some((key, leg))
    }

    /// The address of the phone of the live leg `msg` belongs to (where its requests come from and
    /// ours go); `None` when no live call has that Call-ID.
    pub fn leg_peer(&self, msg: &Message) -> Option<SocketAddr> {
        self.leg_of(msg)?;
        self.ua.pinned_peer(msg.call_id().ok()?)
    }

    /// The user of the live leg `msg` belongs to (see the module doc), if known.
    pub fn leg_user(&self, msg: &Message) -> Option<&str> {
        let (key, leg) = self.leg_of(msg)?;
        let c = self.calls.get(&key)?;
        match leg {
            Leg::Caller => c.caller_user.as_deref(),
            Leg::Callee => c.callee_user.as_deref(),
        }
    }

    /// Whether `ack` is the ACK our 2xx in its dialog waits for (§13.3.1.4).
    pub fn awaits_ack(&self, ack: &Message) -> bool {
        DialogId::of_request(ack).and_then(|id| self.ua.dialogs_ref().get(&id).map(|d| d.awaiting_ack())).unwrap_or(false)
    }

    /// The phone of the leg `msg` belongs to now signals from `source` (it changed network, and
    /// proved to be the leg's user): our requests on that leg go there, and the relay ranks
    /// media from its IP as the phone's. The re-INVITE that usually follows brings the new SDP
    /// address, against which the relay learns the phone's new media source.
    pub fn move_peer(&mut self, msg: &Message, source: SocketAddr, _now: Instant) {
        let Some((key, leg)) = self.leg_of(msg) else { return };
        let Some((call_id, _)) = self.by_call_id.get_key_value(msg.call_id().unwrap_or_default()) else { return };
        let call_id = call_id.clone();
        let from = self.ua.pinned_peer(&call_id);
        self.ua.pin_peer(call_id, source);
        self.relay.set_peer_ip(RelayId(key), leg, Some(source.ip()));
        if let Some(c) = self.calls.get_mut(&key) {
            match leg {
                Leg::Caller => c.caller_peer = source,
                Leg::Callee => c.callee_peer = Some(source),
            }
        }
        tracing::info!(call = key, ?leg, from = ?from, to = %source, "phone moved: leg follows it");
        if self.calls.get(&key).is_some_and(|c| c.saved) {
            self.state_put(key);
        }
    }
}
