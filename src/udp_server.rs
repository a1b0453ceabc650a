//! The UDP echo server: one smoltcp UDP socket that returns every datagram to its sender.
//!
//! A datagram is echoed whole or not at all. When the transmit buffer has no room for it, it
//! is dropped and counted; the server never waits, so UDP load can never hold up TCP.
//!
//! **Unreachable senders.** smoltcp sends a socket's datagrams in order and keeps the head
//! one queued while the neighbour it goes to is unresolved, silencing the whole socket
//! meanwhile. One datagram from an address that never answers ARP or neighbour solicitation
//! would thus block every later reply, for ever. When the transmit queue makes no progress for
//! [`UDP_STALL`], the server discards it (the socket goes back into the set as new, which
//! also clears smoltcp's silence) and counts a `tx_flushes`.

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::{Socket, udp};
use smoltcp::time::{Duration, Instant};

use crate::Error;
use crate::conn::{elapsed, later};
use crate::counters::{UdpCounters, bump};
use crate::sockets::{Sockets, find_mut};

/// Buffers of a UDP echo service: `PACKETS` datagrams and `BYTES` payload bytes in each
/// direction, plus a `BYTES` scratch buffer that holds one datagram while it is turned around.
///
/// The largest datagram echoed is `BYTES` bytes. Build it with the `const fn`
/// [`new`](Self::new) so it can live in a `static`.
///
/// It is the two parts below in one value. Firmware that cares where each part is linked can
/// keep them in two statics and use [`UdpEchoServer::from_parts`]: the payloads are all zero
/// bytes (`.bss`, no flash), while smoltcp's empty packet metadata is not (`.data`, its size
/// in flash too).
#[derive(Debug)]
pub struct UdpEchoStorage<const PACKETS: usize, const BYTES: usize> {
    meta: UdpEchoMeta<PACKETS>,
    payloads: UdpEchoPayloads<BYTES>,
}

impl<const PACKETS: usize, const BYTES: usize> UdpEchoStorage<PACKETS, BYTES> {
    /// Empty buffers.
    pub const fn new() -> Self {
        Self {
            meta: UdpEchoMeta::new(),
            payloads: UdpEchoPayloads::new(),
        }
    }
}

impl<const PACKETS: usize, const BYTES: usize> Default for UdpEchoStorage<PACKETS, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

/// Packet metadata of a UDP echo service: `PACKETS` datagrams each way.
#[derive(Debug)]
pub struct UdpEchoMeta<const PACKETS: usize> {
    rx: [udp::PacketMetadata; PACKETS],
    tx: [udp::PacketMetadata; PACKETS],
}

impl<const PACKETS: usize> UdpEchoMeta<PACKETS> {
    /// Empty metadata.
    pub const fn new() -> Self {
        Self {
            rx: [udp::PacketMetadata::EMPTY; PACKETS],
            tx: [udp::PacketMetadata::EMPTY; PACKETS],
        }
    }
}

impl<const PACKETS: usize> Default for UdpEchoMeta<PACKETS> {
    fn default() -> Self {
        Self::new()
    }
}

/// Payload bytes of a UDP echo service: `BYTES` each way and a `BYTES` scratch buffer.
#[derive(Debug)]
pub struct UdpEchoPayloads<const BYTES: usize> {
    rx: [u8; BYTES],
    tx: [u8; BYTES],
    scratch: [u8; BYTES],
}

impl<const BYTES: usize> UdpEchoPayloads<BYTES> {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        Self {
            rx: [0; BYTES],
            tx: [0; BYTES],
            scratch: [0; BYTES],
        }
    }
}

impl<const BYTES: usize> Default for UdpEchoPayloads<BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

/// How long the transmit queue may hold replies without sending any before it is discarded.
/// A reachable client is resolved in a round trip (Linux clients even announce themselves
/// with their own ARP or neighbour solicitation first); only unreachable ones wait longer.
pub const UDP_STALL: Duration = Duration::from_millis(250);

/// Settings of the UDP echo server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UdpConfig {
    /// The service port.
    pub port: u16,
}

impl UdpConfig {
    /// Port 7.
    pub const DEFAULT: Self = Self { port: 7 };

    /// Another port.
    pub const fn on_port(port: u16) -> Self {
        Self { port }
    }
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A UDP echo server; see the [module docs](self).
#[derive(Debug)]
pub struct UdpEchoServer<'a> {
    config: UdpConfig,
    handle: SocketHandle,
    scratch: &'a mut [u8],
    counters: UdpCounters,
    /// Bytes sent so far (queued minus still queued) and since when that has not changed
    /// while replies were waiting.
    stall: Option<(u64, Instant)>,
}

impl<'a> UdpEchoServer<'a> {
    /// Create and bind the service's socket in `sockets`, over the buffers of `storage`.
    pub fn new<const PACKETS: usize, const BYTES: usize>(
        config: UdpConfig,
        storage: &'a mut UdpEchoStorage<PACKETS, BYTES>,
        sockets: &mut Sockets<'a>,
    ) -> Result<Self, Error> {
        let UdpEchoStorage { meta, payloads } = storage;
        Self::from_parts(config, meta, payloads, sockets)
    }

