//! REGISTER processing, RFC 3261 §10.3 steps 1 to 8. [`Registrar::plan`] checks the request and
//! decides every change without touching the table, so a refused request changes nothing;
//! [`Registrar::apply`] then makes the changes and [`Registrar::ok_response`] answers.

use super::binding::{aor_of, contact_key, push_q, Binding};
use super::{sorted, Change, Entry, Outcome, RegisterError, Registrar};
use crate::decimal::push_decimal;
use crate::message::{percent_decode, ErrorKind, HeaderName, Message, Method, NameAddr, ParseError, Uri};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

/// What a valid REGISTER asks for.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) aor: String,
    call_id: String,
    cseq: u32,
    pub(super) action: Action,
}

#[derive(Debug)]
pub(super) enum Action {
    /// No Contact: only list the bindings (§10.3 step 6, last paragraph).
    Query,
    /// `Contact: *` with `Expires: 0` (§10.3 step 6).
    RemoveAll,
    /// One operation per contact, in request order (§10.3 step 7).
    Update(Vec<Op>),
}

#[derive(Debug)]
pub(super) struct Op {
    pub(super) key: String,
    pub(super) contact: String,
    /// Granted seconds; 0 removes the binding.
    pub(super) expires: u32,
    pub(super) q_millis: u16,
}

impl Plan {
    /// The binding `op` writes: granted from `now` (seconds), stamped with this request's Call-ID
    /// and CSeq (§10.3 step 7) and where it came from.
    fn binding(&self, op: &Op, source: SocketAddr, now: u64) -> Binding {
        Binding {
            aor: self.aor.clone(),
            contact: op.contact.clone(),
            expires_at: now.saturating_add(u64::from(op.expires)),
            q_millis: op.q_millis,
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            source,
            updated_at: now,
        }
    }
}

// ===== impl Registrar =====

impl Registrar {
    /// Processes one REGISTER per RFC 3261 §10.3 and returns the final response with the binding
    /// changes to persist. `source` is where the request came from (stored in each binding written).
    /// `authorized_user` is the user the caller authenticated (steps 3 and 4), or `None` when
    /// authentication is off; when given, it must equal the user part of the To AOR, else 403.
    ///
    /// A refused request changes nothing; its response carries the status of
    /// [`RegisterError::status_code`] (423 adds `Min-Expires`, 420 adds `Unsupported`). A valid one
    /// is answered 200 listing every binding of the AOR with its remaining `expires` and its `q`
    /// (step 8), plus a Date header. Bindings of the AOR already lapsed at `now` are removed first.
    pub fn handle_register(&mut self, req: &Message, source: SocketAddr, authorized_user: Option<&str>, now: Duration) -> Outcome {
        self.handle_register_read(req, None, source, authorized_user, now)
    }

