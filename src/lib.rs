//! # smolecho: an allocator-free TCP and UDP echo service for smoltcp
//!
//! smolecho serves RFC 862 echo (every byte a client sends comes back, in order) over the
//! [smoltcp] TCP/IP stack, with all memory provided by the caller. It is `#![no_std]`, never
//! allocates, never uses `unsafe`, and has no panic path reachable from network input or from
//! its callers.
//!
//! ## The API on one screen
//!
//! ```
//! use smolecho::smoltcp::iface::SocketStorage;
//! use smolecho::{EchoNode, Sockets, TcpConfig, TcpStorage, UdpConfig, UdpStorage};
//! use static_cell::{ConstStaticCell, StaticCell};
//!
//! static SOCKETS: StaticCell<[SocketStorage<'static>; 5]> = StaticCell::new();
//! // 4 slots of 2 KiB each way and a backlog of 8 held SYNs; UDP: 4 datagrams, 1472 bytes.
//! static TCP: ConstStaticCell<TcpStorage<4, 2048, 2048, 8>> = ConstStaticCell::new(TcpStorage::new());
//! static UDP: ConstStaticCell<UdpStorage<4, 1472>> = ConstStaticCell::new(UdpStorage::new());
//!
//! let mut sockets = Sockets::new(SOCKETS.init([SocketStorage::EMPTY; 5]));
//! let node = EchoNode::new(
//!     &mut sockets,
//!     TcpConfig::on_port(7),
//!     TCP.take().buffers(),
//!     UdpConfig::on_port(7),
//!     UDP.take().buffers(),
//! )?;
//! // loop { node.poll(now, &mut iface, &mut device, &mut sockets);
//! //        sleep(node.poll_delay(now, &mut iface, &sockets)); }
//! assert_eq!(node.tcp_counters().accepted, 0);
//! # Ok::<(), smolecho::Error>(())
//! ```
//!
//! A host program sizes its pool at run time with slices instead:
//! `TcpBuffers::new(slots, rx, tx).with_backlog(backlog)` over `[TcpSlot::EMPTY; n]`,
//! `[HeldSyn::EMPTY; m]` and byte buffers, and `UdpBuffers::new(meta, payload)`.
//! [`TcpEchoClient`] and [`UdpEchoClient`] are the seed's clients, polled the same way.
//!
//! ## Design
//!
//! The crate is layered the way smoltcp is; every module is private and its types are
//! re-exported here.
//!
//! | layer | module | what it holds |
//! |---|---|---|
//! | logic | `conn` | the per-connection echo state machine, pure values, no sockets |
//! | policy | `admission` | which SYN gets a slot, which waits, which slot is taken back |
//! | policy | `recovery` | fast retransmit from the peer's SACK blocks, which smoltcp ignores |
//! | wire | `wire` | reading a frame just far enough to recognise an initial SYN |
//! | socket glue | `tcp_server`, `udp_server`, `tcp_client`, `udp_client` | moving bytes between smoltcp sockets under that logic |
//! | phy | `device` | the wrappers that show each frame to admission and replay held SYNs |
//! | iface | `node` | [`EchoNode`]: the pipeline of one poll |
//! | support | `storage`, `sockets`, `counters`, `quirks` | caller memory, a socket set that cannot panic when full, counters, what depends on smoltcp's internals |
//! | test | `sim` (feature `sim`) | a deterministic in-memory network with a manual clock, and frame builders |
//!
//! **Slots.** The TCP service owns one smoltcp socket per slot, all listening on the service
//! port. A SYN takes a listening socket; when its connection ends the slot listens again in
//! the same poll. A per-slot state machine looks at the socket (state, queued bytes, free
//! room) and decides: listen, echo up to *n* bytes, close, or abort.
//!
//! **Backpressure.** Bytes are taken from a receive buffer only when the transmit buffer has
//! room for them. A client that does not read makes its own window close; memory use never
//! changes.
//!
//! **Half-close.** After the peer's FIN everything already received is still echoed, then the
//! slot sends its own FIN and returns to listening once the peer acknowledges it.
//!
//! **Admission.** Every initial SYN passes the admission policy before smoltcp sees it. With
//! every slot busy, [`Overflow::Defer`] (the default) holds SYNs like a full Linux listen
//! backlog (with a backlog, held SYNs are replayed the moment a slot frees);
//! [`Overflow::Refuse`] lets smoltcp answer RST. A fixed pool can also be exhausted on
//! purpose, so slots are taken back from those who hold them without using them:
//! - *SYN flood*: when at least half of the slots have been half-open for 250 ms and none is
//!   free, the oldest half-open slot whose peer showed no sign of life is recycled for a new
//!   SYN (no RST: its peer most likely does not exist). A lossy link does not trigger it, and
//!   a client that retransmits its SYN is never recycled;
//! - *idle holders*: a connection that has not sent a byte 1 s after its handshake loses its
//!   slot (with an RST) to a waiting client, the newest first;
//! - *slow readers* cost nothing: backpressure keeps their bytes in their own buffers.
//!
//! **Timeouts.** A connection with no byte moving for [`TcpConfig::idle_timeout`] is aborted;
//! a half-open one older than [`TcpConfig::handshake_timeout`] is dropped.
//!
//! **Polling.** [`EchoNode::poll`] takes the clock, the interface, the device and the socket
//! set; [`EchoNode::poll_at`] says when it must run again, so firmware can sleep (`WFI`)
//! until a frame arrives or that deadline passes.
//!
//! ## Features
//!
//! - `proto-ipv4`, `proto-ipv6` (default): the IP versions served, on the same port.
//! - `medium-ethernet` (default), `medium-ip`: the framings admission understands.
//! - `log`, `defmt`: diagnostics; `defmt` also derives `defmt::Format`.
//! - `recovery` (default): loss and reordering recovery for smoltcp's TCP. A data segment
//!   that arrives with an older ACK than its sender already sent (a reordering link) is
//!   handed to smoltcp with the newest one, which smoltcp would otherwise drop whole; a loss
//!   the peer reports with SACK blocks becomes three duplicate ACKs, so smoltcp retransmits at
//!   once instead of after its 1 s minimum timeout. The node parses each frame once for
//!   admission and recovery alike.
//! - `sim`: the in-memory test network.
//!
//! [smoltcp]: https://docs.rs/smoltcp
#![no_std]
// docs.rs (`--cfg docsrs`, nightly) labels what a feature gates, e.g. "Available on crate
// feature `sim` only".
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

