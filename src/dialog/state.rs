//! One dialog's state (RFC 3261 §12.1): ids, route set, remote target, CSeq counters, and what is
//! in flight in either direction.

use super::id::DialogId;
use super::session::SessionTimer;
use super::timer::{DialogTimer, TimerTable};
use super::Side;
use crate::message::{Message, Method, NameAddr};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Which end of the dialog-creating INVITE we were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We sent the INVITE.
    Uac,
    /// We received the INVITE.
    Uas,
}

/// Where a dialog is in its life (RFC 3261 §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialogState {
    /// Created by a provisional response with a To tag (§12.1). A UAS dialog is Early from the
    /// INVITE on: its tag is chosen then and every response to the INVITE carries it.
    Early,
    /// A 2xx was sent or received (§12.1).
    Confirmed,
    /// Ended; it lingers for 64*T1 so late messages find it, then it is forgotten.
    Terminated,
}

/// What one of our in-dialog requests is for, so its response can be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A re-INVITE or UPDATE the application asked for; the SDP offer is kept for a 491 retry.
    Modify(Option<Bytes>),
    /// A session refresh (RFC 4028 §10).
    Refresh,
    /// An OPTIONS keep-alive.
    Ping,
    /// Anything else (BYE, INFO, OPTIONS on request).
    Other,
}

/// One of our requests awaiting its final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) seq: u32,
    pub(crate) method: Method,
    pub(crate) purpose: Purpose,
}

/// The ACK of a late offer (UAC, RFC 3264 §4): the 2xx to our INVITE without SDP carries the
/// offer, the ACK the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LateOffer {
    /// The 2xx to INVITE number `.0` came; the ACK waits for the application's answer.
    Pending(u32),
    /// The ACK for INVITE number `.0` went out with our answer (`local_sdp`): its copies for
    /// retransmitted 2xx carry it too.
    Acked(u32),
}

/// Our 2xx to an INVITE, retransmitted until the ACK (§13.3.1.4).
#[derive(Debug, Clone)]
pub(crate) struct Unacked {
    pub(crate) response: Message,
    pub(crate) seq: u32,
    pub(crate) interval: Duration,
}

/// One dialog. Read it through [`crate::dialog::Dialogs::get`]; it changes only through the
/// [`crate::dialog::Dialogs`] inputs and commands.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub(crate) id: DialogId,
    pub(crate) role: Role,
    pub(crate) state: DialogState,
    /// Our name-addr without the tag (From of our requests).
    pub(crate) local_uri: Box<str>,
    /// The peer's name-addr without the tag (To of our requests).
    pub(crate) remote_uri: Box<str>,
    /// The peer's Contact URI (§12.1.1, §12.1.2), refreshed by target refresh requests.
    pub(crate) remote_target: Box<str>,
    /// Route values in the order our requests carry them.
    pub(crate) route_set: Vec<Box<str>>,
    /// The last CSeq number we used; 0 while empty (§12.1.1).
    pub(crate) local_seq: u32,
    pub(crate) remote_seq: Option<u32>,
    pub(crate) secure: bool,
    /// The peer's INVITE, re-INVITE or UPDATE-with-offer waiting for our final answer.
    /// Boxed, as `unacked` and `retry`: rarely set, and a dialog lives as long as its call, so
    /// inline they would widen every established dialog by a few hundred bytes.
    pub(crate) awaiting_answer: Option<Box<Message>>,
    pub(crate) outgoing: Vec<Outgoing>,
    pub(crate) unacked: Option<Box<Unacked>>,
    /// UAC: the CSeq number and Via branch of the ACK sent for the 2xx to INVITE number `.0`; every
    /// retransmission of that 2xx gets the same ACK again (§13.2.2.4), rebuilt from the dialog
    /// rather than kept: an established call would otherwise hold a whole message for its life.
    pub(crate) last_ack: Option<(u32, Box<str>)>,
    /// The application asked for BYE before the ACK of our 2xx came (§15: wait for it).
    pub(crate) bye_after_ack: bool,
    /// Late offer (UAC): the 2xx to our INVITE number `.0`, sent without an offer, carried the
    /// offer, so its ACK carries our answer (RFC 3261 §13.2.2.4, RFC 3264 §4); see
    /// `dialog/late_offer.rs`.
    pub(crate) late_offer: Option<LateOffer>,
    /// Our 1xx with a tag went out (UAS), so `Event::Early` was sent.
    pub(crate) provisional_sent: bool,
    /// A re-INVITE or UPDATE that met 491, to send again when [`DialogTimer::GlareRetry`] fires.
    pub(crate) retry: Option<Box<(Method, Option<Bytes>)>>,
    /// Challenges answered in a row for in-dialog requests (401/407, §22.2).
    pub(crate) auth_tries: u8,
    pub(crate) local_sdp: Option<Bytes>,
    pub(crate) remote_sdp: Option<Bytes>,
    pub(crate) session: Option<SessionTimer>,
    pub(crate) timers: TimerTable,
    /// Reliable provisional responses and early UPDATE (RFC 3262, RFC 3311), once used.
    pub(crate) rel: Option<Box<super::reliable::Rel>>,
}

