//! The endpoint: routes every datagram to a transaction, the application, or a stateless answer
//! (sans-IO; RFC 3261 §8.2, §17, §18).
//!
//! ```text
//!  datagram ─► classify ─► parse ─► checks ─► Transactions ─► events ─► application
//!                  │          │        │            │              │      (by owner)
//!                  ▼          ▼        ▼            ▼              ▼
//!            STUN/CRLF    400/505   400/416/   retransmissions,  each carries the owner
//!            counted      or drop   420/483/   timers, ACK for   and the transaction's peer
//!                                   501        non-2xx           kept beside it
//! ```
//!
//! Every transaction has an [`Owner`], the transaction user it belongs to (RFC 3261 §17: "the
//! TU"): a client transaction gets it when it is started ([`Endpoint::send_request`]; a CANCEL
//! inherits its INVITE's), a server transaction when the application's admission names it
//! ([`Endpoint::set_owner`], before the first answer). Its Response, Timeout, Cancelled and
//! Terminated events carry that owner, so the application hands each to one owner without
//! asking anyone whether the transaction is theirs.
//!
//! Run loop, like quinn-proto: feed one input (`handle_datagram`, `handle_timeout`, or a command such
//! as `respond` / `send_request`), then drain `poll_transmit` and `poll_event` until both are empty,
//! then sleep until `poll_timeout`. Every input takes `now`; nothing here reads a clock or a socket.

use crate::collections::HashMap;
use crate::message::{error_response, ErrorKind, HeaderName, Message, Method, ParseError};
use crate::transaction::{CancelTarget, Config, Event, Routed, TransactionId, TransactionState, Transactions};
use crate::transport::rate_limit::{self, RateLimit, RateLimiter, SharedRateLimiter};
use crate::transport::{classify, response_destination, stamp_received, DatagramKind, Transmit};
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// The To-tag of every answer sent without a transaction ([`Endpoint::respond_stateless`] and the
/// endpoint's own refusals). An ACK that matches no transaction and carries this To-tag acknowledges
/// such a non-2xx answer (RFC 3261 §17.1.1.3): the endpoint absorbs it, as Kamailio's `sl` module
/// does with the ACK for its stateless replies.
pub const STATELESS_TAG: &str = "sb-sl";

/// Methods this endpoint handles, for Allow (RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, MESSAGE, SUBSCRIBE, NOTIFY, REFER";

/// Endpoint settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Transaction timers (T1, T2, T4).
    pub timers: Config,
    /// Option tags we support (RFC 3261 §20.37); a Require outside this list gets 420.
    pub supported: Vec<String>,
    /// Value of User-Agent / Server.
    pub user_agent: String,
    /// Methods we handle (Allow, RFC 3261 §20.5); others get 501. Defaults to [`ALLOW`]; a
    /// registrar adds REGISTER.
    pub allow: String,
    /// Live transactions at most: a new request beyond it gets a stateless 503 with Retry-After
    /// (issue 14 point 5), so a flood cannot grow the table without bound.
    pub max_transactions: usize,
    /// Per-source-IP request rate limit (issue 14 point 4); `None` (the default here; the service
    /// turns it on with its `rate_limit` setting) is no limit.
    pub rate_limit: Option<RateLimit>,
    /// Trusted hops (the cluster's dispatchers, issue 17 point 3), by address: a request from one
    /// is rate-limited as coming from the client address in the Via the hop received (the second
    /// Via, with the hop's `received`/`rport`), see [`client_behind_hop`].
    pub trusted_hops: Vec<SocketAddr>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            timers: Config::default(),
            supported: vec!["timer".into()],
            user_agent: format!("switchboard/{}", env!("CARGO_PKG_VERSION")),
            allow: ALLOW.to_owned(),
            max_transactions: 100_000,
            rate_limit: None,
            trusted_hops: Vec::new(),
        }
    }
}

/// The client a request from a trusted hop came from: where the response to the Via below the
/// hop's own goes (its `received`/`rport`, RFC 3261 §18.2.2, RFC 3581 §4), `None` when the
/// datagram is not such a request. The hop is trusted to have stamped that Via, as our own
/// transport stamps the top one.
pub fn client_behind_hop(datagram: &Bytes) -> Option<SocketAddr> {
    let msg = Message::parse(datagram.clone()).ok().filter(Message::is_request)?;
    client_in_second_via(&msg)
}

