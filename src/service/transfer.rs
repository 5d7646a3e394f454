//! Routing a transfer (REFER, RFC 3515) the B2BUA accepted: its Refer-To passes the same
//! routing and authorisation as an INVITE from the referrer would (issue 15 point 4), so no REFER
//! reaches a destination the referrer could not call.
//!
//! ```text
//!   TransferAsk ─┬─ auth on, the referrer's leg has no user (or the user was removed) ─► 403
//!                ├─ Refer-To not a SIP URI with a user ─────────────────────────────────► 404
//!                ├─ static route / bindings, as `on_invite` ─ none ─► 480 (known) / 404
//!                ├─ a target that is the service itself ───────────────────────────────► 482
//!                └─ B2BUA calls the first target: From = the transferee, P-Asserted-Identity
//!                   = the transferee's user, Referred-By = the referrer's (RFC 3892)
//! ```

use super::Service;
use crate::application::Io;
use crate::b2bua::{TransferAsk, TransferParties};
use crate::message::Uri;
use crate::proxy::Target;
use std::time::Instant;

impl Service {
    /// Answers the B2BUA's transfer requests (after each of its events).
    pub(super) fn route_transfers(&mut self, io: &mut Io<'_>, now: Instant) {
        let mut asks = Vec::new();
        if let Some(b) = self.b2bua.as_mut() {
            while let Some(ask) = b.poll_transfer() {
                asks.push(ask);
            }
        }
        for ask in asks {
            let verdict = self.route_transfer(&ask);
            let Some(b) = self.b2bua.as_mut() else { return };
            match verdict {
                Ok((targets, parties)) => b.start_transfer(io, ask.call, &targets, parties, now),
                Err((code, reason)) => b.refuse_transfer(io, ask.call, code, reason, now),
            }
        }
    }

    fn route_transfer(&self, ask: &TransferAsk) -> Result<(Vec<Target>, TransferParties), (u16, &'static str)> {
        // The referrer's right to call: the leg's user is who authenticated (the caller) or who
        // registered the phone that answered (the callee); with auth on, a leg without a user or
        // a user removed since cannot call anyone.
        if self.auth.is_some() && !ask.referrer.as_deref().is_some_and(|u| self.users.contains_key(u)) {
            tracing::info!(call = ask.call, "transfer refused: the referrer is not a user who could call");
            return Err((403, "Forbidden"));
        }
        let Ok(uri) = Uri::parse(&ask.refer_to) else { return Err((404, "Not Found")) };
        let Some(user) = uri.as_sip().and_then(|s| s.user.map(str::to_owned)).filter(|u| !u.is_empty()) else {
            return Err((404, "Not Found"));
        };
        // As `on_invite`: a matching static route when no phone is registered (or always, with
        // `override`), else the user's bindings.
        let route = self.routes.lookup(Some(&user));
        let overrides = route.is_some_and(|r| r.overrides);
        let mut targets = if overrides { Vec::new() } else { self.targets_for_uri(&uri).unwrap_or_default() };
        if let Some(r) = route.filter(|_| targets.is_empty()) {
            targets.push(Target { uri: r.request_uri(&ask.refer_to, Some(&user)), dest: r.dest });
        }
        if targets.is_empty() {
            let known = self.users.contains_key(&user)
                || self.auth.is_none() && self.registrar.aors().iter().any(|a| a.starts_with(&format!("sip:{user}@")));
            return Err(if known { (480, "Temporarily Unavailable") } else { (404, "Not Found") });
        }
        if targets.iter().any(|t| self.admission.is_local(t.dest)) {
            return Err((482, "Loop Detected"));
        }
        let host = self.registrar.config().domain.clone().unwrap_or_else(|| self.local.ip().to_string());
        let identity = |u: &Option<String>| u.as_ref().map(|u| format!("<sip:{u}@{host}>"));
        let referred_by = identity(&ask.referrer).or_else(|| Some(ask.referrer_address.clone()).filter(|a| !a.is_empty()));
        Ok((targets, TransferParties { asserted: identity(&ask.transferee), referred_by, target_user: Some(user) }))
    }
}
