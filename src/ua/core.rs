//! The user-agent core: joins the endpoint (transactions) and the dialog layer (sans-IO).
//!
//! The dialog layer speaks in messages; this module decides how each one travels (RFC 3261 §12-17):
//!
//! ```text
//!   dialog output          goes out through
//!   -------------------    -------------------------------------------------------------
//!   request (BYE, ...)     a new client transaction, to the next hop (top Route or R-URI)
//!   ACK for a 2xx          straight to the transport (§13.2.2.4: not a transaction)
//!   response               the server transaction of its request; a 2xx retransmission,
//!                          once that transaction is gone, straight to the transport (§13.3.1.4)
//! ```
//!
//! Inbound, requests and responses that belong to dialogs go to [`Dialogs`]; everything else is
//! handed to the application as [`UaEvent::Endpoint`].

use crate::collections::HashMap;
use crate::dialog::{reject_unknown, Dialogs, Event as DialogEvent, InputError, NotAccepted};
use crate::endpoint::{Endpoint, EndpointEvent, Owner};
use crate::message::{Message, Method, Uri};
use crate::transaction::TransactionId;
use crate::transport::response_destination;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// What the UA core reports to the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum UaEvent {
    /// A dialog event (incoming call, established, terminated, ...).
    Dialog(DialogEvent),
    /// A response to a request a dialog sent (for logs and summaries; the dialog already acted).
    ResponseSeen {
        /// The request's method.
        method: Method,
        /// The status code.
        status: u16,
    },
    /// An endpoint event that is not about dialogs (out-of-dialog OPTIONS, REGISTER, ...).
    Endpoint(EndpointEvent),
}

/// How long [`UaCore::is_idle`] waits for the answer to a BYE (T2: several retransmissions).
pub const BYE_GRACE: std::time::Duration = std::time::Duration::from_secs(4);

/// Server transactions by (Call-ID, CSeq number, method), so a dialog's response finds its request.
type ServerKey = (Box<str>, u32, Method);

/// How many entries each table of a [`UaCore`] holds ([`UaCore::table_sizes`]): all are back to 0
/// once every call has ended and its timers have run (`pinned` is its owner's: a B2BUA forgets
/// its Call-IDs 64*T1 after the call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Server transactions by (Call-ID, CSeq, method).
    pub server_tx: usize,
    /// The same, by transaction.
    pub server_keys: usize,
    /// Our client transactions (their method; the request itself until the final response).
    pub client_req: usize,
    /// Client transactions waiting for a final response.
    pub awaiting_final: usize,
    /// Addresses learned per Call-ID.
    pub peers: usize,
    /// Pinned next hops per Call-ID.
    pub pinned: usize,
    /// Events not yet polled.
    pub events: usize,
    /// The dialogs' tables.
    pub dialogs: crate::dialog::TableSizes,
}

/// The glue between [`Endpoint`] and [`Dialogs`].
#[derive(Debug)]
pub struct UaCore {
    dialogs: Dialogs,
    server_tx: HashMap<ServerKey, TransactionId>,
    server_keys: HashMap<TransactionId, ServerKey>,
    /// Our client transactions, until they end.
    client_req: HashMap<TransactionId, Sent>,
    /// Client transactions still waiting for a final response.
    awaiting_final: HashMap<TransactionId, (bool, Instant)>,
    /// Last address heard from, per Call-ID: where to send when the next hop is a domain name.
    /// Only a dialog's requests and 2xx retransmissions read it, so an entry is kept while a
    /// dialog of its Call-ID is held, and swept after (issue 13: ~120 bytes per call grew for good).
    peers: HashMap<Box<str>, SocketAddr>,
    /// When `peers` is next swept of the Call-IDs no dialog holds (every 64*T1 while it has entries).
    peer_sweep: Option<Instant>,
    /// Where requests go when neither the next hop nor the Call-ID gives an address.
    default_peer: Option<SocketAddr>,
    /// Outbound proxy (RFC 3261 §8.1.2): requests without a Route go there, whatever their
    /// Request-URI says.
    outbound: Option<SocketAddr>,
    /// Fixed next hops per Call-ID (a B2BUA leg: the address the phone registered or called from,
    /// which behind NAT is not the one in its Contact). Used when the request has no Route.
    /// Keyed by shared Call-IDs: a B2BUA pins both legs of every call for its whole life.
    pinned: HashMap<std::sync::Arc<str>, SocketAddr>,
    /// Whom the endpoint names as the owner of the client transactions this core starts.
    owner: Owner,
    events: VecDeque<UaEvent>,
    /// The last URI [`UaCore::uri_addr`] read, and its address.
    last_uri: Option<(Box<str>, Option<SocketAddr>)>,
}

