//! Translating one leg's dialog events to the other leg (RFC 3261 §12-15 on each side), and the
//! call state saved for a restart.

use super::call::{new_record, Call, Phase, SavedCall, SavedLeg};
use super::end::{CallEnd, Cause, Party};
use super::sdp::{self, LegOrigin};
use super::{B2bua, Parties, Setup};
use crate::application::Io;
use crate::dialog::{addr_without_tag, CallParams, DialogCapture, DialogId, EndReason, Event, Side};
use crate::message::Message;
use crate::records::{CallState, StoreOp};
use crate::relay::{Leg, LegPorts, RelayId};
use crate::ua::log_unsent;
use bytes::Bytes;
use std::time::Instant;

impl B2bua {
    fn lookup(&self, id: &DialogId) -> Option<(u64, Leg)> {
        self.by_call_id.get(&*id.call_id).copied()
    }

    pub(super) fn on_dialog(&mut self, io: &mut Io<'_>, ev: Event, now: Instant) {
        if self.transfer_event(io, &ev, now) {
            return;
        }
        match ev {
            Event::Refer { id, request } => self.on_refer(io, id, &request, now),
            Event::Incoming { id, .. } => {
                // Calls start in `start_call` (which takes the dialog id directly); a new INVITE
                // that reached an existing leg's dialogs has no call to join.
                tracing::debug!(call_id = %id.call_id, "INVITE without a call refused");
                log_unsent(self.ua.dialogs().reject(&id, 500, now), "500 to a stray INVITE", &id);
            }
            Event::Early { id } => self.on_early(io, &id, now),
            Event::EarlyMedia { id, code, sdp } => self.on_early_media(&id, code, &sdp, now),
            Event::Established { id } => self.on_established(io, &id, now),
            Event::Reoffer { id, request } => self.on_reoffer(&id, &request, now),
            Event::Answered { id, response } => self.on_answered(&id, &response, now),
            Event::ModifyFailed { id, code } => self.on_modify_failed(&id, code, now),
            Event::Info { id, request } => {
                if let Some(other) = self.lookup(&id).and_then(|(k, leg)| self.calls.get(&k)?.dialog(leg.other()).cloned()) {
                    let ct = request.header(crate::message::HeaderName::ContentType).and_then(|v| std::str::from_utf8(v).ok());
                    let ct = ct.unwrap_or("application/octet-stream").to_owned();
                    log_unsent(self.ua.dialogs().send_info(&other, &ct, request.body_bytes(), now), "INFO to the other leg", &other);
                }
            }
            Event::Acked { id } => self.on_acked(io, &id, now),
            Event::Terminated { id, reason } => self.on_terminated(io, &id, reason, now),
            _ => {}
        }
    }

