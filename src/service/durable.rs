//! Registrations answered only once a shared store has them (issue 17 points 1 and 6), and the
//! changes other instances made to users and bindings (issue 17 point 1).
//!
//! With a store that [`confirms`](StoreSink::confirms) (Redis), a REGISTER that changes bindings
//! is applied to the registrar, its writes go to the store together with the claim of its nonce
//! count, and the answer waits for [`Service::write_confirmed`]:
//!
//! ```text
//!   REGISTER ── auth ── registrar (applied) ── store: claim nc, write ──┬─ Written ──► 200
//!                                                                      ├─ Replay ───► undo, 401 stale
//!                                                                      └─ Unavailable ► undo, 503
//!   store known unreachable ────────────────────────────────────────────────────────► 503
//! ```
//!
//! A new request whose digest is right (INVITE, MESSAGE, ...) waits the same way for the claim of
//! its nonce count ([`Service::claim_then_new`]): a replay gets 407 `stale=true`; when the store is
//! unreachable the call goes on, checked by this instance's own count table.
//!
//! A 503 carries Retry-After (RFC 3261 §21.5.4): the phone comes back, and the store catches up
//! by itself when Redis answers again (the writer probes it, see `store::writer`). With SQLite or
//! memory nothing waits: the 200 goes out at once, as before.

use super::*;
use crate::records::{Confirmation, NonceClaim, UserRecord};
use crate::registrar::Binding;

/// Seconds a phone is asked to wait after a 503 for an unreachable store.
const STORE_RETRY_AFTER: &str = "5";

/// A request waiting for the store.
#[derive(Debug)]
pub(super) enum Pending {
    /// A REGISTER, for its write.
    Register(PendingRegister),
    /// A new authenticated request (INVITE, MESSAGE, ...), for the claim of its nonce count.
    New(PendingNew),
}

/// A new request whose credentials were right, waiting for its nonce count to be claimed.
#[derive(Debug)]
pub(super) struct PendingNew {
    tx: TransactionId,
    request: Message,
    source: SocketAddr,
    asserted: Option<String>,
    caller: Option<String>,
}

/// A REGISTER waiting for its write.
#[derive(Debug)]
pub(super) struct PendingRegister {
    tx: TransactionId,
    request: Message,
    response: Message,
    /// The AOR's bindings before the REGISTER, to put back if the write fails.
    aor: String,
    before: Vec<Binding>,
}

impl Service {
    /// [`Service::on_register`] with a store that confirms; `false` when the store does not (the
    /// caller goes on as before).
    pub(super) fn register_durably(
        &mut self,
        ep: &mut Endpoint,
        tx: TransactionId,
        req: &Message,
        source: SocketAddr,
        user: Option<&str>,
        now: Instant,
    ) -> bool {
        let Some(store) = self.store.as_ref().filter(|s| s.confirms()) else { return false };
        if !store.available() {
            tracing::debug!(peer = %source, "REGISTER while the store is unreachable: 503");
            ep.respond_or_log(tx, unavailable(req), now);
            return true;
        }
        let aor = req.to().ok().and_then(|t| aor_of(&t.uri)).unwrap_or_default();
        let before: Vec<Binding> = self.registrar.lookup(&aor);
        let outcome = self.registrar.handle_register(req, source, user, self.wall);
        let claim = self.auth.as_ref().and_then(|a| a.nonce_use(req, false, self.wall));
        // A refused REGISTER changed nothing; a query with no credentials to claim neither.
        if outcome.rejected.is_some() || (outcome.changes.is_empty() && claim.is_none()) {
            ep.respond_or_log(tx, outcome.response, now);
            return true;
        }
        let ops = outcome
            .changes
            .into_iter()
            .map(|c| match c {
                Change::Put(b) => StoreOp::PutBinding(b),
                Change::Remove { aor, contact } => StoreOp::RemoveBinding { aor, contact },
            })
            .collect();
        let claim = claim.map(|(nonce, nc, expires_at)| NonceClaim { nonce, nc, expires_at });
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if let Err(e) = store.enqueue_confirmed(ops, claim, ticket) {
            tracing::error!(error = %e, "store write failed");
            self.registrar.replace_aor(&aor, before, self.wall);
            ep.respond_or_log(tx, unavailable(req), now);
            return true;
        }
        self.pending
            .insert(ticket, Pending::Register(PendingRegister { tx, request: req.clone(), response: outcome.response, aor, before }));
        true
    }

    /// A new request whose caller authenticated: with a store that confirms, its nonce count is
    /// claimed there first (a count used on another instance is a replay here too) and `None`
    /// says the request waits; otherwise its parts come back to go on at once.
    #[allow(clippy::type_complexity)]
    pub(super) fn claim_then_new(
        &mut self,
        tx: TransactionId,
        request: Message,
        source: SocketAddr,
        asserted: Option<String>,
        caller: Option<String>,
    ) -> Option<(Message, Option<String>, Option<String>)> {
        let Some(store) = self.store.as_ref().filter(|s| s.confirms() && s.available() && caller.is_some()) else {
            return Some((request, asserted, caller));
        };
        let Some((nonce, nc, expires_at)) = self.auth.as_ref().and_then(|a| a.nonce_use(&request, true, self.wall)) else {
            return Some((request, asserted, caller));
        };
        let ticket = self.next_ticket;
        if let Err(e) = store.enqueue_confirmed(Vec::new(), Some(NonceClaim { nonce, nc, expires_at }), ticket) {
            tracing::error!(error = %e, "nonce claim not queued; going on with this instance's count check");
            return Some((request, asserted, caller));
        }
        self.next_ticket += 1;
        self.pending.insert(ticket, Pending::New(PendingNew { tx, request, source, asserted, caller }));
        None
    }

