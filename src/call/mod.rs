//! Calls: SDP offer/answer for audio (RFC 3264) and the media session of each call (sans-IO).
//!
//! [`negotiate`] turns offers and answers into a [`Negotiated`] stream; [`MediaSession`] runs that
//! stream: paced G.711 sending, jitter-buffered receiving, DTMF, RTCP and the inactivity check.
//! [`sdes`] adds SRTP keys to both (RFC 4568) for the softphone's `--srtp`.
//! The user agents in `crate::ua` (feature `tokio`) tie one session to each dialog.

pub mod negotiate;
pub mod sdes;
pub mod session;

pub use negotiate::{answer, apply_answer, offer, MediaPrefs, Negotiated, NegotiationError};
pub use session::{Channel, MediaConfig, MediaEvent, MediaSession, MediaSummary, MediaTransmit, Source};
