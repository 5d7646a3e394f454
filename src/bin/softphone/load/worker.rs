//! One worker of `softphone load`: an [`Application`] that places paced calls through the crate's
//! own stack (Endpoint transactions, [`Dialogs`] via [`UaCore`]) and runs on one thread with its own
//! socket, driven by the blocking loop of `load/blocking.rs`.
//!
//! Each call goes INVITE → 1xx → 200 → ACK (the dialog layer) → hold for `duration` → BYE → 200.
//! Retransmissions, Timer B/F and 2xx ACK repeats are the transaction and dialog layers' work; this
//! file only schedules calls and keeps score.
//!
//! ```text
//!   pacing: call k of worker i starts at start + (i + k*W)/R, at most `concurrency` in progress
//!   Inviting ──2xx──► Holding ──duration──► Byeing ──BYE 2xx──► ok
//!      │ 3xx-6xx / Timer B      │ peer ends it    │ BYE non-2xx / no answer in 64*T1
//!      └────────────────────────┴─────────────────┴──────────────────────────────► failed (reason)
//! ```
//!
//! Workers share only the atomic counters of [`Shared`]; latencies and failure reasons stay local
//! and are returned in [`WorkerResult`] when the driver ends.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::application::{Application, Io};
use switchboard::collections::HashMap;
use switchboard::dialog::{CallParams, DialogId, EndReason, Event as DialogEvent};
use switchboard::endpoint::EndpointEvent;
use switchboard::message::{Message, Method};
use switchboard::ua::core::{UaCore, UaEvent};

/// Counters every worker adds to and the progress line reads.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// INVITEs sent (first transmissions).
    pub(crate) attempted: AtomicU64,
    /// Calls that completed INVITE/200/ACK/BYE/200.
    pub(crate) ok: AtomicU64,
    /// Calls that ended any other way.
    pub(crate) failed: AtomicU64,
    /// Calls in progress.
    pub(crate) active: AtomicU64,
    /// Timer retransmissions of every worker's transaction layer.
    pub(crate) retransmissions: AtomicU64,
}

/// What one worker is asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Calls to place.
    pub(crate) calls: u64,
    /// When the first call starts.
    pub(crate) first_at: Instant,
    /// Time between two of this worker's calls (workers × 1/rate).
    pub(crate) interval: Duration,
    /// Calls in progress at most.
    pub(crate) concurrency: u64,
    /// How long a call stays up after the 200.
    pub(crate) hold: Duration,
    /// How long after the BYE its final response may come (Timer F plus a margin).
    pub(crate) bye_limit: Duration,
    /// From, To and the offer of every INVITE (the Call-ID and tags are new each time).
    pub(crate) params: CallParams,
}

/// What a worker reports when it ends.
#[derive(Debug, Default)]
pub(crate) struct WorkerResult {
    /// Setup latency of each answered call (INVITE sent → 2xx received), in microseconds.
    pub(crate) setup_us: Vec<u32>,
    /// Failed calls by reason ("486", "timeout", "BYE 481", ...).
    pub(crate) failures: BTreeMap<String, u64>,
}

#[derive(Debug)]
enum Phase {
    Inviting,
    Holding,
    Byeing,
}

#[derive(Debug)]
struct Call {
    started: Instant,
    /// The pending id until the 2xx, then the dialog's id.
    id: DialogId,
    phase: Phase,
}

/// Most calls one wake-up starts when the worker is behind schedule, so replies still get read.
const MAX_STARTS_PER_WAKE: u32 = 256;
/// A worker further behind its schedule than this forgets the backlog instead of bursting.
const MAX_LAG: Duration = Duration::from_secs(1);

/// The load worker (sans-IO; the driver gives it the endpoint and the clock).
#[derive(Debug)]
pub(crate) struct LoadWorker {
    plan: Plan,
    shared: Arc<Shared>,
    ua: UaCore,
    /// Calls in progress by Call-ID.
    calls: HashMap<std::sync::Arc<str>, Call>,
    /// Calls still to start, and when the next one is due.
    remaining: u64,
    next_at: Instant,
    /// BYE due times and BYE answer deadlines, in order (every call holds and waits as long).
    hangups: VecDeque<(Instant, std::sync::Arc<str>)>,
    bye_deadlines: VecDeque<(Instant, std::sync::Arc<str>)>,
    stopping: bool,
    retransmissions_seen: u64,
    result: WorkerResult,
}

// ===== impl LoadWorker =====