/// `[display] <uri>;params` without the `tag` parameter.
pub(crate) fn addr_without_tag(na: &NameAddr<'_>) -> Box<str> {
    let mut s = String::with_capacity(na.uri_text.len() + 16);
    if let Some(d) = na.display {
        s.push_str(d);
        s.push(' ');
    }
    s.push('<');
    s.push_str(na.uri_text);
    s.push('>');
    for (name, value) in na.params.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("tag")) {
        s.push(';');
        s.push_str(name);
        if let Some(v) = value {
            s.push('=');
            s.push_str(v);
        }
    }
    s.into()
}

/// The first Contact URI of a message.
pub(crate) fn contact_uri(msg: &Message) -> Option<Box<str>> {
    msg.contacts().next()?.ok().map(|c| c.uri_text.into())
}

/// Record-Route values, top first; malformed values are skipped.
fn record_routes(msg: &Message) -> Vec<Box<str>> {
    msg.record_routes().filter_map(Result::ok).map(|r| r.to_string().into()).collect()
}

/// `secure` per §12.1.1 / §12.1.2: a SIPS Request-URI over TLS.
fn is_secure(req: &Message) -> bool {
    // The scheme alone (a parse of the whole URI cost about 600 instructions per call placed): the
    // Request-URI of a request that reached a dialog has been parsed already (our INVITE's was
    // checked when it was built, the peer's by `Message::validate`).
    let sips = req.request_uri_str().and_then(|u| u.as_bytes().get(..5)).is_some_and(|s| s.eq_ignore_ascii_case(b"sips:"));
    sips && req.via().is_ok_and(|v| v.transport.eq_ignore_ascii_case("TLS"))
}

/// The body, copied: a slice (`body_bytes`) would pin the whole datagram or message it came from
/// for as long as the dialog keeps the SDP, which is the life of the call.
fn body_of(msg: &Message) -> Option<Bytes> {
    (!msg.body().is_empty()).then(|| Bytes::copy_from_slice(msg.body()))
}

// ===== impl Dialog =====

impl Dialog {
    pub(crate) fn blank(id: DialogId, role: Role, local_uri: Box<str>, remote_uri: Box<str>, target: Box<str>) -> Dialog {
        Dialog {
            id,
            role,
            state: DialogState::Early,
            local_uri,
            remote_uri,
            remote_target: target,
            route_set: Vec::new(),
            local_seq: 0,
            remote_seq: None,
            secure: false,
            awaiting_answer: None,
            outgoing: Vec::new(),
            unacked: None,
            last_ack: None,
            bye_after_ack: false,
            late_offer: None,
            provisional_sent: false,
            retry: None,
            auth_tries: 0,
            local_sdp: None,
            remote_sdp: None,
            session: None,
            timers: TimerTable::default(),
            rel: None,
        }
    }

    /// The UAS dialog for an INVITE (§12.1.1): route set = Record-Route in order, remote target =
    /// Contact, remote CSeq = the INVITE's, local CSeq empty. `None` if a needed header is missing
    /// or malformed (From without tag, no Contact).
    pub(crate) fn uas(req: &Message, local_tag: &str) -> Option<Dialog> {
        let from = req.from().ok()?;
        let to = req.to().ok()?;
        let id = DialogId::new(req.call_id().ok()?, local_tag, from.tag()?);
        let mut d = Dialog::blank(id, Role::Uas, addr_without_tag(&to), addr_without_tag(&from), contact_uri(req)?);
        d.route_set = record_routes(req);
        d.remote_seq = Some(req.cseq().ok()?.seq);
        d.secure = is_secure(req);
        d.remote_sdp = body_of(req);
        d.awaiting_answer = Some(Box::new(req.clone()));
        Some(d)
    }

    /// The UAC dialog a 1xx with a To tag or a 2xx to our `invite` creates (§12.1.2): route set =
    /// Record-Route reversed, remote target = Contact (the Request-URI until one arrives), local
    /// CSeq = the INVITE's, remote CSeq empty.
    /// `sdp` is the INVITE's offer (shared with its `UacInvite`, not sliced from the message); `id`
    /// is [`DialogId::of_response`] of `resp`, which the caller has already read (`None` unless it
    /// has a remote tag).
    pub(crate) fn uac(invite: &Message, sdp: Option<Bytes>, resp: &Message, id: &DialogId) -> Option<Dialog> {
        let id = Some(id.clone()).filter(|id| !id.remote_tag.is_empty())?;
        let from = resp.from().ok()?;
        let to = resp.to().ok()?;
        let target = contact_uri(resp).or_else(|| invite.request_uri_str().map(Into::into))?;
        let mut d = Dialog::blank(id, Role::Uac, addr_without_tag(&from), addr_without_tag(&to), target);
        d.route_set = record_routes(resp).into_iter().rev().collect();
        d.local_seq = resp.cseq().ok()?.seq;
        d.secure = is_secure(invite);
        d.local_sdp = sdp.filter(|s| !s.is_empty());
        d.remote_sdp = body_of(resp);
        Some(d)
    }

