//! What the four machines share: [`Core`] holds everything but the state, and [`machine_api!`]
//! writes the public accessors and output polls that only read or drain it.
//!
//! Each machine is `{ core: Core, state: State }`, with `State` its own figure's states (one of them
//! `Terminated`). Transitions stay in the machine's file; they reach the request, the timers and
//! the queues through `self.core`.

use super::timer::TimerTable;
use super::{Config, Error, Event, Timer, TransactionKey};
use crate::message::{Message, Method, Via};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The part of a transaction that does not depend on its figure.
#[derive(Debug)]
pub(crate) struct Core {
    /// The request the transaction was created for: sent (client) or received (server).
    pub(crate) request: Message,
    /// Responses (client) or requests (server) are matched by this (§17.1.3, §17.2.3).
    pub(crate) key: TransactionKey,
    pub(crate) config: Config,
    /// Read from the request's top Via: no retransmissions and no lingering (Table 4).
    pub(crate) reliable: bool,
    pub(crate) timers: TimerTable,
    transmits: VecDeque<Message>,
    events: VecDeque<Event>,
}

// ===== impl Core =====

impl Core {
    /// A core for `request` with `key`; fails if the request has no usable top Via.
    pub(crate) fn new(request: Message, key: TransactionKey, config: &Config) -> Result<Core, Error> {
        let reliable = is_reliable(&request.via()?);
        Ok(Core::with_transport(request, key, reliable, config))
    }

    /// A core whose request's top Via names a reliable transport (`reliable`) or not.
    pub(crate) fn with_transport(request: Message, key: TransactionKey, reliable: bool, config: &Config) -> Core {
        Core { request, key, config: *config, reliable, timers: TimerTable::default(), transmits: VecDeque::new(), events: VecDeque::new() }
    }

    /// A client core (§17.1.1.2, §17.1.2.2): queues `request` for its first transmission, arms
    /// `retransmit` (A or E) at T1 on an unreliable transport and `timeout` (B or F) at `64*T1`.
    /// `(key, reliable)` is [`client_key`] of `request`.
    pub(crate) fn client(
        request: Message,
        (key, reliable): (TransactionKey, bool),
        config: &Config,
        now: Instant,
        retransmit: Timer,
        timeout: Timer,
    ) -> Result<Core, Error> {
        let mut core = Core::with_transport(request.clone(), key, reliable, config);
        core.transmit(request);
        core.set_retransmit(retransmit, now, config.t1);
        core.timers.set(timeout, now, config.timeout());
        Ok(core)
    }

    /// Queues `msg` for the transport.
    pub(crate) fn transmit(&mut self, msg: Message) {
        self.transmits.push_back(msg);
    }

    /// Queues `event` for the TU.
    pub(crate) fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// Arms a retransmission timer (A, E, G): only on an unreliable transport (§17.1.1.2, §17.1.2.2,
    /// §17.2.1).
    pub(crate) fn set_retransmit(&mut self, timer: Timer, now: Instant, after: Duration) {
        if !self.reliable {
            self.timers.set(timer, now, after);
        }
    }

    /// Stops every timer and tells the TU the transaction ended. The machine calls this once, when
    /// its state becomes Terminated.
    pub(crate) fn finish(&mut self) {
        self.timers.stop_all();
        self.event(Event::Terminated);
    }

    /// The next queued message. Once the queue is drained its buffer is freed: a transaction spends
    /// most of its life idle, and a `VecDeque` keeps its capacity (4 messages, about 0.5 KiB)
    /// after the last pop.
    pub(crate) fn poll_transmit(&mut self) -> Option<Message> {
        let msg = self.transmits.pop_front();
        if self.transmits.is_empty() {
            self.transmits = VecDeque::new();
        }
        msg
    }

    /// The next queued event; frees the drained queue like [`Core::poll_transmit`].
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        event
    }

    pub(crate) fn next_timer(&self) -> Option<(Timer, Instant)> {
        self.timers.next()
    }
}

/// Refuses what cannot open a non-INVITE transaction: a response, an INVITE, an ACK (§17.1.1.3).
pub(crate) fn check_non_invite(request: &Message) -> Result<(), Error> {
    match request.method() {
        None => Err(Error::NotARequest),
        Some(Method::Invite) => Err(Error::WrongMethod),
        Some(Method::Ack) => Err(Error::AckNotATransaction),
        Some(_) => Ok(()),
    }
}

