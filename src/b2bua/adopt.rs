//! Failover that keeps calls (issue 17 point 4): this instance takes on the established calls of
//! an instance that the published membership dropped.
//!
//! ```text
//!   membership N (owner gone) ──► I/O layer: judge each saved call (cluster::failover),
//!                                 compare-and-set owner/epoch in the store for those to adopt
//!                               ──► B2bua::follow(epoch, won states, lost ids)
//!                                     won: dialogs rebuilt, fresh relay ports, re-INVITE both
//!                                          phones with SDP naming them (RFC 3261 §14.1), so media
//!                                          resumes; the answers set the relay's remote addresses
//!                                     lost: calls another instance now owns: dropped from memory,
//!                                          nothing sent, nothing written
//! ```
//!
//! The re-INVITEs carry this instance's Contact, so each phone's remote target moves here (§12.2,
//! target refresh) and its later in-dialog requests (BYE) are served by the adopter. An adopted
//! call ended by a BYE is recorded `failover`.

use super::call::SavedCall;
use super::B2bua;
use crate::application::Io;
use crate::cluster::failover::Stamp;
use crate::records::CallState;
use crate::relay::{Leg, RelayId};
use crate::ua::log_unsent;
use bytes::Bytes;
use serde::Deserialize;
use std::time::Instant;

/// This instance's identity in the cluster.
#[derive(Debug, Clone, Default)]
pub(super) struct ClusterId {
    /// Our member URI (`serve --member`), saved as the owner of our calls.
    pub(super) member: Option<String>,
    /// The latest membership epoch followed: new calls are taken at it.
    pub(super) epoch: u64,
}

#[derive(Deserialize)]
struct StampView {
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    epoch: u64,
    caller: LegView,
}

#[derive(Deserialize)]
struct LegView {
    dialog: DialogView,
}

#[derive(Deserialize)]
struct DialogView {
    call_id: String,
}

/// The ownership of a saved call (`None` when its data is not a saved call).
pub fn stamp(state: &CallState) -> Option<Stamp> {
    let v: StampView = serde_json::from_str(&state.data).ok()?;
    Some(Stamp { caller_call_id: v.caller.dialog.call_id, owner: v.owner, epoch: v.epoch })
}

/// The saved call `data` with its owner and epoch replaced: what the compare-and-set writes.
pub fn restamp(data: &str, owner: &str, epoch: u64) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(data).ok()?;
    let o = v.as_object_mut()?;
    o.insert("owner".into(), owner.into());
    o.insert("epoch".into(), epoch.into());
    serde_json::to_string(&v).ok()
}

impl B2bua {
    /// This instance's member URI: saved as the owner of its calls (issue 17 point 2), and the
    /// membership epoch it starts at.
    pub fn set_member(&mut self, member: String, epoch: u64) {
        self.cluster = ClusterId { member: Some(member), epoch };
    }

    /// A newer membership (epoch `epoch`) was published. `adopted`: calls this instance won by
    /// compare-and-set (already stamped with it as owner); they are taken on and both phones
    /// re-INVITEd to our relay. `lost`: ids of calls the store says another instance owns; any we
    /// still hold is dropped without a word (its owner serves it). Returns how many were adopted.
    pub fn follow(&mut self, io: &mut Io<'_>, epoch: u64, adopted: &[CallState], lost: &[String], now: Instant) -> usize {
        self.wall = io.wall_clock;
        self.cluster.epoch = self.cluster.epoch.max(epoch);
        // One pass over our calls, whatever the number of ids (every call others own is named).
        let lost: std::collections::HashSet<&str> = lost.iter().map(String::as_str).collect();
        let gone: Vec<(u64, String)> =
            self.calls.iter().filter(|(_, c)| lost.contains(c.record.id.as_str())).map(|(k, c)| (*k, c.record.id.clone())).collect();
        for (key, id) in gone {
            self.forget(io, key, &id, now);
        }
        let mut held: std::collections::HashSet<String> =
            if adopted.is_empty() { Default::default() } else { self.calls.values().map(|c| c.record.id.clone()).collect() };
        let mut n = 0;
        for state in adopted {
            let saved: SavedCall = match serde_json::from_str(&state.data) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(call = %state.id, error = %e, "adopted call unreadable; left alone");
                    continue;
                }
            };
            if !held.insert(saved.id.clone()) {
                continue;
            }
            let (caller_sdp, callee_sdp) = (saved.caller.dialog.remote_sdp.clone(), saved.callee.dialog.remote_sdp.clone());
            let Some(key) = self.restore_one(io, saved, Some(epoch), now) else { continue };
            n += 1;
            // Each phone gets the other's SDP pointed at our relay port of its leg.
            for (leg, other_sdp) in [(Leg::Caller, callee_sdp), (Leg::Callee, caller_sdp)] {
                let Some(c) = self.calls.get_mut(&key) else { break };
                let Some(dialog) = c.dialog(leg).cloned() else { continue };
                let Some(body) = other_sdp.and_then(|b| c.sdp_for(leg, &Bytes::from(b))) else { continue };
                log_unsent(self.ua.dialogs().send_reinvite(&dialog, body, now), "adoption re-INVITE", &dialog);
            }
            self.state_put(key);
        }
        self.drain(io, now);
        n
    }

    /// The answer to an adoption re-INVITE on `leg`: the phone's media address for the relay.
    pub(super) fn on_adoption_answered(&mut self, key: u64, leg: Leg, response: &crate::message::Message, now: Instant) {
        if let Some(s) = super::sdp::audio_of(response.body()) {
            self.relay.set_remote(RelayId(key), leg, s.remote, now);
        }
        self.state_put(key);
    }

    /// Drops call `id` from memory: another instance owns it now. No BYE, no record, no store
    /// write; its ports close and its dialogs and Call-IDs go.
    fn forget(&mut self, io: &mut Io<'_>, key: u64, id: &str, now: Instant) {
        let Some(c) = self.calls.remove(&key) else { return };
        self.relay.remove(RelayId(key));
        if let Some((caller, callee)) = c.media.as_deref() {
            Self::close_ports(io, caller);
            Self::close_ports(io, callee);
        }
        for d in [Some(&c.caller), c.callee.as_ref()].into_iter().flatten() {
            self.ua.dialogs().forget(d, now);
        }
        for call_id in &c.call_ids {
            self.by_call_id.remove(call_id);
            self.ua.forget_peer(call_id);
        }
        tracing::warn!(call = %id, "call owned by another instance now; dropped here");
    }
}
