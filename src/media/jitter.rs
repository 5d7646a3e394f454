//! Receive-side jitter buffer with a fixed playout delay, keyed by extended sequence number.
//!
//! The first packet of a talk session anchors the schedule: it plays at `arrival + delay`, and
//! each following sequence number one frame (20 ms) later. Packets may arrive in any order within
//! the buffer's window; when a sequence number's playout time comes and its packet is missing,
//! [`JitterBuffer::pop`] yields a [`Frame`] without a packet, which the caller plays as silence
//! (the simplest concealment RFC 3550 §2.1/§10 leave to the receiver; see also RFC 3551 §4.1 on
//! G.711 frames being independently decodable).
//!
//! Packets that arrive after their slot was played are dropped as late (or as duplicates if that
//! slot was played from a packet); a copy of a buffered packet is a duplicate; one more than
//! `capacity` frames ahead of playout is dropped as overflow. After `max_concealment` missing
//! frames in a row with nothing buffered, the buffer goes idle (no timeout) and the next packet
//! anchors a new schedule.
//!
//! Sans-IO run loop: [`JitterBuffer::push`] each packet with its arrival instant, then call
//! [`JitterBuffer::pop`] until it returns `None`, and sleep until [`JitterBuffer::poll_timeout`].
//!
//! The schedule counts sequence numbers, not timestamps: a sender that suppresses silence (a gap
//! in timestamps with consecutive sequence numbers) is played without the gap.

use super::g711::Codec;
use super::rtp::RtpPacket;
use super::{PcmFrame, FRAME_DURATION, FRAME_SAMPLES};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Start of the extended sequence space, so packets before the first one do not underflow.
const EXT_ORIGIN: u64 = 1 << 32;

/// How a [`JitterBuffer`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Delay between the first packet's arrival and its playout (e.g. 60 ms).
    pub playout_delay: Duration,
    /// Playout time of one packet: 20 ms for G.711 at 160 samples.
    pub frame_duration: Duration,
    /// Most frames held, counted from the next one to play.
    pub capacity: usize,
    /// Missing frames in a row (with nothing buffered) after which the buffer goes idle.
    pub max_concealment: u32,
}

impl Default for JitterConfig {
    /// 60 ms delay, 20 ms frames, 1 s of capacity, idle after 1 s without packets.
    fn default() -> Self {
        JitterConfig { playout_delay: Duration::from_millis(60), frame_duration: FRAME_DURATION, capacity: 50, max_concealment: 50 }
    }
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Stored for playout.
    Buffered,
    /// Already buffered or already played: dropped.
    Duplicate,
    /// Its playout time has passed: dropped.
    Late,
    /// More than `capacity` frames ahead of playout: dropped.
    Overflow,
}

/// One frame due for playout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Extended sequence number (cycles above the 16 bits; the origin is arbitrary).
    pub ext_seq: u64,
    /// When it was due.
    pub due: Instant,
    /// The packet, or `None` if it was lost: play silence.
    pub packet: Option<RtpPacket>,
}

impl Frame {
    /// Whether the packet was missing (concealed).
    pub fn is_lost(&self) -> bool {
        self.packet.is_none()
    }

    /// 160 samples to play: the payload decoded with `codec` if the packet is of that payload
    /// type (zero-filled or cut to 160 samples), silence otherwise.
    pub fn decode(&self, codec: Codec) -> PcmFrame {
        let mut pcm = [0; FRAME_SAMPLES];
        if let Some(p) = self.packet.as_ref().filter(|p| p.payload_type == codec.payload_type()) {
            for (out, &code) in pcm.iter_mut().zip(p.payload.iter()) {
                *out = codec.decode_sample(code);
            }
        }
        pcm
    }
}

/// Counters of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets stored.
    pub buffered: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Packets dropped as late.
    pub late: u64,
    /// Packets dropped as too far ahead.
    pub overflow: u64,
    /// Frames played from a packet.
    pub played: u64,
    /// Frames played as silence for a missing packet.
    pub concealed: u64,
}

