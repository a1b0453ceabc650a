//! # smolecho: an allocator-free TCP and UDP echo service for smoltcp
//!
//! smolecho serves RFC 862 echo (every byte a client sends comes back, in order) over the
//! [smoltcp] TCP/IP stack, with all memory provided by the caller and sized at compile time.
//! It is `#![no_std]`, never allocates, never uses `unsafe`, and has no panic path reachable
//! from network input or from its callers.
//!
//! ## Design
//!
//! The crate is layered the way smoltcp is:
//!
//! | layer | module | what it holds |
//! |---|---|---|
//! | logic | [`conn`] | the per-connection echo state machine, pure values, no sockets |
//! | socket glue | [`tcp_server`], [`udp_server`], [`tcp_client`], [`udp_client`] | services that move bytes between smoltcp sockets under that logic |
//! | phy | [`gate`] | [`SynGate`], the `phy::Device` wrapper that implements the listen backlog |
//! | phy | [`stale_ack`] | [`StaleAckRepair`](stale_ack::StaleAckRepair), the `phy::Device` wrapper that keeps smoltcp from discarding reordered segments |
//! | iface | [`node`] | [`EchoNode`]: both servers behind one poll entry point |
//! | support | [`sockets`], [`counters`] | a socket set that cannot panic when full; counters |
//! | test | `sim` (feature `sim`) | a deterministic in-memory network with a manual clock |
//!
//! **Slots.** The TCP server owns `SLOTS` smoltcp sockets, all listening on the service port.
//! A SYN takes the first listening socket; when its connection ends the slot listens again in
//! the same poll. Each slot is driven by an [`EchoConn`], which looks at the socket (state,
//! queued bytes, free room) and returns one [`Action`]: listen, echo up to *n* bytes, close,
//! or abort.
//!
//! **Backpressure.** Bytes are taken from a receive buffer only when the transmit buffer has
//! room for them. A client that does not read makes its own window close; memory use never
//! changes.
//!
//! **Half-close.** After the peer's FIN everything already received is still echoed, then the
//! slot sends its own FIN and returns to listening once the peer acknowledges it.
//!
//! **Overflow.** When every slot is busy, [`Overflow::Defer`] (the default) holds SYNs back
//! like a full Linux listen backlog, so the client's kernel retransmits and is served when a
//! slot frees; [`Overflow::Refuse`] lets smoltcp answer RST. Defer is done by [`SynGate`],
//! which the server puts in front of the device for each interface poll. With a listen
//! backlog (`EchoNode::<SLOTS, BACKLOG>::with_backlog`), held SYNs are also kept, one per
//! client, and replayed the moment a slot frees, so a held client does not wait for its
//! retransmission.
//!
//! **Timeouts.** A connection with no byte moving for [`Timeouts::idle`] is aborted; a
//! half-open one older than [`Timeouts::handshake`] is dropped. Both free the slot.
//!
//! **Defences.** A fixed pool can be exhausted on purpose, so the server reclaims slots from
//! those who hold them without using them:
//! - *SYN flood*: when every slot has been half-open for
//!   [`SYN_PRESSURE_AFTER`](tcp_server::SYN_PRESSURE_AFTER), a SYN that finds no listener takes
//!   the oldest half-open slot (no RST: its peer most likely does not exist);
//! - *idle holders*: a connection that has not sent a byte
//!   [`IDLE_HOLDER_AFTER`](tcp_server::IDLE_HOLDER_AFTER) after its handshake loses its slot
//!   (with an RST) to a client that finds none free;
//! - *slow readers* cost nothing: backpressure keeps their bytes in their own buffers.
//!
//! **Polling.** [`EchoNode::poll`] takes the clock, the interface, the device and the socket
//! set; [`EchoNode::poll_at`] says when it must run again, so firmware can sleep (`WFI`)
//! until a frame arrives or that deadline passes.
//!
//! ## Memory
//!
//! Storage types ([`TcpEchoStorage`], [`UdpEchoStorage`], ...) have `const fn` constructors,
//! so they can be placed in a `static` through `StaticCell` and the linker reports the whole
//! budget. The services themselves hold only handles, state machines and counters.
//!
//! ## Features
//!
//! - `proto-ipv4`, `proto-ipv6` (default): the IP versions served, on the same port.
//! - `medium-ethernet` (default), `medium-ip`: the framings the SYN gate understands.
//! - `log`, `defmt`: diagnostics; `defmt` also derives `defmt::Format`.
//! - `stale-ack-repair` (default): [`EchoNode`] keeps smoltcp from discarding reordered
//!   client segments (see [`stale_ack`]).
//! - `sim`: the in-memory test network.
//!
//! [smoltcp]: https://docs.rs/smoltcp
#![no_std]
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

pub mod conn;
pub mod counters;
mod error;
pub mod gate;
pub mod node;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sockets;
pub mod stale_ack;
pub mod tcp_client;
pub mod tcp_server;
pub mod udp_client;
pub mod udp_server;

pub use conn::{Action, EchoConn, Timeouts};
pub use counters::{TcpCounters, UdpCounters};
pub use error::Error;
pub use gate::{Overflow, SynGate};
pub use node::EchoNode;
pub use sockets::Sockets;
pub use tcp_client::{
    DEFAULT_MESSAGE, TcpClientConfig, TcpClientStorage, TcpEchoClient, TcpOutcome,
};
pub use tcp_server::{TcpConfig, TcpEchoServer, TcpEchoStorage};
pub use udp_client::{UdpClientConfig, UdpClientStorage, UdpEchoClient, UdpOutcome};
pub use udp_server::{UdpConfig, UdpEchoMeta, UdpEchoPayloads, UdpEchoServer, UdpEchoStorage};

/// The smoltcp version this crate is built on, re-exported so callers name the same types.
pub use smoltcp;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