/// What the core keeps of a request it sent, while its client transaction lives. The request is
/// read only until its final response: to find an INVITE to cancel, and to tell the dialog which
/// request timed out. After the final response only the method is (for [`UaEvent::ResponseSeen`]
/// of a retransmitted or forked 2xx), so an INVITE's copy is not held for Timer M's 32 s.
#[derive(Debug)]
struct Sent {
    method: Method,
    /// `None` once a final response came. Boxed: a message is a few hundred bytes inline, and
    /// the table keeps this slot (with its spare buckets) for the transaction's whole life.
    request: Option<Box<Message>>,
}

impl Sent {
    fn new(request: Message) -> Option<Sent> {
        Some(Sent { method: request.method()?.clone(), request: Some(Box::new(request)) })
    }
}

fn server_key(msg: &Message) -> Option<ServerKey> {
    let cseq = msg.cseq().ok()?;
    Some((msg.call_id().ok()?.into(), cseq.seq, cseq.method))
}

/// The address of a SIP URI whose host is an IP literal.
fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let Ok(Uri::Sip(u)) = Uri::parse(uri) else { return None };
    let ip: IpAddr = u.params.value("maddr").and_then(|m| m.parse().ok()).or_else(|| u.host.ip())?;
    Some(SocketAddr::new(ip, u.port.unwrap_or(crate::transport::DEFAULT_PORT)))
}

// ===== impl UaCore =====

impl UaCore {
    /// A core over `dialogs`; `default_peer` is where requests go when no address can be read from
    /// them (e.g. an outbound proxy).
    pub fn new(dialogs: Dialogs, default_peer: Option<SocketAddr>) -> UaCore {
        UaCore {
            dialogs,
            server_tx: HashMap::default(),
            server_keys: HashMap::default(),
            client_req: HashMap::default(),
            awaiting_final: HashMap::default(),
            peers: HashMap::default(),
            peer_sweep: None,
            default_peer,
            outbound: None,
            pinned: HashMap::default(),
            owner: Owner::Phone,
            events: VecDeque::new(),
            last_uri: None,
        }
    }

    /// Names the owner of the client transactions this core starts ([`Owner::Phone`] unless
    /// set): the endpoint's events for them carry it, so an application with several cores hands
    /// each event to the right one.
    pub fn with_owner(mut self, owner: Owner) -> UaCore {
        self.owner = owner;
        self
    }

    /// Sets where requests go when neither the next hop nor the Call-ID gives an address.
    pub fn set_default_peer(&mut self, peer: Option<SocketAddr>) {
        self.default_peer = peer;
    }

    /// Sends every request without a Route header to `proxy` (an outbound proxy, §8.1.2).
    pub fn set_outbound_proxy(&mut self, proxy: Option<SocketAddr>) {
        self.outbound = proxy;
    }

    /// Sends every request of Call-ID `call_id` that has no Route header to `peer`.
    ///
    /// A `DialogId`'s `Arc<str>` Call-ID is shared rather than copied.
    pub fn pin_peer(&mut self, call_id: impl Into<std::sync::Arc<str>>, peer: SocketAddr) {
        self.pinned.insert(call_id.into(), peer);
    }