    /// Like [`new`](Self::new), with the metadata and the payloads in separate places.
    pub fn from_parts<const PACKETS: usize, const BYTES: usize>(
        config: UdpConfig,
        meta: &'a mut UdpEchoMeta<PACKETS>,
        payloads: &'a mut UdpEchoPayloads<BYTES>,
        sockets: &mut Sockets<'a>,
    ) -> Result<Self, Error> {
        if config.port == 0 {
            return Err(Error::InvalidPort);
        }
        if PACKETS == 0 || BYTES == 0 {
            return Err(Error::BufferTooSmall);
        }
        if sockets.free() == 0 {
            return Err(Error::SocketSetFull);
        }
        let UdpEchoPayloads { rx, tx, scratch } = payloads;
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut meta.rx[..], &mut rx[..]),
            udp::PacketBuffer::new(&mut meta.tx[..], &mut tx[..]),
        );
        socket.bind(config.port).map_err(|_| Error::Bind)?;
        let handle = sockets.add(socket)?;
        Ok(Self {
            config,
            handle,
            scratch: &mut scratch[..],
            counters: UdpCounters::default(),
            stall: None,
        })
    }

    /// The settings the server runs with.
    pub fn config(&self) -> &UdpConfig {
        &self.config
    }

    /// The counters so far.
    pub fn counters(&self) -> UdpCounters {
        self.counters
    }

    /// The service's socket handle.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// Poll the interface, then echo. Returns whether anything progressed.
    pub fn poll<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
    ) -> bool {
        let polled = iface.poll(now, device, sockets) != smoltcp::iface::PollResult::None;
        self.service(now, sockets) | polled
    }

    /// Echo every queued datagram that fits in the transmit buffer; drop (and count) the rest.
    /// Discard a transmit queue stalled for [`UDP_STALL`]. Returns whether anything happened.
    pub fn service(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let handled = self.echo(sockets);
        handled | self.unstall(now, sockets)
    }

    /// When the server needs service without network activity (a stalled queue's deadline).
    pub fn poll_at(&self) -> Option<Instant> {
        self.stall.map(|(_, since)| later(since, UDP_STALL))
    }

    /// Watch the transmit queue; discard it when it has sent nothing for [`UDP_STALL`].
    fn unstall(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let Some(queued) = find_mut::<udp::Socket>(sockets, self.handle).map(|s| s.send_queue())
        else {
            return false;
        };
        if queued == 0 {
            self.stall = None;
            return false;
        }
        let sent = self.counters.bytes_out.wrapping_sub(queued as u64);
        match self.stall {
            Some((before, since)) if before == sent => {
                if elapsed(since, now) < UDP_STALL {
                    return false;
                }
            }
            _ => {
                self.stall = Some((sent, now));
                return false;
            }
        }
        self.stall = None;
        // Checked above, so `remove` cannot panic: the handle is in the set and is UDP.
        let Socket::Udp(mut socket) = sockets.remove(self.handle) else {
            return false;
        };
        socket.close();
        // Bound to the same port a moment ago, so binding again cannot fail; the entry just
        // freed is there for `add`.
        let _ = socket.bind(self.config.port);
        self.handle = sockets.add(socket);
        // The discarded bytes no longer count as queued.
        self.counters.bytes_out = self.counters.bytes_out.wrapping_sub(queued as u64);
        bump(&mut self.counters.tx_flushes, 1);
        diag!(
            "smolecho: udp/{} transmit queue stalled: flushed",
            self.config.port
        );
        true
    }

    fn echo(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        let Some(socket) = find_mut::<udp::Socket>(sockets, self.handle) else {
            return false;
        };
        let mut handled = false;
        while socket.can_recv() {
            let (len, meta) = match socket.recv_slice(self.scratch) {
                Ok(got) => got,
                Err(udp::RecvError::Truncated) => {
                    // Larger than the scratch buffer: smoltcp dropped it.
                    bump(&mut self.counters.datagrams_in, 1);
                    bump(&mut self.counters.dropped, 1);
                    handled = true;
                    continue;
                }
                Err(udp::RecvError::Exhausted) => break,
            };
            handled = true;
            bump(&mut self.counters.datagrams_in, 1);
            bump(&mut self.counters.bytes_in, len as u64);
            let Some(datagram) = self.scratch.get(..len) else {
                bump(&mut self.counters.dropped, 1);
                continue;
            };
            // Reply from the address the datagram was sent to, so multi-homed nodes answer
            // from the right source.
            let reply = udp::UdpMetadata {
                local_address: meta.local_address,
                ..meta.endpoint.into()
            };
            match socket.send_slice(datagram, reply) {
                Ok(()) => {
                    bump(&mut self.counters.datagrams_out, 1);
                    bump(&mut self.counters.bytes_out, len as u64);
                }
                Err(_) => bump(&mut self.counters.dropped, 1),
            }
        }
        handled
    }
}
