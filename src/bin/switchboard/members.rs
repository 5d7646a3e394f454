//! Following the published membership (issue 17 points 2 and 4, instance side), the I/O half.
//!
//! With `--store redis://...` a thread subscribes to the channel `sb:members`, then reads the key
//! `sb:members` (so nothing published in between is missed). For each membership with a newer
//! epoch it judges every saved call ([`switchboard::cluster::failover::judge`], sans-IO), claims
//! those to adopt by compare-and-set on owner and epoch ([`RedisStore::claim`]), and hands the
//! membership, the calls won and the ids of calls others own to the service loop as one command
//! ([`Service::follow_membership`]).
//!
//! With `--workers N` every worker gets the membership (its proxy and admission learn the peers,
//! its B2BUA the epoch and the calls it lost), and each adopted call goes to the worker its
//! caller leg's Call-ID maps to, as at start ([`crate::workers::split_calls`]).
//!
//! The instance never decides a peer is dead: only a published membership moves calls. Redis
//! unreachable changes nothing: the thread reconnects (one WARN line a minute while it cannot),
//! reads the key again and acts on it only if its epoch is newer than the last one followed.

use crate::control::Commands;
use std::time::{Duration, Instant};
use switchboard::b2bua::{restamp, stamp};
use switchboard::cluster::failover::{judge, Follower, Verdict};
use switchboard::cluster::membership::{self, Membership};
use switchboard::driver::Command;
use switchboard::service::app::Service;
use switchboard::store::{CallState, RedisStore, Store};

/// How long a blocked read of the channel waits before the thread checks the service still runs.
const POLL: Duration = Duration::from_secs(1);

/// The saved calls this instance takes back at start: its own, unless the membership says it is
/// not live (then the live instances adopt them). Unreadable states go to the B2BUA, which drops
/// them as it always has.
pub(crate) fn ours_at_start(states: Vec<CallState>, m: Option<&Membership>, me: &str) -> Vec<CallState> {
    let all = states.len();
    let ours: Vec<CallState> = states.into_iter().filter(|s| stamp(s).is_none_or(|st| judge(m, me, &st) == Verdict::Mine)).collect();
    if ours.len() < all {
        tracing::info!(ours = ours.len(), others = all - ours.len(), epoch = ?m.map(|m| m.epoch), "saved calls of other instances left alone");
    }
    ours
}

/// Starts the thread that follows the membership published in Redis at `url`, as member `me`.
pub(crate) fn follow(url: &str, me: String, commands: Commands) -> Result<(), String> {
    let url = url.to_owned();
    std::thread::Builder::new()
        .name("members".into())
        .spawn(move || {
            let mut follower = Follower::default();
            let mut warned: Option<Instant> = None;
            while !closed(&commands) {
                match session(&url, &me, &commands, &mut follower) {
                    Ok(()) => return,
                    Err(e) => {
                        if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                            tracing::warn!(url = %switchboard::store::redact_url(&url), error = %e, "membership not followed (Redis unreachable?); calls stay where they are");
                            warned = Some(Instant::now());
                        }
                        // The pace of reconnection attempts, not a wait for an event.
                        std::thread::sleep(POLL);
                    }
                }
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the membership thread: {e}"))
}

/// One connection's life: subscribe, read the key, then each message. `Ok` when the service is
/// gone; `Err` on a Redis failure (the caller reconnects).
fn session(url: &str, me: &str, commands: &Commands, follower: &mut Follower) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let store = RedisStore::open(url).map_err(|e| e.to_string())?.with_member(me);
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(membership::CHANNEL).map_err(|e| e.to_string())?;
    pubsub.set_read_timeout(Some(POLL)).map_err(|e| e.to_string())?;
    if let Some(m) = store.membership().map_err(|e| e.to_string())? {
        handle(&store, me, commands, follower, m)?;
    }
    loop {
        match pubsub.get_message() {
            Ok(msg) => {
                let Ok(line) = msg.get_payload::<String>() else { continue };
                match Membership::parse(&line) {
                    Ok(m) => handle(&store, me, commands, follower, m)?,
                    Err(e) => tracing::warn!(error = %e, "published membership ignored"),
                }
            }
            Err(e) if e.is_timeout() => {
                if closed(commands) {
                    return Ok(());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Acts on membership `m` if it is newer than the last one followed.
fn handle(store: &RedisStore, me: &str, commands: &Commands, follower: &mut Follower, m: Membership) -> Result<(), String> {
    if !follower.accept(&m) {
        return Ok(());
    }
    let states = store.call_states().map_err(|e| e.to_string())?;
    let (mut adopted, mut lost) = (Vec::new(), Vec::new());
    for s in states {
        let Some(st) = stamp(&s) else { continue };
        match judge(Some(&m), me, &st) {
            Verdict::Adopt => {
                let Some(new) = restamp(&s.data, me, m.epoch) else { continue };
                if store.claim(&s.id, &s.data, &new).map_err(|e| e.to_string())? {
                    tracing::info!(call = %s.id, from = ?st.owner, epoch = m.epoch, "call claimed");
                    adopted.push(CallState { id: s.id, data: new });
                } else {
                    tracing::info!(call = %s.id, "call changed before our claim; not adopted");
                }
            }
            Verdict::Theirs => lost.push(s.id),
            Verdict::Mine | Verdict::Leave => {}
        }
    }
    tracing::info!(epoch = m.epoch, claimed = adopted.len(), "new membership");
    let per_worker = crate::workers::split_calls(adopted, commands.len().max(1));
    for (sender, adopted) in commands.iter().zip(per_worker) {
        let (m, lost) = (m.clone(), lost.clone());
        let command: Command<Service> = Box::new(move |svc, io, now| {
            svc.follow_membership(io, &m, &adopted, &lost, now);
        });
        // Blocking is fine: this is the membership thread, not the service loop.
        sender.blocking_send(command).map_err(|_| "the service stopped".to_owned())?;
    }
    Ok(())
}

/// Whether the service is gone (its workers' channels closed).
fn closed(commands: &Commands) -> bool {
    commands.iter().all(|c| c.is_closed())
}
