//! The TCP echo client: the seed's `echo-client.py` as a state machine over one smoltcp socket.
//!
//! It connects, streams a message (of any length: the send side refills as the window opens),
//! verifies every echoed byte against it as it arrives, closes, and reports a [`TcpOutcome`]
//! with the round-trip time. It is driven by the same poll loop as the servers.

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::Error;
use crate::conn::{elapsed, later};
use crate::quirks::find_mut;
use crate::sockets::Sockets;

/// Socket buffers of one TCP echo client.
#[derive(Debug)]
pub struct TcpClientStorage<const RX: usize, const TX: usize> {
    rx: [u8; RX],
    tx: [u8; TX],
}

impl<const RX: usize, const TX: usize> TcpClientStorage<RX, TX> {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        Self {
            rx: [0; RX],
            tx: [0; TX],
        }
    }
}

impl<const RX: usize, const TX: usize> Default for TcpClientStorage<RX, TX> {
    fn default() -> Self {
        Self::new()
    }
}

/// How a client run behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpClientConfig {
    /// Give up when the whole exchange (connect, echo) takes longer than this.
    pub timeout: Duration,
    /// Send FIN as soon as the whole message is queued, before the echo is back (like
    /// `nc -N`); the server must still echo everything.
    pub half_close: bool,
}

impl TcpClientConfig {
    /// The seed's default message, `Hello, echo server!`.
    pub const DEFAULT_MESSAGE: &'static [u8] = b"Hello, echo server!";

    /// 10 s timeout, no early half-close.
    pub const DEFAULT: Self = Self {
        timeout: Duration::from_secs(10),
        half_close: false,
    };
}

impl Default for TcpClientConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How a client run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TcpOutcome {
    /// Every byte came back, in order.
    Echoed {
        /// From the start of `connect` to the handshake's completion.
        connect: Duration,
        /// From the first byte queued to the last byte of the echo received.
        rtt: Duration,
        /// Bytes echoed (the message length).
        bytes: usize,
    },
    /// The echo differed from the message at byte `offset` (or ran past its end).
    Mismatch {
        /// The first byte that differed.
        offset: usize,
    },
    /// The connection closed before the whole echo came back, after `received` bytes.
    Truncated {
        /// Bytes verified before the close.
        received: usize,
    },
    /// The server answered the SYN with RST.
    Refused,
    /// The server reset an established connection.
    Reset,
    /// The exchange did not finish within the timeout.
    TimedOut,
}

impl TcpOutcome {
    /// Whether the echo came back complete and correct.
    pub fn is_ok(&self) -> bool {
        matches!(self, TcpOutcome::Echoed { .. })
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) enum TcpClientState {
    /// No run started, or the last one ended: see [`TcpEchoClient::outcome`].
    Idle,
    /// SYN sent.
    Connecting,
    /// Sending the message and verifying the echo.
    Exchanging,
    /// Echo verified; our FIN is out.
    Closing,
}

/// The seed's TCP echo client as a state machine over one smoltcp socket.
///
/// It connects, streams a message (of any length: the send side refills as the window
/// opens), verifies every echoed byte against it as it arrives, closes, and reports a
/// [`TcpOutcome`] with the round-trip time. It is driven by the same poll loop as the node.
#[derive(Debug)]
pub struct TcpEchoClient<'m> {
    handle: SocketHandle,
    config: TcpClientConfig,
    message: &'m [u8],
    state: TcpClientState,
    started: Instant,
    connected: Instant,
    sent: usize,
    verified: usize,
    outcome: Option<TcpOutcome>,
}

