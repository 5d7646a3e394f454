//! Caps on the bindings the network can create (issue 14 point 5): contacts per AOR
//! ([`RegistrarConfig::max_contacts`](super::RegistrarConfig::max_contacts)), bindings in all
//! ([`max_bindings`](super::RegistrarConfig::max_bindings)) and the size of the 200 that lists an
//! AOR's contacts ([`max_response_bytes`](super::RegistrarConfig::max_response_bytes), RFC 3261
//! §18.1.1's 1,300 bytes for UDP).
//!
//! Only a REGISTER that *adds* a contact can be refused: refreshing, removing or querying existing
//! ones always goes through, so a full AOR's phones keep working. The one 200 that can still exceed
//! the size budget is the answer to such a refresh whose own Via, From, To and Call-ID are long
//! (the 200 copies them): listing fewer contacts would break §10.3 step 8, which wants every
//! binding in the 200, so it is sent whole.

use super::register::{listing, Action, Plan};
use super::{Change, Entry, RegisterError, Registrar};
use crate::message::Message;

/// One contact of the AOR as it would be after the request: key, contact, remaining seconds, q.
type Planned<'a> = (&'a str, &'a str, u64, u16);

// ===== impl Registrar =====

impl Registrar {
    /// Passes `plan` on if the caps allow it, else the error to answer with. Lapsed bindings of the
    /// AOR do not count: [`apply`](Registrar::apply) drops them first.
    pub(super) fn check_caps(&self, entries: &[Entry], req: &Message, tag: &str, plan: Plan, now: u64) -> Result<Plan, RegisterError> {
        let Action::Update(ops) = &plan.action else { return Ok(plan) };
        let live: Vec<Planned<'_>> = entries
            .iter()
            .filter(|e| !e.binding.is_expired(now))
            .map(|e| (e.key.as_str(), e.binding.contact.as_str(), e.binding.remaining(now), e.binding.q_millis))
            .collect();
        let mut after = live.clone();
        for op in ops {
            after.retain(|(key, ..)| *key != op.key);
            if op.expires > 0 {
                after.push((op.key.as_str(), op.contact.as_str(), u64::from(op.expires), op.q_millis));
            }
        }
        let adds = after.iter().any(|(key, ..)| !live.iter().any(|(k, ..)| k == key));
        if !adds {
            return Ok(plan);
        }
        // Seconds until a slot frees: when the AOR's (or the registrar's) first binding lapses.
        let aor_retry = live.iter().map(|(_, _, remaining, _)| *remaining).min().unwrap_or(1).max(1);
        if after.len() > live.len() && after.len() > self.config.max_contacts {
            return Err(RegisterError::TooManyContacts { retry_after: aor_retry });
        }
        let others = self.len().saturating_sub(entries.len());
        if after.len() > live.len() && others + after.len() > self.config.max_bindings {
            let retry_after = self.next_expiry().map_or(1, |at| at.saturating_sub(now)).max(1);
            return Err(RegisterError::TooManyBindings { retry_after });
        }
        let response = listing(req, tag, after.iter().map(|&(_, contact, remaining, q)| (contact, remaining, q)), now);
        if response.as_bytes().len() > self.config.max_response_bytes {
            tracing::debug!(aor = %plan.aor, bytes = response.as_bytes().len(), "contact list would not fit a UDP datagram");
            return Err(RegisterError::TooManyContacts { retry_after: aor_retry });
        }
        Ok(plan)
    }
}

impl Registrar {
    /// Drops, from every AOR holding more than `max_contacts` bindings (a store written under a
    /// higher limit), the oldest ones (least recently registered, then soonest to lapse) down to
    /// the limit; returns their removals for the store, and says how many went in one INFO line.
    pub(super) fn trim_to_max_contacts(&mut self) -> Vec<Change> {
        let max = self.config.max_contacts;
        let over: Vec<String> = self.by_aor.iter().filter(|(_, e)| e.len() > max).map(|(aor, _)| aor.clone()).collect();
        let mut changes = Vec::new();
        for aor in over {
            let Some(entries) = self.by_aor.get(&aor) else { continue };
            let mut by_age: Vec<(u64, u64, u64)> = entries.iter().map(|e| (e.binding.updated_at, e.binding.expires_at, e.id)).collect();
            // Newest first; everything after the first `max` goes.
            by_age.sort_unstable_by(|a, b| b.cmp(a));
            for &(_, _, id) in &by_age[max..] {
                if let Some(b) = self.take(&aor, |e| e.id == id) {
                    changes.push(Change::Remove { aor: b.aor, contact: b.contact });
                }
            }
        }
        if !changes.is_empty() {
            tracing::info!(dropped = changes.len(), max_contacts = max, "bindings over max_contacts dropped at start (the newest kept)");
        }
        changes
    }
}