/// The client a hop in front of us received `req` from: the second Via's `received` (RFC 3261
/// §18.2.1) or host, and its `rport` (RFC 3581 §4) or port.
pub fn client_in_second_via(req: &Message) -> Option<SocketAddr> {
    let via = req.vias().nth(1)?.ok()?;
    let ip: std::net::IpAddr = via.received().and_then(|r| r.parse().ok()).or_else(|| via.host.ip())?;
    let port = via.rport().flatten().or(via.port).unwrap_or(crate::transport::DEFAULT_PORT);
    Some(SocketAddr::new(ip, port))
}

/// The transaction user a transaction belongs to (RFC 3261 §17), recorded by the endpoint beside
/// the transaction and carried on its events. The endpoint itself gives it no meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Owner {
    /// A new server transaction whose request the application has not assigned yet.
    #[default]
    Unassigned,
    /// The application itself: it answered the request (a refusal, 404, a challenge) and nothing
    /// else follows.
    Service,
    /// The registrar (REGISTER).
    Registrar,
    /// The built-in echo user.
    Echo,
    /// The back-to-back user agent (both legs of its calls).
    B2bua,
    /// The stateful proxy: a request it forwards (`upstream: None`), or a branch of the request
    /// received on server transaction `upstream` (RFC 3261 §16.6), so a response finds the way
    /// back up without a table of branches.
    Proxy {
        /// The server transaction a branch belongs to; `None` on that server transaction itself.
        upstream: Option<TransactionId>,
    },
    /// A phone's user agent (the softphone, examples, tests).
    Phone,
}

/// What the endpoint keeps beside each live transaction, by [`TransactionId`].
#[derive(Debug)]
struct TxMeta {
    /// Where it sends: the server for a client transaction, the source of the request for a
    /// server transaction (used when the Via gives no address, §18.2.2).
    peer: SocketAddr,
    /// Whose it is.
    owner: Owner,
    /// The To tag an INVITE server transaction answered with, so a CANCEL's 200 and the 487 carry
    /// the same tag as the provisional responses before them (§9.2).
    to_tag: Option<String>,
}

/// What the endpoint reports to the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum EndpointEvent {
    /// A new request opened server transaction `tx`; answer it with [`Endpoint::respond`].
    Request {
        /// The server transaction.
        tx: TransactionId,
        /// The request (top Via stamped with received/rport).
        request: Message,
        /// Where it came from.
        source: SocketAddr,
    },
    /// An ACK for a 2xx (it is not part of any transaction, §17.1.1.3): for the dialog.
    Ack {
        /// The ACK.
        request: Message,
        /// Where it came from.
        source: SocketAddr,
    },
    /// A CANCEL matched the INVITE of `tx`: the endpoint answered the CANCEL with 200 and the INVITE
    /// with 487 (§9.2).
    Cancelled {
        /// The INVITE server transaction.
        tx: TransactionId,
        /// The CANCEL, for layers that keep their own state about the INVITE (dialogs).
        cancel: Message,
        /// The INVITE's owner.
        owner: Owner,
    },
    /// A response on client transaction `tx`.
    Response {
        /// The client transaction.
        tx: TransactionId,
        /// The response.
        response: Message,
        /// Whose transaction it is.
        owner: Owner,
    },
    /// A response no transaction claims, e.g. a retransmitted 2xx to an INVITE (the dialog ACKs it).
    StrayResponse {
        /// The response.
        response: Message,
        /// Where it came from.
        source: SocketAddr,
    },
    /// A retransmission of a request answered with [`Endpoint::respond_rebuildable`], its
    /// transaction still in Completed: send the same final response again, built from this
    /// request, with [`Endpoint::resend_answer`] (RFC 3261 §17.2.2). The transaction has no id any
    /// more (it was compacted), so this comes with no owner: the application answers it by its
    /// method.
    Repeated {
        /// The request (top Via stamped with received/rport), byte for byte the one answered: its
        /// Via says where the first answer went, and the rebuilt one goes there too.
        request: Message,
        /// Where it came from.
        source: SocketAddr,
    },
    /// Timer B, F or H fired on `tx`.
    Timeout {
        /// The transaction.
        tx: TransactionId,
        /// Whose transaction it is.
        owner: Owner,
    },
    /// The transaction is gone.
    Terminated {
        /// The transaction.
        tx: TransactionId,
        /// Whose transaction it was.
        owner: Owner,
    },
}