    /// Starts the call of the caller's new dialog `id`: the call record, the relay, and one
    /// INVITE per target.
    pub(super) fn begin_call(&mut self, io: &mut Io<'_>, id: DialogId, request: &Message, setup: Setup, now: Instant) {
        let Setup { targets, source, media, parties, offer } = setup;
        let (offer, offer_sdp) = offer.map_or((None, None), |(stream, parsed)| (Some(stream), Some(parsed)));
        let Parties { asserted, caller: caller_user, callee: callee_user } = parties;
        let key = self.next_key;
        self.next_key += 1;
        // The caller's dialog has read From and To as its remote and local address (`Dialog::uas`,
        // the same `addr_without_tag`): the record copies them rather than parsing both again.
        let (from, to) = match self.ua.dialogs_ref().get(&id) {
            Some(d) => (d.remote_uri().to_owned(), d.local_uri().to_owned()),
            None => (
                request.from().map(|f| addr_without_tag(&f).to_string()).unwrap_or_default(),
                request.to().map(|t| addr_without_tag(&t).to_string()).unwrap_or_default(),
            ),
        };
        // Issue 14 point 9: the callee legs carry the caller's Max-Forwards minus one (§16.6 step
        // 3 as a proxy would), so a loop between services ends with a 483 within that many hops.
        let max_forwards = request.max_forwards().ok().flatten().unwrap_or(70).saturating_sub(1);
        let session_id = self.session_ids.next_u64() >> 2;
        let mut call = Call {
            record: new_record(
                format!("{:08x}-{key}", self.record_prefix),
                id.call_id.to_string(),
                from.clone(),
                to.clone(),
                super::ms(self.wall),
                offer.as_ref().and_then(|o| o.codec.clone()),
            ),
            phase: Phase::Setup,
            caller: id.clone(),
            callee: None,
            forks: Vec::new(),
            cancel_when_ringing: Vec::new(),
            best: None,
            media: media.map(Box::new),
            caller_origin: LegOrigin { session_id, version: 0 },
            callee_origin: LegOrigin { session_id: session_id ^ 1, version: 0 },
            caller_peer: source,
            callee_peer: None,
            caller_user,
            callee_user,
            reoffer_from: None,
            rang: false,
            early: None,
            recovered: false,
            adopted: false,
            epoch: self.cluster.epoch,
            saved: false,
            call_ids: vec![id.call_id.clone()],
            started: now,
            caller_offer_line: None,
        };
        if let Some((caller_ports, callee_ports)) = media {
            self.relay.insert(RelayId(key), caller_ports, callee_ports, now);
            self.relay.set_peer_ip(RelayId(key), Leg::Caller, Some(source.ip()));
        }
        if let Some(o) = &offer {
            self.relay.set_remote(RelayId(key), Leg::Caller, o.remote, now);
        }
        self.ua.pin_peer(id.call_id.clone(), source);
        self.by_call_id.insert(id.call_id.clone(), (key, Leg::Caller));
        // The caller's offer as its dialog keeps it (a copy, not a slice of the datagram), so
        // without the relay every fork's INVITE shares it.
        let caller_offer =
            self.ua.dialogs_ref().get(&id).and_then(|d| d.remote_sdp().cloned()).unwrap_or_else(|| Bytes::copy_from_slice(request.body()));
        // Admission read the request's body: its reading stands for the caller's offer when the
        // dialog kept those same bytes.
        let offer_sdp = offer_sdp.filter(|_| caller_offer[..] == *request.body());
        call.caller_offer_line = offer.as_ref().filter(|_| offer_sdp.is_some()).map(|o| (caller_offer.clone(), o.line));
        for t in &targets {
            let body = match &offer_sdp {
                Some(parsed) => call.sdp_for_parsed(Leg::Callee, &caller_offer, parsed),
                None => call.sdp_for(Leg::Callee, &caller_offer),
            };
            let params = CallParams {
                from: from.clone(),
                to: to.clone(),
                target: Some(t.uri.clone()),
                routes: Vec::new(),
                sdp: body,
                max_forwards: Some(max_forwards),
                asserted_identity: asserted.clone(),
                referred_by: None,
            };
            match self.ua.dialogs().invite_sticky(params, &id.call_id, now) {
                Ok(fork) => {
                    self.ua.pin_peer(fork.call_id.clone(), t.dest);
                    self.by_call_id.insert(fork.call_id.clone(), (key, Leg::Callee));
                    call.call_ids.push(fork.call_id.clone());
                    call.forks.push(fork);
                    call.callee_peer.get_or_insert(t.dest);
                }
                Err(e) => tracing::debug!(error = %e, target = %t.uri, "target not called"),
            }
        }
        let no_fork = call.forks.is_empty();
        self.calls.insert(key, Box::new(call));
        self.setup_deadlines.push(std::cmp::Reverse((now + self.config.no_answer, key)));
        self.record_put(key);
        if no_fork {
            log_unsent(self.ua.dialogs().reject(&id, 480, now), "480 with no target called", &id);
            self.finish(io, key, CallEnd::new(Cause::Status(480), Party::Service), now);
        }
    }