    /// [`Registrar::handle_register`] with the request's To and its AOR already read (by
    /// [`super::SharedRegistrar`], to pick the shard), so they are not read again. `to` must be
    /// `req.to()` and the AOR `aor_of` its URI; `None` reads them here.
    pub(super) fn handle_register_read(
        &mut self,
        req: &Message,
        to: Option<(&NameAddr<'_>, String)>,
        source: SocketAddr,
        authorized_user: Option<&str>,
        now: Duration,
    ) -> Outcome {
        let now = now.as_secs();
        let tag = to_tag(req);
        // The AOR's bindings are found once for steps 6-7's ordering rule and the caps (issue 16:
        // each looked the AOR up in the map again).
        let checked = self.plan(req, to, authorized_user).and_then(|plan| {
            let entries = self.entries(&plan.aor);
            check_order(entries, &plan, now)?;
            self.check_caps(entries, req, &tag, plan, now)
        });
        match checked {
            Ok(plan) => {
                let changes = self.apply(&plan, source, now);
                Outcome { response: self.ok_response(req, &plan.aor, &tag, now), changes, rejected: None }
            }
            Err(e) => {
                let mut b = req.response_to(e.status_code(), &e.reason_phrase(), Some(&tag));
                match &e {
                    RegisterError::IntervalTooBrief { min_expires } => b.push(HeaderName::MinExpires, min_expires),
                    RegisterError::BadExtension(tokens) => b.push(HeaderName::Unsupported, tokens.join(", ")),
                    RegisterError::NotRegister => b.push(HeaderName::Allow, "REGISTER"),
                    RegisterError::TooManyContacts { retry_after } | RegisterError::TooManyBindings { retry_after } => {
                        b.push(HeaderName::RetryAfter, retry_after)
                    }
                    _ => {}
                }
                Outcome { response: b.finish(), changes: Vec::new(), rejected: Some(e) }
            }
        }
    }

    /// The 200 again, for a retransmission of a REGISTER this registrar answered 200 (the
    /// transaction layer matched it, byte for byte, to a Completed transaction that kept no copy
    /// of its response: issue 16). Built as [`Registrar::handle_register`] built it: the same To
    /// tag (derived from the request), and step 8's listing of the AOR's bindings as they are
    /// `now`. Nothing is checked or changed: the request was checked and applied once; running it
    /// again would refuse it (step 7's Call-ID/CSeq rule, the nonce count). `None` without a SIP
    /// AOR in To (such a request was never answered 200).
    pub fn answer_again(&self, req: &Message, now: Duration) -> Option<Message> {
        let aor = aor_of(&req.to().ok()?.uri)?;
        let now = now.as_secs();
        let listed = sorted(self.entries(&aor)).into_iter().filter(|b| !b.is_expired(now));
        Some(listing(req, &to_tag(req), listed.map(|b| (b.contact.as_str(), b.remaining(now), b.q_millis)), now))
    }

    /// Steps 1 to 7 without side effects: every check but the ordering rule ([`check_order`]),
    /// and what each contact will do.
    fn plan(&self, req: &Message, read: Option<(&NameAddr<'_>, String)>, authorized_user: Option<&str>) -> Result<Plan, RegisterError> {
        if req.method() != Some(&Method::Register) {
            return Err(RegisterError::NotRegister);
        }
        // Step 1: is the Request-URI's domain ours? This registrar is not a proxy, so a foreign
        // domain is answered 404 rather than forwarded.
        let ruri = req.request_uri().ok_or(ParseError::new(ErrorKind::RequestUri, 0))?;
        if !self.serves(&ruri) {
            return Err(RegisterError::DomainNotServed);
        }
        // Step 2: no extension is supported, so any Require is refused.
        let required = req.tokens(HeaderName::Require).map(|t| t.map(str::to_owned)).collect::<Result<Vec<_>, _>>()?;
        if !required.is_empty() {
            return Err(RegisterError::BadExtension(required));
        }
        let call_id = req.call_id()?.to_owned();
        let cseq = req.cseq()?.seq;
        // Step 5 (the AOR is needed for step 4): To must hold a SIP or SIPS URI.
        let parsed;
        let (to, aor) = match read {
            Some(read) => read,
            None => {
                parsed = req.to()?;
                (&parsed, aor_of(&parsed.uri).ok_or(RegisterError::AorNotSip)?)
            }
        };
        // Step 4: the authenticated user may only register its own AOR.
        if let Some(user) = authorized_user {
            let aor_user = to.uri.as_sip().and_then(|s| s.user).map(percent_decode);
            if aor_user.as_deref() != Some(user.as_bytes()) {
                return Err(RegisterError::Forbidden);
            }
        }
        // Step 5: the AOR must be in our domain.
        if !self.serves(&to.uri) {
            return Err(RegisterError::AorNotInDomain);
        }
        let action = self.contacts_action(req)?;
        // Steps 6 and 7's ordering rule follows, in `check_order`, on the AOR's bindings.
        Ok(Plan { aor, call_id, cseq, action })
    }

    /// Whether `uri` is in the configured domain (always, without one).
    fn serves(&self, uri: &Uri<'_>) -> bool {
        match (&self.config.domain, uri.as_sip()) {
            (None, _) => true,
            (Some(d), Some(sip)) => sip.host.as_str().eq_ignore_ascii_case(d),
            (Some(_), None) => false,
        }
    }

    /// Steps 6 and 7: the wildcard rules, then each contact's interval and q-value.
    fn contacts_action(&self, req: &Message) -> Result<Action, RegisterError> {
        let lines = req.header_values(HeaderName::Contact).count();
        if lines == 0 {
            return Ok(Action::Query);
        }
        if req.contact_is_star() {
            return match (lines, req.expires()?) {
                (1, Some(0)) => Ok(Action::RemoveAll),
                _ => Err(RegisterError::InvalidWildcard),
            };
        }
        let header_expires = req.expires()?;
        let mut ops = Vec::new();
        for c in req.contacts() {
            // A `*` among other contacts fails to parse as an address; that is the step 6 error.
            let c = c.map_err(|e| {
                if req.header_values(HeaderName::Contact).any(is_star_in_list) {
                    RegisterError::InvalidWildcard
                } else {
                    e.into()
                }
            })?;
            let param = |name| c.params.contains(name);
            let asked = match (param("expires"), c.expires()) {
                (true, None) => return Err(RegisterError::BadContactParam),
                (_, Some(secs)) => secs,
                (false, None) => header_expires.unwrap_or(self.config.default_expires),
            };
            let q_millis = match (param("q"), c.q_millis()) {
                (true, None) => return Err(RegisterError::BadContactParam),
                (_, q) => q.unwrap_or(1000),
            };
            // Step 7: 0 removes; too brief is refused for the whole request; too long is shortened.
            let expires = match asked {
                0 => 0,
                s if s < self.config.min_expires => return Err(RegisterError::IntervalTooBrief { min_expires: self.config.min_expires }),
                s => s.min(self.config.max_expires),
            };
            ops.push(Op { key: contact_key(&c.uri), contact: c.uri_text.to_owned(), expires, q_millis });
        }
        Ok(Action::Update(ops))
    }

    /// Makes the planned changes: first drops the AOR's lapsed bindings, then steps 6 and 7.
    fn apply(&mut self, plan: &Plan, source: SocketAddr, now: u64) -> Vec<Change> {
        if let Some(changes) = self.refresh_in_place(plan, source, now) {
            return changes;
        }
        let mut changes = Vec::new();
        let lapsed = |b: &Binding| b.is_expired(now);
        while let Some(b) = self.take(&plan.aor, |e| lapsed(&e.binding)) {
            changes.push(Change::Remove { aor: b.aor, contact: b.contact });
        }
        match &plan.action {
            Action::Query => {}
            Action::RemoveAll => {
                while let Some(b) = self.take(&plan.aor, |_| true) {
                    changes.push(Change::Remove { aor: b.aor, contact: b.contact });
                }
            }
            Action::Update(ops) => {
                for op in ops {
                    if op.expires == 0 {
                        if let Some(b) = self.take(&plan.aor, |e| e.key == op.key) {
                            changes.push(Change::Remove { aor: b.aor, contact: b.contact });
                        }
                        continue;
                    }
                    let binding = plan.binding(op, source, now);
                    // The store keys bindings by contact text: if the UA now writes the same URI
                    // differently (host case, parameter order), the old record goes.
                    if let Some(old) = self.put(op.key.clone(), binding.clone()) {
                        if old.contact != binding.contact {
                            changes.push(Change::Remove { aor: old.aor, contact: old.contact });
                        }
                    }
                    changes.push(Change::Put(binding));
                }
            }
        }
        changes
    }

    /// [`Registrar::apply`] for the common REGISTER, a refresh: every contact already bound to
    /// the AOR and kept (expires > 0), none of the AOR's bindings lapsed. Each is replaced in
    /// place as [`Registrar::put`] replaces it, with one look-up of the AOR (issue 16: the lapsed
    /// sweep and each put found the AOR again). `None`, changing nothing, for any other request.
    fn refresh_in_place(&mut self, plan: &Plan, source: SocketAddr, now: u64) -> Option<Vec<Change>> {
        let Action::Update(ops) = &plan.action else { return None };
        let entries = self.by_aor.get_mut(&plan.aor)?;
        let refresh = ops.iter().all(|op| op.expires > 0 && entries.iter().any(|e| e.key == op.key));
        if !refresh || entries.iter().any(|e| e.binding.is_expired(now)) {
            return None;
        }
        let mut changes = Vec::with_capacity(ops.len());
        for op in ops {
            let binding = plan.binding(op, source, now);
            let at = entries.iter().position(|e| e.key == op.key)?;
            let old = super::replace_entry(entries, at, &mut self.deadlines, &mut self.next_id, binding.clone());
            if old.contact != binding.contact {
                changes.push(Change::Remove { aor: old.aor, contact: old.contact });
            }
            changes.push(Change::Put(binding));
        }
        Some(changes)
    }

    /// Step 8: 200 listing every binding of `aor`, best first, each with its remaining seconds.
    fn ok_response(&self, req: &Message, aor: &str, tag: &str, now: u64) -> Message {
        let listed = sorted(self.entries(aor)).into_iter().map(|b| (b.contact.as_str(), b.remaining(now), b.q_millis));
        listing(req, tag, listed, now)
    }
}

/// Steps 6 and 7: an older request from the same UA (same Call-ID, CSeq not higher) must not
/// undo what a newer one wrote. `entries` are the bindings of `plan.aor`.
fn check_order(entries: &[Entry], plan: &Plan, now: u64) -> Result<(), RegisterError> {
    let stale = |b: &Binding| !b.is_expired(now) && b.call_id == plan.call_id && plan.cseq <= b.cseq;
    let out_of_order = match &plan.action {
        Action::Query => false,
        Action::RemoveAll => entries.iter().any(|e| stale(&e.binding)),
        Action::Update(ops) => ops.iter().any(|op| entries.iter().any(|e| e.key == op.key && stale(&e.binding))),
    };
    match out_of_order {
        true => Err(RegisterError::OutOfOrder),
        false => Ok(()),
    }
}

/// The 200 of step 8 for the given `(contact, remaining seconds, q)`, in that order.
pub(super) fn listing<'a>(req: &Message, tag: &str, contacts: impl Iterator<Item = (&'a str, u64, u16)>, now: u64) -> Message {
    let mut b = req.response_to(200, "OK", Some(tag));
    let mut line = String::new();
    for (contact, remaining, q) in contacts {
        // `<contact>;expires=N;q=Q`, written piece by piece (issue 16: cheaper than formatting).
        line.clear();
        line.reserve(contact.len() + ">;expires=;q=0.001".len() + 21);
        line.push('<');
        line.push_str(contact);
        line.push_str(">;expires=");
        push_decimal(&mut line, remaining);
        line.push_str(";q=");
        push_q(&mut line, q);
        b.push_raw(HeaderName::Contact, HeaderName::Contact.as_str(), line.as_bytes());
    }
    b.push(HeaderName::Date, http_date(now));
    b.finish()
}

