//! One B2BUA call: the caller's dialog, the callee's (and, while it rings, every forked INVITE),
//! the relay ports joining their media, and the call record being filled in.

use super::sdp::LegOrigin;
use crate::dialog::{DialogCapture, DialogId, DialogSnapshot};
use crate::records::CallRecord;
use crate::relay::{Leg, LegPorts, LegStats};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The caller's INVITE is forwarded; no callee has answered.
    Setup,
    /// A callee answered; both dialogs are confirmed.
    Up,
    /// One side ended it; the other leg is being ended.
    Ending,
}

/// One call.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) record: CallRecord,
    pub(crate) phase: Phase,
    pub(crate) caller: DialogId,
    /// The callee dialog that answered.
    pub(crate) callee: Option<DialogId>,
    /// Our INVITEs (pending ids) that have not ended, one per target.
    pub(crate) forks: Vec<DialogId>,
    /// Forks to cancel as soon as they ring: a CANCEL may not precede the first provisional (§9.1).
    pub(crate) cancel_when_ringing: Vec<DialogId>,
    /// The best final response of the failed forks so far (§16.7 ranks them the same way).
    pub(crate) best: Option<u16>,
    /// The relay ports of (caller, callee) legs; `None` without the relay (SDP passes through).
    /// Boxed so that a signalling-only call does not carry their room.
    pub(crate) media: Option<Box<(LegPorts, LegPorts)>>,
    pub(crate) caller_origin: LegOrigin,
    pub(crate) callee_origin: LegOrigin,
    /// Signalling addresses of the phones.
    pub(crate) caller_peer: SocketAddr,
    pub(crate) callee_peer: Option<SocketAddr>,
    /// The users of the legs, whose phones may move (issue 14 point 7; see `handover`).
    pub(crate) caller_user: Option<String>,
    pub(crate) callee_user: Option<String>,
    /// The leg whose re-INVITE is being passed to the other leg.
    pub(crate) reoffer_from: Option<Leg>,
    /// 180 (or an 18x with early media) sent to the caller.
    pub(crate) rang: bool,
    /// The early media passed to the caller last (see `early`).
    pub(crate) early: Option<Box<super::early::EarlyAnswer>>,
    /// Restored from the store after a restart.
    pub(crate) recovered: bool,
    /// Adopted from another instance the membership dropped (see `adopt`); also `recovered`.
    pub(crate) adopted: bool,
    /// The membership epoch at which this instance took the call (saved with it as its owner's).
    pub(crate) epoch: u64,
    /// Call state written to the store (so it must be removed at the end).
    pub(crate) saved: bool,
    /// Every Call-ID of the call (caller leg, each fork), to forget when it is over.
    pub(crate) call_ids: Vec<std::sync::Arc<str>>,
    /// When this process took the call on (the INVITE, or the restore after a restart).
    pub(crate) started: std::time::Instant,
    /// The caller's offer and the index of the audio line the relay took from it (see
    /// `accepted.rs`): the answer's accepted line is compared with it without parsing the offer
    /// again. Read only while the caller's remote SDP is still these bytes.
    pub(crate) caller_offer_line: Option<(bytes::Bytes, usize)>,
}

impl Call {
    /// The dialog of `leg`, if it exists.
    pub(crate) fn dialog(&self, leg: Leg) -> Option<&DialogId> {
        match leg {
            Leg::Caller => Some(&self.caller),
            Leg::Callee => self.callee.as_ref(),
        }
    }

    pub(crate) fn ports(&self, leg: Leg) -> Option<LegPorts> {
        let (caller, callee) = *self.media.as_deref()?;
        Some(match leg {
            Leg::Caller => caller,
            Leg::Callee => callee,
        })
    }

    /// The SDP for `leg`'s phone made from the other phone's `body`: pointed at `leg`'s relay
    /// port, or passed through unchanged without the relay (then shared, not copied: `body` should
    /// own its bytes rather than slice a datagram, as it is kept for the life of the dialog).
    pub(crate) fn sdp_for(&mut self, leg: Leg, body: &bytes::Bytes) -> Option<bytes::Bytes> {
        match self.ports(leg) {
            Some(p) => super::sdp::rewrite(body, p.local, self.origin(leg)),
            None => (!body.is_empty()).then(|| body.clone()),
        }
    }

    /// [`Call::sdp_for`] and the audio stream `body` carries ([`super::sdp::audio_of`]), from one
    /// parse of `body`.
    pub(crate) fn read_and_sdp_for(&mut self, leg: Leg, body: &bytes::Bytes) -> (Option<super::sdp::AudioStream>, Option<bytes::Bytes>) {
        match self.ports(leg) {
            Some(p) => match super::sdp::read_and_rewrite(body, p.local, self.origin(leg)) {
                Some((stream, sdp)) => (stream, Some(sdp)),
                None => (None, None),
            },
            None => (super::sdp::audio_of(body), (!body.is_empty()).then(|| body.clone())),
        }
    }