impl LoadWorker {
    /// A worker that will place `plan.calls` calls through `ua`.
    pub(crate) fn new(plan: Plan, ua: UaCore, shared: Arc<Shared>) -> LoadWorker {
        LoadWorker {
            remaining: plan.calls,
            next_at: plan.first_at,
            plan,
            shared,
            ua,
            calls: HashMap::default(),
            hangups: VecDeque::new(),
            bye_deadlines: VecDeque::new(),
            stopping: false,
            retransmissions_seen: 0,
            result: WorkerResult::default(),
        }
    }

    /// Ends the worker: calls never finished count as failed ("unfinished").
    ///
    /// The stack's tables are not freed: they hold the last 32 s of calls (Timers D and M, the
    /// dialog purge), and the process exits once the workers have reported; freeing them one by
    /// one measured 5,000 instructions per call of a 2,000-call run (BENCHMARKS.md "softphone load,
    /// leaner (load16)"). The operating system takes the memory back at exit.
    pub(crate) fn into_result(mut self) -> WorkerResult {
        let unfinished = self.calls.len() as u64;
        if unfinished > 0 {
            *self.result.failures.entry("unfinished".into()).or_default() += unfinished;
            self.shared.failed.fetch_add(unfinished, Ordering::Relaxed);
            self.shared.active.fetch_sub(unfinished, Ordering::Relaxed);
        }
        let LoadWorker { ua, calls, hangups, bye_deadlines, result, .. } = self;
        std::mem::forget((ua, calls, hangups, bye_deadlines));
        result
    }

    /// Starts every call that is due, within the concurrency cap.
    fn start_due(&mut self, io: &mut Io<'_>, now: Instant) {
        if self.next_at + MAX_LAG < now {
            self.next_at = now;
        }
        let mut started = 0;
        while !self.stopping && self.remaining > 0 && self.next_at <= now && (self.calls.len() as u64) < self.plan.concurrency {
            if started == MAX_STARTS_PER_WAKE {
                break;
            }
            started += 1;
            self.remaining -= 1;
            self.next_at += self.plan.interval;
            match self.ua.dialogs().invite(self.plan.params.clone(), now) {
                Ok(id) => {
                    self.shared.attempted.fetch_add(1, Ordering::Relaxed);
                    self.shared.active.fetch_add(1, Ordering::Relaxed);
                    self.calls.insert(id.call_id.clone(), Call { started: now, id, phase: Phase::Inviting });
                }
                Err(e) => {
                    // The addresses were checked before the workers started; count it anyway.
                    tracing::debug!(error = %e, "INVITE not built");
                    self.shared.attempted.fetch_add(1, Ordering::Relaxed);
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                    *self.result.failures.entry("not sent".into()).or_default() += 1;
                }
            }
        }
        self.ua.flush(io.endpoint, now);
    }

    /// Removes the call and counts it.
    fn finish(&mut self, call_id: &str, failure: Option<String>) {
        if self.calls.remove(call_id).is_none() {
            return;
        }
        self.shared.active.fetch_sub(1, Ordering::Relaxed);
        match failure {
            None => drop(self.shared.ok.fetch_add(1, Ordering::Relaxed)),
            Some(reason) => {
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                *self.result.failures.entry(reason).or_default() += 1;
            }
        }
    }

    fn hang_up(&mut self, call_id: &str, now: Instant) {
        let Some(call) = self.calls.get_mut(call_id) else { return };
        if !matches!(call.phase, Phase::Holding) {
            return;
        }
        call.phase = Phase::Byeing;
        let id = call.id.clone();
        match self.ua.dialogs().send_bye(&id, now) {
            Ok(()) => self.bye_deadlines.push_back((now + self.plan.bye_limit, call_id.into())),
            Err(e) => self.finish(call_id, Some(format!("BYE refused: {e}"))),
        }
    }

    fn on_dialog_event(&mut self, event: DialogEvent, now: Instant) {
        match event {
            DialogEvent::Established { id } => {
                let Some(call) = self.calls.get_mut(&id.call_id) else { return };
                if !matches!(call.phase, Phase::Inviting) {
                    // A second 2xx from a fork: the dialog layer ACKed it; end that dialog too.
                    if let Err(e) = self.ua.dialogs().send_bye(&id, now) {
                        tracing::debug!(call_id = %id.call_id, error = %e, "BYE to a second fork not sent");
                    }
                    return;
                }
                let setup = now.saturating_duration_since(call.started);
                self.result.setup_us.push(u32::try_from(setup.as_micros()).unwrap_or(u32::MAX));
                call.phase = Phase::Holding;
                call.id = id.clone();
                if self.plan.hold.is_zero() {
                    self.hang_up(&id.call_id, now);
                } else {
                    self.hangups.push_back((now + self.plan.hold, id.call_id));
                }
            }
            DialogEvent::Terminated { id, reason } => {
                let Some(call) = self.calls.get(&id.call_id) else { return };
                // Only the call's own dialog (or its pending INVITE) decides; a fork's end does not.
                if call.id != id && !call.id.is_pending_invite() {
                    return;
                }
                let failure = match (&call.phase, reason) {
                    (Phase::Byeing, _) => return, // our own BYE; the BYE's answer decides
                    (_, EndReason::Rejected(code)) => format!("{code}"),
                    (_, EndReason::Timeout) => "timeout".into(),
                    (_, EndReason::Bye(_)) => "ended by peer".into(),
                    (_, other) => format!("{other:?}"),
                };
                self.finish(&id.call_id, Some(failure));
            }
            _ => {}
        }
    }

