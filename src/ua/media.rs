//! The media of a user agent's calls: one [`MediaSession`] per dialog, on RTP/RTCP ports bound
//! from a range, started on answer and stopped when the dialog ends (RFC 3264, RFC 3550).
//!
//! The user agent drives it: [`CallMedia::prepare_offer`] / [`CallMedia::answer_offer`] at call
//! setup, [`CallMedia::apply_answer`] when the answer arrives, [`CallMedia::handle_media`] for each
//! datagram, [`CallMedia::handle_timeout`] on its deadline, and [`CallMedia::end`] when the dialog
//! ends, which frees the ports and returns the figures and the recording.

use crate::application::{FlowId, Io};
use crate::call::sdes::{self, SdesError, SrtpMode};
use crate::call::{self, Channel, MediaConfig, MediaEvent, MediaPrefs, MediaSession, MediaSummary, Negotiated, NegotiationError, Source};
use crate::collections::HashMap;
use crate::dialog::{DialogId, IdGen};
use crate::media::srtp::{MasterKey, SrtpError, SrtpSession};
use crate::sdp::{Direction, SessionDescription};
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Instant;

mod late_offer;

/// A call, as media sees it: Call-ID and our tag (stable from the INVITE on, unlike the remote tag).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallKey(std::sync::Arc<str>, std::sync::Arc<str>);

impl CallKey {
    /// The key of a dialog (or pending INVITE) id.
    pub fn of(id: &DialogId) -> CallKey {
        CallKey(id.call_id.clone(), id.local_tag.clone())
    }
}

/// Settings of [`CallMedia`].
#[derive(Debug, Clone)]
pub struct CallMediaConfig {
    /// Address to bind media on (and to put in SDP).
    pub ip: IpAddr,
    /// RTP port range (even ports for RTP, RTP+1 for RTCP).
    pub ports: RangeInclusive<u16>,
    /// Codecs and DTMF we offer and accept.
    pub prefs: MediaPrefs,
    /// Media session settings (seed varies per call).
    pub session: MediaConfig,
}

#[derive(Debug)]
struct CallMediaState {
    rtp: FlowId,
    rtcp: Option<FlowId>,
    local: SocketAddr,
    session: Option<MediaSession>,
    source: Option<Source>,
    version: u64,
    session_id: u64,
    /// Our SRTP key for this call (`None` with SRTP off), and the SRTP contexts once both keys are
    /// known (`None`: plain RTP).
    key: Option<MasterKey>,
    srtp: Option<SrtpSession>,
}

/// A finished call's media figures and recording.
#[derive(Debug, Clone)]
pub struct EndedMedia {
    /// The figures.
    pub summary: MediaSummary,
    /// Decoded received audio (8 kHz mono), if recording was on.
    pub recording: Vec<i16>,
}

/// Why media could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum MediaSetupError {
    /// No ports free in the range.
    Ports(crate::application::NoFreePort),
    /// Offer/answer failed: answer 488.
    Negotiation(NegotiationError),
    /// The SDP did not parse: answer 488 (or 400).
    BadSdp,
    /// The offer or answer does not fit our `--srtp` mode: answer 488 / hang up.
    Sdes(SdesError),
    /// No SRTP key could be drawn, or the SRTP contexts could not be made.
    Srtp(SrtpError),
}

/// All calls' media.
#[derive(Debug)]
pub struct CallMedia {
    config: CallMediaConfig,
    calls: HashMap<CallKey, CallMediaState>,
    flows: HashMap<FlowId, (CallKey, Channel)>,
    /// Per-call seeds: SDP session ids and RTP SSRCs.
    ids: IdGen,
    /// Whether calls protect their media (SDES-SRTP, [`CallMedia::set_srtp`]).
    srtp: SrtpMode,
}

impl CallMedia {
    /// No calls yet.
    pub fn new(config: CallMediaConfig) -> CallMedia {
        let ids = IdGen::new(config.session.seed);
        CallMedia { config, calls: HashMap::default(), flows: HashMap::default(), ids, srtp: SrtpMode::Off }
    }

    /// The settings.
    pub fn config(&self) -> &CallMediaConfig {
        &self.config
    }

    /// Sets the SRTP mode of the calls set up from now on (`--srtp`, see [`crate::call::sdes`]).
    pub fn set_srtp(&mut self, mode: SrtpMode) {
        self.srtp = mode;
    }

    /// Our SRTP key for a new call: none with SRTP off.
    fn new_key(&self) -> Result<Option<MasterKey>, MediaSetupError> {
        match self.srtp {
            SrtpMode::Off => Ok(None),
            _ => MasterKey::generate().map(Some).map_err(MediaSetupError::Srtp),
        }
    }

