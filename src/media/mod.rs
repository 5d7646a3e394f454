//! The media plane, sans-IO: G.711 audio carried in RTP (RFC 3550, RFC 3551), telephone events
//! (RFC 4733) and RTCP reports, plus WAV files and test tones as sources and sinks.
//!
//! Nothing in this module opens a socket, spawns a task or reads a clock: every input that depends
//! on time takes `now: Instant`, randomness (SSRC, first sequence number) comes in as a seed, and
//! WAV files are read from bytes and written to any `Write + Seek`. A driver owns the sockets and
//! the clock and feeds this core.
//!
//! ```text
//!  send   wav / tone ──pcm──▶ g711 ──payload──▶ rtp::RtpSender ──datagram──▶ driver
//!                                 dtmf::DtmfSender ──event──┘   ▲ pacer::Pacer says when
//!
//!  recv   driver ──datagram──▶ rtp::classify ─┬─ RTP ──▶ stats::ReceiverStats (loss, jitter)
//!                                             │          jitter::JitterBuffer ──frame──▶ g711 ──pcm──▶ wav / tone
//!                                             │          dtmf::DtmfReceiver (telephone-event PT)
//!                                             ├─ RTCP ─▶ rtcp::parse_compound (SR/RR ⇒ round-trip time)
//!                                             └─ other (STUN, garbage): counted, ignored
//! ```
//!
//! # Run loop for one flow
//!
//! 1. Sending: sleep until [`pacer::Pacer::poll_timeout`]; for every due frame from
//!    [`pacer::Pacer::poll_due`], ask [`dtmf::DtmfSender::poll_frame`] whether an event takes the
//!    slot, otherwise encode 160 samples with [`g711::Codec::encode`] and packetize with
//!    [`rtp::RtpSender::send_audio`].
//! 2. Receiving: [`rtp::classify`] each datagram; give RTP packets to
//!    [`stats::ReceiverStats::handle_packet`] and [`jitter::JitterBuffer::push`], then drain
//!    [`jitter::JitterBuffer::pop`] until it returns `None`; wake again at
//!    [`jitter::JitterBuffer::poll_timeout`].
//! 3. Every few seconds build an RTCP report from [`stats::ReceiverStats::report_block`].
//!
//! Everything runs at the G.711 clock of 8 kHz with 20 ms frames (RFC 3551 §4.5.14, §4.2).

pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod pacer;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
pub mod stats;
pub mod tone;
pub mod wav;

use std::time::Duration;

/// Sampling rate of G.711 and of the RTP clock for PCMU/PCMA (RFC 3551 §4.5.14): 8000 Hz.
pub const SAMPLE_RATE: u32 = 8000;

/// Samples in one 20 ms frame at 8 kHz: the RTP timestamp advances by this much per packet.
pub const FRAME_SAMPLES: usize = 160;

/// Duration of one frame (the default packetization interval of RFC 3551 §4.2 and §4.5).
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// One frame of 16-bit linear PCM at 8 kHz.
pub type PcmFrame = [i16; FRAME_SAMPLES];
