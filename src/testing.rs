//! Stand-ins for the driver's I/O, for tests and examples that run the sans-IO layers in memory.
//!
//! [`MemoryMedia`] plays the driver's media part with no sockets: it holds the application's
//! [`Media`] (so `Io { media: &mut memory_media, .. }` works) and [`MemoryMedia::apply`] carries
//! out the queued [`MediaOutput`]s, recording sends and refusing binds on the ports a test says
//! another process holds. A test drives a `B2bua` or a relay on a virtual clock and then asserts
//! which ports are open and where datagrams went.

use crate::application::{FlowId, Media, MediaOutput};
use crate::dialog::IdGen;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

/// Media sockets in memory over a [`Media`] whose ports come from a seeded allocator.
#[derive(Debug)]
pub struct MemoryMedia {
    media: Media,
    /// Every datagram sent (by [`MemoryMedia::apply`]): from which flow, to where.
    pub sent: Vec<(FlowId, SocketAddr)>,
    /// Ports "another process" holds: binding one of them fails.
    pub taken: HashSet<u16>,
}

impl Default for MemoryMedia {
    /// Ports drawn from a fixed seed.
    fn default() -> MemoryMedia {
        MemoryMedia::new(1)
    }
}

impl MemoryMedia {
    /// Ports drawn from `seed`.
    pub fn new(seed: u64) -> MemoryMedia {
        MemoryMedia { media: Media::new(IdGen::new(seed)), sent: Vec::new(), taken: HashSet::new() }
    }

    /// The open flows with their local addresses.
    pub fn open(&self) -> HashMap<FlowId, SocketAddr> {
        self.media.flows().collect()
    }

    /// Carries out what the application queued, as the driver does after each input. Returns the
    /// flows whose bind failed (already forgotten by [`Media`]); hand each to the application's
    /// `handle_bind_failed`.
    pub fn apply(&mut self) -> Vec<FlowId> {
        let mut failed = Vec::new();
        while let Some(out) = self.media.poll_output() {
            match out {
                MediaOutput::Bind { flow, local } if self.taken.contains(&local.port()) => {
                    self.media.handle_bind_failed(flow);
                    failed.push(flow);
                }
                MediaOutput::Send { flow, dest, .. } => self.sent.push((flow, dest)),
                MediaOutput::Bind { .. } | MediaOutput::Unbind { .. } => {}
            }
        }
        failed
    }
}

impl Deref for MemoryMedia {
    type Target = Media;
    fn deref(&self) -> &Media {
        &self.media
    }
}

impl DerefMut for MemoryMedia {
    fn deref_mut(&mut self) -> &mut Media {
        &mut self.media
    }
}
