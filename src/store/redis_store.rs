//! The shared engine: Redis (issue 17 point 1), `serve --store redis://HOST:PORT/DB`.
//!
//! Several instances open the same Redis and see the same users, bindings, call records and saved
//! calls. The connection is the `redis` crate's synchronous one: the store is only touched at
//! startup, by the CLI tools and from [`StoreWriter`](super::StoreWriter)'s own OS thread, which
//! already batches writes off the signalling path, so an async client would buy nothing there.
//!
//! # Keys (all under `sb:`, in the database the URL names; inspect with `redis-cli`)
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `sb:users` | set | user names |
//! | `sb:user:NAME` | hash | `realm`, `ha1_md5`, `ha1_sha256` (the HA1s are for that realm) |
//! | `sb:aors` | set | addresses of record that have (or had) bindings |
//! | `sb:aor:AOR` | set | the contacts of `AOR`: the index of its binding keys |
//! | `sb:binding:LEN:AOR:CONTACT` | hash | one binding (`LEN` is the byte length of `AOR`, so the key is unambiguous); `EXPIREAT` its `expires_at` |
//! | `sb:calls` | sorted set | call record ids, scored by `invited_at` (ms) |
//! | `sb:call:ID` | hash | one call record (absent optional fields are absent hash fields) |
//! | `sb:callstates` | set | ids of established calls saved for recovery |
//! | `sb:callstate:ID` | string | the saved call (the same JSON the SQLite `call_states` table holds) |
//! | `sb:members` | string | the latest published membership (`EPOCH sip:A sip:B`, see `crate::cluster::membership`) |
//! | `sb:secret` | string | the deployment secret (32 bytes): the nonce key, and the Record-Route token key derived from it |
//! | `sb:nc:NONCE` | string | the highest nonce-count used with `NONCE` on any instance; `EXPIREAT` the nonce's end |
//! | `sb:changes` | pub/sub channel | `ORIGIN user NAME`, `ORIGIN aor AOR`: who changed, for the other instances to re-read |
//!
//! Redis 7.0 has no per-field TTL, so each binding is its own key that Redis expires at the
//! binding's expiry; the per-AOR index set may then name a contact whose key is gone, and such an
//! entry is dropped the next time the bindings are read (by a script that checks, atomically, that
//! the key is still missing, so a binding another instance just wrote is never unindexed).
//!
//! A saved call's JSON names its owner (a member URI) and epoch. An instance's store
//! ([`RedisStore::with_member`]) writes and removes call states only while it is their owner, and
//! adoption swaps the owner by compare-and-set ([`RedisStore::claim`]), so an instance that comes
//! back never clobbers a call another one adopted (issue 17 point 2).
//!
//! Every put and remove is applied in a `MULTI`/`EXEC` block, and [`Store::apply_batch`] sends a
//! whole batch as one: another instance never sees half a binding or half a batch.
//!
//! # Durability
//!
//! A write is done when Redis answered it; what survives a crash of Redis itself depends on its
//! persistence settings (see the README, "Redis store"). A lost connection is re-opened once per
//! command; a command that still fails is reported as [`StoreError::Redis`], which the writer
//! counts and logs like a failed SQLite commit.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use redis::{Client, Connection, FromRedisValue, Pipeline};

use super::{BindingRecord, CallRecord, CallState, NonceClaim, Store, StoreError, StoreOp, UserRecord};

mod cluster;

/// Connect, read and write timeout: a stopped Redis (SIGSTOP, a stalled host) makes a command fail
/// after this long instead of hanging the writer thread (or a CLI tool) forever; the REGISTERs
/// waiting for the writer then get 503 (issue 17 point 6). Loopback or LAN round trips are far
/// below it.
const TIMEOUT: Duration = Duration::from_secs(2);

const USERS: &str = "sb:users";
const AORS: &str = "sb:aors";
const CALLS: &str = "sb:calls";
const STATES: &str = "sb:callstates";
const SECRET: &str = "sb:secret";
/// Pub/sub channel of user and binding changes: `ORIGIN user NAME` or `ORIGIN aor AOR` (the
/// writer's [`RedisStore::origin`]); other instances re-read that user or AOR (`redis_sync`).
pub(crate) const CHANGES: &str = "sb:changes";

