//! # switchboard
//!
//! A SIP stack over UDP, in layers that each stand on their own:
//!
//! ```text
//!   ua          echo UAS, dialer            (sans-IO applications on the endpoint)
//!   driver      tokio loop: socket + clock  (the only I/O, with transport::udp)
//!   endpoint    datagram -> transaction / application / stateless answer
//!   transaction RFC 3261 §17 state machines, one timer heap
//!   transport   RFC 3261 §18 / RFC 3581 rules; transport::udp is the socket
//!   message     parse / build SIP messages (RFC 3261 §7, §20, §25), zero-copy over bytes::Bytes
//!   sdp         session descriptions (RFC 4566)
//! ```
//!
//! Protocol layers are sans-IO: they take bytes and `now`, and return what to send and when to wake.
//! Run loop (as in quinn-proto): give one input to the endpoint (`handle_datagram`, `handle_timeout`
//! or a command), drain `poll_transmit` and `poll_event`, then sleep until `poll_timeout`.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod b2bua;
pub mod calendar;
pub mod call;
pub mod cli;
pub mod collections;
pub mod dialog;
pub mod driver;
pub mod endpoint;
pub mod media;
pub mod message;
pub mod proxy;
pub mod registrar;
pub mod relay;
pub mod sdp;
pub mod service;
pub mod store;
pub mod testing;
pub mod transaction;
pub mod transport;
pub mod ua;
