//! Storage: the memory the services run in, always provided by the caller.
//!
//! The node borrows slices: [`TcpBuffers`] and [`UdpBuffers`] say which, so a host program can
//! size its pool at run time. [`TcpStorage`] and [`UdpStorage`] are the same memory as
//! const-generic bundles with `const fn` constructors, for firmware that keeps everything in
//! `static`s and wants the linker to report the whole budget (like embassy-net's
//! `StackResources`); `buffers()` turns a bundle into the slices.

use managed::ManagedSlice;
use smoltcp::socket::udp::PacketMetadata;

use crate::admission::HeldSyn;
use crate::tcp_server::TcpSlot;

/// The TCP service's memory as slices: the slot table, the listen backlog, and the receive
/// and transmit areas, which are split evenly among the slots.
#[derive(Debug)]
pub struct TcpBuffers<'a> {
    pub(crate) slots: ManagedSlice<'a, TcpSlot>,
    pub(crate) backlog: ManagedSlice<'a, HeldSyn>,
    pub(crate) rx: &'a mut [u8],
    pub(crate) tx: &'a mut [u8],
}

impl<'a> TcpBuffers<'a> {
    /// `slots.len()` slots, each with `rx.len() / slots.len()` receive and
    /// `tx.len() / slots.len()` transmit bytes, and no listen backlog.
    pub fn new(
        slots: impl Into<ManagedSlice<'a, TcpSlot>>,
        rx: &'a mut [u8],
        tx: &'a mut [u8],
    ) -> Self {
        Self {
            slots: slots.into(),
            backlog: ManagedSlice::Borrowed(&mut []),
            rx,
            tx,
        }
    }

    /// Keep up to `backlog.len()` held SYNs and replay them as soon as a slot frees, like a
    /// Linux listen backlog (about 180 bytes each).
    pub fn with_backlog(self, backlog: impl Into<ManagedSlice<'a, HeldSyn>>) -> Self {
        Self {
            backlog: backlog.into(),
            ..self
        }
    }
}

/// Memory for `SLOTS` TCP connections of `RX` receive and `TX` transmit bytes each, and a
/// listen backlog of `BACKLOG` SYNs, in one value with a `const fn` constructor.
///
/// All zero bytes: in a `static` (through `StaticCell` or `ConstStaticCell`) it goes to
/// `.bss` and costs no flash. Large pools belong in a static: `Box::new(TcpStorage::new())`
/// builds the value on the stack first in debug builds.
#[derive(Debug)]
pub struct TcpStorage<
    const SLOTS: usize,
    const RX: usize,
    const TX: usize,
    const BACKLOG: usize = 0,
> {
    slots: [TcpSlot; SLOTS],
    backlog: [HeldSyn; BACKLOG],
    rx: [[u8; RX]; SLOTS],
    tx: [[u8; TX]; SLOTS],
}

impl<const SLOTS: usize, const RX: usize, const TX: usize, const BACKLOG: usize>
    TcpStorage<SLOTS, RX, TX, BACKLOG>
{
    /// Empty storage. A pool of no slots or a zero-sized buffer does not compile.
    pub const fn new() -> Self {
        const {
            assert!(SLOTS > 0, "a TCP echo service needs at least one slot");
            assert!(RX > 0 && TX > 0, "TCP socket buffers cannot be empty");
        }
        Self {
            slots: [TcpSlot::EMPTY; SLOTS],
            backlog: [const { HeldSyn::EMPTY }; BACKLOG],
            rx: [[0; RX]; SLOTS],
            tx: [[0; TX]; SLOTS],
        }
    }

    /// The storage as the slices the node borrows.
    pub fn buffers(&mut self) -> TcpBuffers<'_> {
        TcpBuffers::new(
            self.slots.as_mut_slice(),
            self.rx.as_flattened_mut(),
            self.tx.as_flattened_mut(),
        )
        .with_backlog(self.backlog.as_mut_slice())
    }
}

impl<const SLOTS: usize, const RX: usize, const TX: usize, const BACKLOG: usize> Default
    for TcpStorage<SLOTS, RX, TX, BACKLOG>
{
    fn default() -> Self {
        Self::new()
    }
}

/// The UDP service's memory as slices: smoltcp's packet metadata, split evenly between the
/// receive and transmit queues, and payload bytes, split evenly into the receive buffer, the
/// transmit buffer and a turn-around buffer that holds one datagram (the largest echoed).
///
/// Two slices because they differ in the flash they cost: payloads are all zero bytes
/// (`.bss`), while smoltcp's empty metadata is not (`.data`, copied from flash).
#[derive(Debug)]
pub struct UdpBuffers<'a> {
    pub(crate) meta: &'a mut [PacketMetadata],
    pub(crate) payload: &'a mut [u8],
}

impl<'a> UdpBuffers<'a> {
    /// `meta.len() / 2` datagrams queued each way, `payload.len() / 3` bytes each for the
    /// receive queue, the transmit queue and the largest datagram.
    pub fn new(meta: &'a mut [PacketMetadata], payload: &'a mut [u8]) -> Self {
        Self { meta, payload }
    }
}

/// Memory for a UDP echo service that queues `PACKETS` datagrams and `BYTES` payload bytes
/// each way and echoes datagrams of up to `BYTES` bytes, with a `const fn` constructor.
///
/// Firmware that cares where each part is linked keeps the metadata and the payloads in
/// separate statics and uses [`UdpBuffers::new`] instead.
#[derive(Debug)]
pub struct UdpStorage<const PACKETS: usize, const BYTES: usize> {
    meta: [[PacketMetadata; PACKETS]; 2],
    payload: [[u8; BYTES]; 3],
}

impl<const PACKETS: usize, const BYTES: usize> UdpStorage<PACKETS, BYTES> {
    /// Empty storage. No packets or no bytes does not compile.
    pub const fn new() -> Self {
        const {
            assert!(PACKETS > 0, "a UDP echo service needs room for a datagram");
            assert!(BYTES > 0, "UDP buffers cannot be empty");
        }
        Self {
            meta: [const { [PacketMetadata::EMPTY; PACKETS] }; 2],
            payload: [[0; BYTES]; 3],
        }
    }

    /// The storage as the slices the node borrows.
    pub fn buffers(&mut self) -> UdpBuffers<'_> {
        UdpBuffers::new(
            self.meta.as_flattened_mut(),
            self.payload.as_flattened_mut(),
        )
    }
}

impl<const PACKETS: usize, const BYTES: usize> Default for UdpStorage<PACKETS, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}
