//! Ownership of saved calls in Redis (issue 17 points 2 and 4).
//!
//! A saved call (`sb:callstate:ID`, the B2BUA's JSON) names its `owner` (a member URI) and the
//! membership `epoch` at which that owner took it. Three scripts keep owners from fighting:
//!
//! - an instance's put writes the state only if the stored one has no owner or is its own;
//! - an instance's remove deletes it on the same condition;
//! - [`RedisStore::claim`] (adoption) replaces the state only if it is still exactly what the
//!   adopter read: a compare-and-set on the whole value, owner and epoch included.
//!
//! So an instance that comes back (or a late write of a stopped one) can neither overwrite nor
//! delete a call another instance adopted. The owner is read with Redis's `cjson`; the JSON is
//! never re-encoded inside Redis (its 64-bit integers would not survive Lua's numbers).

use super::{state_key, RedisStore, STATES};
use crate::cluster::membership::{self, Membership};
use crate::records::CallState;
use crate::store::StoreError;
use redis::Pipeline;

/// A Lua function: true when the stored state (KEYS[1]) is absent, unreadable, ownerless or
/// owned by `me`. A macro so the scripts below can be `concat!`-ed constants.
macro_rules! owned_by {
    () => {
        "local function owned_by(me)
  local cur = redis.call('GET', KEYS[1])
  if not cur then return true end
  local ok, d = pcall(cjson.decode, cur)
  if not ok or type(d) ~= 'table' or type(d.owner) ~= 'string' then return true end
  return d.owner == me
end
"
    };
}

/// KEYS = [state key, index], ARGV = [data, member, id]: 1 written, 0 owned by another.
const PUT: &str = concat!(
    owned_by!(),
    "if not owned_by(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
return 1"
);

/// KEYS = [state key, index], ARGV = [member, id]: keys deleted, 0 when owned by another.
const REMOVE: &str = concat!(
    owned_by!(),
    "if not owned_by(ARGV[1]) then return 0 end
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return n"
);

/// KEYS = [state key], ARGV = [expected value, new value]: 1 swapped, 0 changed meanwhile.
const CLAIM: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0";

/// Queues `member`'s put of call state `s` (see the module doc).
pub(super) fn put_state(p: &mut Pipeline, s: &CallState, member: &str) {
    p.cmd("EVAL").arg(PUT).arg(2).arg(state_key(&s.id)).arg(STATES).arg(&s.data).arg(member).arg(&s.id);
}

/// Queues `member`'s removal of call state `id`.
pub(super) fn remove_state(p: &mut Pipeline, id: &str, member: &str) {
    p.cmd("EVAL").arg(REMOVE).arg(2).arg(state_key(id)).arg(STATES).arg(member).arg(id);
}

impl RedisStore {
    /// This store writes for instance `member` (its member URI): its call-state puts and removes
    /// only touch calls it owns.
    pub fn with_member(mut self, member: impl Into<String>) -> RedisStore {
        self.member = Some(member.into());
        self
    }

    /// Compare-and-set of call state `id` from `expected` (as read) to `new` (restamped with the
    /// adopter as owner): `true` if this caller won it.
    pub fn claim(&self, id: &str, expected: &str, new: &str) -> Result<bool, StoreError> {
        let won: i64 = self.run(|c| redis::cmd("EVAL").arg(CLAIM).arg(1).arg(state_key(id)).arg(expected).arg(new).query(c))?;
        Ok(won == 1)
    }

    /// The latest published membership (`None` when none was published).
    pub fn membership(&self) -> Result<Option<Membership>, StoreError> {
        let line: Option<String> = self.run(|c| redis::cmd("GET").arg(membership::KEY).query(c))?;
        line.map(|l| Membership::parse(&l).map_err(|e| StoreError::BadData(format!("{}: {e}", membership::KEY)))).transpose()
    }
}
