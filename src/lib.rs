//! # switchboard
//!
//! A SIP stack over UDP, in layers that each stand on their own:
//!
//! ```text
//!   message   parse / build SIP messages (RFC 3261 §7, §20, §25), zero-copy over bytes::Bytes
//!   sdp       session descriptions (RFC 4566)
//! ```
//!
//! Protocol layers are sans-IO: they take bytes and `now`, and return what to send and when to wake.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod driver;
pub mod endpoint;
pub mod message;
pub mod transaction;
pub mod sdp;
pub mod transport;
pub mod ua;
