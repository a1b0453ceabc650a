//! The UDP echo client: the seed's `udpc.py` as a state machine over one smoltcp socket.
//!
//! It sends a datagram, waits for a reply from the same endpoint with the same payload, and
//! resends after a timeout, a bounded number of times. Replies that do not match (another
//! sender, another payload: a late answer to an earlier run) are ignored and counted.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::Error;
use crate::conn::{elapsed, later};
use crate::quirks::find_mut;
use crate::sockets::Sockets;

/// Socket buffers of one UDP echo client: `PACKETS` datagrams and `BYTES` payload bytes in
/// each direction. The largest message is `BYTES` bytes.
#[derive(Debug)]
pub struct UdpClientStorage<const PACKETS: usize, const BYTES: usize> {
    rx_meta: [udp::PacketMetadata; PACKETS],
    rx_payload: [u8; BYTES],
    tx_meta: [udp::PacketMetadata; PACKETS],
    tx_payload: [u8; BYTES],
}

impl<const PACKETS: usize, const BYTES: usize> UdpClientStorage<PACKETS, BYTES> {
    /// Empty buffers.
    pub const fn new() -> Self {
        Self {
            rx_meta: [udp::PacketMetadata::EMPTY; PACKETS],
            rx_payload: [0; BYTES],
            tx_meta: [udp::PacketMetadata::EMPTY; PACKETS],
            tx_payload: [0; BYTES],
        }
    }
}

impl<const PACKETS: usize, const BYTES: usize> Default for UdpClientStorage<PACKETS, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

/// Retry policy of the UDP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UdpClientConfig {
    /// How long to wait for the reply to one attempt.
    pub attempt_timeout: Duration,
    /// How many times to send in all (at least once).
    pub attempts: u32,
}

impl UdpClientConfig {
    /// 1 s per attempt, 3 attempts.
    pub const DEFAULT: Self = Self {
        attempt_timeout: Duration::from_secs(1),
        attempts: 3,
    };
}

impl Default for UdpClientConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How a UDP client run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UdpOutcome {
    /// The matching reply arrived.
    Echoed {
        /// From the send of the answered attempt to the reply.
        rtt: Duration,
        /// Which attempt was answered (1-based).
        attempt: u32,
    },
    /// No matching reply after every attempt.
    TimedOut {
        /// Attempts made.
        attempts: u32,
    },
    /// The message did not fit in the transmit buffer.
    TooLarge,
}

impl UdpOutcome {
    /// Whether the echo came back.
    pub fn is_ok(&self) -> bool {
        matches!(self, UdpOutcome::Echoed { .. })
    }
}

/// A run in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    remote: IpEndpoint,
    attempt: u32,
    sent_at: Instant,
}

/// The seed's UDP echo client as a state machine over one smoltcp socket.
///
/// It sends a datagram, waits for a reply from the same endpoint with the same payload, and
/// resends after a timeout, a bounded number of times. Replies that do not match (another
/// sender, another payload: a late answer to an earlier run) are ignored and counted.
#[derive(Debug)]
pub struct UdpEchoClient<'m> {
    handle: SocketHandle,
    config: UdpClientConfig,
    message: &'m [u8],
    pending: Option<Pending>,
    outcome: Option<UdpOutcome>,
    stray: u64,
}

impl<'m> UdpEchoClient<'m> {
    /// Create the client's socket in `sockets`, bound to `local_port`.
    pub fn new<'a, const PACKETS: usize, const BYTES: usize>(
        config: UdpClientConfig,
        local_port: u16,
        storage: &'a mut UdpClientStorage<PACKETS, BYTES>,
        sockets: &mut Sockets<'a>,
    ) -> Result<Self, Error> {
        if local_port == 0 {
            return Err(Error::InvalidPort);
        }
        if PACKETS == 0 || BYTES == 0 {
            return Err(Error::BufferTooSmall);
        }
        if sockets.free() == 0 {
            return Err(Error::SocketSetFull);
        }
        let UdpClientStorage {
            rx_meta,
            rx_payload,
            tx_meta,
            tx_payload,
        } = storage;
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut rx_meta[..], &mut rx_payload[..]),
            udp::PacketBuffer::new(&mut tx_meta[..], &mut tx_payload[..]),
        );
        socket.bind(local_port).map_err(|_| Error::Bind)?;
        let handle = sockets.add(socket)?;
        Ok(Self {
            handle,
            config,
            message: &[],
            pending: None,
            outcome: None,
            stray: 0,
        })
    }

    /// Start a run: send `message` to `remote` and wait for its echo.
    pub fn send(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'_>,
        remote: IpEndpoint,
        message: &'m [u8],
    ) -> Result<(), Error> {
        if remote.port == 0 {
            return Err(Error::InvalidPort);
        }
        self.message = message;
        self.outcome = None;
        self.pending = None;
        let socket = find_mut::<udp::Socket>(sockets, self.handle).ok_or(Error::SocketMissing)?;
        // Forget replies to earlier runs.
        while socket.recv().is_ok() {}
        self.transmit(socket, now, remote, 1);
        Ok(())
    }

    /// Whether a run is waiting for its reply.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// The outcome of the last run, once it ended.
    pub fn outcome(&self) -> Option<UdpOutcome> {
        self.outcome
    }

    /// Replies ignored because they came from elsewhere or did not match.
    pub fn stray_replies(&self) -> u64 {
        self.stray
    }

    /// When the current attempt times out.
    pub fn poll_at(&self) -> Option<Instant> {
        self.pending
            .map(|p| later(p.sent_at, self.config.attempt_timeout))
    }

    /// Look for the reply; resend or give up on timeout. Returns whether anything progressed.
    pub fn service(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let Some(pending) = self.pending else {
            return false;
        };
        let Some(socket) = find_mut::<udp::Socket>(sockets, self.handle) else {
            self.pending = None;
            self.outcome = Some(UdpOutcome::TimedOut {
                attempts: pending.attempt,
            });
            return true;
        };
        let mut progressed = false;
        while let Ok((payload, meta)) = socket.recv() {
            progressed = true;
            if meta.endpoint == pending.remote && payload == self.message {
                self.pending = None;
                self.outcome = Some(UdpOutcome::Echoed {
                    rtt: elapsed(pending.sent_at, now),
                    attempt: pending.attempt,
                });
                return true;
            }
            self.stray = self.stray.wrapping_add(1);
        }
        if elapsed(pending.sent_at, now) >= self.config.attempt_timeout {
            if pending.attempt >= self.config.attempts.max(1) {
                self.pending = None;
                self.outcome = Some(UdpOutcome::TimedOut {
                    attempts: pending.attempt,
                });
            } else {
                self.transmit(
                    socket,
                    now,
                    pending.remote,
                    pending.attempt.saturating_add(1),
                );
            }
            progressed = true;
        }
        progressed
    }

    fn transmit(
        &mut self,
        socket: &mut udp::Socket<'_>,
        now: Instant,
        remote: IpEndpoint,
        attempt: u32,
    ) {
        match socket.send_slice(self.message, remote) {
            Ok(()) => {
                self.pending = Some(Pending {
                    remote,
                    attempt,
                    sent_at: now,
                })
            }
            Err(udp::SendError::BufferFull)
                if socket.payload_send_capacity() >= self.message.len() =>
            {
                // Earlier datagrams still queued: count this attempt as sent and retry later.
                self.pending = Some(Pending {
                    remote,
                    attempt,
                    sent_at: now,
                })
            }
            Err(_) => {
                self.pending = None;
                self.outcome = Some(UdpOutcome::TooLarge);
            }
        }
    }
}