/// Whether a Contact header line holds a `*` element among others (`*, <sip:a@b>`).
fn is_star_in_list(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|e| e.trim_ascii() == b"*")
}

/// A To tag for the response. A registrar's response starts no dialog, so the tag only needs to
/// differ between requests: a hash (FNV-1a) of Call-ID, CSeq and From. Deterministic, so no RNG is
/// needed and tests can predict it.
fn to_tag(req: &Message) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for name in [HeaderName::CallId, HeaderName::CSeq, HeaderName::From] {
        for &b in req.header(name).unwrap_or_default().iter().chain(b"\n") {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hex16(h)
}

/// `format!("{h:016x}")` without the formatting machinery (issue 16: a To tag per response).
fn hex16(h: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(16);
    for shift in (0..16).rev() {
        out.push(char::from(DIGITS[((h >> (shift * 4)) & 0xf) as usize]));
    }
    out
}

/// `rfc1123-date` (RFC 3261 §20.17), e.g. `Sat, 13 Nov 2010 23:29:00 GMT`, from Unix seconds: the
/// IMF-fixdate of RFC 9110 §5.6.7, which is the same form. A time past the latest jiff represents
/// (9999-12-30 22:00 UTC) is written as that (the grammar has four digits for the year).
pub(crate) fn http_date(secs: u64) -> String {
    // Every 200 carries one, and the text changes once a second: each thread keeps the last one
    // written (issue 16: jiff's printer was ~500 instructions a registration).
    thread_local! {
        static LAST: RefCell<Option<(u64, String)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((at, text)) if *at == secs => text.clone(),
            _ => {
                let text = format_http_date(secs);
                *last = Some((secs, text.clone()));
                text
            }
        }
    })
}