impl EndpointEvent {
    /// The owner of the event's transaction; `None` for events outside any transaction (Ack,
    /// StrayResponse) and for a new request, which has none until the application assigns it.
    pub fn owner(&self) -> Option<Owner> {
        match self {
            EndpointEvent::Cancelled { owner, .. }
            | EndpointEvent::Response { owner, .. }
            | EndpointEvent::Timeout { owner, .. }
            | EndpointEvent::Terminated { owner, .. } => Some(*owner),
            EndpointEvent::Request { .. }
            | EndpointEvent::Ack { .. }
            | EndpointEvent::StrayResponse { .. }
            | EndpointEvent::Repeated { .. } => None,
        }
    }
}

/// Counters of what arrived and what was refused. Everything dropped is counted somewhere here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received.
    pub datagrams: u64,
    /// STUN datagrams ignored.
    pub stun: u64,
    /// CRLF keep-alives ignored.
    pub keepalives: u64,
    /// Non-SIP datagrams ignored.
    pub garbage: u64,
    /// Requests answered statelessly because they failed to parse or validate.
    pub bad_requests: u64,
    /// Requests refused by the checks (416, 420, 483, 501).
    pub refused_requests: u64,
    /// Malformed responses dropped.
    pub bad_responses: u64,
    /// Responses that matched no transaction.
    pub stray_responses: u64,
    /// Requests that matched an existing transaction (retransmissions).
    pub retransmitted_requests: u64,
    /// Messages we resent on a transaction timer (A, E, G; RFC 3261 §17): a sign of loss or of a
    /// peer slower than T1.
    pub retransmissions: u64,
    /// New requests answered 503 statelessly because `max_transactions` were live.
    pub overloaded: u64,
    /// Requests dropped unparsed by the per-source rate limit.
    pub rate_limited: u64,
    /// Responses sent without keeping a transaction ([`Endpoint::respond_stateless`]).
    pub stateless_answers: u64,
    /// ACKs for stateless non-2xx answers, absorbed (§17.1.1.3).
    pub absorbed_acks: u64,
}

/// How many entries each table of the endpoint holds ([`Endpoint::table_sizes`]): all are back to
/// 0 once every transaction has ended and its timers have run (issue 13, "nothing per call
/// outlives the call").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Live transactions.
    pub transactions: usize,
    /// Transaction keys indexed.
    pub transaction_keys: usize,
    /// Items in the transactions' timer heap (stale ones until they come due).
    pub transaction_timers: usize,
    /// Addresses per transaction.
    pub peers: usize,
    /// To tags per INVITE server transaction.
    pub to_tags: usize,
}

/// Retry-After of the 503 sent while the transaction table is full, in seconds: short, since the
/// table drains as transactions end.
const FULL_RETRY_AFTER: &str = "5";

/// A refusal: status, reason phrase, extra headers.
type Refusal = (u16, &'static str, Vec<(HeaderName, String)>);

/// The sans-IO endpoint. See the module docs for the run loop.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    transactions: Transactions,
    /// Peer, owner and To tag of each live transaction, entered when it starts and removed with
    /// its Terminated event.
    meta: HashMap<TransactionId, TxMeta>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    stats: Stats,
    limiter: Option<Limiter>,
    /// Destinations an ICMP error reported unreachable ([`Endpoint::handle_unreachable`]).
    unreachable: Vec<SocketAddr>,
    /// `config.allow` split at its commas and trimmed, once: every request is checked against it
    /// (issue 16: splitting the string per request cost ~2,800 instructions).
    allowed: Vec<String>,
}

/// The per-source rate limit an endpoint checks: its own, or one shared with sibling workers.
#[derive(Debug)]
enum Limiter {
    Own(RateLimiter),
    Shared(SharedRateLimiter),
}

// ===== impl Endpoint =====

impl Endpoint {
    /// A new endpoint.
    pub fn new(config: EndpointConfig) -> Endpoint {
        let mut transactions = Transactions::new(config.timers);
        transactions.set_limit(config.max_transactions);
        let limiter = config.rate_limit.map(|l| Limiter::Own(RateLimiter::new(l)));
        let allowed = config.allow.split(',').map(|m| m.trim().to_owned()).collect();
        Endpoint {
            allowed,
            config,
            transactions,
            meta: HashMap::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            limiter,
            unreachable: Vec::new(),
        }
    }

    /// Checks requests against `shared` instead of a limiter of its own (`serve --workers N`,
    /// issue 16: one set of per-source buckets for all the workers, whichever worker a request
    /// lands on). Replaces [`EndpointConfig::rate_limit`].
    pub fn share_rate_limit(&mut self, shared: SharedRateLimiter) {
        self.limiter = Some(Limiter::Shared(shared));
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        Stats { retransmissions: self.transactions.retransmissions(), ..self.stats }
    }

    /// The settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Live transactions.
    pub fn transaction_count(&self) -> usize {
        self.transactions.len()
    }

