//! Batched datagram system calls on Linux: `recvmmsg(2)` and `sendmmsg(2)` through `nix` (the
//! `unsafe` lives in that crate; ours stays `forbid(unsafe_code)`). One call moves up to
//! [`BATCH`] datagrams, where `recv_from`/`send_to` take one call each.
//!
//! `nix` keeps the `mmsghdr` array in a [`MultiHeaders`] that is not `Send` (it holds raw
//! pointers), so the driver's future could not own one; each thread keeps its own here instead,
//! allocated once and reused by every call on that thread. Sources are received as the socket
//! family's own `sockaddr_in`/`sockaddr_in6` (16 or 28 bytes, not a 128-byte `sockaddr_storage`
//! copied per datagram). Destinations are `sockaddr_storage`, written only for the datagrams of
//! the call into a reused vector (`nix` reads the send headers' address slots as initialised,
//! which only a union type makes sound when the kernel never wrote them).

use super::Transmit;
use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, SockaddrIn6, SockaddrLike, SockaddrStorage,
};
use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Datagrams moved by one system call at most.
pub(super) const BATCH: usize = 32;

/// The fewest receive slots [`recv_want`] asks for.
const MIN_WANT: usize = 4;

/// How many slots the next `recvmmsg` offers after one that took `got` datagrams: twice that,
/// from [`MIN_WANT`] up to [`BATCH`]. Each offered slot costs user-space work on every call (its
/// header and iovec are filled in), so at a low rate, where a call takes one datagram, a few
/// slots are offered; a burst that fills them doubles the offer on each call.
pub(super) fn recv_want(got: usize) -> usize {
    got.saturating_mul(2).clamp(MIN_WANT, BATCH)
}

/// One address family's receive headers.
struct Family<S> {
    recv: MultiHeaders<S>,
}

impl<S: Copy + SockaddrLike> Family<S> {
    fn new() -> Family<S> {
        Family { recv: MultiHeaders::preallocate(BATCH, None) }
    }
}

/// The send headers and the destinations of one call.
struct Send {
    headers: MultiHeaders<SockaddrStorage>,
    addrs: Vec<Option<SockaddrStorage>>,
}

thread_local! {
    static V4: RefCell<Option<Family<SockaddrIn>>> = const { RefCell::new(None) };
    static V6: RefCell<Option<Family<SockaddrIn6>>> = const { RefCell::new(None) };
    static SEND: RefCell<Option<Send>> = const { RefCell::new(None) };
}

fn busy() -> io::Error {
    io::Error::other("mmsg headers in use")
}

/// A source address of the socket's family, as the family's sockaddr (see the module docs).
trait Addr: Copy + SockaddrLike + Sized + 'static {
    fn to_std(&self) -> SocketAddr;
    fn with<R>(f: impl FnOnce(&mut Family<Self>) -> io::Result<R>) -> io::Result<R>;
}

impl Addr for SockaddrIn {
    fn to_std(&self) -> SocketAddr {
        SocketAddr::from(*self)
    }
    fn with<R>(f: impl FnOnce(&mut Family<Self>) -> io::Result<R>) -> io::Result<R> {
        V4.with(|h| f(h.try_borrow_mut().map_err(|_| busy())?.get_or_insert_with(Family::new)))
    }
}

impl Addr for SockaddrIn6 {
    fn to_std(&self) -> SocketAddr {
        SocketAddr::from(*self)
    }
    fn with<R>(f: impl FnOnce(&mut Family<Self>) -> io::Result<R>) -> io::Result<R> {
        V6.with(|h| f(h.try_borrow_mut().map_err(|_| busy())?.get_or_insert_with(Family::new)))
    }
}

/// Receives up to `want` (at most [`BATCH`]) datagrams in one `recvmmsg`: datagram `i` lands at
/// the start of `buf[i * slot..]`; its slot, length and source are pushed to `meta`. `WouldBlock` when none is
/// queued (the socket is non-blocking). `v6`: the socket's family. `wait_for_one`: on a blocking
/// socket, wait (up to its `SO_RCVTIMEO`) for the first datagram only, then take what is queued
/// (`MSG_WAITFORONE`, recvmmsg(2)).
pub(super) fn recv(
    fd: RawFd,
    v6: bool,
    buf: &mut [u8],
    slot: usize,
    meta: &mut Vec<(usize, usize, SocketAddr)>,
    wait_for_one: bool,
    want: usize,
) -> io::Result<usize> {
    let flags = if wait_for_one { MsgFlags::MSG_WAITFORONE } else { MsgFlags::empty() };
    let want = want.clamp(1, BATCH);
    // The iovec array is built on the stack for every call: a small one when few slots are
    // offered (a relay reader at a low rate), so its cost follows the offer, not BATCH.
    match (v6, want <= MIN_WANT) {
        (true, true) => recv_as::<SockaddrIn6, MIN_WANT>(fd, buf, slot, meta, flags, want),
        (true, false) => recv_as::<SockaddrIn6, BATCH>(fd, buf, slot, meta, flags, want),
        (false, true) => recv_as::<SockaddrIn, MIN_WANT>(fd, buf, slot, meta, flags, want),
        (false, false) => recv_as::<SockaddrIn, BATCH>(fd, buf, slot, meta, flags, want),
    }
}