    /// A 2xx to the INVITE confirms an early UAC dialog: the route set is recomputed from it and
    /// its Contact becomes the remote target (§13.2.2.4).
    pub(crate) fn confirm_from_2xx(&mut self, resp: &Message) {
        self.route_set = record_routes(resp).into_iter().rev().collect();
        self.refresh_target(resp);
        if let Some(sdp) = body_of(resp) {
            self.remote_sdp = Some(sdp);
        }
        self.state = DialogState::Confirmed;
    }

    /// A target refresh (re-INVITE, UPDATE or their 2xx) replaces the remote target with its Contact
    /// (§12.2.1.2, §12.2.2).
    pub(crate) fn refresh_target(&mut self, msg: &Message) {
        if let Some(c) = contact_uri(msg) {
            self.remote_target = c;
        }
    }

    /// Takes the SDP of the peer's message, if any.
    pub(crate) fn take_remote_sdp(&mut self, msg: &Message) {
        // The same SDP again (the INVITE's offer, kept since the dialog began): keep the copy we
        // have, which others may share.
        if self.remote_sdp.as_deref() == Some(msg.body()) {
            return;
        }
        if let Some(sdp) = body_of(msg) {
            self.remote_sdp = Some(sdp);
        }
    }

    /// Our INVITE or offer-carrying UPDATE awaiting its answer (for glare, §14.2).
    pub(crate) fn offer_pending(&self) -> bool {
        self.outgoing.iter().any(|o| o.method == Method::Invite || matches!(o.purpose, Purpose::Modify(Some(_))))
    }

    /// Any INVITE transaction in progress in either direction (§14.1).
    pub(crate) fn invite_in_progress(&self) -> bool {
        self.outgoing.iter().any(|o| o.method == Method::Invite)
            || self.awaiting_answer.is_some()
            || self.unacked.is_some()
            || self.awaits_late_ack()
    }

    /// Ends the dialog: state Terminated, every timer stopped (the caller arms Purge).
    pub(crate) fn end(&mut self) {
        self.state = DialogState::Terminated;
        self.timers.clear();
        self.unacked = None;
    }

    /// The id.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// Whether we were the UAC or the UAS of the INVITE.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Late offer (UAC): the 2xx to our INVITE without an offer came, and its ACK waits for the
    /// answer from [`crate::dialog::Dialogs::send_late_ack`] (RFC 3261 §13.2.2.4).
    pub fn awaits_late_ack(&self) -> bool {
        matches!(self.late_offer, Some(LateOffer::Pending(_)))
    }

    /// Whether our 2xx to the peer's INVITE still waits for its ACK (§13.3.1.4).
    pub fn awaiting_ack(&self) -> bool {
        self.unacked.is_some()
    }

    /// Early, Confirmed or Terminated.
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// Our address (From of our requests), without tag.
    pub fn local_uri(&self) -> &str {
        &self.local_uri
    }

    /// The peer's address (To of our requests), without tag.
    pub fn remote_uri(&self) -> &str {
        &self.remote_uri
    }

    /// The peer's Contact URI: the Request-URI of our requests under loose routing.
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    /// The route set, in the order our requests carry it as Route headers.
    pub fn route_set(&self) -> impl Iterator<Item = &str> + '_ {
        self.route_set.iter().map(|r| &**r)
    }

    /// The last CSeq number we used (0 while none, §12.1.1).
    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    /// The highest CSeq number the peer used.
    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// The `secure` flag (§12.1): SIPS over TLS.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The last SDP we sent.
    pub fn local_sdp(&self) -> Option<&Bytes> {
        self.local_sdp.as_ref()
    }

    /// The last SDP the peer sent.
    pub fn remote_sdp(&self) -> Option<&Bytes> {
        self.remote_sdp.as_ref()
    }

    /// The negotiated session interval (RFC 4028), if session timers run.
    pub fn session_interval(&self) -> Option<Duration> {
        self.session.map(|s| s.duration())
    }

    /// This dialog's earliest armed timer.
    pub fn next_timeout(&self) -> Option<(Instant, DialogTimer)> {
        self.timers.soonest()
    }

    /// Who refreshes the session (RFC 4028), if session timers run.
    pub fn refresher(&self) -> Option<Side> {
        self.session.map(|s| s.refresher)
    }
}