/// A debug-level diagnostic through `log` or `defmt`, whichever is enabled (smoltcp allows
/// one at a time); nothing otherwise. Arguments must be `Copy` values that both understand.
macro_rules! diag {
    ($($arg:tt)*) => {{
        #[cfg(feature = "log")]
        log::debug!($($arg)*);
        #[cfg(feature = "defmt")]
        defmt::debug!($($arg)*);
    }};
}

mod admission;
mod conn;
mod counters;
mod device;
mod error;
mod node;
mod quirks;
mod recovery;
#[cfg(feature = "sim")]
pub mod sim;
mod sockets;
mod storage;
mod tcp_client;
mod tcp_server;
mod udp_client;
mod udp_server;
mod wire;

pub use admission::HeldSyn;
pub use counters::{TcpCounters, UdpCounters};
pub use error::Error;
pub use node::EchoNode;
pub use sockets::Sockets;
pub use storage::{TcpBuffers, TcpStorage, UdpBuffers, UdpStorage};
pub use tcp_client::{TcpClientConfig, TcpClientStorage, TcpEchoClient, TcpOutcome};
pub use tcp_server::{Overflow, TcpConfig, TcpSlot};
pub use udp_client::{UdpClientConfig, UdpClientStorage, UdpEchoClient, UdpOutcome};
pub use udp_server::UdpConfig;

/// The smoltcp version this crate is built on, re-exported so callers name the same types.
pub use smoltcp;

/// The per-connection state machine, for the fuzz targets only (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::conn::{Action, EchoConn, Event, Link, Observation, RST_GRACE, Timeouts};
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
