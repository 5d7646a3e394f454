//! A user removed while serving (`users remove`, issue 14 point 11): their live calls end. Both
//! legs get BYE (with `Reason: SIP;cause=403;text="user removed"`, RFC 3326), a call still ringing
//! is refused (480) and its forks cancelled, and the call record says `user-removed by service`.

use super::end::{CallEnd, Cause, Party};
use super::B2bua;
use crate::application::Io;
use std::time::Instant;

impl B2bua {
    /// Ends every live call whose caller or callee leg belongs to `user`; returns how many.
    pub fn end_calls_of_user(&mut self, io: &mut Io<'_>, user: &str, now: Instant) -> usize {
        self.wall = io.wall_clock;
        let mine = |u: &Option<String>| u.as_deref() == Some(user);
        let keys: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.phase != super::Phase::Ending && (mine(&c.caller_user) || mine(&c.callee_user)))
            .map(|(k, _)| *k)
            .collect();
        for &key in &keys {
            tracing::info!(call = key, user, "user removed: ending the call");
            self.end_both(io, key, CallEnd::new(Cause::UserRemoved, Party::Service), now);
        }
        self.drain(io, now);
        keys.len()
    }
}