    /// [`Call::sdp_for`] of `body` whose parse is `parsed` (the same bytes): without a second parse.
    pub(crate) fn sdp_for_parsed(
        &mut self,
        leg: Leg,
        body: &bytes::Bytes,
        parsed: &crate::sdp::SessionDescription,
    ) -> Option<bytes::Bytes> {
        match self.ports(leg) {
            Some(p) => Some(super::sdp::rewrite_parsed(parsed.clone(), p.local, self.origin(leg))),
            None => (!body.is_empty()).then(|| body.clone()),
        }
    }

    pub(crate) fn origin(&mut self, leg: Leg) -> &mut LegOrigin {
        match leg {
            Leg::Caller => &mut self.caller_origin,
            Leg::Callee => &mut self.callee_origin,
        }
    }

    /// Notes a failed fork's final response, keeping the best (6xx first, then 4xx other than
    /// 408, then 5xx, then 408: RFC 3261 §16.7 step 6).
    pub(crate) fn note_failure(&mut self, code: u16) {
        let rank = |c: u16| match c {
            600..=699 => 0,
            408 => 3,
            400..=499 => 1,
            500..=599 => 2,
            _ => 4,
        };
        if self.best.is_none_or(|b| rank(code) < rank(b)) {
            self.best = Some(code);
        }
    }

    /// Copies the relay's per-leg figures into the record.
    pub(crate) fn set_stats(&mut self, (caller, callee): (LegStats, LegStats)) {
        let r = &mut self.record;
        r.caller_packets = caller.packets;
        r.caller_lost = caller.lost;
        r.caller_jitter_ms = caller.jitter_ms;
        r.callee_packets = callee.packets;
        r.callee_lost = callee.lost;
        r.callee_jitter_ms = callee.jitter_ms;
    }
}

/// A fresh record: nothing answered, ended or counted yet.
pub(crate) fn new_record(
    id: String,
    caller_call_id: String,
    from: String,
    to: String,
    invited_at: u64,
    codec: Option<String>,
) -> CallRecord {
    CallRecord {
        id,
        caller_call_id,
        callee_call_id: None,
        from,
        to,
        invited_at,
        answered_at: None,
        ended_at: None,
        end_reason: None,
        ended_by: None,
        codec,
        caller_packets: 0,
        caller_lost: 0,
        caller_jitter_ms: f64::NAN,
        callee_packets: 0,
        callee_lost: 0,
        callee_jitter_ms: f64::NAN,
    }
}

/// What is kept in the store of an established call, so a restarted service can take it back.
/// `D` is how each leg's dialog is held: a [`DialogSnapshot`] in the store, a [`DialogCapture`]
/// between the answer and the store writer (see [`SavedCall::snapshot`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedCall<D = DialogSnapshot> {
    pub(crate) id: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) invited_at: u64,
    pub(crate) answered_at: Option<u64>,
    pub(crate) codec: Option<String>,
    /// The users of the legs (see `Call`); absent in states saved before handover existed.
    #[serde(default)]
    pub(crate) caller_user: Option<String>,
    #[serde(default)]
    pub(crate) callee_user: Option<String>,
    /// The instance (member URI) that owns the call, and the membership epoch at which it took
    /// it (issue 17 point 2); absent with no cluster identity, or in states saved before it.
    #[serde(default)]
    pub(crate) owner: Option<String>,
    #[serde(default)]
    pub(crate) epoch: u64,
    pub(crate) caller: SavedLeg<D>,
    pub(crate) callee: SavedLeg<D>,
}

impl SavedCall<DialogCapture> {
    /// The call to store: each leg's dialog captured at the answer made into its snapshot. Runs
    /// on the store writer's thread, and only for a call its batch still keeps (`PendingCallState`).
    pub(crate) fn snapshot(&self) -> SavedCall {
        let leg = |l: &SavedLeg<DialogCapture>| SavedLeg {
            dialog: l.dialog.snapshot(),
            peer: l.peer,
            relay: l.relay,
            origin: l.origin,
            latched: l.latched,
        };
        SavedCall {
            id: self.id.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            invited_at: self.invited_at,
            answered_at: self.answered_at,
            codec: self.codec.clone(),
            caller_user: self.caller_user.clone(),
            callee_user: self.callee_user.clone(),
            owner: self.owner.clone(),
            epoch: self.epoch,
            caller: leg(&self.caller),
            callee: leg(&self.callee),
        }
    }
}

/// One leg of a [`SavedCall`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedLeg<D = DialogSnapshot> {
    pub(crate) dialog: D,
    /// The phone's signalling address.
    pub(crate) peer: SocketAddr,
    /// The relay's RTP address on this leg (RTCP on the next port); `None` without the relay.
    #[serde(default)]
    pub(crate) relay: Option<SocketAddr>,
    pub(crate) origin: LegOrigin,
    /// Where the phone's RTP came from last (latching), if any came.
    pub(crate) latched: Option<SocketAddr>,
}