    /// True when the call's media is protected by SRTP.
    pub fn is_protected(&self, id: &DialogId) -> bool {
        self.calls.get(&CallKey::of(id)).is_some_and(|c| c.srtp.is_some())
    }

    fn bind(&mut self, io: &mut Io<'_>) -> Result<(FlowId, Option<FlowId>, SocketAddr), MediaSetupError> {
        io.media.bind_pair(self.config.ip, self.config.ports.clone(), true).map_err(MediaSetupError::Ports)
    }

    fn next_seed(&mut self) -> u64 {
        self.ids.next_u64()
    }

    fn insert(&mut self, key: CallKey, rtp: FlowId, rtcp: Option<FlowId>, local: SocketAddr, source: Source, srtp_key: Option<MasterKey>) {
        self.flows.insert(rtp, (key.clone(), Channel::Rtp));
        if let Some(f) = rtcp {
            self.flows.insert(f, (key.clone(), Channel::Rtcp));
        }
        let session_id = self.next_seed() >> 1;
        self.calls.insert(
            key,
            CallMediaState { rtp, rtcp, local, session: None, source: Some(source), version: 1, session_id, key: srtp_key, srtp: None },
        );
    }

    /// Binds ports and builds our offer (UAC). Call [`CallMedia::attach`] with the INVITE's id.
    pub fn prepare_offer(&mut self, io: &mut Io<'_>) -> Result<(PreparedOffer, Bytes), MediaSetupError> {
        let key = self.new_key()?;
        let (rtp, rtcp, local) = self.bind(io)?;
        let sid = self.next_seed() >> 1;
        let mut sdp = call::offer(local, &self.config.prefs, Direction::SendRecv, sid, 1);
        if let Some(k) = &key {
            sdes::secure_offer(&mut sdp, self.srtp, k);
        }
        Ok((PreparedOffer { rtp, rtcp, local, key }, sdp.to_bytes()))
    }

    /// Ties a prepared offer to the INVITE `id`, with what we will send once answered.
    pub fn attach(&mut self, id: &DialogId, offer: PreparedOffer, source: Source) {
        self.insert(CallKey::of(id), offer.rtp, offer.rtcp, offer.local, source, offer.key);
    }

    /// Binds ports, answers `offer` (UAS) and starts media. Returns the SDP answer.
    pub fn answer_offer(
        &mut self,
        io: &mut Io<'_>,
        id: &DialogId,
        offer: &Bytes,
        source: Source,
        now: Instant,
    ) -> Result<Bytes, MediaSetupError> {
        let offer = SessionDescription::parse(offer).map_err(|_| MediaSetupError::BadSdp)?;
        let srtp_key = self.new_key()?;
        let (rtp, rtcp, local) = self.bind(io)?;
        let sid = self.next_seed() >> 1;
        let answered = sdes::answer(&offer, local, &self.config.prefs, Direction::SendRecv, sid, self.srtp, srtp_key.as_ref())
            .map_err(MediaSetupError::Sdes)
            .and_then(|a| Ok((protect(srtp_key.as_ref(), a.peer_key.as_ref())?, a)));
        match answered {
            Ok((srtp, a)) => {
                let key = CallKey::of(id);
                self.insert(key.clone(), rtp, rtcp, local, source, srtp_key);
                if let Some(c) = self.calls.get_mut(&key) {
                    if srtp.is_some() {
                        tracing::info!("SRTP: media protected ({})", sdes::SUITE);
                    }
                    c.srtp = srtp;
                }
                self.start(&key, a.negotiated, io, now);
                Ok(a.sdp.to_bytes())
            }
            Err(e) => {
                io.media.close(rtp);
                if let Some(f) = rtcp {
                    io.media.close(f);
                }
                Err(e)
            }
        }
    }

    fn start(&mut self, key: &CallKey, neg: Negotiated, io: &Io<'_>, now: Instant) {
        let seed = self.next_seed();
        let Some(c) = self.calls.get_mut(key) else { return };
        let source = c.source.take().unwrap_or(Source::Silence);
        let cfg = MediaConfig { seed, ..self.config.session.clone() };
        c.session = Some(MediaSession::new(neg, source, cfg, now, io.wall_clock));
    }

