//! Saving a confirmed dialog and bringing it back after a restart.
//!
//! A [`DialogSnapshot`] holds the dialog state RFC 3261 §12.1 names (Call-ID, tags, local and
//! remote URI, remote target, route set, CSeq counters, secure flag) plus the last SDP each way, so
//! a service that crashed can rebuild its dialogs from its store and go on answering in-dialog
//! requests (BYE, re-INVITE) and sending its own. What is in flight (a pending re-INVITE, 2xx
//! retransmissions) and session timers (RFC 4028) are not kept: a restored dialog is Confirmed and
//! idle, and its next session refresh, if any, comes from the peer.

use super::id::DialogId;
use super::set::Dialogs;
use super::state::{Dialog, DialogState, Role};
use bytes::Bytes;

/// How far the local CSeq jumps on restore: requests sent after the snapshot was written (a
/// session refresh, say) used numbers the snapshot does not know; §12.2.1.1 only asks that they
/// grow, so skipping ahead is safe.
pub const CSEQ_MARGIN: u32 = 100;

/// The saved state of one confirmed dialog (RFC 3261 §12.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DialogSnapshot {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
    /// True when we sent the INVITE.
    pub uac: bool,
    /// Our name-addr without tag.
    pub local_uri: String,
    /// The peer's name-addr without tag.
    pub remote_uri: String,
    /// The peer's Contact URI.
    pub remote_target: String,
    /// Route set, in the order our requests carry it.
    pub route_set: Vec<String>,
    /// Last CSeq number we used.
    pub local_seq: u32,
    /// Last CSeq number of the peer's requests.
    pub remote_seq: Option<u32>,
    /// §12.1.1 `secure` flag.
    pub secure: bool,
    /// Our latest SDP.
    pub local_sdp: Option<String>,
    /// The peer's latest SDP.
    pub remote_sdp: Option<String>,
}

fn text(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// What a [`DialogSnapshot`] is made of, taken from a confirmed dialog without turning anything
/// into text: the ids and SDP bodies are shared (reference counts), only the URIs are copied.
/// [`DialogCapture::snapshot`] makes the snapshot later, off the signalling thread (issue 16: the
/// B2BUA takes one per leg when a call is answered, and a call that ends within the store's
/// group-commit window never has its snapshot made at all).
#[derive(Debug, Clone)]
pub struct DialogCapture {
    id: DialogId,
    uac: bool,
    local_uri: Box<str>,
    remote_uri: Box<str>,
    remote_target: Box<str>,
    route_set: Vec<Box<str>>,
    local_seq: u32,
    remote_seq: Option<u32>,
    secure: bool,
    local_sdp: Option<Bytes>,
    remote_sdp: Option<Bytes>,
}

impl DialogCapture {
    /// The snapshot of the dialog as it was captured.
    pub fn snapshot(&self) -> DialogSnapshot {
        DialogSnapshot {
            call_id: String::from(&*self.id.call_id),
            local_tag: String::from(&*self.id.local_tag),
            remote_tag: String::from(&*self.id.remote_tag),
            uac: self.uac,
            local_uri: String::from(&*self.local_uri),
            remote_uri: String::from(&*self.remote_uri),
            remote_target: String::from(&*self.remote_target),
            route_set: self.route_set.iter().map(|r| String::from(&**r)).collect(),
            local_seq: self.local_seq,
            remote_seq: self.remote_seq,
            secure: self.secure,
            local_sdp: text(&self.local_sdp),
            remote_sdp: text(&self.remote_sdp),
        }
    }
}

impl DialogSnapshot {
    /// The id of the saved dialog.
    pub fn id(&self) -> DialogId {
        DialogId::new(&self.call_id, &self.local_tag, &self.remote_tag)
    }
}

impl Dialogs {
    /// A snapshot of dialog `id`, if it exists and is Confirmed.
    pub fn snapshot(&self, id: &DialogId) -> Option<DialogSnapshot> {
        self.capture(id).map(|c| c.snapshot())
    }

    /// What [`Dialogs::snapshot`] would save of dialog `id`, if it exists and is Confirmed, to be
    /// made into the snapshot later ([`DialogCapture::snapshot`]).
    pub fn capture(&self, id: &DialogId) -> Option<DialogCapture> {
        let d = self.get(id).filter(|d| d.state == DialogState::Confirmed)?;
        Some(DialogCapture {
            id: d.id.clone(),
            uac: d.role == Role::Uac,
            local_uri: d.local_uri.clone(),
            remote_uri: d.remote_uri.clone(),
            remote_target: d.remote_target.clone(),
            route_set: d.route_set.clone(),
            local_seq: d.local_seq,
            remote_seq: d.remote_seq,
            secure: d.secure,
            local_sdp: d.local_sdp.clone(),
            remote_sdp: d.remote_sdp.clone(),
        })
    }

    /// Brings a saved dialog back as Confirmed and idle, with its local CSeq moved ahead by
    /// [`CSEQ_MARGIN`]. Returns its id; an existing dialog with that id is left as it is.
    pub fn restore(&mut self, s: &DialogSnapshot) -> DialogId {
        let id = s.id();
        if self.get(&id).is_some() {
            return id;
        }
        let role = if s.uac { Role::Uac } else { Role::Uas };
        let mut d =
            Dialog::blank(id.clone(), role, s.local_uri.as_str().into(), s.remote_uri.as_str().into(), s.remote_target.as_str().into());
        d.state = DialogState::Confirmed;
        d.route_set = s.route_set.iter().map(|r| r.as_str().into()).collect();
        d.local_seq = s.local_seq.saturating_add(CSEQ_MARGIN);
        d.remote_seq = s.remote_seq;
        d.secure = s.secure;
        d.provisional_sent = true;
        d.local_sdp = s.local_sdp.clone().map(Bytes::from);
        d.remote_sdp = s.remote_sdp.clone().map(Bytes::from);
        self.insert(d);
        id
    }

    /// Ends dialog `id` without sending anything, because another instance serves it now (issue
    /// 17 point 4): [`super::Event::Terminated`] (`Gone`) is queued and it is purged after 64*T1.
    pub fn forget(&mut self, id: &DialogId, now: std::time::Instant) {
        if let Some(slot) = self.slot_of(id) {
            self.terminate(slot, super::EndReason::Gone, now);
        }
    }
}
