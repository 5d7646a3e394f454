//! Send pacing on virtual time: packet `n` is due at `start + n * 20 ms`, whatever the driver's
//! wake-up lateness. One `Instant::now()` is taken as the origin; all other instants are derived
//! from it, so the asserts are exact.

use std::time::{Duration, Instant};
use switchboard::media::pacer::Pacer;

const FRAME: Duration = Duration::from_millis(20);

/// A deterministic wake-up lateness of 0 to 7 ms, as a sleeping driver would see.
fn lateness(i: u64) -> Duration {
    Duration::from_micros((i.wrapping_mul(2_654_435_761) >> 7) % 7_000)
}

#[test]
fn fifty_packets_per_second_and_no_drift_over_ten_minutes() {
    let start = Instant::now();
    let mut pacer = Pacer::every_frame(start);
    let mut per_second = vec![0u32; 600];
    let mut last = None;
    let mut wakeups = 0u64;
    while pacer.next_index() < 30_000 {
        let deadline = pacer.poll_timeout().expect("within Instant range");
        // The driver wakes up a little late each time.
        let now = deadline + lateness(wakeups);
        wakeups += 1;
        while let Some(slot) = pacer.poll_due(now) {
            assert_eq!(slot.due, start + FRAME * slot.index as u32, "slot {} off its grid", slot.index);
            assert!(slot.due <= now);
            if let Some(prev) = last {
                assert_eq!(slot.index, prev + 1, "no slot skipped or repeated");
            }
            last = Some(slot.index);
            per_second[(slot.due - start).as_secs() as usize] += 1;
            if slot.index == 29_999 {
                break;
            }
        }
    }
    assert_eq!(last, Some(29_999));
    assert_eq!(pacer.due_at(29_999), Some(start + Duration::from_millis(599_980)));
    assert!(per_second.iter().all(|&n| n == 50), "packets per second: {per_second:?}");
    assert_eq!(pacer.skipped(), 0);
}

#[test]
fn nothing_is_due_early_and_a_spurious_wakeup_changes_nothing() {
    let start = Instant::now();
    let mut pacer = Pacer::every_frame(start);
    assert_eq!(pacer.poll_due(start).map(|s| s.index), Some(0));
    assert_eq!(pacer.poll_due(start + Duration::from_millis(19)), None);
    assert_eq!(pacer.poll_timeout(), Some(start + FRAME));
    assert_eq!(pacer.next_index(), 1);
}

#[test]
fn a_late_driver_catches_up_on_the_grid() {
    let start = Instant::now();
    // Without a burst limit every missed slot is handed out, back to back.
    let mut pacer = Pacer::every_frame(start);
    let now = start + Duration::from_millis(105);
    let slots: Vec<u64> = std::iter::from_fn(|| pacer.poll_due(now)).map(|s| s.index).collect();
    assert_eq!(slots, [0, 1, 2, 3, 4, 5]);
    assert_eq!(pacer.poll_timeout(), Some(start + FRAME * 6));

    // With a limit of 3, a one-second stall skips the oldest slots but stays on the grid.
    let mut pacer = Pacer::every_frame(start).with_max_burst(3);
    let now = start + Duration::from_millis(1_010);
    let slots: Vec<u64> = std::iter::from_fn(|| pacer.poll_due(now)).map(|s| s.index).collect();
    assert_eq!(slots, [48, 49, 50]);
    assert_eq!(pacer.skipped(), 48);
    assert_eq!(pacer.poll_timeout(), Some(start + FRAME * 51));
}