    /// The peer's answer to our offer arrived (UAC): start media, or update it (re-INVITE).
    pub fn apply_answer(&mut self, io: &Io<'_>, id: &DialogId, answer: &Bytes, now: Instant) -> Result<(), MediaSetupError> {
        let sdp = SessionDescription::parse(answer).map_err(|_| MediaSetupError::BadSdp)?;
        let (neg, peer_key) = sdes::apply_answer(&sdp, &self.config.prefs, self.srtp).map_err(MediaSetupError::Sdes)?;
        let key = CallKey::of(id);
        if let Some(c) = self.calls.get_mut(&key) {
            rekey(c, peer_key.as_ref())?;
        }
        match self.calls.get_mut(&key).and_then(|c| c.session.as_mut()) {
            Some(s) => s.update(neg),
            None => self.start(&key, neg, io, now),
        }
        Ok(())
    }

    /// A new offer inside the dialog (hold, resume, codec change): answer it on the same port.
    pub fn answer_reoffer(&mut self, id: &DialogId, offer: &Bytes) -> Result<Bytes, MediaSetupError> {
        let offer = SessionDescription::parse(offer).map_err(|_| MediaSetupError::BadSdp)?;
        let c = self.calls.get_mut(&CallKey::of(id)).ok_or(MediaSetupError::BadSdp)?;
        c.version += 1;
        let a = sdes::answer(&offer, c.local, &self.config.prefs, Direction::SendRecv, c.session_id, self.srtp, c.key.as_ref())
            .map_err(MediaSetupError::Sdes)?;
        rekey(c, a.peer_key.as_ref())?;
        let (mut sdp, neg) = (a.sdp, a.negotiated);
        sdp.origin.session_version = c.version;
        if let Some(s) = c.session.as_mut() {
            s.update(neg);
        }
        Ok(sdp.to_bytes())
    }

    /// Moves every call's media to new ports on `ip` (the phone changed network, issue 14 point 7):
    /// the old ports close, the sessions go on, and the next [`CallMedia::reoffer`] names the new
    /// address. Returns how many calls could not move (no free port: they keep their old ports).
    pub fn rebind(&mut self, io: &mut Io<'_>, ip: IpAddr) -> usize {
        self.config.ip = ip;
        let keys: Vec<CallKey> = self.calls.keys().cloned().collect();
        let mut failed = 0;
        for key in keys {
            let Ok((rtp, rtcp, local)) = self.bind(io) else {
                failed += 1;
                continue;
            };
            let Some(c) = self.calls.get_mut(&key) else { continue };
            for f in std::iter::once(c.rtp).chain(c.rtcp) {
                io.media.close(f);
                self.flows.remove(&f);
            }
            (c.rtp, c.rtcp, c.local) = (rtp, rtcp, local);
            self.flows.insert(rtp, (key.clone(), Channel::Rtp));
            if let Some(f) = rtcp {
                self.flows.insert(f, (key.clone(), Channel::Rtcp));
            }
        }
        failed
    }

    /// A new offer from us on the same port with `direction` (hold: `SendOnly`, resume: `SendRecv`).
    pub fn reoffer(&mut self, id: &DialogId, direction: Direction) -> Option<Bytes> {
        let c = self.calls.get_mut(&CallKey::of(id))?;
        c.version += 1;
        let mut sdp = call::offer(c.local, &self.config.prefs, direction, c.session_id, c.version);
        if let Some(k) = &c.key {
            sdes::secure_offer(&mut sdp, self.srtp, k);
        }
        Some(sdp.to_bytes())
    }

    /// The media session of a call, if started.
    pub fn session_mut(&mut self, id: &DialogId) -> Option<&mut MediaSession> {
        self.calls.get_mut(&CallKey::of(id))?.session.as_mut()
    }

    /// The media session of a call, if started.
    pub fn session(&self, id: &DialogId) -> Option<&MediaSession> {
        self.calls.get(&CallKey::of(id))?.session.as_ref()
    }

    /// Feeds a media datagram; returns the call's key and events it caused, if any.
    pub fn handle_media(
        &mut self,
        io: &mut Io<'_>,
        flow: FlowId,
        source: SocketAddr,
        payload: Bytes,
        now: Instant,
    ) -> Vec<(CallKey, MediaEvent)> {
        let Some((key, channel)) = self.flows.get(&flow).cloned() else { return Vec::new() };
        let Some(c) = self.calls.get_mut(&key) else { return Vec::new() };
        // An SRTP call reads only what authenticates under the peer's key (RFC 3711 §3.3).
        let payload = match c.srtp.as_mut() {
            Some(srtp) => match srtp.unprotect(channel == Channel::Rtcp, &payload) {
                Some(p) => p,
                None => return Vec::new(),
            },
            None => payload,
        };
        if let Some(s) = c.session.as_mut() {
            match channel {
                Channel::Rtp => s.handle_rtp(source, payload, now),
                Channel::Rtcp => s.handle_rtcp(source, payload, now),
            }
        }
        self.flush(io, &key)
    }

