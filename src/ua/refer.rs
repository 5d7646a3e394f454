//! Call transfer in the softphone (RFC 3515 REFER, RFC 3892 Referred-By, RFC 5589 §6 blind
//! transfer), in both roles.
//!
//! ```text
//!   transferor (prompt `transfer URI`)        transferee
//!      │── REFER Refer-To: URI ──────────────────►│ 202; NOTIFY 100 Trying
//!      │                                          │── INVITE URI ──► target
//!      │◄─ NOTIFY sipfrag "SIP/2.0 200 OK" ───────│◄─ 200 ─────────  (final: subscription ends)
//!      │◄─ BYE ───────────────────────────────────│  the old call ends ("transferred");
//!                                                     the new call goes on with the target
//! ```
//!
//! A failed call to the target is reported in the final NOTIFY (its status line) and the old call
//! goes on. Attended transfer (a Refer-To with `Replaces`, RFC 3891) is refused with a final
//! NOTIFY 501.

use super::Phone;
use crate::application::Io;
use crate::dialog::{refer_target, sipfrag_status, subscription_terminated, DialogId, EndReason};
use crate::message::{HeaderName, Message};
use crate::ua::log_unsent;
use crate::ua::media::CallKey;
use std::time::Instant;

/// The transfers this phone carries out as transferee: the new call's key → the dialog of the
/// call whose REFER asked for it (where its NOTIFYs go).
pub(super) type Transfers = crate::collections::HashMap<CallKey, DialogId>;