    /// The sizes of the endpoint's tables (cheap: a few lengths).
    pub fn table_sizes(&self) -> TableSizes {
        let (transaction_keys, transaction_timers) = self.transactions.index_sizes();
        TableSizes {
            transactions: self.transactions.len(),
            transaction_keys,
            transaction_timers,
            peers: self.meta.len(),
            to_tags: self.meta.values().filter(|m| m.to_tag.is_some()).count(),
        }
    }

    /// Records `owner` as the owner of live transaction `tx` (a new server transaction, once the
    /// application knows whose its request is). Do it before answering: a stateless answer
    /// terminates the transaction at once. False when `tx` is gone.
    pub fn set_owner(&mut self, tx: TransactionId, owner: Owner) -> bool {
        self.meta.get_mut(&tx).map(|m| m.owner = owner).is_some()
    }

    /// The owner of live transaction `tx`.
    pub fn owner(&self, tx: TransactionId) -> Option<Owner> {
        self.meta.get(&tx).map(|m| m.owner)
    }

    /// The peer of live transaction `tx`: where its request came from (server) or went (client).
    pub fn peer(&self, tx: TransactionId) -> Option<SocketAddr> {
        self.meta.get(&tx).map(|m| m.peer)
    }

    /// Feeds one received datagram.
    pub fn handle_datagram(&mut self, source: SocketAddr, datagram: Bytes, now: Instant) {
        self.stats.datagrams += 1;
        match classify(&datagram) {
            DatagramKind::Sip => {}
            DatagramKind::Stun => return self.stats.stun += 1,
            DatagramKind::KeepAlive => return self.stats.keepalives += 1,
            DatagramKind::Garbage => {
                tracing::debug!(peer = %source, len = datagram.len(), "dropped non-SIP datagram");
                return self.stats.garbage += 1;
            }
        }
        let limited = match self.config.trusted_hops.contains(&source) {
            true => client_behind_hop(&datagram).unwrap_or(source),
            false => source,
        };
        if !datagram.starts_with(b"SIP/") && !self.admit(limited, now) {
            return;
        }
        match Message::parse(datagram.clone()) {
            Err(e) => self.refuse_unparsable(source, &datagram, &e),
            Ok(m) if m.is_request() => self.handle_request(source, m, now),
            Ok(m) => self.handle_response(source, m, now),
        }
        self.drain(now);
    }

