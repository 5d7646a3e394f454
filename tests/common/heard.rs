//! "They hear each other", checked on what arrived rather than on how many seconds of it played.
//!
//! A phone's recording is the output of its fixed-delay jitter buffer (src/media/jitter.rs): a
//! packet read after its playout slot is dropped as late and the slot plays as silence. On a
//! loaded 2-core CI a starved phone reads its socket late, so the seconds of tone in a 5 s call
//! vary with the load (3.96 s was seen) while what was sent and received does not. The check is
//! therefore: the recording's dominant frequency is the peer's tone, there is a real stretch of
//! it (not a blip), and the packets the peer's summary says it sent arrived (the receiver's
//! summary): a call whose media never flowed, flowed one way, or stopped early fails it.
#![allow(dead_code)]

use std::path::Path;
use switchboard::media::tone::analyse;
use switchboard::media::wav::read_wav;

/// Seconds of tone that make "heard", whatever the load: 50 packets' worth.
pub const MIN_ACTIVE_S: f64 = 1.0;

/// Packets that make "heard": 2 s of 20 ms frames.
pub const MIN_PACKETS: u64 = 100;

/// Asserts that `who` (recording in `wav`) heard `hz`, and that `received` of the `peer_sent`
/// packets arrived: at least [`MIN_PACKETS`] and at least half of them (the other half is the
/// slack for packets in flight when the call ended, which the hanging-up side never reads).
pub fn assert_heard(who: &str, wav: &Path, hz: f64, received: u64, peer_sent: u64) {
    let w = read_wav(&std::fs::read(wav).unwrap_or_else(|e| panic!("{who}'s recording {}: {e}", wav.display())))
        .unwrap_or_else(|e| panic!("{who}'s recording {}: {e:?}", wav.display()));
    let a = analyse(&w.samples, 8000);
    let f = a.dominant.unwrap_or(0.0);
    eprintln!("{who} heard {f:.0} Hz for {:.2} s; received {received} of the {peer_sent} packets the peer sent", a.active_seconds);
    assert!((f - hz).abs() < 15.0, "{who} heard {f} Hz, expected {hz} Hz ({a:?})");
    assert!(a.active_seconds >= MIN_ACTIVE_S, "{who} heard only {} s of tone ({a:?})", a.active_seconds);
    assert!(
        received >= MIN_PACKETS && received * 2 >= peer_sent,
        "{who} received {received} packets of the {peer_sent} the peer sent (at least {MIN_PACKETS} and half expected)"
    );
}
