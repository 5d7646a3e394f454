//! New requests other than INVITE and REGISTER, once admission and authentication let them in
//! (RFC 3261 §22.3: challenged like an INVITE, the From user checked, `P-Asserted-Identity` added).
//!
//! ```text
//!   SUBSCRIBE ─────────────────────────────────────────► 489 Bad Event (no event package served,
//!                                                         RFC 6665 §4.2.1.2)
//!   UPDATE, INFO, NOTIFY, REFER, PRACK without To-tag ─► 481 (they exist only in a dialog)
//!   MESSAGE (RFC 3428), OPTIONS, ... for a user ─┬─ bindings ─► proxy to every one (§16, forked)
//!                                                ├─ OPTIONS, none ─► the service answers (§11.2)
//!                                                └─ none ─► 480 (a known user) or 404
//! ```

use super::Service;
use crate::application::{Application, Io};
use crate::endpoint::{EndpointEvent, Owner};
use crate::message::{Message, Method};
use crate::transaction::TransactionId;
use crate::ua::message::is_dialog_only;
use std::net::SocketAddr;
use std::time::Instant;

impl Service {
    /// A new request that is not an INVITE, from the authenticated caller whose identity is
    /// `asserted` (`None` with auth off or from a trusted peer).
    pub(super) fn on_other_new(
        &mut self,
        io: &mut Io<'_>,
        tx: TransactionId,
        request: Message,
        source: SocketAddr,
        asserted: Option<String>,
        now: Instant,
    ) {
        let method = request.method().cloned();
        let refusal = match &method {
            Some(Method::Subscribe) => Some(request.response_to(489, "Bad Event", Some("sb")).finish()),
            Some(m) if is_dialog_only(m) => Some(request.response_to(481, "Call/Transaction Does Not Exist", Some("sb")).finish()),
            _ => None,
        };
        if let Some(answer) = refusal {
            io.endpoint.respond_or_log(tx, answer, now);
            return;
        }
        match self.targets_for(&request).filter(|t| !t.is_empty()) {
            Some(targets) => {
                io.endpoint.set_owner(tx, Owner::Proxy { upstream: None });
                self.proxy.forward_as(io.endpoint, tx, &request, &targets, asserted.as_deref(), now);
            }
            // Draining (issue 17 point 7): the dispatcher's probe learns that no new call should come.
            None if method == Some(Method::Options) && self.drain.is_draining() => {
                self.drain.probe_refused(now);
                io.endpoint.respond_or_log(tx, request.response_to(503, "Service Unavailable (draining)", Some("sb")).finish(), now);
            }
            None if method == Some(Method::Options) => {
                io.endpoint.set_owner(tx, Owner::Echo);
                self.echo.handle_event(io, EndpointEvent::Request { tx, request, source }, now);
            }
            None => {
                let user = request.request_uri().and_then(|u| u.as_sip().and_then(|s| s.user.map(str::to_owned)));
                let known = user.as_deref().is_some_and(|u| self.users.contains_key(u))
                    || self.auth.is_none() && user.is_some() && self.ever_registered(&request);
                let (code, reason) = if known { (480, "Temporarily Unavailable") } else { (404, "Not Found") };
                io.endpoint.respond_or_log(tx, request.response_to(code, reason, Some("sb")).finish(), now);
            }
        }
    }
}