    fn on_early(&mut self, io: &mut Io<'_>, id: &DialogId, now: Instant) {
        let Some((key, leg)) = self.lookup(id) else { return };
        if leg != Leg::Callee {
            return;
        }
        let invite = id.invite_id();
        let early_media = self.early_media_follows(id);
        let Some(c) = self.calls.get_mut(&key) else {
            // A fork ringing after its call ended: cancelled now that it may be (§9.1).
            log_unsent(self.ua.cancel(io.endpoint, &invite, now), "CANCEL of a fork of an ended call", &invite);
            return;
        };
        if let Some(i) = c.cancel_when_ringing.iter().position(|f| *f == invite) {
            c.cancel_when_ringing.swap_remove(i);
            log_unsent(self.ua.cancel(io.endpoint, &invite, now), "CANCEL of a losing fork", &invite);
        } else if c.phase == Phase::Setup && !c.rang && !early_media {
            c.rang = true;
            let caller = c.caller.clone();
            self.ring_caller(&caller, id, now);
        }
    }

    fn on_established(&mut self, io: &mut Io<'_>, id: &DialogId, now: Instant) {
        let Some((key, leg)) = self.lookup(id) else { return };
        if leg == Leg::Caller {
            // Our 2xx went out: the call is up on both sides; keep it for a restart.
            self.state_put(key);
            return;
        }
        let winner = self.calls.get(&key).is_some_and(|c| c.phase == Phase::Setup);
        if !winner {
            // A fork that answered after another, or after the caller gave up (§13.2.2.4).
            log_unsent(self.ua.dialogs().send_bye(id, now), "BYE to a fork that answered late", id);
            return;
        }
        let answer = self.ua.dialogs_ref().get(id).and_then(|d| d.remote_sdp().cloned());
        let Some(c) = self.calls.get_mut(&key) else { return };
        let invite = id.invite_id();
        c.forks.retain(|f| *f != invite);
        let losers = std::mem::take(&mut c.forks);
        c.callee = Some(id.clone());
        c.phase = Phase::Up;
        c.record.callee_call_id = Some(id.call_id.to_string());
        c.record.answered_at = Some(super::ms(self.wall));
        let caller = c.caller.clone();
        let (stream, body) = answer.as_ref().map_or((None, None), |a| c.answer_for_caller(id, a));
        if let Some(codec) = stream.as_ref().and_then(|s| s.codec.clone()) {
            c.record.codec = Some(codec);
        }
        for f in losers {
            self.cancel_fork(io, key, &f, now);
        }
        match (stream, body) {
            (Some(s), Some(body)) => {
                let peer = self.ua.pinned_peer(&id.call_id).map(|p| p.ip());
                self.relay.set_peer_ip(RelayId(key), Leg::Callee, peer);
                self.relay.set_remote(RelayId(key), Leg::Callee, s.remote, now);
                self.follow_accepted_line(key, Leg::Caller, &s, now);
                if let Err(e) = self.ua.dialogs().accept(&caller, Some(body), now) {
                    // The caller's INVITE ended while the callee answered (a CANCEL crossing the
                    // 200, §9.2): there is nobody to connect the callee to.
                    tracing::debug!(call = key, error = %e, "the caller left as the callee answered: ending the call");
                    self.end_both(io, key, CallEnd::new(Cause::Gone, Party::Caller), now);
                    return;
                }
                self.record_put(key);
            }
            _ => {
                tracing::debug!(call = key, "callee answered without usable SDP");
                log_unsent(self.ua.dialogs().send_bye(id, now), "BYE to a callee without usable SDP", id);
                log_unsent(self.ua.dialogs().reject(&caller, 488, now), "488 to the caller", &caller);
                self.finish(io, key, CallEnd::new(Cause::Status(488), Party::Callee), now);
            }
        }
    }