/// [`http_date`] without the kept text.
fn format_http_date(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX).min(jiff::Timestamp::MAX.as_second());
    let at = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::MAX);
    jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&at).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept date is the text of the second asked for, whatever the order of the asks.
    #[test]
    fn a_kept_date_is_the_seconds_own() {
        for secs in [1_700_000_000, 1_700_000_000, 1_700_000_001, 1_699_999_999, 1_700_000_001, 0, u64::MAX, u64::MAX, 5] {
            assert_eq!(http_date(secs), format_http_date(secs), "{secs}");
        }
        let other = std::thread::spawn(|| http_date(86_400)).join().unwrap();
        assert_eq!(other, "Fri, 02 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(5), format_http_date(5));
    }

    #[test]
    fn hex16_is_format() {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for v in [0, 1, 0xf, 0x10, u64::MAX, 0x0123_4567_89ab_cdef, 1 << 63] {
            assert_eq!(hex16(v), format!("{v:016x}"));
        }
        for _ in 0..10_000 {
            h = (h ^ 0x5a).wrapping_mul(0x0100_0000_01b3);
            assert_eq!(hex16(h), format!("{h:016x}"));
        }
    }

    #[test]
    fn dates() {
        for (secs, want) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (1_289_690_940, "Sat, 13 Nov 2010 23:29:00 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
            (u64::MAX, "Thu, 30 Dec 9999 22:00:00 GMT"),
        ] {
            assert_eq!(http_date(secs), want);
            assert_eq!(format_http_date(secs), want);
        }
    }

    #[test]
    fn star_in_list() {
        assert!(is_star_in_list(b"*, <sip:a@b>"));
        assert!(is_star_in_list(b"<sip:a@b> , *"));
        assert!(!is_star_in_list(b"<sip:a@b;x=*>"));
    }
}