    /// Where [`UaCore::pin_peer`] sends the requests of `call_id`.
    pub fn pinned_peer(&self, call_id: &str) -> Option<SocketAddr> {
        self.pinned.get(call_id).copied()
    }

    /// Forgets what [`UaCore::pin_peer`] and incoming messages taught about `call_id`.
    pub fn forget_peer(&mut self, call_id: &str) {
        self.pinned.remove(call_id);
        self.peers.remove(call_id);
    }

    /// True if transaction `tx` is one of ours: a request we sent, or a request we received that a
    /// dialog may still answer.
    pub fn owns(&self, tx: TransactionId) -> bool {
        self.client_req.contains_key(&tx) || self.server_keys.contains_key(&tx)
    }

    /// The dialogs, for commands (`invite`, `accept`, `send_bye`, ...). Call [`UaCore::flush`] after.
    pub fn dialogs(&mut self) -> &mut Dialogs {
        &mut self.dialogs
    }

    /// Cancels our pending INVITE `id` (§9.1): the dialog notes it, and the CANCEL goes out on the
    /// INVITE's client transaction (same branch). Fails when the INVITE was answered or is unknown.
    pub fn cancel(&mut self, ep: &mut Endpoint, id: &crate::dialog::DialogId, now: Instant) -> Result<(), crate::dialog::DialogError> {
        self.dialogs.cancel(id, now)?;
        // The INVITE still waiting for its final response: after a 401/407 the answered first
        // INVITE of the same Call-ID lingers (Timer D) and cannot be cancelled.
        let invite_tx = self
            .client_req
            .iter()
            .find(|(tx, sent)| {
                sent.method == Method::Invite
                    && sent.request.as_ref().is_some_and(|req| req.call_id().is_ok_and(|c| c == &*id.call_id))
                    && self.awaiting_final.contains_key(*tx)
            })
            .map(|(tx, _)| *tx);
        match invite_tx {
            Some(tx) => match ep.cancel(tx, now) {
                Ok(cancel_tx) => {
                    if let Some(sent) = ep.transaction_request(cancel_tx).and_then(Sent::new) {
                        self.client_req.insert(cancel_tx, sent);
                    }
                    Ok(())
                }
                // Before any provisional response a CANCEL may not be sent yet (§9.1).
                Err(_) => Err(crate::dialog::DialogError::WrongState),
            },
            None => Err(crate::dialog::DialogError::UnknownDialog),
        }
    }

    /// True when every dialog has ended and every request we sent has its final response: what a
    /// user agent waits for before it exits. A BYE is waited for at most [`BYE_GRACE`]: the dialog
    /// is over, and a peer that vanished would otherwise hold the exit for Timer F (32 s).
    pub fn is_idle(&self, now: Instant) -> bool {
        let waiting = self.awaiting_final.values().any(|&(is_bye, sent)| !is_bye || now.saturating_duration_since(sent) < BYE_GRACE);
        !waiting && self.dialogs.ids().all(|id| self.dialogs.get(id).is_none_or(|d| d.state() == crate::dialog::DialogState::Terminated))
    }

