//! The hash map the protocol state lives in: std's `HashMap` with foldhash instead of SipHash.
//!
//! Every datagram costs several lookups (transactions, dialogs, calls, Call-IDs); under load
//! SipHash was the largest single user-space symbol in the service's profile. foldhash is seeded
//! per process and per map, so keys chosen by a peer cannot be aimed at one bucket without
//! knowing the seed; it is the hasher hashbrown itself defaults to.

/// `std::collections::HashMap` with foldhash. Build with `HashMap::default()`.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// `std::collections::HashSet` with foldhash. Build with `HashSet::default()`.
pub type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