    fn on_reoffer(&mut self, id: &DialogId, request: &Message, now: Instant) {
        if request.method() == Some(&crate::message::Method::Update) {
            return self.on_update(id, request, now);
        }
        let refuse = |me: &mut B2bua, code| {
            log_unsent(me.ua.dialogs().reject(id, code, now), "refusal of a re-offer", id);
        };
        let Some((key, leg)) = self.lookup(id) else { return refuse(self, 481) };
        let Some(c) = self.calls.get_mut(&key) else { return refuse(self, 481) };
        let Some(other) = c.dialog(leg.other()).cloned().filter(|_| c.phase == Phase::Up && c.reoffer_from.is_none()) else {
            return refuse(self, 491);
        };
        let (Some(stream), Some(body)) = (sdp::audio_of(request.body()), c.sdp_for(leg.other(), &Bytes::copy_from_slice(request.body())))
        else {
            return refuse(self, 488);
        };
        if self.ua.dialogs().send_reinvite(&other, body, now).is_err() {
            return refuse(self, 491);
        }
        if let Some(c) = self.calls.get_mut(&key) {
            c.reoffer_from = Some(leg);
        }
        self.relay.set_remote(RelayId(key), leg, stream.remote, now);
    }

    fn on_answered(&mut self, id: &DialogId, response: &Message, now: Instant) {
        let Some((key, leg)) = self.lookup(id) else { return };
        let Some(c) = self.calls.get_mut(&key) else { return };
        if c.reoffer_from != Some(leg.other()) {
            if c.adopted {
                // The answer to our own re-INVITE that moved the phone to our relay (`adopt`).
                return self.on_adoption_answered(key, leg, response, now);
            }
            return;
        }
        c.reoffer_from = None;
        let Some(asker) = c.dialog(leg.other()).cloned() else { return };
        let body = c.sdp_for(leg.other(), &Bytes::copy_from_slice(response.body()));
        let stream = sdp::audio_of(response.body());
        if let Some(s) = &stream {
            self.relay.set_remote(RelayId(key), leg, s.remote, now);
        }
        match body {
            Some(body) => {
                log_unsent(self.ua.dialogs().accept(&asker, Some(body), now), "answer to the re-offer", &asker);
                // Answered, the asker's dialog holds its re-offer as the remote SDP.
                if let Some(s) = &stream {
                    self.follow_accepted_line(key, leg.other(), s, now);
                }
            }
            None => {
                log_unsent(self.ua.dialogs().reject(&asker, 488, now), "488 to the re-offer", &asker);
            }
        }
        self.state_put(key);
    }

    fn on_modify_failed(&mut self, id: &DialogId, code: u16, now: Instant) {
        // 491: the dialog layer tries again after the §14.1 delay; the asker keeps waiting.
        if code == 491 {
            return;
        }
        let Some((key, leg)) = self.lookup(id) else { return };
        let Some(c) = self.calls.get_mut(&key) else { return };
        if c.reoffer_from != Some(leg.other()) {
            return;
        }
        c.reoffer_from = None;
        if let Some(asker) = c.dialog(leg.other()).cloned() {
            let code = if (300..700).contains(&code) { code } else { 500 };
            log_unsent(self.ua.dialogs().reject(&asker, code, now), "refusal of the re-offer", &asker);
        }
    }