    /// The sizes of the tables (cheap: a few lengths).
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            server_tx: self.server_tx.len(),
            server_keys: self.server_keys.len(),
            client_req: self.client_req.len(),
            awaiting_final: self.awaiting_final.len(),
            peers: self.peers.len(),
            pinned: self.pinned.len(),
            events: self.events.len(),
            dialogs: self.dialogs.table_sizes(),
        }
    }

    /// The dialogs, read-only.
    pub fn dialogs_ref(&self) -> &Dialogs {
        &self.dialogs
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// The dialogs' next deadline (and the sweep of learned peers).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let bye_grace = self.awaiting_final.values().filter(|(is_bye, _)| *is_bye).map(|(_, sent)| *sent + BYE_GRACE);
        self.dialogs.poll_timeout().into_iter().chain(bye_grace).chain(self.peer_sweep).min()
    }

    /// Advances the dialogs' timers and sends what they produce.
    pub fn handle_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        // A BYE past its grace no longer holds anything up (see `is_idle`); forget it so its
        // deadline is not reported again.
        self.awaiting_final.retain(|_, &mut (is_bye, sent)| !is_bye || now.saturating_duration_since(sent) < BYE_GRACE);
        self.dialogs.handle_timeout(now);
        if self.peer_sweep.is_some_and(|at| at <= now) {
            self.sweep_peers(now);
        }
        self.flush(ep, now);
    }

    /// Forgets the peers of Call-IDs that no dialog holds any more (terminated dialogs linger
    /// 64*T1 first, so late requests still find their way), and the peers of requests that never
    /// made a dialog (OPTIONS, a refused INVITE). One pass over the dialogs every 64*T1 while any
    /// peer is known: nothing is added to the per-call path.
    fn sweep_peers(&mut self, now: Instant) {
        let held: crate::collections::HashSet<&str> = self.dialogs.ids().map(|id| &*id.call_id).collect();
        self.peers.retain(|call_id, _| held.contains(&**call_id));
        self.peer_sweep = (!self.peers.is_empty()).then(|| now + self.dialogs.config().t1 * 64);
    }

    /// Feeds one endpoint event.
    pub fn handle_endpoint_event(&mut self, ep: &mut Endpoint, event: EndpointEvent, now: Instant) {
        match event {
            EndpointEvent::Request { tx, request, source } => self.on_request(ep, tx, request, source, now),
            EndpointEvent::Ack { request, source } => {
                self.remember_peer(&request, source, now);
                // An ACK is never answered (§17.2.3): one the dialogs cannot take is dropped.
                if let Err(e) = self.dialogs.handle_request(&request, now) {
                    tracing::debug!(peer = %source, error = %e, "ACK dropped");
                }
            }
            EndpointEvent::Cancelled { tx, cancel, .. } => {
                // The endpoint already answered 200 and 487 (§9.2); the dialog ends its early state.
                self.forget_server_tx(tx);
                // Already answered; a CANCEL for no dialog of ours (a proxied INVITE) has nothing to end.
                if let Err(e) = self.dialogs.handle_request(&cancel, now) {
                    tracing::debug!(error = %e, "CANCEL ends no dialog");
                }
            }
            EndpointEvent::Response { tx, response, owner } => match self.client_req.get_mut(&tx) {
                Some(sent) => {
                    if response.status().is_some_and(|c| c >= 200) {
                        self.awaiting_final.remove(&tx);
                        sent.request = None;
                    }
                    if let Some(status) = response.status() {
                        self.events.push_back(UaEvent::ResponseSeen { method: sent.method.clone(), status });
                    }
                    if let Err(e) = self.dialogs.handle_response(&response, now) {
                        tracing::debug!(?tx, error = %e, "response to our request dropped");
                    }
                }
                None => self.events.push_back(UaEvent::Endpoint(EndpointEvent::Response { tx, response, owner })),
            },
            EndpointEvent::StrayResponse { response, source } => {
                // A 2xx retransmission: the dialog sends its ACK again (§13.2.2.4).
                if self.dialogs.handle_response(&response, now).is_err() {
                    self.events.push_back(UaEvent::Endpoint(EndpointEvent::StrayResponse { response, source }));
                }
            }
            EndpointEvent::Timeout { tx, owner } => match self.client_req.get_mut(&tx) {
                Some(sent) => {
                    self.awaiting_final.remove(&tx);
                    // After the final response (a transport error resending an ACK) the dialog
                    // already has the outcome; there is nothing more to tell it.
                    match sent.request.take() {
                        Some(req) => {
                            if let Err(e) = self.dialogs.handle_request_timeout(&req, now) {
                                tracing::debug!(?tx, error = %e, "timeout of a request no dialog waits for");
                            }
                        }
                        None => tracing::debug!(?tx, "transport error after the final response"),
                    }
                }
                None => self.events.push_back(UaEvent::Endpoint(EndpointEvent::Timeout { tx, owner })),
            },
            // The UA never answers with `respond_rebuildable`, so this does not come; handed on.
            ev @ EndpointEvent::Repeated { .. } => self.events.push_back(UaEvent::Endpoint(ev)),
            EndpointEvent::Terminated { tx, .. } => {
                self.client_req.remove(&tx);
                self.awaiting_final.remove(&tx);
                self.forget_server_tx(tx);
            }
        }
        self.flush(ep, now);
    }

    fn remember_peer(&mut self, msg: &Message, source: SocketAddr, now: Instant) {
        if let Ok(call_id) = msg.call_id() {
            if !self.peers.contains_key(call_id) {
                self.peers.insert(call_id.into(), source);
                if self.peer_sweep.is_none() {
                    self.peer_sweep = Some(now + self.dialogs.config().t1 * 64);
                }
            }
        }
    }

    fn forget_server_tx(&mut self, tx: TransactionId) {
        if let Some(key) = self.server_keys.remove(&tx) {
            self.server_tx.remove(&key);
        }
    }

    /// Takes in a dialog-creating INVITE on server transaction `tx` (see
    /// [`Dialogs::accept_invite`]) and returns the id of the dialog that its answers create; answer
    /// through [`UaCore::dialogs`], then [`UaCore::flush`]. A 422 or 482 the dialog layer wrote
    /// itself is already sent on `tx` when this returns; every other error left `tx` unanswered.
    pub fn accept_invite(
        &mut self,
        ep: &mut Endpoint,
        tx: TransactionId,
        request: &Message,
        source: SocketAddr,
        now: Instant,
    ) -> Result<crate::dialog::DialogId, NotAccepted> {
        self.bind_server_tx(tx, request, source, now);
        let result = self.dialogs.accept_invite(request, now);
        self.flush(ep, now);
        result
    }

    /// Remembers `request`'s server transaction so the dialog's answers go out on it.
    fn bind_server_tx(&mut self, tx: TransactionId, request: &Message, source: SocketAddr, now: Instant) {
        self.remember_peer(request, source, now);
        if let Some(key) = server_key(request) {
            self.server_keys.insert(tx, key.clone());
            self.server_tx.insert(key, tx);
        }
    }

    fn on_request(&mut self, ep: &mut Endpoint, tx: TransactionId, request: Message, source: SocketAddr, now: Instant) {
        self.bind_server_tx(tx, &request, source, now);
        match self.dialogs.handle_request(&request, now) {
            Ok(()) => {}
            Err(InputError::UnknownDialog) => {
                ep.respond_or_log(tx, reject_unknown(&request), now);
            }
            Err(_) => self.events.push_back(UaEvent::Endpoint(EndpointEvent::Request { tx, request, source })),
        }
    }

    /// The next hop of a request (§8.1.2, §16.12): the top Route, else the Request-URI; an IP literal
    /// is used as is, a name falls back to the peer of the Call-ID, then the default peer.
    fn next_hop(&mut self, req: &Message) -> Option<SocketAddr> {
        let route = req.routes().next().and_then(Result::ok).map(|r| r.uri_text.to_owned());
        if route.is_none() {
            if let Some(p) = self.outbound.or_else(|| req.call_id().ok().and_then(|c| self.pinned.get(c).copied())) {
                return Some(p);
            }
        }
        let by_uri = route.as_deref().or(req.request_uri_str()).and_then(|uri| self.uri_addr(uri));
        by_uri.or_else(|| req.call_id().ok().and_then(|c| self.peers.get(c).copied())).or(self.default_peer)
    }

    /// [`uri_addr`], remembered for the last URI: every call of a load run sends its INVITE to the
    /// same Request-URI and its ACK and BYE to the same Contact, and each parse cost about 600
    /// instructions. The answer depends on the text alone.
    fn uri_addr(&mut self, uri: &str) -> Option<SocketAddr> {
        if let Some((last, addr)) = &self.last_uri {
            if **last == *uri {
                return *addr;
            }
        }
        let addr = uri_addr(uri);
        self.last_uri = Some((uri.into(), addr));
        addr
    }

    /// Sends what the dialogs produced. Call after every command given to [`UaCore::dialogs`].
    pub fn flush(&mut self, ep: &mut Endpoint, now: Instant) {
        while let Some(msg) = self.dialogs.poll_transmit() {
            if msg.is_request() {
                self.send_request(ep, msg, now);
            } else {
                self.send_response(ep, msg, now);
            }
        }
        while let Some(ev) = self.dialogs.poll_event() {
            self.events.push_back(UaEvent::Dialog(ev));
        }
    }

    fn send_request(&mut self, ep: &mut Endpoint, msg: Message, now: Instant) {
        let Some(dest) = self.next_hop(&msg) else {
            tracing::warn!(method = ?msg.method(), "no next hop for request; dropped");
            return;
        };
        if msg.method() == Some(&Method::Ack) {
            ep.send_stateless(&msg, dest);
            return;
        }
        match ep.send_request(msg.clone(), dest, self.owner, now) {
            Ok(tx) => {
                self.awaiting_final.insert(tx, (msg.method() == Some(&Method::Bye), now));
                if let Some(sent) = Sent::new(msg) {
                    self.client_req.insert(tx, sent);
                }
            }
            Err(e) => {
                tracing::debug!(error = ?e, "request not sent");
                // As if it timed out: the dialog ends or retries as it would (§12.2.1.2).
                if let Err(e) = self.dialogs.handle_request_timeout(&msg, now) {
                    tracing::debug!(error = %e, "no dialog waits for the unsent request");
                }
            }
        }
    }

    fn send_response(&mut self, ep: &mut Endpoint, msg: Message, now: Instant) {
        let is_2xx_to_invite =
            msg.status().is_some_and(|c| (200..300).contains(&c)) && msg.cseq().is_ok_and(|c| c.method == Method::Invite);
        if let Some(&tx) = server_key(&msg).and_then(|k| self.server_tx.get(&k)) {
            if ep.respond(tx, msg.clone(), now).is_ok() {
                return;
            }
        }
        // §13.3.1.4: the 2xx and its retransmissions outlive the INVITE server transaction.
        if is_2xx_to_invite {
            let dest = response_destination(&msg).or_else(|| msg.call_id().ok().and_then(|c| self.peers.get(c).copied()));
            if let Some(dest) = dest {
                ep.send_stateless(&msg, dest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::DialogConfig;

    /// The remembered URI answers as a parse would, whichever URIs come in turn.
    #[test]
    fn remembered_uri_gives_each_uris_own_address() {
        let mut ua = UaCore::new(Dialogs::new(DialogConfig::default()), None);
        let uris = [
            "sip:echo@127.0.0.1:5070",
            "sip:bob@192.0.2.7",
            "sip:bob@pc.example.com",
            "sip:a@h;maddr=192.0.2.9",
            "sip:echo@127.0.0.1:5070",
            "nonsense",
        ];
        for uri in uris.iter().chain(uris.iter().rev()).chain(uris.iter()) {
            assert_eq!(ua.uri_addr(uri), uri_addr(uri), "{uri}");
        }
        assert_eq!(ua.uri_addr("sip:echo@127.0.0.1:5070"), Some("127.0.0.1:5070".parse().expect("address")));
        assert_eq!(ua.uri_addr("sip:bob@192.0.2.7"), Some("192.0.2.7:5060".parse().expect("address")));
        assert_eq!(ua.uri_addr("sip:bob@pc.example.com"), None);
    }
}