/// One nonce use (issue 17 point 1: any instance verifies any nonce): KEYS = [sb:nc:NONCE],
/// ARGV = [nc, unix expiry]. 1 if `nc` is above every count used so far (it is now the highest),
/// 0 for a replay.
const CLAIM_NONCE: &str = "local h = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= h then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
return 1";

/// Deletes every binding of one AOR and its index: KEYS = [index, aors], ARGV = [binding key
/// prefix, aor]. Returns how many bindings were deleted.
const REMOVE_BINDINGS: &str = "local n = 0
for _, c in ipairs(redis.call('SMEMBERS', KEYS[1])) do n = n + redis.call('DEL', ARGV[1] .. c) end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return n";

/// Drops a set member whose key is gone, checked atomically: KEYS = [set, key], ARGV = [member].
const PRUNE: &str = "if redis.call('EXISTS', KEYS[2]) == 0 then return redis.call('SREM', KEYS[1], ARGV[1]) end
return 0";

fn user_key(name: &str) -> String {
    format!("sb:user:{name}")
}

fn aor_index(aor: &str) -> String {
    format!("sb:aor:{aor}")
}

fn binding_prefix(aor: &str) -> String {
    format!("sb:binding:{}:{aor}:", aor.len())
}

fn binding_key(aor: &str, contact: &str) -> String {
    binding_prefix(aor) + contact
}

fn call_key(id: &str) -> String {
    format!("sb:call:{id}")
}

fn state_key(id: &str) -> String {
    format!("sb:callstate:{id}")
}

/// The Redis [`Store`]. Open one per process (the writer thread's, a CLI tool's); they may all
/// point at the same server.
pub struct RedisStore {
    client: Client,
    /// Interior mutability because the trait's reads take `&self`; the store is `Send`, not
    /// `Sync`, so one thread uses it at a time.
    conn: RefCell<Connection>,
    /// The URL without any password, for messages.
    shown: String,
    /// This instance's member URI (issue 17 point 2): its call-state writes are compare-and-set
    /// on the owner (see `cluster`); `None` (CLI tools) writes them as they come.
    member: Option<String>,
    /// This connection's name on the [`CHANGES`] channel, so its own changes are not re-read.
    origin: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore").field("url", &self.shown).finish()
    }
}

/// `url` with a password (`redis://user:pw@host/`) replaced by `***`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

// ===== impl RedisStore =====