    fn on_terminated(&mut self, io: &mut Io<'_>, id: &DialogId, reason: EndReason, now: Instant) {
        let Some((key, leg)) = self.lookup(id) else { return };
        let Some(c) = self.calls.get_mut(&key) else { return };
        if c.phase == Phase::Ending {
            return;
        }
        let by_peer = matches!(reason, EndReason::Bye(Side::Remote) | EndReason::Cancelled | EndReason::Rejected(_));
        let who = |leg: Leg| if leg == Leg::Caller { Party::Caller } else { Party::Callee };
        if leg == Leg::Callee && c.callee.as_ref().is_none_or(|d| d.call_id != id.call_id) {
            // One fork of a ringing call failed.
            let invite = id.invite_id();
            c.forks.retain(|f| *f != invite);
            match reason {
                EndReason::Rejected(code) => c.note_failure(code),
                EndReason::Timeout => c.note_failure(408),
                _ => {}
            }
            if c.phase == Phase::Setup && c.forks.is_empty() {
                let code = match c.best.unwrap_or(480) {
                    401 | 407 => 403,
                    code => code,
                };
                let caller = c.caller.clone();
                log_unsent(self.ua.dialogs().reject(&caller, code, now), "the forks' best answer to the caller", &caller);
                self.finish(io, key, CallEnd::new(Cause::Status(code), Party::Callee), now);
            }
            return;
        }
        if matches!(reason, EndReason::Bye(Side::Local)) {
            return;
        }
        c.phase = Phase::Ending;
        let end = CallEnd::new(Cause::of(reason), if by_peer { who(leg) } else { Party::Service });
        let (caller, callee, forks) = (c.caller.clone(), c.callee.clone(), std::mem::take(&mut c.forks));
        match leg {
            Leg::Caller => {
                if let Some(callee) = callee {
                    log_unsent(self.ua.dialogs().send_bye(&callee, now), "BYE to the callee", &callee);
                }
                for f in forks {
                    self.cancel_fork(io, key, &f, now);
                }
            }
            Leg::Callee => {
                log_unsent(self.ua.dialogs().send_bye(&caller, now), "BYE to the caller", &caller);
            }
        }
        self.finish(io, key, end, now);
    }

    /// The state of call `key` to save, once both dialogs are confirmed; its dialogs captured, to
    /// be made into snapshots by the store writer ([`SavedCall::snapshot`]).
    pub(super) fn saved(&self, key: u64) -> Option<SavedCall<DialogCapture>> {
        let c = self.calls.get(&key)?;
        let d = self.ua.dialogs_ref();
        let leg = |dialog: &DialogId, peer, origin, l| {
            let relay = c.ports(l).map(|p| p.local);
            Some(SavedLeg { dialog: d.capture(dialog)?, peer, relay, origin, latched: self.relay.latched(RelayId(key), l) })
        };
        Some(SavedCall {
            id: c.record.id.clone(),
            from: c.record.from.clone(),
            to: c.record.to.clone(),
            invited_at: c.record.invited_at,
            answered_at: c.record.answered_at,
            codec: c.record.codec.clone(),
            caller_user: c.caller_user.clone(),
            callee_user: c.callee_user.clone(),
            owner: self.cluster.member.clone(),
            epoch: c.epoch,
            caller: leg(&c.caller, c.caller_peer, c.caller_origin, Leg::Caller)?,
            callee: leg(c.callee.as_ref()?, c.callee_peer?, c.callee_origin, Leg::Callee)?,
        })
    }