/// How long the transferor waits, after the final 2xx NOTIFY, for the transferee's BYE before
/// hanging up itself.
pub(super) const TRANSFER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Phone {
    /// Blind transfer of the current answered call to `uri` (prompt `transfer URI`): a REFER
    /// naming us in Referred-By. Progress arrives as NOTIFYs ([`Phone::transfer_news`]); the
    /// transferee hangs up our call once the target answered.
    pub fn transfer(&mut self, io: &mut Io<'_>, uri: &str, now: Instant) -> Result<(), &'static str> {
        if !uri.starts_with("sip:") {
            return Err("usage: transfer sip:user@host[:port]");
        }
        let key = self.current().ok_or("no call")?;
        let call = self.calls.get(&key).ok_or("no call")?;
        if call.answered.is_none() {
            return Err("the call is not answered");
        }
        let id = call.id.clone();
        let me = match &self.config.domain {
            Some(d) => format!("sip:{}@{d}", self.config.user),
            None => format!("sip:{}@{}", self.config.user, self.config.local),
        };
        self.ua.dialogs().send_refer(&id, uri, Some(&me), now).map_err(|_| "the call cannot be transferred now")?;
        self.ua.flush(io.endpoint, now);
        tracing::info!(call_id = %id.call_id, %uri, "REFER sent");
        self.transfer_news.push(format!("transfer of {} to {uri} requested", id.call_id));
        Ok(())
    }

    /// The answer to our REFER.
    pub(super) fn on_refer_answer(&mut self, status: u16) {
        if status >= 300 {
            self.transfer_news.push(format!("transfer refused: {status}"));
        } else if status >= 200 {
            self.transfer_news.push(format!("transfer accepted ({status})"));
        }
    }

    /// A NOTIFY of our REFER's subscription: the transferee's progress, as its sipfrag says. On
    /// the final 2xx the transfer is done: the transferee (or a B2BUA) normally hangs up at once;
    /// if it has not within [`TRANSFER_GRACE`], we do (RFC 5589 §6.1), without crossing its BYE.
    pub(super) fn on_refer_notify(&mut self, id: &DialogId, request: &Message, now: Instant) {
        let body = request.body();
        let line = String::from_utf8_lossy(body).lines().next().unwrap_or("").trim().to_owned();
        let status = sipfrag_status(body);
        tracing::info!(call_id = %id.call_id, sipfrag = %line, "transfer progress");
        let done = if subscription_terminated(request) { " (final)" } else { "" };
        self.transfer_news.push(format!("transfer: {line}{done}"));
        if status.is_some_and(|s| (200..300).contains(&s)) && subscription_terminated(request) {
            if let Some(c) = self.calls.get_mut(&CallKey::of(id)) {
                c.hangup_at = Some(now + TRANSFER_GRACE);
            }
        }
        if status.is_some_and(|s| s >= 300) && subscription_terminated(request) {
            self.transfer_news.push(format!("transfer failed ({line}); the call goes on"));
        }
    }

    /// A REFER from the peer of call `id` (RFC 3515 §2.4.2, answered 202 already): NOTIFY 100,
    /// then call the target as ourselves.
    pub(super) fn on_refer(&mut self, io: &mut Io<'_>, id: DialogId, request: &Message, now: Instant) {
        let by = request.header(HeaderName::ReferredBy).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        let target = match refer_target(request) {
            Ok(t) => t,
            Err((code, reason)) => {
                tracing::info!(call_id = %id.call_id, code, "REFER not carried out");
                log_unsent(self.ua.dialogs().send_refer_notify(&id, code, reason, true, now), "final NOTIFY", &id);
                self.ua.flush(io.endpoint, now);
                return;
            }
        };
        tracing::info!(call_id = %id.call_id, %target, referred_by = %by, "transfer asked: calling the target");
        self.transfer_news.push(format!("transferred by {} to {target}", by.trim()));
        log_unsent(self.ua.dialogs().send_refer_notify(&id, 100, "Trying", false, now), "NOTIFY 100", &id);
        self.transfers_by = Some(by.trim().to_owned()).filter(|b| !b.is_empty());
        let before: Vec<CallKey> = self.calls.keys().cloned().collect();
        self.start_dial(io, target, None, now);
        match self.calls.keys().find(|k| !before.contains(k)).cloned() {
            Some(new) => {
                self.transfers.insert(new, id);
            }
            None => log_unsent(self.ua.dialogs().send_refer_notify(&id, 503, "Service Unavailable", true, now), "final NOTIFY", &id),
        }
        self.ua.flush(io.endpoint, now);
    }

    /// Call `new` was answered: if it was a transfer's, the final NOTIFY 200 goes to the referrer
    /// and the old call ends (RFC 5589 §6).
    pub(super) fn transfer_answered(&mut self, io: &mut Io<'_>, new: &DialogId, now: Instant) {
        let Some(old) = self.transfers.remove(&CallKey::of(new)) else { return };
        log_unsent(self.ua.dialogs().send_refer_notify(&old, 200, "OK", true, now), "NOTIFY 200", &old);
        if let Some(c) = self.calls.get_mut(&CallKey::of(&old)) {
            c.end_reason = Some("transferred".into());
        }
        log_unsent(self.ua.dialogs().send_bye(&old, now), "BYE after the transfer", &old);
        self.ua.flush(io.endpoint, now);
        self.transfer_news.push(format!("transfer done: {} ended, {} goes on", old.call_id, new.call_id));
    }

    /// Call `key` ended before it was answered: if it was a transfer's, the referrer learns how.
    pub(super) fn transfer_failed(&mut self, io: &mut Io<'_>, key: &CallKey, reason: EndReason, now: Instant) {
        let Some(old) = self.transfers.remove(key) else { return };
        let (code, phrase) = match reason {
            EndReason::Rejected(c) if (300..700).contains(&c) => (c, "Call Failed"),
            EndReason::Cancelled => (487, "Request Terminated"),
            EndReason::Timeout => (408, "Request Timeout"),
            _ => (500, "Server Internal Error"),
        };
        log_unsent(self.ua.dialogs().send_refer_notify(&old, code, phrase, true, now), "final NOTIFY", &old);
        self.ua.flush(io.endpoint, now);
        self.transfer_news.push(format!("transfer failed: {code}"));
    }
}