impl RedisStore {
    /// Connects to `url` (`redis://HOST:PORT/DB`, `redis+unix:///path?db=N`) and checks it answers.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        let shown = redact(url);
        let err = |source| StoreError::RedisConnect { url: shown.clone(), source };
        let client = Client::open(url).map_err(err)?;
        let conn = connect(&client).map_err(err)?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let origin = format!("{}-{nanos:x}", std::process::id());
        let store = RedisStore { client, conn: RefCell::new(conn), shown: shown.clone(), member: None, origin };
        store.run(|c| redis::cmd("PING").query::<String>(c)).map_err(|e| match e {
            StoreError::Redis(source) => StoreError::RedisConnect { url: shown, source },
            e => e,
        })?;
        Ok(store)
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The name this store's changes carry on the `sb:changes` channel.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The user `name`, if stored.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let h = self.hashes(&[user_key(name)])?.pop().unwrap_or_default();
        Ok((|| {
            Some(UserRecord {
                name: name.to_owned(),
                realm: h.get("realm")?.clone(),
                ha1_md5: h.get("ha1_md5")?.clone(),
                ha1_sha256: h.get("ha1_sha256")?.clone(),
            })
        })())
    }

    /// The live bindings of one AOR.
    pub fn bindings_of(&self, aor: &str) -> Result<Vec<BindingRecord>, StoreError> {
        let contacts = self.members(&aor_index(aor))?;
        let keys: Vec<String> = contacts.iter().map(|c| binding_key(aor, c)).collect();
        Ok(self.hashes(&keys)?.iter().filter_map(binding_from_hash).collect())
    }

    /// The deployment secret shared by every instance on this Redis: `fresh` if none was stored
    /// yet (first start), else the stored one. The nonces are keyed with it and the Record-Route
    /// token key is derived from it, so any instance verifies any other's nonce and token.
    pub fn shared_secret(&self, fresh: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let stored: Vec<u8> = self
            .run(|c| redis::pipe().cmd("SET").arg(SECRET).arg(&fresh[..]).arg("NX").ignore().cmd("GET").arg(SECRET).query::<(Vec<u8>,)>(c))?
            .0;
        stored.try_into().map_err(|v: Vec<u8>| StoreError::BadData(format!("{SECRET} holds {} bytes, not 32", v.len())))
    }

    /// Runs `f` on the connection; after an I/O failure (Redis restarted, connection dropped)
    /// reconnects and runs it once more. Every command we send is idempotent, so a retry after a
    /// write whose answer was lost is harmless (but for a nonce claim, which then says replay). A
    /// timeout is not retried (Redis is there but does not answer: a retry would only double the
    /// wait); the connection, whose late answer would confuse the next command, is replaced.
    fn run<T>(&self, mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        let mut conn = self.conn.borrow_mut();
        match f(&mut conn) {
            Err(e) if e.is_timeout() => {
                tracing::debug!(url = %self.shown, error = %e, "redis command timed out; new connection");
                *conn = connect(&self.client)?;
                Err(e.into())
            }
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                // Debug only: during an outage the writer logs once a minute (`outage`).
                tracing::debug!(url = %self.shown, error = %e, "redis command failed; reconnecting");
                *conn = connect(&self.client)?;
                Ok(f(&mut conn)?)
            }
            r => Ok(r?),
        }
    }

    /// Reads hashes for `keys` in one round trip (an empty map for a missing key).
    fn hashes(&self, keys: &[String]) -> Result<Vec<HashMap<String, String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|c| {
            let mut p = redis::pipe();
            for k in keys {
                p.cmd("HGETALL").arg(k);
            }
            p.query(c)
        })
    }

    /// Sorted members of a set.
    fn members(&self, set: &str) -> Result<Vec<String>, StoreError> {
        let mut m: Vec<String> = self.run(|c| redis::cmd("SMEMBERS").arg(set).query(c))?;
        m.sort_unstable();
        Ok(m)
    }

    /// Drops `member` from `set` if `key` is (still) missing.
    fn prune(&self, set: &str, key: &str, member: &str) -> Result<(), StoreError> {
        self.run(|c| redis::cmd("EVAL").arg(PRUNE).arg(2).arg(set).arg(key).arg(member).query::<i64>(c))?;
        Ok(())
    }

    /// One op in its own `MULTI`/`EXEC`; returns the first reply (the count of a DEL or the script).
    fn one(&self, op: &StoreOp) -> Result<i64, StoreError> {
        let mut p = redis::pipe();
        p.atomic();
        queue(&mut p, op, false, self.member.as_deref(), &self.origin);
        let replies: Vec<redis::Value> = self.run(|c| p.query(c))?;
        Ok(replies.first().and_then(|v| i64::from_redis_value(v.clone()).ok()).unwrap_or(0))
    }
}

fn connect(client: &Client) -> redis::RedisResult<Connection> {
    let conn = client.get_connection_with_timeout(TIMEOUT)?;
    conn.set_read_timeout(Some(TIMEOUT))?;
    conn.set_write_timeout(Some(TIMEOUT))?;
    Ok(conn)
}

