//! Media readers where `epoll` and `recvmmsg` are not available (not Linux): one tokio task per
//! socket, each datagram its own batch. Closing aborts the task, so the socket closes when the
//! runtime drops it (later than on Linux, where `media_readers` closes it at once).

use crate::application::FlowId;
use crate::collections::HashMap;
use bytes::Bytes;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Datagrams handed to the driver together: flow, source, payload.
pub(crate) type Batch = Vec<(FlowId, SocketAddr, Bytes)>;

/// One reader task per socket.
#[derive(Debug)]
pub(crate) struct Readers {
    tasks: HashMap<FlowId, JoinHandle<()>>,
    tx: mpsc::Sender<Batch>,
}

impl Readers {
    /// Readers that send on `tx`; every datagram goes to the driver, relayed ones too (the
    /// relay's shards take them there).
    pub(crate) fn per_core(tx: mpsc::Sender<Batch>, _relay: Option<crate::relay::RelayShards>) -> Readers {
        Readers { tasks: HashMap::default(), tx }
    }

    /// Reads `socket` (non-blocking, bound) as `flow` from now on.
    pub(crate) fn add(&mut self, flow: FlowId, socket: Arc<UdpSocket>) -> io::Result<()> {
        let reader = tokio::net::UdpSocket::from_std(socket.try_clone()?)?;
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, src)) = reader.recv_from(&mut buf).await {
                if tx.send(vec![(flow, src, Bytes::copy_from_slice(&buf[..n]))]).await.is_err() {
                    break;
                }
            }
        });
        self.tasks.insert(flow, task);
        Ok(())
    }

    /// Stops reading `flow`.
    pub(crate) fn remove(&mut self, flow: FlowId, _port: u16) {
        if let Some(task) = self.tasks.remove(&flow) {
            task.abort();
        }
    }

    /// Not counted here.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (0, 0)
    }

    /// Nothing is forwarded here.
    pub(crate) fn forwarded(&self) -> Vec<(u64, u64)> {
        Vec::new()
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.abort();
        }
    }
}