impl<'m> TcpEchoClient<'m> {
    /// Create the client's socket in `sockets`, over the buffers of `storage`.
    pub fn new<'a, const RX: usize, const TX: usize>(
        config: TcpClientConfig,
        storage: &'a mut TcpClientStorage<RX, TX>,
        sockets: &mut Sockets<'a>,
    ) -> Result<Self, Error> {
        if RX == 0 || TX == 0 {
            return Err(Error::BufferTooSmall);
        }
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(&mut storage.rx[..]),
            tcp::SocketBuffer::new(&mut storage.tx[..]),
        );
        socket.set_nagle_enabled(false);
        let handle = sockets.add(socket)?;
        Ok(Self {
            handle,
            config,
            message: TcpClientConfig::DEFAULT_MESSAGE,
            state: TcpClientState::Idle,
            started: Instant::ZERO,
            connected: Instant::ZERO,
            sent: 0,
            verified: 0,
            outcome: None,
        })
    }

    /// Start a run: connect from `local_port` to `remote` and echo `message`. A run still in
    /// progress is aborted first.
    pub fn connect(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        remote: IpEndpoint,
        local_port: u16,
        message: &'m [u8],
    ) -> Result<(), Error> {
        if remote.port == 0 || local_port == 0 {
            return Err(Error::InvalidPort);
        }
        let socket = find_mut::<tcp::Socket>(sockets, self.handle).ok_or(Error::SocketMissing)?;
        if socket.is_open() {
            socket.abort();
        }
        socket
            .connect(iface.context(), remote, local_port)
            .map_err(|_| Error::Connect)?;
        self.message = message;
        self.state = TcpClientState::Connecting;
        self.started = now;
        self.connected = now;
        self.sent = 0;
        self.verified = 0;
        self.outcome = None;
        Ok(())
    }

    /// Whether no run is in progress: none started yet, or the last one ended (see
    /// [`outcome`](Self::outcome)) and its close handshake is over.
    pub fn is_idle(&self) -> bool {
        self.state == TcpClientState::Idle
    }

    /// The outcome of the last run, once it ended.
    pub fn outcome(&self) -> Option<TcpOutcome> {
        self.outcome
    }

    /// Bytes of the echo verified so far in this run.
    pub fn verified(&self) -> usize {
        self.verified
    }

    /// The client's socket handle.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// When the client needs service without network activity (its timeout).
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            TcpClientState::Idle => None,
            _ => Some(later(self.started, self.config.timeout)),
        }
    }

    /// Advance the run: send, verify, close. Returns whether anything progressed.
    pub fn service(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        if self.state == TcpClientState::Idle {
            return false;
        }
        let Some(socket) = find_mut::<tcp::Socket>(sockets, self.handle) else {
            return self.finish(TcpOutcome::Reset);
        };
        let mut progressed = false;
        if self.state == TcpClientState::Connecting {
            match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {}
                tcp::State::Closed => return self.finish(TcpOutcome::Refused),
                _ => {
                    self.state = TcpClientState::Exchanging;
                    self.connected = now;
                    progressed = true;
                }
            }
        }
        if self.state == TcpClientState::Exchanging {
            progressed |= self.send(socket);
            match self.verify(socket) {
                Ok(moved) => progressed |= moved,
                Err(outcome) => {
                    socket.abort();
                    return self.finish(outcome);
                }
            }
            if self.verified == self.message.len() {
                socket.close();
                self.state = TcpClientState::Closing;
                self.outcome = Some(TcpOutcome::Echoed {
                    connect: elapsed(self.started, self.connected),
                    rtt: elapsed(self.connected, now),
                    bytes: self.verified,
                });
                progressed = true;
            } else if socket.state() == tcp::State::Closed {
                return self.finish(TcpOutcome::Reset);
            } else if !socket.may_recv() {
                // The server closed its side before the whole echo came back.
                socket.abort();
                return self.finish(TcpOutcome::Truncated {
                    received: self.verified,
                });
            }
        }
        if self.state == TcpClientState::Closing {
            // The echo is verified; wait for the FIN exchange so the server sees a clean close.
            match socket.state() {
                tcp::State::TimeWait | tcp::State::Closed => {
                    self.state = TcpClientState::Idle;
                    return true;
                }
                _ => {
                    // Drain anything the peer still sends so our window stays open.
                    let _ = socket.recv(|b| (b.len(), ()));
                }
            }
        }
        if self.state != TcpClientState::Idle && now >= later(self.started, self.config.timeout) {
            socket.abort();
            if self.state == TcpClientState::Closing {
                // The echo was complete; only the close was slow. Keep the success.
                self.state = TcpClientState::Idle;
                return true;
            }
            return self.finish(TcpOutcome::TimedOut);
        }
        progressed
    }

    fn finish(&mut self, outcome: TcpOutcome) -> bool {
        self.outcome = Some(outcome);
        self.state = TcpClientState::Idle;
        true
    }

    /// Queue as much of the message as fits.
    fn send(&mut self, socket: &mut tcp::Socket<'_>) -> bool {
        let rest = self.message.get(self.sent..).unwrap_or(&[]);
        if rest.is_empty() || !socket.can_send() {
            return false;
        }
        let n = socket.send_slice(rest).unwrap_or(0);
        self.sent = self.sent.saturating_add(n);
        if self.sent == self.message.len() && self.config.half_close {
            socket.close();
        }
        n > 0
    }

    /// Compare what arrived with the message. Returns whether bytes arrived, or the outcome
    /// that ends the run on a mismatch.
    fn verify(&mut self, socket: &mut tcp::Socket<'_>) -> Result<bool, TcpOutcome> {
        let mut arrived = false;
        while socket.can_recv() {
            let expected = self.message.get(self.verified..).unwrap_or(&[]);
            let checked = socket.recv(|got| {
                let n = got.len().min(expected.len());
                let same = got.iter().zip(expected).take_while(|(a, b)| a == b).count();
                if same < got.len() {
                    // Either a differing byte or bytes past the end of the message.
                    (got.len(), Err(same))
                } else {
                    (n, Ok(n))
                }
            });
            match checked {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => {
                    self.verified = self.verified.saturating_add(n);
                    arrived = true;
                }
                Ok(Err(same)) => {
                    return Err(TcpOutcome::Mismatch {
                        offset: self.verified.saturating_add(same),
                    });
                }
            }
        }
        Ok(arrived)
    }
}
