//! Bounded-load choice of a backend (consistent hashing with bounded loads, Mirrokni, Thorup and
//! Zadimoghaddam, 2018), over the rendezvous ranking of [`crate::cluster::rank`].
//!
//! With `m` live calls over `n` live backends, a backend may hold at most
//! `ceil((1 + ε) · (m + 1) / n)` calls once the new one is placed. A new call goes to the first
//! backend of its Call-ID's ranking that is under that cap, so under even load every call lands on
//! its hash, and under uneven load no backend takes more than (1 + ε) × the mean.

/// The cap on one backend's calls after placing one more, with `live_calls` calls over
/// `backends` backends (at least 1).
pub fn cap(live_calls: usize, backends: usize, epsilon: f64) -> usize {
    let n = backends.max(1) as f64;
    let c = ((1.0 + epsilon.max(0.0)) * (live_calls as f64 + 1.0) / n).ceil();
    (c as usize).max(1)
}

/// The position in `ranking` (indices into `loads`) of the first backend under the cap, `None`
/// when `ranking` is empty.
pub fn choose(ranking: &[usize], loads: &[usize], epsilon: f64) -> Option<usize> {
    let total: usize = ranking.iter().map(|&i| loads.get(i).copied().unwrap_or(0)).sum();
    let cap = cap(total, ranking.len(), epsilon);
    ranking.iter().copied().find(|&i| loads.get(i).copied().unwrap_or(0) < cap).or_else(|| ranking.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{key, rank};

    #[test]
    fn even_load_follows_the_hash() {
        let ranking = [2, 0, 1];
        assert_eq!(choose(&ranking, &[0, 0, 0], 0.25), Some(2));
        assert_eq!(choose(&ranking, &[5, 5, 5], 0.25), Some(2));
        assert_eq!(choose(&[], &[], 0.25), None);
    }

    #[test]
    fn an_overloaded_backend_is_passed_over() {
        // 10 calls, 3 backends: cap = ceil(1.25 * 11 / 3) = 5.
        assert_eq!(cap(10, 3, 0.25), 5);
        assert_eq!(choose(&[0, 1, 2], &[5, 3, 2], 0.25), Some(1));
        assert_eq!(choose(&[0, 1, 2], &[5, 5, 0], 0.25), Some(2));
    }

    /// Every call's Call-ID prefers backend 0 half of the time (a skewed hash, as when one backend
    /// keeps its calls much longer): no backend ever holds more than (1 + ε) × the mean, rounded up.
    #[test]
    fn no_backend_exceeds_its_bounded_share() {
        let members = ["sip:127.0.0.1:5071", "sip:127.0.0.1:5072", "sip:127.0.0.1:5073"];
        let eps = 0.25;
        let mut loads = [0usize; 3];
        for i in 0..3_000 {
            let mut ranking = rank(key(&format!("{i}@skew")), &members);
            if i % 2 == 0 {
                // Skew: backend 0 first.
                ranking.retain(|&b| b != 0);
                ranking.insert(0, 0);
            }
            let b = choose(&ranking, &loads, eps).unwrap_or(0);
            loads[b] += 1;
            let total: usize = loads.iter().sum();
            let bound = ((1.0 + eps) * total as f64 / 3.0).ceil() as usize;
            assert!(loads.iter().all(|&l| l <= bound), "{loads:?} over {bound}");
        }
        assert!(loads.iter().all(|&l| l >= 700), "{loads:?}");
    }
}