    /// Takes back the calls saved before a restart: rebinds their relay ports, rebuilds both
    /// dialogs, and lets media flow again. A call whose ports cannot be bound is closed with
    /// `restart-failed`. Returns how many calls were recovered.
    #[must_use]
    pub fn restore(&mut self, io: &mut Io<'_>, states: &[CallState], now: Instant) -> usize {
        self.wall = io.wall_clock;
        let mut recovered = 0;
        for state in states {
            let saved: SavedCall = match serde_json::from_str(&state.data) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(call = %state.id, error = %e, "saved call unreadable; dropped");
                    self.store_ops.push_back(StoreOp::RemoveCallState(state.id.clone()));
                    continue;
                }
            };
            if self.restore_one(io, saved, None, now).is_some() {
                recovered += 1;
            }
        }
        recovered
    }

    fn rebind(io: &mut Io<'_>, addr: std::net::SocketAddr) -> Option<LegPorts> {
        let (rtp, rtcp, local) = io.media.bind_exact(addr, true)?;
        Some(LegPorts { rtp, rtcp, local })
    }

    /// Takes one saved call on: after a restart (`adopt` is `None`) on its own relay ports; adopted
    /// from another instance at membership epoch `adopt` on fresh ports of ours (the caller then
    /// re-INVITEs both phones, see `adopt`). Returns the call's key, `None` when it was dropped.
    pub(super) fn restore_one(&mut self, io: &mut Io<'_>, s: SavedCall, adopt: Option<u64>, now: Instant) -> Option<u64> {
        let key = self.next_key;
        self.next_key += 1;
        let mut record =
            new_record(s.id.clone(), s.caller.dialog.call_id.clone(), s.from.clone(), s.to.clone(), s.invited_at, s.codec.clone());
        record.callee_call_id = Some(s.callee.dialog.call_id.clone());
        record.answered_at = s.answered_at;
        // Relayed calls get their ports back (or, adopted, ports of ours); a call saved without
        // the relay has none to bind.
        // Adopted: fresh ports, the callee's in the caller's relay lane (one thread forwards both).
        let bind =
            |me: &mut B2bua, io: &mut Io<'_>, addr, lane| if adopt.is_some() { me.bind_leg(io, lane) } else { Self::rebind(io, addr) };
        let media = match (s.caller.relay, s.callee.relay) {
            (Some(a), Some(b)) => match match bind(self, io, a, None) {
                Some(x) => {
                    let lane = crate::relay::lane_of(x.local.port(), self.relay.lanes());
                    (Some(x), bind(self, io, b, Some(lane)))
                }
                None => (None, None),
            } {
                (Some(x), Some(y)) => Some((x, y)),
                (x, y) => {
                    for p in [x, y].iter().flatten() {
                        Self::close_ports(io, p);
                    }
                    tracing::warn!(call = %s.id, "relay ports of a saved call are taken; call dropped");
                    let mut r = record;
                    r.ended_at = Some(super::ms(self.wall));
                    r.end_reason = Some(Cause::RestartFailed.to_string());
                    r.ended_by = Some(Party::Service.to_string());
                    self.store_ops.push_back(StoreOp::PutCall(r));
                    self.store_ops.push_back(StoreOp::RemoveCallState(s.id));
                    return None;
                }
            },
            _ => None,
        };
        let caller = self.ua.dialogs().restore(&s.caller.dialog);
        let callee = self.ua.dialogs().restore(&s.callee.dialog);
        if let Some((caller_ports, callee_ports)) = media {
            self.relay.insert(RelayId(key), caller_ports, callee_ports, now);
        }
        for (leg, saved, l) in [(&s.caller, &caller, Leg::Caller), (&s.callee, &callee, Leg::Callee)] {
            self.ua.pin_peer(saved.call_id.clone(), leg.peer);
            self.relay.set_peer_ip(RelayId(key), l, Some(leg.peer.ip()));
            self.by_call_id.insert(saved.call_id.clone(), (key, l));
            if let Some(mut m) = leg.dialog.remote_sdp.as_deref().and_then(|b| sdp::audio_of(b.as_bytes())) {
                if leg.latched.is_some() && m.remote.rtp.is_some() {
                    m.remote.rtp = leg.latched;
                }
                self.relay.set_remote(RelayId(key), l, m.remote, now);
            }
        }
        let call = Call {
            record,
            phase: Phase::Up,
            caller: caller.clone(),
            callee: Some(callee.clone()),
            forks: Vec::new(),
            cancel_when_ringing: Vec::new(),
            best: None,
            media: media.map(Box::new),
            caller_origin: s.caller.origin,
            callee_origin: s.callee.origin,
            caller_peer: s.caller.peer,
            callee_peer: Some(s.callee.peer),
            caller_user: s.caller_user.clone(),
            callee_user: s.callee_user.clone(),
            reoffer_from: None,
            rang: true,
            early: None,
            recovered: true,
            adopted: adopt.is_some(),
            epoch: adopt.unwrap_or(s.epoch),
            saved: true,
            call_ids: vec![caller.call_id.clone(), callee.call_id.clone()],
            started: now,
            caller_offer_line: None,
        };
        match adopt {
            Some(epoch) => tracing::info!(call = %s.id, epoch, "call adopted"),
            None => tracing::info!(call = %s.id, "call recovered after restart"),
        }
        self.calls.insert(key, Box::new(call));
        Some(key)
    }
}