/// Adds the commands of `op` to `p`. With `ignore`, every reply is dropped (batches); otherwise
/// the first command's reply is kept (the count single removes return).
fn queue(p: &mut Pipeline, op: &StoreOp, ignore: bool, member: Option<&str>, origin: &str) {
    if let StoreOp::PutCallStateLater(pending) = op {
        if let Some(state) = pending.render() {
            queue(p, &StoreOp::PutCallState(state), ignore, member, origin);
        }
        return;
    }
    let mut first = !ignore;
    let mut keep = |p: &mut Pipeline| {
        if !std::mem::take(&mut first) {
            p.ignore();
        }
    };
    // An instance's call states: only while it owns them (see `cluster`).
    match (op, member) {
        (StoreOp::PutCallState(s), Some(me)) => {
            cluster::put_state(p, s, me);
            return keep(p);
        }
        (StoreOp::RemoveCallState(id), Some(me)) => {
            cluster::remove_state(p, id, me);
            return keep(p);
        }
        _ => {}
    }
    match op {
        StoreOp::PutUser(u) => {
            let key = user_key(&u.name);
            p.cmd("DEL").arg(&key);
            keep(p);
            p.cmd("HSET").arg(&key).arg("realm").arg(&u.realm).arg("ha1_md5").arg(&u.ha1_md5).arg("ha1_sha256").arg(&u.ha1_sha256);
            keep(p);
            p.cmd("SADD").arg(USERS).arg(&u.name);
            keep(p);
        }
        StoreOp::RemoveUser(name) => {
            p.cmd("DEL").arg(user_key(name));
            keep(p);
            p.cmd("SREM").arg(USERS).arg(name);
            keep(p);
        }
        StoreOp::PutBinding(b) => {
            let key = binding_key(&b.aor, &b.contact);
            p.cmd("DEL").arg(&key);
            keep(p);
            p.cmd("HSET")
                .arg(&key)
                .arg("aor")
                .arg(&b.aor)
                .arg("contact")
                .arg(&b.contact)
                .arg("expires_at")
                .arg(b.expires_at)
                .arg("q_millis")
                .arg(b.q_millis)
                .arg("call_id")
                .arg(&b.call_id)
                .arg("cseq")
                .arg(b.cseq)
                .arg("source")
                .arg(b.source.to_string())
                .arg("updated_at")
                .arg(b.updated_at);
            keep(p);
            // Redis deletes the key at the binding's expiry (at once if it is already past).
            p.cmd("EXPIREAT").arg(&key).arg(b.expires_at);
            keep(p);
            p.cmd("SADD").arg(aor_index(&b.aor)).arg(&b.contact);
            keep(p);
            p.cmd("SADD").arg(AORS).arg(&b.aor);
            keep(p);
        }
        StoreOp::RemoveBinding { aor, contact } => {
            p.cmd("DEL").arg(binding_key(aor, contact));
            keep(p);
            p.cmd("SREM").arg(aor_index(aor)).arg(contact);
            keep(p);
        }
        StoreOp::RemoveBindings(aor) => {
            p.cmd("EVAL").arg(REMOVE_BINDINGS).arg(2).arg(aor_index(aor)).arg(AORS).arg(binding_prefix(aor)).arg(aor);
            keep(p);
        }
        StoreOp::PutCall(c) => {
            let key = call_key(&c.id);
            p.cmd("DEL").arg(&key);
            keep(p);
            let cmd = p.cmd("HSET").arg(&key);
            for (field, value) in call_fields(c) {
                cmd.arg(field).arg(value);
            }
            keep(p);
            p.cmd("ZADD").arg(CALLS).arg(c.invited_at).arg(&c.id);
            keep(p);
        }
        StoreOp::PutCallState(s) => {
            p.cmd("SET").arg(state_key(&s.id)).arg(&s.data);
            keep(p);
            p.cmd("SADD").arg(STATES).arg(&s.id);
            keep(p);
        }
        StoreOp::RemoveCallState(id) => {
            p.cmd("DEL").arg(state_key(id));
            keep(p);
            p.cmd("SREM").arg(STATES).arg(id);
            keep(p);
        }
        // Made into a `PutCallState` at the top.
        StoreOp::PutCallStateLater(_) => {}
    }
    // Users and bindings are news for the other instances (after the writes, in the same block).
    let news = match op {
        StoreOp::PutUser(UserRecord { name, .. }) | StoreOp::RemoveUser(name) => Some(format!("{origin} user {name}")),
        StoreOp::PutBinding(BindingRecord { aor, .. }) | StoreOp::RemoveBinding { aor, .. } | StoreOp::RemoveBindings(aor) => {
            Some(format!("{origin} aor {aor}"))
        }
        _ => None,
    };
    if let Some(news) = news {
        p.cmd("PUBLISH").arg(CHANGES).arg(news).ignore();
    }
}

/// The fields of a call record's hash; `None`s and NaN jitters are left out.
fn call_fields(c: &CallRecord) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("id", c.id.clone()),
        ("caller_call_id", c.caller_call_id.clone()),
        ("from", c.from.clone()),
        ("to", c.to.clone()),
        ("invited_at", c.invited_at.to_string()),
        ("caller_packets", c.caller_packets.to_string()),
        ("caller_lost", c.caller_lost.to_string()),
        ("callee_packets", c.callee_packets.to_string()),
        ("callee_lost", c.callee_lost.to_string()),
    ];
    let opt = [
        ("callee_call_id", c.callee_call_id.clone()),
        ("answered_at", c.answered_at.map(|v| v.to_string())),
        ("ended_at", c.ended_at.map(|v| v.to_string())),
        ("end_reason", c.end_reason.clone()),
        ("ended_by", c.ended_by.clone()),
        ("codec", c.codec.clone()),
        ("caller_jitter_ms", (!c.caller_jitter_ms.is_nan()).then(|| c.caller_jitter_ms.to_string())),
        ("callee_jitter_ms", (!c.callee_jitter_ms.is_nan()).then(|| c.callee_jitter_ms.to_string())),
    ];
    f.extend(opt.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    f
}

