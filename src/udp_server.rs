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

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};

use crate::Error;
use crate::conn::{elapsed, later};
use crate::counters::{UdpCounters, bump};
use crate::quirks::{find_mut, renew};
use crate::sockets::Sockets;
use crate::storage::UdpBuffers;

/// How long the transmit queue may hold replies without sending any before it is discarded.
/// A reachable client is resolved in a round trip (Linux clients even announce themselves
/// with their own ARP or neighbour solicitation first); only unreachable ones wait longer.
pub(crate) const UDP_STALL: Duration = Duration::from_millis(250);

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

/// The UDP echo service; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct UdpEcho<'a> {
    config: UdpConfig,
    handle: SocketHandle,
    scratch: &'a mut [u8],
    counters: UdpCounters,
    /// Bytes sent so far (queued minus still queued) and since when that has not changed
    /// while replies were waiting.
    stall: Option<(u64, Instant)>,
}

impl<'a> UdpEcho<'a> {
    /// Create and bind the service's socket in `sockets`, over `buffers`.
    // Inlined into `EchoNode::new` (itself inlined): a caller with buffers of known sizes
    // then pays for no split nor check.
    #[inline(always)]
    pub(crate) fn new(
        config: UdpConfig,
        buffers: UdpBuffers<'a>,
        sockets: &mut Sockets<'a>,
    ) -> Result<Self, Error> {
        // `EchoNode::new` checked the port and the set's room; `bind` and `add` still fail as
        // errors.
        let UdpBuffers { meta, payload } = buffers;
        let packets = meta.len() / 2;
        let bytes = payload.len() / 3;
        if packets == 0 || bytes == 0 {
            return Err(Error::BufferTooSmall);
        }
        let split = meta
            .split_at_mut_checked(packets)
            .and_then(|(rx_meta, rest)| {
                let (tx_meta, _) = rest.split_at_mut_checked(packets)?;
                let (rx, rest) = payload.split_at_mut_checked(bytes)?;
                let (tx, rest) = rest.split_at_mut_checked(bytes)?;
                let (scratch, _) = rest.split_at_mut_checked(bytes)?;
                Some((rx_meta, tx_meta, rx, tx, scratch))
            });
        let Some((rx_meta, tx_meta, rx, tx, scratch)) = split else {
            return Err(Error::BufferTooSmall);
        };
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(rx_meta, rx),
            udp::PacketBuffer::new(tx_meta, tx),
        );
        socket.bind(config.port).map_err(|_| Error::Bind)?;
        let handle = sockets.add(socket)?;
        Ok(Self {
            config,
            handle,
            scratch,
            counters: UdpCounters::default(),
            stall: None,
        })
    }

    /// The settings the server runs with.
    pub(crate) fn config(&self) -> &UdpConfig {
        &self.config
    }

    /// The counters so far.
    pub(crate) fn counters(&self) -> UdpCounters {
        self.counters
    }

    /// Echo every queued datagram that fits in the transmit buffer; drop (and count) the rest.
    /// Discard a transmit queue stalled for [`UDP_STALL`]. Returns whether anything happened.
    pub(crate) fn service(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let handled = self.echo(sockets);
        handled | self.unstall(now, sockets)
    }

    /// When the server needs service without network activity (a stalled queue's deadline).
    pub(crate) fn poll_at(&self) -> Option<Instant> {
        self.stall.map(|(_, since)| later(since, UDP_STALL))
    }

    /// Watch the transmit queue; discard it when it has sent nothing for [`UDP_STALL`].
    fn unstall(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let Some(socket) = find_mut::<udp::Socket>(sockets, self.handle) else {
            return false;
        };
        let queued = socket.send_queue();
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
        socket.close();
        // Bound to the same port a moment ago, so binding again cannot fail.
        let _ = socket.bind(self.config.port);
        let Some(handle) = renew(sockets, self.handle) else {
            return false;
        };
        self.handle = handle;
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
