//! # switchboard
//!
//! A SIP stack over UDP, in layers that each stand on their own. Every module, from the top
//! (what the binaries run) to the bottom (bytes on the wire):
//!
//! ```text
//!   cli         what the two binaries share (log set-up)             [feature cli]
//!   service     registrar + auth + routing + echo, as one app        [feature service]
//!   store       users, bindings, call records (SQLite/Redis, I/O)    [feature service]
//!   b2bua       back-to-back calls with relayed media (RFC 7092)     [feature service]
//!   driver      tokio loop: sockets + clock (the only I/O)           [feature tokio]
//!   testing     test harness: in-memory network, virtual clock, media
//!   application the contract above the endpoint: Application, Io, media ports and flows
//!   ua          echo UAS, softphone, REGISTER client
//!   relay       RTP/RTCP relay between two legs
//!   proxy       stateful proxy core (RFC 3261 §16)
//!   records     what the service writes to its store: rows, write ops, the sink it writes to
//!   registrar   location service (RFC 3261 §10.3)
//!   auth        digest authentication (RFC 3261 §22, RFC 8760)
//!   call        SDP offer/answer for audio (RFC 3264), the media session of a call
//!   dialog      dialogs, re-INVITE, session timers (RFC 3261 §12-15, RFC 4028)
//!   endpoint    datagram -> transaction (and its owner) / application / stateless answer
//!   transaction RFC 3261 §17 state machines, one timer heap
//!   transport   RFC 3261 §18 / RFC 3581 rules; transport::udp is the socket [udp: feature tokio]
//!   message     parse / build SIP messages (RFC 3261 §7, §20, §25), zero-copy over bytes::Bytes
//!   sdp         session descriptions (RFC 4566)
//!   media       G.711, RTP/RTCP, DTMF, jitter buffer, pacing, WAV, tones
//!   cluster     Call-ID stickiness: worker and instance of a call, the published live set
//!   dispatch    the Call-ID-sticky SIP load balancer in front of instances (`switchboard dispatch`)
//!   collections the hash map the protocol state lives in
//! ```
//!
//! Protocol layers are sans-IO: they take bytes and `now`, and return what to send and when to wake.
//! Run loop (as in quinn-proto): give one input to the endpoint (`handle_datagram`, `handle_timeout`
//! or a command), drain `poll_transmit` and `poll_event`, then sleep until `poll_timeout`.
//!
//! # Features
//!
//! `default = ["service", "cli", "srtp"]`. With `default-features = false` the crate is the sans-IO stack
//! (message, transport rules, transaction, endpoint, dialog, sdp, call, media, auth, registrar,
//! proxy, the application contract, ua, relay and the in-memory test harness) without tokio,
//! clap, toml, rusqlite or serde_json. `tokio` adds the driver and the UDP socket; `serde` derives
//! Serialize/Deserialize for [`dialog::DialogSnapshot`]; `service` adds the service, its store and
//! the B2BUA (no tokio); `cli` the binaries' shared parts and the driver they run on; `srtp` the
//! SRTP contexts of [`media::srtp`] (webrtc-srtp; without it a call that negotiates SRTP
//! fails).
//!
//! # The types most programs start from
//!
//! Re-exported here: [`Message`] (parse and build), [`Endpoint`] with its [`EndpointConfig`] and
//! [`EndpointEvent`]s, the dialog layer [`Dialogs`], [`SessionDescription`], and the contract of
//! what runs above the endpoint: [`Application`], the [`Io`] it gets and its [`Media`] flows.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod application;
pub mod auth;
pub mod call;
pub mod cluster;
pub mod collections;
pub mod decimal;
pub mod dialog;
pub mod dispatch;
pub mod endpoint;
pub mod media;
pub mod message;
pub mod proxy;
pub mod records;
pub mod registrar;
pub mod relay;
pub mod sdp;
pub mod testing;
pub mod transaction;
pub mod transport;
pub mod ua;

#[cfg(feature = "tokio")]
pub mod driver;
#[cfg(feature = "tokio")]
pub mod workers;

#[cfg(feature = "service")]
pub mod b2bua;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod store;

#[cfg(feature = "cli")]
pub mod cli;

pub use application::{Application, Io, Media};
pub use dialog::Dialogs;
pub use endpoint::{Endpoint, EndpointConfig, EndpointEvent, Owner};
pub use message::Message;
pub use sdp::SessionDescription;