/// A required field, parsed.
fn field<T: FromStr>(h: &HashMap<String, String>, name: &str) -> Option<T> {
    h.get(name)?.parse().ok()
}

fn call_from_hash(h: &HashMap<String, String>) -> Option<CallRecord> {
    Some(CallRecord {
        id: h.get("id")?.clone(),
        caller_call_id: h.get("caller_call_id")?.clone(),
        callee_call_id: h.get("callee_call_id").cloned(),
        from: h.get("from")?.clone(),
        to: h.get("to")?.clone(),
        invited_at: field(h, "invited_at")?,
        answered_at: field(h, "answered_at"),
        ended_at: field(h, "ended_at"),
        end_reason: h.get("end_reason").cloned(),
        ended_by: h.get("ended_by").cloned(),
        codec: h.get("codec").cloned(),
        caller_packets: field(h, "caller_packets")?,
        caller_lost: field(h, "caller_lost")?,
        caller_jitter_ms: field(h, "caller_jitter_ms").unwrap_or(f64::NAN),
        callee_packets: field(h, "callee_packets")?,
        callee_lost: field(h, "callee_lost")?,
        callee_jitter_ms: field(h, "callee_jitter_ms").unwrap_or(f64::NAN),
    })
}

fn binding_from_hash(h: &HashMap<String, String>) -> Option<BindingRecord> {
    Some(BindingRecord {
        aor: h.get("aor")?.clone(),
        contact: h.get("contact")?.clone(),
        expires_at: field(h, "expires_at")?,
        q_millis: field(h, "q_millis")?,
        call_id: h.get("call_id")?.clone(),
        cseq: field(h, "cseq")?,
        source: field(h, "source")?,
        updated_at: field(h, "updated_at")?,
    })
}