    /// Advances timers. A call before any deadline does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transactions.handle_timeout(now);
        self.drain(now);
    }

    /// Sends `response` on server transaction `tx`. Fails when the transaction is gone or has
    /// already sent its final response.
    pub fn respond(&mut self, tx: TransactionId, response: Message, now: Instant) -> Result<(), crate::transaction::Error> {
        // Only an INVITE can be cancelled (§9.2), so only its To tag is kept: a completed REGISTER
        // holds no copy of its tag while it waits out Timer J (issue 16 point 4).
        let invite = response.cseq().is_ok_and(|c| c.method == Method::Invite);
        if let Some(meta) = self.meta.get_mut(&tx).filter(|m| invite && m.to_tag.is_none()) {
            meta.to_tag = response.to_tag().ok().flatten().map(str::to_owned);
        }
        // A transaction that is gone (e.g. a forked 2xx relayed after the first one ended the
        // INVITE server transaction) has no entry, so nothing is kept for it.
        let r = self.transactions.send_response(tx, response, now);
        self.drain(now);
        r
    }

    /// [`Endpoint::respond`] with a final response that the application can build again from a
    /// retransmission of the request (a registrar's 200, issue 16): once Completed, the
    /// transaction keeps a digest of its key, a fingerprint of its request and Timer J instead of
    /// the response (see [`Transactions::send_rebuildable_response`]), and a retransmission of the
    /// request comes back as [`EndpointEvent::Repeated`], to be answered with
    /// [`Endpoint::resend_answer`]. A [`EndpointEvent::Terminated`] for `tx` follows at once (its
    /// id ends; the transaction still counts toward `max_transactions` until Timer J).
    pub fn respond_rebuildable(&mut self, tx: TransactionId, response: Message, now: Instant) -> Result<(), crate::transaction::Error> {
        let r = self.transactions.send_rebuildable_response(tx, response, now);
        self.drain(now);
        r
    }

    /// Sends `response`, rebuilt for an [`EndpointEvent::Repeated`] request that came from
    /// `source`, where the request's top Via says (§18.2.2), else to `source`.
    pub fn resend_answer(&mut self, response: &Message, source: SocketAddr) {
        let dest = response_destination(response).unwrap_or(source);
        self.send_stateless(response, dest);
    }

    /// [`Endpoint::respond`] for an answer whose failure leaves the caller nothing to do (the
    /// transaction timed out or was answered meanwhile, e.g. by a CANCEL's 487): a failure is logged
    /// at debug with the transaction and the status instead of being returned.
    pub fn respond_or_log(&mut self, tx: TransactionId, response: Message, now: Instant) {
        let status = response.status();
        if let Err(e) = self.respond(tx, response, now) {
            tracing::debug!(?tx, ?status, error = %e, "answer not sent");
        }
    }

    /// Sends `response` on server transaction `tx` and forgets the transaction at once, so nothing
    /// is kept for the request: no Timer J or H, no retransmission of the answer. For answers that
    /// must cost no memory, like a 401/407 challenge (as Kamailio's `sl_send_reply`): a
    /// retransmitted request is then a new request and is simply answered again (RFC 3261 §8.2.6
    /// allows a UAS to answer statelessly). A non-2xx final response only; give it the To-tag
    /// [`STATELESS_TAG`] so the ACK to an INVITE's answer is absorbed. A [`EndpointEvent::Terminated`]
    /// for `tx` follows.
    pub fn respond_stateless(&mut self, tx: TransactionId, response: Message, now: Instant) -> Result<(), crate::transaction::Error> {
        if response.status().is_none_or(|s| s < 300) {
            return Err(crate::transaction::Error::WrongMethod);
        }
        self.transactions.forget_server(tx)?;
        let meta = self.meta.remove(&tx);
        if let Some(dest) = response_destination(&response).or(meta.as_ref().map(|m| m.peer)) {
            self.stats.stateless_answers += 1;
            self.send_stateless(&response, dest);
        }
        let owner = meta.map(|m| m.owner).unwrap_or_default();
        self.events.push_back(EndpointEvent::Terminated { tx, owner });
        self.drain(now);
        Ok(())
    }

    /// Forgets server transaction `tx` without answering it: a stateful proxy whose branches of a
    /// non-INVITE request all timed out sends no 408 (RFC 4320 §4.2: the client's own transaction
    /// has expired by then, and a late 408 only adds to the storm). A retransmission of the
    /// request after this is a new request. A [`EndpointEvent::Terminated`] for `tx` follows.
    pub fn abandon_server(&mut self, tx: TransactionId, now: Instant) -> Result<(), crate::transaction::Error> {
        self.transactions.forget_server(tx)?;
        let owner = self.meta.remove(&tx).map(|m| m.owner).unwrap_or_default();
        self.events.push_back(EndpointEvent::Terminated { tx, owner });
        self.drain(now);
        Ok(())
    }

    /// Starts a client transaction for `request`, sent to `dest`, on behalf of `owner` (whom its
    /// events go to).
    pub fn send_request(
        &mut self,
        request: Message,
        dest: SocketAddr,
        owner: Owner,
        now: Instant,
    ) -> Result<TransactionId, crate::transaction::Error> {
        let id = self.transactions.start_client(request, now)?;
        self.meta.insert(id, TxMeta { peer: dest, owner, to_tag: None });
        self.drain(now);
        Ok(id)
    }

    /// Sends CANCEL for client INVITE transaction `tx` (§9.1), to the INVITE's peer and owned by
    /// the INVITE's owner.
    pub fn cancel(&mut self, tx: TransactionId, now: Instant) -> Result<TransactionId, crate::transaction::Error> {
        let id = self.transactions.cancel(tx, now)?;
        if let Some(&TxMeta { peer, owner, .. }) = self.meta.get(&tx) {
            self.meta.insert(id, TxMeta { peer, owner, to_tag: None });
        }
        self.drain(now);
        Ok(id)
    }

    /// The request of a live transaction; `None` once it lingers in the short form (a server
    /// transaction after its final response, a non-INVITE client in Completed: see
    /// [`Transactions::request`]).
    pub fn transaction_request(&self, tx: TransactionId) -> Option<Message> {
        self.transactions.request(tx).cloned()
    }

    /// Sends a message outside any transaction: an ACK for a 2xx, a 2xx retransmission.
    pub fn send_stateless(&mut self, message: &Message, dest: SocketAddr) {
        self.transmits.push_back(Transmit { dest, payload: message.as_bytes().clone() });
    }

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// An ICMP error said `dest` is unreachable (RFC 3261 §18.4: "treated as a transport
    /// error"): every client transaction sending to `dest` that has heard nothing back yet fails
    /// at once with a transport error (§17.1.4), reported as [`EndpointEvent::Timeout`], instead
    /// of retransmitting until Timer B or F. [`Endpoint::was_unreachable`] then says why.
    pub fn handle_unreachable(&mut self, dest: SocketAddr, now: Instant) {
        let failing: Vec<TransactionId> = self
            .meta
            .iter()
            .filter(|(_, m)| m.peer == dest)
            .map(|(id, _)| *id)
            .filter(|id| matches!(self.transactions.state(*id), Some(TransactionState::Calling | TransactionState::Trying)))
            .filter(|id| {
                let key = self.transactions.request(*id).and_then(|r| crate::transaction::TransactionKey::client(r).ok());
                key.and_then(|k| self.transactions.find(&k)) == Some(*id)
            })
            .collect();
        if failing.is_empty() {
            return;
        }
        tracing::debug!(%dest, transactions = failing.len(), "destination unreachable: transport error");
        if self.unreachable.len() >= 16 {
            self.unreachable.remove(0);
        }
        self.unreachable.push(dest);
        for id in failing {
            if let Err(e) = self.transactions.handle_transport_error(id, now) {
                tracing::debug!(?id, error = ?e, "transport error not taken");
            }
        }
        self.drain(now);
    }

    /// True when an ICMP error reported `dest` unreachable while a request of ours was waiting
    /// for it ([`Endpoint::handle_unreachable`]; the last 16 such destinations are kept).
    pub fn was_unreachable(&self, dest: SocketAddr) -> bool {
        self.unreachable.contains(&dest)
    }

    /// When to call [`Endpoint::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.transactions.poll_timeout()
    }

    fn refuse_unparsable(&mut self, source: SocketAddr, datagram: &[u8], e: &ParseError) {
        match error_response(datagram, e) {
            Some(answer) => {
                // The request never got its Via stamped (§18.2.1); do it on the copy in the answer so
                // it goes back to where the request came from, not to an unchecked sent-by.
                let answer = stamp_received(&answer, source);
                tracing::debug!(peer = %source, error = %e, "bad request answered {}", answer.status().unwrap_or(400));
                self.stats.bad_requests += 1;
                let dest = response_destination(&answer).unwrap_or(source);
                self.send_stateless(&answer, dest);
            }
            None => {
                tracing::debug!(peer = %source, error = %e, "dropped unparsable message");
                self.stats.bad_responses += 1;
            }
        }
    }

    /// Answers `request` statelessly with `code` (built per §8.2.6).
    fn answer_stateless(&mut self, request: &Message, source: SocketAddr, code: u16, reason: &str, extra: &[(HeaderName, &str)]) {
        let mut b = request.response_to(code, reason, Some(STATELESS_TAG));
        for (name, value) in extra {
            b.push(*name, value);
        }
        b.push(HeaderName::Server, &self.config.user_agent);
        let answer = b.finish();
        let dest = response_destination(&answer).unwrap_or(source);
        self.send_stateless(&answer, dest);
    }

    /// The checks of §8.2.1-§8.2.2 and §16.3 that refuse a request before a transaction exists.
    /// Returns true when the request was refused.
    fn refuse(&mut self, request: &Message, source: SocketAddr) -> bool {
        let Some(method) = request.method() else { return false };
        if let Err(e) = request.validate().and_then(|()| request.check_required()) {
            // An ACK is never answered (§17.1.1.3, §17.2.3): a malformed one is dropped.
            if *method == Method::Ack {
                tracing::debug!(peer = %source, error = %e, "malformed ACK dropped");
                self.stats.bad_requests += 1;
                return true;
            }
            // A CSeq that names another method is first of all an unknown method (§8.2.1).
            if !(e.kind() == ErrorKind::CSeqMethodMismatch && method.is_extension()) {
                tracing::debug!(peer = %source, error = %e, "bad request");
                self.stats.bad_requests += 1;
                self.answer_stateless(request, source, e.status_code(), &e.reason_phrase(), &[]);
                return true;
            }
        }
        if *method == Method::Ack {
            return false;
        }
        let allowed = self.allowed.iter().any(|m| m == method.as_str());
        let refusal: Option<Refusal> = if method.is_extension() || !allowed {
            Some((501, "Not Implemented", vec![(HeaderName::Allow, self.config.allow.clone())]))
        } else if !request.request_uri_is_sip() {
            Some((416, "Unsupported URI Scheme", vec![]))
        } else if request.max_forwards().ok().flatten() == Some(0) && *method != Method::Options {
            Some((483, "Too Many Hops", vec![]))
        } else {
            let unsupported: Vec<&str> = request
                .tokens(HeaderName::Require)
                .filter_map(Result::ok)
                .filter(|t| !self.config.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
                .collect();
            (!unsupported.is_empty() && *method != Method::Cancel)
                .then(|| (420, "Bad Extension", vec![(HeaderName::Unsupported, unsupported.join(", "))]))
        };
        match refusal {
            None => false,
            Some((code, reason, extra)) => {
                tracing::debug!(peer = %source, code, "request refused");
                self.stats.refused_requests += 1;
                let extra: Vec<(HeaderName, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
                self.answer_stateless(request, source, code, reason, &extra);
                true
            }
        }
    }

    fn handle_request(&mut self, source: SocketAddr, request: Message, now: Instant) {
        let request = stamp_received(&request, source);
        if self.refuse(&request, source) {
            return;
        }
        match self.transactions.handle_request(request, now) {
            Ok(Routed::New(id)) => {
                self.meta.insert(id, TxMeta { peer: source, owner: Owner::Unassigned, to_tag: None });
            }
            Ok(Routed::Matched(_)) => self.stats.retransmitted_requests += 1,
            Ok(Routed::Repeated(request)) => {
                self.stats.retransmitted_requests += 1;
                self.events.push_back(EndpointEvent::Repeated { request, source });
            }
            Ok(Routed::Absorbed) => {
                tracing::debug!(peer = %source, "request with the key of an answered one but other bytes: absorbed");
                self.stats.retransmitted_requests += 1;
            }
            Ok(Routed::Cancel { id, target }) => {
                // The CANCEL's own transaction belongs to whoever owns the INVITE it cancels.
                let owner = match target {
                    CancelTarget::Pending(t) | CancelTarget::Answered(t) => self.owner(t).unwrap_or_default(),
                    CancelTarget::NotFound => Owner::Unassigned,
                };
                self.meta.insert(id, TxMeta { peer: source, owner, to_tag: None });
                self.handle_cancel(id, target, now);
            }
            Ok(Routed::Stray(ack)) if acks_stateless_answer(&ack) => {
                tracing::trace!(peer = %source, "ACK for a stateless answer absorbed");
                self.stats.absorbed_acks += 1;
            }
            Ok(Routed::Stray(ack)) => self.events.push_back(EndpointEvent::Ack { request: ack, source }),
            Ok(Routed::Full(request)) => {
                // §21.5.4: 503 with Retry-After; state frees as transactions end (at most 64*T1).
                tracing::debug!(peer = %source, live = self.transactions.len(), "transaction table full: 503");
                self.stats.overloaded += 1;
                self.answer_stateless(&request, source, 503, "Service Unavailable", &[(HeaderName::RetryAfter, FULL_RETRY_AFTER)]);
            }
            Err(e) => tracing::debug!(peer = %source, error = ?e, "request not routed"),
        }
    }

    /// §9.2: 200 to the CANCEL, then 487 to the INVITE if it is still pending; 481 when nothing matches.
    fn handle_cancel(&mut self, cancel_tx: TransactionId, target: CancelTarget, now: Instant) {
        let Some(cancel) = self.transactions.request(cancel_tx).cloned() else { return };
        let target_tag = match target {
            CancelTarget::Pending(t) | CancelTarget::Answered(t) => self.meta.get(&t).and_then(|m| m.to_tag.clone()),
            CancelTarget::NotFound => None,
        };
        let tag = target_tag.or_else(|| cancel.to_tag().ok().flatten().map(str::to_owned)).unwrap_or_else(|| "sb-cancel".into());
        let invite = match target {
            CancelTarget::Pending(invite_tx) => self.transactions.request(invite_tx).cloned(),
            _ => None,
        };
        // Both transactions are live here (the CANCEL's was just created, the INVITE's matched as
        // pending), so a failure would be a bug in the transaction layer: logged, not returned.
        let mut send = |tx: TransactionId, r: Message| {
            if let Err(e) = self.transactions.send_response(tx, r, now) {
                tracing::debug!(?tx, error = %e, "answer for a CANCEL not sent");
            }
        };
        match target {
            CancelTarget::NotFound => send(cancel_tx, cancel.response_to(481, "Call/Transaction Does Not Exist", Some(&tag)).finish()),
            CancelTarget::Answered(_) => send(cancel_tx, cancel.response_to(200, "OK", Some(&tag)).finish()),
            CancelTarget::Pending(invite_tx) => {
                send(cancel_tx, cancel.response_to(200, "OK", Some(&tag)).finish());
                if let Some(invite) = invite {
                    send(invite_tx, invite.response_to(487, "Request Terminated", Some(&tag)).finish());
                }
                let owner = self.owner(invite_tx).unwrap_or_default();
                self.events.push_back(EndpointEvent::Cancelled { tx: invite_tx, cancel, owner });
            }
        }
    }

    fn handle_response(&mut self, source: SocketAddr, response: Message, now: Instant) {
        if let Err(e) = response.validate() {
            tracing::debug!(peer = %source, error = %e, "dropped malformed response");
            self.stats.bad_responses += 1;
            return;
        }
        if is_tagless_2xx_to_invite(&response) {
            // A UAS puts a tag in the To of every response but 100 (§8.2.6.2), and a 2xx to an
            // INVITE without one can create no dialog (§12.1.2): malformed. Dropped before the
            // transaction sees it, so the INVITE goes on being retransmitted and times out
            // (Timer B) instead of waiting forever for a dialog that cannot exist.
            tracing::debug!(peer = %source, "dropped a 2xx to INVITE without a To tag");
            self.stats.bad_responses += 1;
            return;
        }
        match self.transactions.handle_response(response, now) {
            Ok(Routed::Stray(response)) => {
                self.stats.stray_responses += 1;
                self.events.push_back(EndpointEvent::StrayResponse { response, source });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(peer = %source, error = ?e, "dropped response");
                self.stats.bad_responses += 1;
            }
        }
    }

    /// The per-source rate limit: false when the request from `source` is to be dropped unparsed.
    fn admit(&mut self, source: SocketAddr, now: Instant) -> bool {
        let Some(limiter) = self.limiter.as_mut() else { return true };
        let (verdict, limit) = match limiter {
            Limiter::Own(l) => (l.check(source.ip(), now), l.limit()),
            Limiter::Shared(l) => (l.check(source.ip(), now), l.limit()),
        };
        match verdict {
            rate_limit::Verdict::Admit => true,
            rate_limit::Verdict::Drop { log, dropped } => {
                if log {
                    tracing::warn!(
                        "rate limit: src={} dropped={dropped} limit={}/s burst={} (one line per source per minute)",
                        source.ip(),
                        limit.rate,
                        limit.burst
                    );
                }
                self.stats.rate_limited += 1;
                false
            }
        }
    }

    /// Moves the transactions' output into our queues.
    fn drain(&mut self, _now: Instant) {
        while let Some((id, msg)) = self.transactions.poll_transmit() {
            let peer = self.peer(id);
            let dest = if msg.is_request() { peer } else { response_destination(&msg).or(peer) };
            match dest {
                Some(dest) => self.transmits.push_back(Transmit { dest, payload: msg.as_bytes().clone() }),
                None => tracing::debug!(?id, "no destination for message"),
            }
        }
        while let Some((tx, ev)) = self.transactions.poll_event() {
            // Every transaction gets its entry as it starts (`handle_request`, `send_request`,
            // `cancel`), before any of its events can be drained.
            let Some(meta) = self.meta.get(&tx) else {
                tracing::debug!(?tx, "event of a transaction with no entry dropped");
                continue;
            };
            let (source, owner) = (meta.peer, meta.owner);
            let ev = match ev {
                Event::Request(request) => EndpointEvent::Request { tx, request, source },
                Event::Response(response) => EndpointEvent::Response { tx, response, owner },
                Event::Timeout | Event::TransportError => EndpointEvent::Timeout { tx, owner },
                Event::Terminated => {
                    self.meta.remove(&tx);
                    EndpointEvent::Terminated { tx, owner }
                }
            };
            self.events.push_back(ev);
        }
    }
}

/// Whether an ACK no transaction took is for one of our stateless answers (its To tag is
/// [`STATELESS_TAG`]). The To is parsed only when its bytes hold that tag: every ACK for a 2xx
/// comes this way.
fn acks_stateless_answer(ack: &Message) -> bool {
    ack.header(HeaderName::To).is_some_and(|v| memchr::memmem::find(v, STATELESS_TAG.as_bytes()).is_some())
        && ack.to_tag().ok().flatten().map(|t| t == STATELESS_TAG).unwrap_or(false)
}

/// A 2xx to an INVITE whose To has no tag (see [`Endpoint::handle_datagram`]).
fn is_tagless_2xx_to_invite(response: &Message) -> bool {
    response.status().is_some_and(|c| (200..300).contains(&c))
        && response.cseq().is_ok_and(|c| c.method == Method::Invite)
        && response.to_tag().ok().is_some_and(|t| t.is_none_or(str::is_empty))
}