/// [`recv`] with an iovec array of `N` (at least `want`) entries.
fn recv_as<S: Addr, const N: usize>(
    fd: RawFd,
    buf: &mut [u8],
    slot: usize,
    meta: &mut Vec<(usize, usize, SocketAddr)>,
    flags: MsgFlags,
    want: usize,
) -> io::Result<usize> {
    S::with(|family| {
        let want = want.min(N);
        let mut chunks = buf.chunks_mut(slot.max(1)).take(want);
        let mut iovs: [[IoSliceMut<'_>; 1]; N] = std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let results = recvmmsg(fd, &mut family.recv, iovs[..want].iter_mut(), flags, None)?;
        let mut n = 0;
        for (i, r) in results.enumerate() {
            if let Some(src) = r.address {
                meta.push((i, r.bytes, src.to_std()));
            }
            n += 1;
        }
        Ok(n)
    })
}

/// Sends the first [`BATCH`] (at most) of `batch` in one `sendmmsg`: how many went (the first
/// failure stops a call; `Err` only if the first datagram failed).
pub(super) fn send(fd: RawFd, batch: &[Transmit]) -> io::Result<usize> {
    send_each(fd, batch.len(), |i| batch.get(i).map_or((None, &[][..]), |t| (Some(t.dest), &t.payload[..])))
}

/// [`send`] for datagrams that are ranges of `buf` (out flow, destination, offset, length: what
/// a relay reader thread routed from its receive buffer), without building a list of slices.
pub(super) fn send_ranges<F>(fd: RawFd, buf: &[u8], batch: &[(F, SocketAddr, usize, usize)]) -> io::Result<usize> {
    send_each(fd, batch.len(), |i| {
        batch.get(i).map_or((None, &[][..]), |&(_, dest, at, len)| (Some(dest), buf.get(at..at + len).unwrap_or_default()))
    })
}

/// One `sendmmsg` of the first [`BATCH`] (at most) of `len` datagrams, datagram `i` being `item(i)`.
fn send_each<'a>(fd: RawFd, len: usize, item: impl Fn(usize) -> (Option<SocketAddr>, &'a [u8])) -> io::Result<usize> {
    match len.min(BATCH) {
        0 => Ok(0),
        len if len <= MIN_WANT => send_n::<MIN_WANT>(fd, len, item),
        len => send_n::<BATCH>(fd, len, item),
    }
}

/// [`send_each`] with an iovec array of `N` (at least `len`) entries, built on the stack.
fn send_n<'a, const N: usize>(fd: RawFd, len: usize, item: impl Fn(usize) -> (Option<SocketAddr>, &'a [u8])) -> io::Result<usize> {
    let len = len.min(N);
    SEND.with(|h| {
        let mut h = h.try_borrow_mut().map_err(|_| busy())?;
        let s = h.get_or_insert_with(|| Send { headers: MultiHeaders::preallocate(BATCH, None), addrs: Vec::with_capacity(BATCH) });
        s.addrs.clear();
        let iovs: [[IoSlice<'_>; 1]; N] = std::array::from_fn(|i| {
            if i >= len {
                return [IoSlice::new(&[][..])];
            }
            let (dest, payload) = item(i);
            s.addrs.push(dest.map(SockaddrStorage::from));
            [IoSlice::new(payload)]
        });
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        let sent = sendmmsg(fd, &mut s.headers, iovs[..len].iter(), &s.addrs, no_cmsgs, MsgFlags::empty())?;
        Ok(sent.count())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_doubles_what_the_last_receive_took_within_bounds() {
        assert_eq!(recv_want(0), MIN_WANT);
        assert_eq!(recv_want(1), MIN_WANT);
        assert_eq!(recv_want(3), 6);
        assert_eq!(recv_want(16), BATCH);
        assert_eq!(recv_want(BATCH), BATCH);
        assert_eq!(recv_want(usize::MAX), BATCH);
    }
}