impl Store for RedisStore {
    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let names = self.members(USERS)?;
        let keys: Vec<String> = names.iter().map(|n| user_key(n)).collect();
        let hashes = self.hashes(&keys)?;
        let mut users = Vec::with_capacity(names.len());
        for (name, h) in names.into_iter().zip(hashes) {
            let user = (|| {
                Some(UserRecord {
                    name: name.clone(),
                    realm: h.get("realm")?.clone(),
                    ha1_md5: h.get("ha1_md5")?.clone(),
                    ha1_sha256: h.get("ha1_sha256")?.clone(),
                })
            })();
            match user {
                Some(u) => users.push(u),
                None if h.is_empty() => self.prune(USERS, &user_key(&name), &name)?,
                None => tracing::warn!(%name, "stored user with missing fields skipped"),
            }
        }
        Ok(users)
    }

    fn put_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        self.one(&StoreOp::PutUser(user.clone())).map(drop)
    }

    fn remove_user(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self.one(&StoreOp::RemoveUser(name.to_owned()))? > 0)
    }

    fn bindings(&self) -> Result<Vec<BindingRecord>, StoreError> {
        let mut out = Vec::new();
        for aor in self.members(AORS)? {
            let index = aor_index(&aor);
            let contacts = self.members(&index)?;
            if contacts.is_empty() {
                self.prune(AORS, &index, &aor)?;
                continue;
            }
            let keys: Vec<String> = contacts.iter().map(|c| binding_key(&aor, c)).collect();
            for ((contact, key), h) in contacts.iter().zip(&keys).zip(self.hashes(&keys)?) {
                if h.is_empty() {
                    // Expired (Redis deleted the key): unindex it.
                    self.prune(&index, key, contact)?;
                    continue;
                }
                match binding_from_hash(&h) {
                    Some(b) => out.push(b),
                    None => tracing::warn!(%aor, %contact, "stored binding with unreadable fields skipped"),
                }
            }
        }
        Ok(out)
    }

    fn put_binding(&mut self, binding: &BindingRecord) -> Result<(), StoreError> {
        self.one(&StoreOp::PutBinding(binding.clone())).map(drop)
    }

    fn remove_binding(&mut self, aor: &str, contact: &str) -> Result<bool, StoreError> {
        Ok(self.one(&StoreOp::RemoveBinding { aor: aor.to_owned(), contact: contact.to_owned() })? > 0)
    }

    fn remove_bindings(&mut self, aor: &str) -> Result<usize, StoreError> {
        Ok(usize::try_from(self.one(&StoreOp::RemoveBindings(aor.to_owned()))?).unwrap_or(0))
    }

    fn calls(&self, since_ms: Option<u64>) -> Result<Vec<CallRecord>, StoreError> {
        // Equal scores come back in member order: (invited_at, id), as SQLite sorts them.
        let ids: Vec<String> =
            self.run(|c| redis::cmd("ZRANGE").arg(CALLS).arg(since_ms.unwrap_or(0)).arg("+inf").arg("BYSCORE").query(c))?;
        let keys: Vec<String> = ids.iter().map(|id| call_key(id)).collect();
        let mut out = Vec::with_capacity(ids.len());
        for (id, h) in ids.iter().zip(self.hashes(&keys)?) {
            match call_from_hash(&h) {
                Some(c) => out.push(c),
                None => tracing::warn!(%id, "stored call record with unreadable fields skipped"),
            }
        }
        Ok(out)
    }

    fn put_call(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        self.one(&StoreOp::PutCall(call.clone())).map(drop)
    }

    fn call_states(&self) -> Result<Vec<CallState>, StoreError> {
        let ids = self.members(STATES)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let data: Vec<Option<String>> = self.run(|c| {
            let mut p = redis::pipe();
            for id in &ids {
                p.cmd("GET").arg(state_key(id));
            }
            p.query(c)
        })?;
        Ok(ids.into_iter().zip(data).filter_map(|(id, data)| Some(CallState { id, data: data? })).collect())
    }

    fn put_call_state(&mut self, state: &CallState) -> Result<(), StoreError> {
        self.one(&StoreOp::PutCallState(state.clone())).map(drop)
    }

    fn remove_call_state(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(self.one(&StoreOp::RemoveCallState(id.to_owned()))? > 0)
    }

    fn claim_nonce(&mut self, claim: &NonceClaim) -> Result<bool, StoreError> {
        let key = format!("sb:nc:{}", claim.nonce);
        let fresh: i64 = self.run(|c| redis::cmd("EVAL").arg(CLAIM_NONCE).arg(1).arg(&key).arg(claim.nc).arg(claim.expires_at).query(c))?;
        Ok(fresh == 1)
    }

    /// Every write is done once Redis answered it; how durable that is is Redis's persistence
    /// setting. This only checks the server still answers.
    fn flush(&mut self) -> Result<(), StoreError> {
        self.run(|c| redis::cmd("PING").query::<String>(c)).map(drop)
    }

    /// All of `ops` in one `MULTI`/`EXEC`: other clients see all of them or none.
    fn apply_batch(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        p.atomic();
        for op in ops {
            queue(&mut p, op, true, self.member.as_deref(), &self.origin);
        }
        self.run(|c| p.query::<()>(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous_and_passwords_hidden() {
        assert_ne!(binding_key("sip:a@x", ":b"), binding_key("sip:a@x:", "b"));
        assert_eq!(binding_key("sip:a@x", "sip:a@1.2.3.4"), "sb:binding:7:sip:a@x:sip:a@1.2.3.4");
        assert_eq!(redact("redis://u:pw@127.0.0.1:6379/0"), "redis://***@127.0.0.1:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn call_fields_round_trip_with_nan_and_none() {
        let c = CallRecord {
            id: "c1".into(),
            caller_call_id: "a@b".into(),
            callee_call_id: None,
            from: "sip:a@x".into(),
            to: "sip:b@x".into(),
            invited_at: 5,
            answered_at: Some(6),
            ended_at: None,
            end_reason: None,
            ended_by: Some("caller".into()),
            codec: None,
            caller_packets: 1,
            caller_lost: -1,
            caller_jitter_ms: f64::NAN,
            callee_packets: 2,
            callee_lost: 0,
            callee_jitter_ms: 1.25,
        };
        let h: HashMap<String, String> = call_fields(&c).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let back = call_from_hash(&h).unwrap();
        assert!(back.caller_jitter_ms.is_nan());
        assert_eq!(CallRecord { caller_jitter_ms: 0.0, ..back }, CallRecord { caller_jitter_ms: 0.0, ..c });
    }
}
