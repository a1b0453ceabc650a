//! Service counters. All of them wrap on overflow instead of panicking.

/// Counters of the TCP echo server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpCounters {
    /// Connections whose handshake completed.
    pub accepted: u64,
    /// Connections ended with a FIN exchange after everything was echoed.
    pub closed: u64,
    /// Connections ended by an RST from the peer.
    pub reset: u64,
    /// Connections aborted by the idle timeout.
    pub timed_out: u64,
    /// Idle holders (connections that never sent a byte) aborted to make room for a new
    /// client when no slot was free.
    pub evicted: u64,
    /// Half-open connections dropped by the handshake timeout.
    pub handshake_timeouts: u64,
    /// SYNs held back (not answered) because every slot was busy, with `Overflow::Defer`.
    pub held_syns: u64,
    /// SYNs answered with RST because every slot was busy, with `Overflow::Refuse`.
    pub refused: u64,
    /// Half-open slots recycled for a new SYN when no listener was free (SYN-flood defence).
    pub half_open_recycled: u64,
    /// Losses the peer reported with SACK blocks, for which smoltcp was made to retransmit at
    /// once instead of after its 1 s minimum timeout.
    pub sack_recoveries: u64,
    /// Data segments that arrived with an older ACK than their sender had already sent (a
    /// reordering link), handed to smoltcp with the newest one so it keeps their data.
    pub stale_acks: u64,
    /// Bytes taken from receive buffers.
    pub bytes_in: u64,
    /// Bytes queued into transmit buffers.
    pub bytes_out: u64,
}

impl TcpCounters {
    /// Connections accepted and not yet ended: `accepted - ended`.
    pub fn active(&self) -> u64 {
        self.accepted.wrapping_sub(self.ended())
    }

    /// Every connection that ended, whatever the reason.
    pub fn ended(&self) -> u64 {
        self.closed
            .wrapping_add(self.reset)
            .wrapping_add(self.timed_out)
            .wrapping_add(self.evicted)
    }
}

/// Counters of the UDP echo server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UdpCounters {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams echoed back.
    pub datagrams_out: u64,
    /// Datagrams received but not echoed: no room in the transmit buffer, or larger than the
    /// service's scratch buffer. Datagrams smoltcp discards because the *receive* buffer is
    /// full never reach the service and are not counted (smoltcp does not report them).
    pub dropped: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes echoed.
    pub bytes_out: u64,
    /// Times the transmit queue was discarded because it sent nothing for
    /// 250 ms (replies to a sender that never resolves).
    pub tx_flushes: u64,
}

/// `*c += by`, wrapping.
pub(crate) fn bump(c: &mut u64, by: u64) {
    *c = c.wrapping_add(by);
}