    /// Advances every session's timers; returns events.
    #[must_use]
    pub fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) -> Vec<(CallKey, MediaEvent)> {
        let due: Vec<CallKey> = self
            .calls
            .iter()
            .filter(|(_, c)| c.session.as_ref().and_then(|s| s.poll_timeout()).is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut events = Vec::new();
        for key in due {
            if let Some(s) = self.calls.get_mut(&key).and_then(|c| c.session.as_mut()) {
                s.handle_timeout(now);
            }
            events.extend(self.flush(io, &key));
        }
        events
    }

    /// Sends what a session queued (call after commands such as DTMF).
    #[must_use]
    pub fn flush(&mut self, io: &mut Io<'_>, key: &CallKey) -> Vec<(CallKey, MediaEvent)> {
        let Some(c) = self.calls.get_mut(key) else { return Vec::new() };
        let Some(s) = c.session.as_mut() else { return Vec::new() };
        while let Some(t) = s.poll_transmit() {
            let flow = match t.channel {
                Channel::Rtp => Some(c.rtp),
                Channel::Rtcp => c.rtcp,
            };
            let payload: Bytes = match c.srtp.as_mut() {
                Some(srtp) => match srtp.protect(t.channel == Channel::Rtcp, &t.payload) {
                    Some(p) => p,
                    None => continue,
                },
                None => t.payload.into(),
            };
            if let Some(flow) = flow {
                io.media.send(flow, t.dest, payload);
            }
        }
        std::iter::from_fn(|| s.poll_event()).map(|e| (key.clone(), e)).collect()
    }

    /// Has spare ports of our range bound ahead of the first call ([`crate::application::Media::reserve`]).
    pub fn reserve(&self, io: &mut Io<'_>) {
        io.media.reserve(self.config.ip, self.config.ports.clone(), true);
    }

    /// True if a call's ports can be had now already bound (see
    /// [`crate::application::Media::ready_to_bind`]).
    pub fn ready(&self, io: &Io<'_>) -> bool {
        io.media.ready_to_bind(self.config.ip, self.config.ports.clone(), true)
    }

    /// The call a flow belongs to.
    pub fn call_of(&self, flow: FlowId) -> Option<&CallKey> {
        self.flows.get(&flow).map(|(key, _)| key)
    }

    /// The earliest media deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls.values().filter_map(|c| c.session.as_ref()?.poll_timeout()).min()
    }

    /// Ends a call's media: closes its ports and returns its figures and recording.
    #[must_use]
    pub fn end(&mut self, io: &mut Io<'_>, key: &CallKey) -> Option<EndedMedia> {
        let mut c = self.calls.remove(key)?;
        for f in std::iter::once(c.rtp).chain(c.rtcp) {
            io.media.close(f);
            self.flows.remove(&f);
        }
        let s = c.session.as_mut()?;
        Some(EndedMedia { summary: s.summary(), recording: s.take_recording() })
    }

    /// Calls with media state.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Entries of the tables as (calls, flows), for leak tests.
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.calls.len(), self.flows.len())
    }

    /// True when no call has media state.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

/// Ports bound and an offer built, waiting for the INVITE's id.
#[derive(Debug, Clone)]
pub struct PreparedOffer {
    rtp: FlowId,
    rtcp: Option<FlowId>,
    local: SocketAddr,
    key: Option<MasterKey>,
}

/// SRTP contexts for a call whose offer/answer gave both keys; `None` for plain RTP.
fn protect(ours: Option<&MasterKey>, theirs: Option<&MasterKey>) -> Result<Option<SrtpSession>, MediaSetupError> {
    match (ours, theirs) {
        (Some(ours), Some(theirs)) => SrtpSession::new(ours, theirs).map(Some).map_err(MediaSetupError::Srtp),
        _ => Ok(None),
    }
}

/// Keeps a call's SRTP contexts when the peer's key is unchanged (a re-INVITE for hold), makes new
/// ones for a new key (RFC 4568 §7.1.4), drops them when the new offer/answer is plain.
fn rekey(c: &mut CallMediaState, peer_key: Option<&MasterKey>) -> Result<(), MediaSetupError> {
    if c.srtp.as_ref().map(SrtpSession::peer_key) != peer_key {
        c.srtp = protect(c.key.as_ref(), peer_key)?;
        if c.srtp.is_some() {
            tracing::info!("SRTP: media protected ({})", sdes::SUITE);
        }
    }
    Ok(())
}