    /// The store's answer for the REGISTER with `ticket`: its 200, or (nothing written) its
    /// bindings put back and a 401 with `stale=true` for a replayed nonce count or a 503.
    /// For a new request waiting for its nonce claim: it goes on (also when the store is
    /// unreachable: calls do not need Redis, and this instance's own count check already passed),
    /// or a replay gets 407 with `stale=true`.
    pub fn write_confirmed(&mut self, io: &mut Io<'_>, ticket: u64, outcome: Confirmation, now: Instant) {
        let p = match self.pending.remove(&ticket) {
            Some(Pending::Register(p)) => p,
            Some(Pending::New(p)) => {
                if outcome == Confirmation::Replay {
                    tracing::info!(peer = %p.source, "request with a nonce count used already (on some instance): refused");
                    let stale =
                        self.auth.as_mut().and_then(|a| a.answer(&p.request, &Verdict::Replay, true, self.wall, Some(STATELESS_TAG)));
                    let answer = stale.unwrap_or_else(|| p.request.response_to(403, "Forbidden", Some(STATELESS_TAG)).finish());
                    Self::respond_stateless(io.endpoint, p.tx, answer, now);
                } else {
                    self.dispatch_new(io, p.tx, p.request, p.source, p.asserted, p.caller, now);
                    self.route_transfers(io, now);
                    self.write_calls();
                }
                return;
            }
            None => return,
        };
        let answer = match outcome {
            Confirmation::Written => p.response,
            Confirmation::Replay | Confirmation::Unavailable => {
                self.registrar.replace_aor(&p.aor, p.before, self.wall);
                if outcome == Confirmation::Replay {
                    tracing::info!(aor = %p.aor, "REGISTER with a nonce count used already (on some instance): refused");
                    let stale = self.auth.as_mut().and_then(|a| a.answer(&p.request, &Verdict::Replay, false, self.wall, None));
                    stale.unwrap_or_else(|| p.request.response_to(403, "Forbidden", None).finish())
                } else {
                    unavailable(&p.request)
                }
            }
        };
        io.endpoint.respond_or_log(p.tx, answer, now);
    }

    /// REGISTERs waiting for the store.
    pub fn pending_registers(&self) -> usize {
        self.pending.len()
    }

    /// Another instance changed the bindings of `aor` in the shared store: take them as they are.
    pub fn sync_aor(&mut self, aor: &str, bindings: Vec<Binding>) {
        tracing::debug!(%aor, bindings = bindings.len(), "bindings changed on another instance");
        self.registrar.replace_aor(aor, bindings, self.wall);
    }

    /// Another instance (or `switchboard users`) changed user `name` in the shared store: add or
    /// replace them, or remove them (their bindings go and their calls end, as `users remove`).
    pub fn sync_user(&mut self, io: &mut Io<'_>, name: &str, user: Option<UserRecord>, now: Instant) {
        match user {
            Some(u) => {
                if let Err(e) = self.put_user(u) {
                    tracing::warn!(user = %name, error = %e, "user changed in the store left out");
                }
            }
            // Also when the user is gone already: with several workers the first one removed it
            // from the shared table, and each ends the calls it holds (none: nothing happens).
            None => {
                self.remove_user(io, name, now);
            }
        }
    }

    /// Everything again, after the store's change feed was lost for a while: users and bindings
    /// become what the store holds. Returns the users removed (the other workers end their calls).
    pub fn resync(&mut self, io: &mut Io<'_>, users: Vec<UserRecord>, bindings: Vec<Binding>, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self.users.names().into_iter().filter(|n| !users.iter().any(|u| &u.name == n)).collect();
        for name in &gone {
            self.sync_user(io, name, None, now);
        }
        for u in users {
            let name = u.name.clone();
            self.sync_user(io, &name, Some(u), now);
        }
        let mut by_aor: HashMap<String, Vec<Binding>> = HashMap::default();
        for b in bindings {
            by_aor.entry(b.aor.clone()).or_default().push(b);
        }
        for aor in self.registrar.aors() {
            if !by_aor.contains_key(&aor) {
                self.registrar.replace_aor(&aor, Vec::new(), self.wall);
            }
        }
        for (aor, b) in by_aor {
            self.registrar.replace_aor(&aor, b, self.wall);
        }
        gone
    }
}

impl Service {
    /// Where the phone of a REGISTER is: `source`, unless a trusted proxy relayed it (Kamailio's
    /// dispatcher in front, issue 17 point 5): then the Via below the proxy's, as the proxy
    /// received it (`received`, RFC 3261 §18.2.1; `rport`, RFC 3581 §4), so calls to the phone go
    /// straight to it from any instance instead of back into the dispatcher.
    pub(super) fn phone_address(&self, req: &Message, source: SocketAddr) -> SocketAddr {
        if !self.admission.is_trusted(source) {
            return source;
        }
        crate::endpoint::client_in_second_via(req).unwrap_or(source)
    }
}

/// 503 with Retry-After: the store is unreachable.
fn unavailable(req: &Message) -> Message {
    req.response_to(503, "Service Unavailable (store unreachable)", Some("sb"))
        .header(crate::message::HeaderName::RetryAfter, STORE_RETRY_AFTER)
        .finish()
}