/// Whether the top Via names a reliable transport (§18: TCP, TLS, SCTP; RFC 7118: WS, WSS).
/// Anything else, UDP included, gets retransmissions: erring that way costs only duplicates.
fn is_reliable(via: &Via<'_>) -> bool {
    ["TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"].iter().any(|t| via.transport.eq_ignore_ascii_case(t))
}

/// The key of a client transaction for `request` (§17.1.3) and whether its top Via names a
/// reliable transport, from one parse of that Via.
pub(crate) fn client_key(request: &Message) -> Result<(TransactionKey, bool), Error> {
    TransactionKey::client_with(request, is_reliable)
}

/// The key of the server transaction `request` starts (§17.2.3) and whether its top Via names a
/// reliable transport, from one parse of that Via.
pub(crate) fn server_key(request: &Message) -> Result<(TransactionKey, bool), Error> {
    TransactionKey::server_with(request, is_reliable)
}

/// Writes the public methods every machine has the same way: the `poll_*` outputs, `next_timer`,
/// `is_terminated`, `key`, `request`, `handle_transport_error`, and the private `linger` and
/// `terminate`.
///
/// Expects fields `core: Core` and `state: State` with a `State::Terminated` variant.
macro_rules! machine_api {
    ($machine:ident) => {
        // ===== shared surface (machine_api!) =====

        impl $machine {
            /// The next message to put on the wire. Drain after every input.
            #[must_use]
            pub fn poll_transmit(&mut self) -> Option<$crate::message::Message> {
                self.core.poll_transmit()
            }

            /// The next event for the TU. Drain after every input.
            #[must_use]
            pub fn poll_event(&mut self) -> Option<$crate::transaction::Event> {
                self.core.poll_event()
            }

            #[doc = concat!("When to call [`", stringify!($machine), "::handle_timeout`] next; `None` once nothing is armed.")]
            #[must_use]
            pub fn poll_timeout(&self) -> Option<::std::time::Instant> {
                self.core.next_timer().map(|(_, at)| at)
            }

            #[doc = concat!("Which timer [`", stringify!($machine), "::poll_timeout`] is for.")]
            pub fn next_timer(&self) -> Option<($crate::transaction::Timer, ::std::time::Instant)> {
                self.core.next_timer()
            }

            /// True once Terminated: the transaction sends and reports nothing more and can be dropped.
            pub fn is_terminated(&self) -> bool {
                matches!(self.state, State::Terminated)
            }

            /// The key messages are matched by (§17.1.3 client, §17.2.3 server).
            pub fn key(&self) -> &$crate::transaction::TransactionKey {
                &self.core.key
            }

            /// The request this transaction was created for: the one it sends (client) or received
            /// (server).
            pub fn request(&self) -> &$crate::message::Message {
                &self.core.request
            }

            /// The transport could not send for this transaction (§17.1.4, §17.2.4): tell the TU
            /// ([`Event::TransportError`](crate::transaction::Event::TransportError)) and
            /// terminate. Nothing happens once Terminated.
            pub fn handle_transport_error(&mut self, _now: ::std::time::Instant) {
                if !self.is_terminated() {
                    self.core.event($crate::transaction::Event::TransportError);
                    self.terminate();
                }
            }

            /// Lingers in the current state for `after` before `timer` (D, I, J, K) ends the
            /// transaction, to absorb retransmissions on UDP; on a reliable transport those timers
            /// are zero (Table 4), so it terminates now.
            fn linger(&mut self, timer: $crate::transaction::Timer, now: ::std::time::Instant, after: ::std::time::Duration) {
                if self.core.reliable {
                    self.terminate();
                } else {
                    self.core.timers.set(timer, now, after);
                }
            }

            /// Moves to Terminated (once): stops every timer and queues `Event::Terminated`.
            fn terminate(&mut self) {
                if !self.is_terminated() {
                    self.state = State::Terminated;
                    self.core.finish();
                }
            }
        }
    };
}

pub(crate) use machine_api;