/// A fixed-delay jitter buffer (see the module documentation).
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    /// Next sequence number to play and when; `None` while idle.
    next: Option<(u64, Instant)>,
    /// Whether anything was played since the schedule was anchored.
    started: bool,
    /// Highest extended sequence number seen, for extending the next one.
    highest: Option<u64>,
    packets: BTreeMap<u64, RtpPacket>,
    /// Bit i set: sequence `next - 1 - i` was played from a packet (tells duplicates from late).
    played_mask: u64,
    concealed_run: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An idle buffer.
    pub fn new(config: JitterConfig) -> JitterBuffer {
        let config =
            JitterConfig { capacity: config.capacity.max(1), frame_duration: config.frame_duration.max(Duration::from_nanos(1)), ..config };
        JitterBuffer {
            config,
            next: None,
            started: false,
            highest: None,
            packets: BTreeMap::new(),
            played_mask: 0,
            concealed_run: 0,
            stats: JitterStats::default(),
        }
    }

    /// The extended sequence number closest to the highest seen (RFC 3550 A.1 style).
    fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            None => EXT_ORIGIN + u64::from(seq),
            Some(h) => {
                let candidate = (h & !0xFFFF) | u64::from(seq);
                [candidate.wrapping_sub(1 << 16), candidate, candidate + (1 << 16)]
                    .into_iter()
                    .min_by_key(|&c| c.abs_diff(h))
                    .unwrap_or(candidate)
            }
        };
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        ext
    }

    /// Offers a packet that arrived at `now`.
    pub fn push(&mut self, packet: RtpPacket, now: Instant) -> Pushed {
        let ext = self.extend(packet.sequence);
        let Some((next, next_due)) = self.next else {
            // Idle: this packet anchors the schedule.
            self.next = Some((ext, now.checked_add(self.config.playout_delay).unwrap_or(now)));
            self.started = false;
            return self.store(ext, packet);
        };
        if ext < next {
            // Before playout starts, an earlier packet whose slot is still ahead moves the start back.
            let behind = u32::try_from(next - ext).ok().filter(|&b| (b as usize) < self.config.capacity);
            let earlier_due = behind.and_then(|b| next_due.checked_sub(self.config.frame_duration.checked_mul(b)?));
            if let Some(due) = earlier_due.filter(|&d| !self.started && d > now) {
                self.next = Some((ext, due));
                return self.store(ext, packet);
            }
            let played = next - ext <= 64 && self.played_mask & (1 << (next - ext - 1)) != 0;
            return if played {
                self.stats.duplicates += 1;
                Pushed::Duplicate
            } else {
                self.stats.late += 1;
                Pushed::Late
            };
        }
        if ext - next >= self.config.capacity as u64 {
            self.stats.overflow += 1;
            return Pushed::Overflow;
        }
        self.store(ext, packet)
    }

    fn store(&mut self, ext: u64, packet: RtpPacket) -> Pushed {
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return Pushed::Duplicate;
        }
        self.packets.insert(ext, packet);
        self.stats.buffered += 1;
        Pushed::Buffered
    }

    /// The next frame if its playout time has come at `now`; call until `None`. A missing packet
    /// gives a frame with `packet: None` (play silence).
    #[must_use]
    pub fn pop(&mut self, now: Instant) -> Option<Frame> {
        let (seq, due) = self.next?;
        if due > now {
            return None;
        }
        let packet = self.packets.remove(&seq);
        self.played_mask = (self.played_mask << 1) | u64::from(packet.is_some());
        if packet.is_some() {
            self.concealed_run = 0;
            self.stats.played += 1;
        } else {
            self.concealed_run += 1;
            if self.concealed_run > self.config.max_concealment && self.packets.is_empty() {
                // The stream stopped: go idle until the next packet.
                self.next = None;
                self.concealed_run = 0;
                self.played_mask = 0;
                return None;
            }
            self.stats.concealed += 1;
        }
        self.started = true;
        self.next = Some((seq + 1, due.checked_add(self.config.frame_duration).unwrap_or(due)));
        Some(Frame { ext_seq: seq, due, packet })
    }

    /// When the next frame is due, or `None` while idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next.map(|(_, due)| due)
    }

    /// Packets waiting for playout.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether no packet is waiting.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }
}
