//! The crate's error type.

use core::fmt;

/// Why a service could not be set up or started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The socket set has no room for the service's sockets.
    SocketSetFull,
    /// Port 0 cannot be listened on or connected to.
    InvalidPort,
    /// A buffer is too small to be useful: less than one byte per slot, or a UDP buffer
    /// that cannot hold one datagram each way.
    BufferTooSmall,
    /// The TCP service was given no slots.
    NoSlots,
    /// smoltcp refused to connect (no route or source address, or the socket is busy).
    Connect,
    /// smoltcp refused to bind the socket.
    Bind,
    /// The service's socket is not in the socket set it was given.
    SocketMissing,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::SocketSetFull => "the socket set has no room left",
            Error::InvalidPort => "port 0 is not a valid service port",
            Error::BufferTooSmall => "a socket buffer is too small",
            Error::NoSlots => "the TCP service has no slots",
            Error::Connect => "smoltcp refused to connect",
            Error::Bind => "smoltcp refused to bind",
            Error::SocketMissing => "the service's socket is not in this socket set",
        })
    }
}

impl core::error::Error for Error {}
