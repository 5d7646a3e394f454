//! Batched datagram system calls on Linux: `recvmmsg(2)` and `sendmmsg(2)` through `nix` (the
//! `unsafe` lives in that crate; ours stays `forbid(unsafe_code)`). One call moves up to
//! [`BATCH`] datagrams, where `recv_from`/`send_to` take one call each.
//!
//! `nix` keeps the `mmsghdr` array in a [`MultiHeaders`] that is not `Send` (it holds raw
//! pointers), so the driver's future could not own one; each thread keeps its own here instead,
//! allocated once and reused by every call on that thread. Receiving keeps one per address family:
//! the kernel shortens `msg_namelen` to the family's address size and `nix` does not reset it.

use super::Transmit;
use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Datagrams moved by one system call at most.
pub(super) const BATCH: usize = 32;

#[derive(Default)]
struct Headers {
    recv_v4: Option<MultiHeaders<SockaddrStorage>>,
    recv_v6: Option<MultiHeaders<SockaddrStorage>>,
    send: Option<MultiHeaders<SockaddrStorage>>,
}

thread_local! {
    static HEADERS: RefCell<Headers> = RefCell::new(Headers::default());
}

fn busy() -> io::Error {
    io::Error::other("mmsg headers in use")
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

/// Receives up to [`BATCH`] datagrams in one `recvmmsg`: datagram `i` lands at the start of
/// `buf[i * slot..]`; its slot, length and source are pushed to `meta`. `WouldBlock` when none is
/// queued (the socket is non-blocking). A datagram without a readable source is skipped.
pub(super) fn recv(fd: RawFd, v6: bool, buf: &mut [u8], slot: usize, meta: &mut Vec<(usize, usize, SocketAddr)>) -> io::Result<usize> {
    HEADERS.with(|h| {
        let mut h = h.try_borrow_mut().map_err(|_| busy())?;
        let mut chunks = buf.chunks_mut(slot.max(1));
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let slot_headers = if v6 { &mut h.recv_v6 } else { &mut h.recv_v4 };
        let headers = slot_headers.get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
        let results = recvmmsg(fd, headers, iovs.iter_mut(), MsgFlags::empty(), None)?;
        let mut n = 0;
        for (i, r) in results.enumerate() {
            if let Some(src) = r.address.as_ref().and_then(to_std) {
                meta.push((i, r.bytes, src));
            }
            n += 1;
        }
        Ok(n)
    })
}

/// Sends the first [`BATCH`] (at most) of `batch` in one `sendmmsg`: how many went (the first
/// failure stops a call; `Err` only if the first datagram failed).
pub(super) fn send(fd: RawFd, batch: &[Transmit]) -> io::Result<usize> {
    let n = batch.len().min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    HEADERS.with(|h| {
        let mut h = h.try_borrow_mut().map_err(|_| busy())?;
        let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| [IoSlice::new(batch.get(i).map_or(&[][..], |t| &t.payload[..]))]);
        let addrs: [Option<SockaddrStorage>; BATCH] = std::array::from_fn(|i| batch.get(i).map(|t| SockaddrStorage::from(t.dest)));
        let headers = h.send.get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        let sent = sendmmsg(fd, headers, iovs[..n].iter(), &addrs[..n], no_cmsgs, MsgFlags::empty())?;
        Ok(sent.count())
    })
}
