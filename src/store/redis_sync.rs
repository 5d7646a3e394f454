//! Following the other instances (issue 17 point 1): every user and binding write to Redis also
//! publishes `ORIGIN user NAME` or `ORIGIN aor AOR` on `sb:changes` (in the same `MULTI` block,
//! see `redis_store`). [`follow`] subscribes to that channel on its own thread, re-reads what
//! changed and hands it on as a [`Remote`], which the service applies to its registrar and user
//! table: a user added with `switchboard users add --store redis://...` can register on every
//! instance, a removed one is removed (and their calls end) everywhere, and a phone registered on
//! one instance is reachable from all of them.
//!
//! After the subscription was lost (Redis restarted or unreachable) and comes back, the changes
//! published meanwhile are gone, so the thread hands on everything instead ([`Remote::Resync`]).

use std::thread::JoinHandle;
use std::time::Duration;

use super::redis_store::CHANGES;
use super::{BindingRecord, RedisStore, Store, StoreError, UserRecord};

/// Between two attempts to (re)subscribe.
const RETRY: Duration = Duration::from_secs(1);

/// A change another instance made.
#[derive(Debug, Clone, PartialEq)]
pub enum Remote {
    /// The bindings of `aor` are now these (none: all removed).
    Aor {
        /// The address of record.
        aor: String,
        /// Its live bindings in Redis.
        bindings: Vec<BindingRecord>,
    },
    /// User `name` is now `user` (`None`: removed).
    User {
        /// The user name.
        name: String,
        /// The stored record, if any.
        user: Option<UserRecord>,
    },
    /// Everything, after the subscription was lost and taken up again.
    Resync {
        /// All users.
        users: Vec<UserRecord>,
        /// All live bindings.
        bindings: Vec<BindingRecord>,
    },
}

/// Follows `sb:changes` on `url` from a thread of its own, ignoring the changes of `origin` (this
/// instance's writer, [`RedisStore::origin`]), and calls `apply` with each change re-read from
/// Redis. Runs until `apply` returns `false`.
pub fn follow(url: &str, origin: String, mut apply: impl FnMut(Remote) -> bool + Send + 'static) -> Result<JoinHandle<()>, StoreError> {
    let client = redis::Client::open(url).map_err(|source| StoreError::RedisConnect { url: super::redact_url(url), source })?;
    let url = url.to_owned();
    std::thread::Builder::new()
        .name("switchboard-follow".into())
        .spawn(move || {
            let mut reader: Option<RedisStore> = None;
            let mut lost = false;
            loop {
                match subscribe(&client, &url, &origin, &mut reader, &mut lost, &mut apply) {
                    Ok(()) => return,
                    Err(e) => {
                        if !lost {
                            tracing::debug!(error = %e, "lost the sb:changes subscription; retrying");
                        }
                        lost = true;
                        reader = None;
                        std::thread::sleep(RETRY);
                    }
                }
            }
        })
        .map_err(StoreError::Spawn)
}

/// One subscription, until it fails (`Err`) or `apply` says stop (`Ok`).
fn subscribe(
    client: &redis::Client,
    url: &str,
    origin: &str,
    reader: &mut Option<RedisStore>,
    lost: &mut bool,
    apply: &mut impl FnMut(Remote) -> bool,
) -> Result<(), StoreError> {
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(3))?;
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(CHANGES)?;
    if std::mem::take(lost) {
        let r = reader_of(reader, url)?;
        let (users, bindings) = (r.users()?, r.bindings()?);
        tracing::info!(users = users.len(), bindings = bindings.len(), "sb:changes followed again; state re-read from Redis");
        if !apply(Remote::Resync { users, bindings }) {
            return Ok(());
        }
    }
    loop {
        let msg = pubsub.get_message()?;
        let Ok(payload) = msg.get_payload::<String>() else { continue };
        let mut words = payload.splitn(3, ' ');
        let (Some(from), Some(kind), Some(what)) = (words.next(), words.next(), words.next()) else { continue };
        if from == origin {
            continue;
        }
        let r = reader_of(reader, url)?;
        let change = match kind {
            "user" => Remote::User { name: what.to_owned(), user: r.user(what)? },
            "aor" => Remote::Aor { aor: what.to_owned(), bindings: r.bindings_of(what)? },
            _ => continue,
        };
        if !apply(change) {
            return Ok(());
        }
    }
}

fn reader_of<'a>(reader: &'a mut Option<RedisStore>, url: &str) -> Result<&'a RedisStore, StoreError> {
    if reader.is_none() {
        *reader = Some(RedisStore::open(url)?);
    }
    reader.as_ref().ok_or(StoreError::WriterStopped)
}