    /// The final answer to one of our BYEs decides the call.
    fn on_bye_answer(&mut self, response: &Message) {
        let (Some(status), Ok(cseq), Ok(call_id)) = (response.status(), response.cseq(), response.call_id()) else { return };
        if cseq.method != Method::Bye || status < 200 {
            return;
        }
        if self.calls.get(call_id).is_some_and(|c| matches!(c.phase, Phase::Byeing)) {
            let failure = (status >= 300).then(|| format!("BYE {status}"));
            self.finish(call_id, failure);
        }
    }

    fn drain(&mut self, io: &mut Io<'_>, now: Instant) {
        while let Some(event) = self.ua.poll_event() {
            match event {
                UaEvent::Dialog(ev) => self.on_dialog_event(ev, now),
                UaEvent::Endpoint(EndpointEvent::Request { tx, request, .. }) => {
                    // Out-of-dialog requests (OPTIONS, a stray INVITE) are not what a load run is about.
                    let answer = request.response_to(405, "Method Not Allowed", Some("load")).finish();
                    io.endpoint.respond_or_log(tx, answer, now);
                }
                _ => {}
            }
            self.ua.flush(io.endpoint, now);
        }
    }

    /// Copies the endpoint's retransmission count to the shared counter. Only the endpoint's
    /// timers retransmit, and the driver runs them just before [`Application::handle_timeout`],
    /// so publishing there misses nothing.
    fn publish_retransmissions(&mut self, io: &Io<'_>) {
        let seen = io.endpoint.stats().retransmissions;
        if seen > self.retransmissions_seen {
            self.shared.retransmissions.fetch_add(seen - self.retransmissions_seen, Ordering::Relaxed);
            self.retransmissions_seen = seen;
        }
    }
}

impl Application for LoadWorker {
    fn start(&mut self, io: &mut Io<'_>, now: Instant) {
        self.start_due(io, now);
        self.drain(io, now);
    }

    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        if let EndpointEvent::Response { response, .. } = &event {
            self.on_bye_answer(response);
        }
        self.ua.handle_endpoint_event(io.endpoint, event, now);
        self.drain(io, now);
        self.start_due(io, now);
        self.drain(io, now);
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.ua.handle_timeout(io.endpoint, now);
        self.drain(io, now);
        while let Some((at, call_id)) = self.hangups.front().cloned() {
            if at > now {
                break;
            }
            self.hangups.pop_front();
            self.hang_up(&call_id, now);
        }
        while let Some((at, call_id)) = self.bye_deadlines.front().cloned() {
            if at > now {
                break;
            }
            self.bye_deadlines.pop_front();
            if self.calls.get(&call_id).is_some_and(|c| matches!(c.phase, Phase::Byeing)) {
                self.finish(&call_id, Some("BYE timeout".into()));
            }
        }
        self.drain(io, now);
        self.start_due(io, now);
        self.drain(io, now);
        self.publish_retransmissions(io);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let next_call = (!self.stopping && self.remaining > 0 && (self.calls.len() as u64) < self.plan.concurrency).then_some(self.next_at);
        // Dialog timers of ended calls (purges) must not keep a finished worker awake for 32 s:
        // they only matter while calls are in progress.
        let dialogs = (!self.calls.is_empty()).then(|| self.ua.poll_timeout()).flatten();
        let own = [self.hangups.front(), self.bye_deadlines.front()].into_iter().flatten().map(|(at, _)| *at);
        next_call.into_iter().chain(dialogs).chain(own).min()
    }

    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant) {
        self.stopping = true;
        self.remaining = 0;
        let holding: Vec<std::sync::Arc<str>> =
            self.calls.iter().filter(|(_, c)| matches!(c.phase, Phase::Holding)).map(|(k, _)| k.clone()).collect();
        for call_id in holding {
            self.hang_up(&call_id, now);
        }
        self.ua.flush(io.endpoint, now);
        self.drain(io, now);
    }

    fn is_done(&self) -> bool {
        self.remaining == 0 && self.calls.is_empty()
    }
}
