//! The test harness: the sans-IO layers run in memory, on a virtual clock, with no socket.
//!
//! - [`Net`]: nodes (an [`Endpoint`](crate::endpoint::Endpoint) and an
//!   [`Application`](crate::application::Application) each: the service, a softphone, a bare UA) on a
//!   network with seeded loss, latency, jitter, reordering and duplication ([`Link`]). It keeps
//!   the driver's run-loop contract and jumps its clock to the next arrival or deadline.
//! - [`MemoryMedia`]: the driver's media sockets in memory; in a [`Net`] its flows are bound to
//!   addresses of the same network, so RTP goes through the relay like SIP through the service.
//! - [`DialogUa`]: a user agent that does only what its test scripts.
//! - `service_parts` and `phone_config` (feature `service`): the service and a softphone set up
//!   as the binaries set them up, to change a field or two and add to a [`Net`].
//!
//! It lives in the library (not in `tests/common/`) so the library's own unit tests, the
//! integration tests and the examples share one harness; it is sans-IO like the layers it drives
//! (`tests/layering.rs` checks it), and builds without the `tokio` feature.

mod media;
mod net;
#[cfg(feature = "service")]
mod nodes;
mod ua;

pub use media::{MediaTransmit, MemoryMedia};
pub use net::{Link, Net, NetStats, NodeId};
#[cfg(feature = "service")]
pub use nodes::{phone_config, service_endpoint, service_parts, REALM};
pub use ua::DialogUa;
