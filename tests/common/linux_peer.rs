//! A scripted TCP peer that talks raw frames on link end B and behaves like the Linux kernel
//! where the liveness of a transfer depends on it (net/ipv4/tcp_input.c, tcp_output.c):
//!
//! - handshake with SACK permitted and window scaling, no timestamps (smoltcp echoes none);
//! - sends in MSS segments within the peer's window and its congestion window (initial 10,
//!   slow start, congestion avoidance, multiplicative decrease on loss);
//! - loss detection from SACK (three SACKed segments above a hole, or RACK's time rule) and
//!   from three duplicate ACKs, and retransmission timeouts with back-off (`srtt + max(4
//!   rttvar, 200 ms)`, doubled per expiry);
//! - **re-cuts retransmissions to the advertised window** (`tcp_retransmit_skb`: a segment
//!   larger than `wnd_end - seq` is split there, so 1460 bytes go out as 1436 + 24), and
//!   window probes fitted to a small window (`tcp_write_wakeup`);
//! - a pure ACK carries `seq = min(snd_nxt, wnd_end)` (`tcp_acceptable_seq`);
//! - on receive, **discards a segment whose sequence is unacceptable, ACK field included**
//!   (`tcp_sequence`: `end_seq` before `rcv_wup`, or `seq` after the window), answering it
//!   with a duplicate ACK, rate-limited to one per 500 ms for pure ACKs
//!   (`tcp_oow_rate_limited`);
//! - ignores old ACKs but still takes the data (`tcp_ack` returns early, `tcp_data_queue`
//!   runs); updates the send window only from newer segments (`tcp_may_update_window`);
//! - delayed ACKs (every second segment or 40 ms), immediate ACKs with up to three SACK blocks
//!   (D-SACK first) for out-of-order and duplicate data.
//!
//! It streams `data`, checks every echoed byte, and records the longest gap between echo
//! progress in simulated time, then closes with FIN. std is fine here: tests only.

use std::collections::{BTreeMap, VecDeque};

use smolecho::sim::{Link, Side};
use smolecho::smoltcp::phy::{ChecksumCapabilities, Device, RxToken, TxToken};
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket,
    TcpRepr, TcpSeqNumber,
};

use super::LINK_FRAMES;

/// A peer that drives link end B itself, for [`World::run_wire`](super::World::run_wire).
pub trait WirePeer {
    /// Receive what end B has, act, transmit. Returns whether anything happened.
    fn step(&mut self, now: Instant, link: &mut Link<LINK_FRAMES>) -> bool;
    /// The next timer.
    fn poll_at(&self) -> Option<Instant>;
    /// Done (the run stops).
    fn finished(&self) -> bool;
}

/// How the peer behaves.
#[derive(Debug, Clone, Copy)]
pub struct PeerConfig {
    pub local_port: u16,
    pub remote_port: u16,
    pub mss: usize,
    /// Our window scale shift (Linux picks 7 for its default buffers).
    pub wscale: u8,
    /// The receive window we advertise (the application reads at once).
    pub rcv_window: usize,
    pub init_cwnd: usize,
    pub min_rto: Duration,
    pub delack: Duration,
    /// Fit retransmissions and probes to the advertised window (Linux). `false`: resend the
    /// original segments whole (a BSD-style sender), for comparison.
    pub recut: bool,
}

impl PeerConfig {
    pub const LINUX: Self = Self {
        local_port: 40000,
        remote_port: super::PORT,
        mss: 1460,
        wscale: 7,
        rcv_window: 6 * 1024 * 1024,
        init_cwnd: 10,
        min_rto: Duration::from_millis(200),
        delack: Duration::from_millis(40),
        recut: true,
    };
}

/// What the peer saw and did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerStats {
    pub segments_sent: u64,
    pub retransmits: u64,
    /// Retransmissions or probes cut at another boundary than the original segment.
    pub recut: u64,
    pub rto_fires: u64,
    pub fast_retransmits: u64,
    /// Segments from the server discarded by the sequence check (ACK field included).
    pub discarded_unacceptable: u64,
    pub dupacks_sent: u64,
    pub probes: u64,
    pub old_acks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Arp,
    SynSent,
    Established,
    Closed,
    /// Both FINs exchanged and acknowledged: later frames are ignored.
    Done,
    Reset,
}

/// One segment in flight, in data offsets of our sequence space (0 = SYN, data byte `i` at
/// `1 + i`, FIN at `1 + len`).
#[derive(Debug, Clone, Copy)]
struct Seg {
    start: u64,
    end: u64,
    sacked: bool,
    /// Marked lost and not yet resent.
    lost: bool,
    retransmitted: bool,
    sent_at: Instant,
}

impl Seg {
    fn in_flight(&self) -> bool {
        !self.sacked && !self.lost
    }
}

pub struct LinuxPeer {
    cfg: PeerConfig,
    mac: EthernetAddress,
    ip: Ipv4Address,
    server_ip: Ipv4Address,
    server_mac: Option<EthernetAddress>,
    data: &'static [u8],
    state: State,
    iss: u32,
    irs: u32,
    arp_at: Instant,
    // Sender.
    snd_una: u64,
    snd_nxt: u64,
    snd_wnd: u64,
    snd_wl1: u64,
    segs: VecDeque<Seg>,
    cwnd: usize,
    ssthresh: usize,
    recovery_until: Option<u64>,
    /// The recovery started with an RTO (Linux's CA_Loss).
    in_loss: bool,
    rack_xmit: Option<Instant>,
    rack_rtt: Duration,
    rack_timer: Option<Instant>,
    dupacks: u32,
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    backoff: u32,
    rto_at: Option<Instant>,
    probe_at: Option<Instant>,
    probe_backoff: u32,
    peer_wscale: u8,
    peer_mss: usize,
    sack_ok: bool,
    fin_sent: bool,
    // Receiver (offsets in the server's sequence space: 1 + echo byte index).
    rcv_nxt: u64,
    rcv_wup: u64,
    rcv_adv: u64,
    ooo: BTreeMap<u64, Vec<u8>>,
    last_ooo: Option<u64>,
    dsack: Option<(u64, u64)>,
    unacked_segs: u32,
    delack_at: Option<Instant>,
    ack_now: bool,
    last_oow_ack: Option<Instant>,
    fin_received: bool,
    // Measurement.
    pub echoed: usize,
    pub mismatch: bool,
    pub stats: PeerStats,
    pub established_at: Option<Instant>,
    pub echo_done_at: Option<Instant>,
    last_progress: Option<Instant>,
    longest_gap: Duration,
    /// When the longest gap started.
    pub longest_gap_from: Option<Instant>,
    now: Instant,
    out: Vec<Vec<u8>>,
    /// Every segment in and out, with the time (when tracing).
    pub trace: Option<Vec<(Instant, String)>>,
    /// When to connect.
    pub start_at: Instant,
}

const SYN_RTO: Duration = Duration::from_secs(1);
const MAX_RTO: Duration = Duration::from_secs(120);
const OOW_RATE: Duration = Duration::from_millis(500);

impl LinuxPeer {
    pub fn new(cfg: PeerConfig, server_ip: Ipv4Address, data: &'static [u8], seed: u32) -> Self {
        Self {
            cfg,
            mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x02]),
            ip: super::CLIENT_V4,
            server_ip,
            server_mac: None,
            data,
            state: State::Arp,
            iss: seed.wrapping_mul(0x9E37_79B9) ^ 0x5EED_0000,
            irs: 0,
            arp_at: Instant::ZERO,
            snd_una: 0,
            snd_nxt: 0,
            snd_wnd: 0,
            snd_wl1: 0,
            segs: VecDeque::new(),
            cwnd: cfg.init_cwnd,
            ssthresh: usize::MAX,
            recovery_until: None,
            in_loss: false,
            rack_xmit: None,
            rack_rtt: Duration::ZERO,
            rack_timer: None,
            dupacks: 0,
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            backoff: 0,
            rto_at: None,
            probe_at: None,
            probe_backoff: 0,
            peer_wscale: 0,
            peer_mss: 536,
            sack_ok: false,
            fin_sent: false,
            rcv_nxt: 0,
            rcv_wup: 0,
            rcv_adv: 0,
            ooo: BTreeMap::new(),
            last_ooo: None,
            dsack: None,
            unacked_segs: 0,
            delack_at: None,
            ack_now: false,
            last_oow_ack: None,
            fin_received: false,
            echoed: 0,
            mismatch: false,
            stats: PeerStats::default(),
            established_at: None,
            echo_done_at: None,
            last_progress: None,
            longest_gap: Duration::ZERO,
            longest_gap_from: None,
            now: Instant::ZERO,
            out: Vec::new(),
            trace: None,
            start_at: Instant::ZERO,
        }
    }

    /// The longest time without echo progress so far, the running gap included.
    pub fn longest_gap(&self, now: Instant) -> Duration {
        let running = match (self.last_progress, self.echo_done_at) {
            (Some(last), None) if now > last => now - last,
            _ => Duration::ZERO,
        };
        self.longest_gap.max(running)
    }

    pub fn was_reset(&self) -> bool {
        self.state == State::Reset
    }

    pub fn echo_complete(&self) -> bool {
        self.echo_done_at.is_some()
    }

    fn data_end(&self) -> u64 {
        1 + self.data.len() as u64
    }

    fn wnd_end(&self) -> u64 {
        self.snd_una + self.snd_wnd
    }

    fn rto(&self) -> Duration {
        let base = match self.srtt {
            Some(srtt) => srtt + (self.rttvar * 4).max(self.cfg.min_rto),
            None => SYN_RTO,
        };
        (base * (1u32 << self.backoff.min(10))).min(MAX_RTO)
    }

    /// tcp_current_mss: the peer's MSS less the SACK blocks we would send now.
    fn cur_mss(&self) -> usize {
        let blocks = self.sack_blocks().iter().flatten().count();
        let options = if blocks > 0 {
            (2 + 8 * blocks).div_ceil(4) * 4
        } else {
            0
        };
        self.peer_mss - options
    }

    fn in_flight(&self) -> usize {
        self.segs.iter().filter(|s| s.in_flight()).count()
    }

    // ---- wire helpers ----

    fn snd_abs(&self, wire: TcpSeqNumber) -> u64 {
        let reference = self.iss.wrapping_add(self.snd_una as u32);
        let diff = (wire.0 as u32).wrapping_sub(reference) as i32;
        (self.snd_una as i64 + i64::from(diff)).max(0) as u64
    }

    fn rcv_abs(&self, wire: TcpSeqNumber) -> u64 {
        let reference = self.irs.wrapping_add(self.rcv_nxt as u32);
        let diff = (wire.0 as u32).wrapping_sub(reference) as i32;
        (self.rcv_nxt as i64 + i64::from(diff)).max(0) as u64
    }

    fn frame(&mut self, dst: EthernetAddress, ethertype: EthernetProtocol, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; 14 + len];
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
        EthernetRepr {
            src_addr: self.mac,
            dst_addr: dst,
            ethertype,
        }
        .emit(&mut eth);
        buf
    }

    fn send_arp(&mut self, operation: ArpOperation, target_mac: EthernetAddress) {
        let repr = ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: self.mac,
            source_protocol_addr: self.ip,
            target_hardware_addr: target_mac,
            target_protocol_addr: self.server_ip,
        };
        let dst = if operation == ArpOperation::Request {
            EthernetAddress::BROADCAST
        } else {
            target_mac
        };
        let mut buf = self.frame(dst, EthernetProtocol::Arp, repr.buffer_len());
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
        self.out.push(buf);
    }

    /// Emit one TCP segment; every segment carries our current ACK and window.
    fn emit(&mut self, control: TcpControl, seq: u64, payload: &[u8], syn_options: bool) {
        let Some(dst_mac) = self.server_mac else {
            return;
        };
        let window = self.advertised_window();
        let sack_ranges = if self.sack_ok && self.state == State::Established {
            self.sack_blocks()
        } else {
            [None, None, None]
        };
        let repr = TcpRepr {
            src_port: self.cfg.local_port,
            dst_port: self.cfg.remote_port,
            control,
            seq_number: TcpSeqNumber(self.iss.wrapping_add(seq as u32) as i32),
            ack_number: (self.state != State::SynSent)
                .then(|| TcpSeqNumber(self.irs.wrapping_add(self.rcv_nxt as u32) as i32)),
            window_len: if syn_options {
                65535
            } else {
                (window >> self.cfg.wscale).min(65535) as u16
            },
            window_scale: syn_options.then_some(self.cfg.wscale),
            max_seg_size: syn_options.then_some(self.cfg.mss as u16),
            sack_permitted: syn_options,
            sack_ranges,
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: self.ip,
            dst_addr: self.server_ip,
            next_header: IpProtocol::Tcp,
            payload_len: repr.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = self.frame(
            dst_mac,
            EthernetProtocol::Ipv4,
            ip.buffer_len() + repr.buffer_len(),
        );
        let caps = ChecksumCapabilities::default();
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[14..]);
        ip.emit(&mut packet, &caps);
        let mut tcp = TcpPacket::new_unchecked(packet.payload_mut());
        repr.emit(
            &mut tcp,
            &IpAddress::Ipv4(self.ip),
            &IpAddress::Ipv4(self.server_ip),
            &caps,
        );
        self.out.push(buf);
        self.stats.segments_sent += 1;
        if self.trace.is_some() {
            let line = format!(
                "-> {:?} seq {} len {} ack {} win {} sack {:?} (una {} nxt {} wnd_end {} cwnd {} inflight {} rto {})",
                control,
                seq,
                payload.len(),
                self.rcv_nxt,
                window,
                self.sack_rel(&sack_ranges),
                self.snd_una,
                self.snd_nxt,
                self.wnd_end(),
                self.cwnd,
                self.in_flight(),
                self.rto()
            );
            let now = self.now;
            if let Some(trace) = &mut self.trace {
                trace.push((now, line));
            }
        }
        if self.state == State::Established {
            // tcp_select_window: what we advertise now is what we check against.
            self.rcv_wup = self.rcv_nxt;
            self.rcv_adv =
                self.rcv_nxt + ((window >> self.cfg.wscale).min(65535) << self.cfg.wscale) as u64;
            self.unacked_segs = 0;
            self.delack_at = None;
            self.ack_now = false;
            self.dsack = None;
        }
    }

    fn advertised_window(&self) -> usize {
        let held: usize = self.ooo.values().map(|v| v.len()).sum();
        self.cfg.rcv_window.saturating_sub(held)
    }

    fn sack_blocks(&self) -> [Option<(u32, u32)>; 3] {
        let wire = |a: u64| self.irs.wrapping_add(a as u32);
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        if let Some(d) = self.dsack {
            blocks.push(d);
        }
        // Coalesced out-of-order ranges, the most recent one first.
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (&s, v) in &self.ooo {
            let e = s + v.len() as u64;
            match ranges.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => ranges.push((s, e)),
            }
        }
        if let Some(recent) = self.last_ooo
            && let Some(i) = ranges.iter().position(|r| r.0 <= recent && recent < r.1)
        {
            let r = ranges.remove(i);
            ranges.insert(0, r);
        }
        blocks.extend(ranges);
        let mut out = [None, None, None];
        for (slot, b) in out.iter_mut().zip(blocks) {
            *slot = Some((wire(b.0), wire(b.1)));
        }
        out
    }

    // ---- receive ----

    fn receive(&mut self, frame: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                let Ok(packet) = ArpPacket::new_checked(eth.payload()) else {
                    return;
                };
                if let Ok(ArpRepr::EthernetIpv4 {
                    operation,
                    source_hardware_addr,
                    source_protocol_addr,
                    target_protocol_addr,
                    ..
                }) = ArpRepr::parse(&packet)
                    && source_protocol_addr == self.server_ip
                {
                    self.server_mac = Some(source_hardware_addr);
                    if operation == ArpOperation::Request && target_protocol_addr == self.ip {
                        self.send_arp(ArpOperation::Reply, source_hardware_addr);
                    }
                }
            }
            EthernetProtocol::Ipv4 => {
                let caps = ChecksumCapabilities::default();
                let Ok(packet) = Ipv4Packet::new_checked(eth.payload()) else {
                    return;
                };
                let Ok(ip) = Ipv4Repr::parse(&packet, &caps) else {
                    return;
                };
                if ip.next_header != IpProtocol::Tcp || ip.dst_addr != self.ip {
                    return;
                }
                let Ok(tcp) = TcpPacket::new_checked(packet.payload()) else {
                    return;
                };
                let Ok(repr) = TcpRepr::parse(
                    &tcp,
                    &IpAddress::Ipv4(ip.src_addr),
                    &IpAddress::Ipv4(ip.dst_addr),
                    &caps,
                ) else {
                    return;
                };
                if repr.dst_port == self.cfg.local_port && repr.src_port == self.cfg.remote_port {
                    self.segment(&repr);
                }
            }
            _ => {}
        }
    }

    fn segment(&mut self, repr: &TcpRepr) {
        let now = self.now;
        match self.state {
            State::SynSent => {
                if repr.control == TcpControl::Rst {
                    self.state = State::Reset;
                    return;
                }
                let Some(ack) = repr.ack_number else { return };
                if repr.control != TcpControl::Syn || ack.0 as u32 != self.iss.wrapping_add(1) {
                    return;
                }
                self.irs = repr.seq_number.0 as u32;
                self.rcv_nxt = 1;
                self.rcv_wup = 1;
                self.snd_una = 1;
                self.snd_nxt = 1;
                self.peer_wscale = repr.window_scale.unwrap_or(0);
                if repr.window_scale.is_none() {
                    self.cfg.wscale = 0;
                }
                self.sack_ok = repr.sack_permitted;
                self.peer_mss = repr.max_seg_size.map_or(536, usize::from).min(self.cfg.mss);
                self.snd_wnd = u64::from(repr.window_len);
                self.snd_wl1 = 1;
                self.segs.clear();
                self.rto_at = None;
                self.backoff = 0;
                self.state = State::Established;
                self.established_at = Some(now);
                self.last_progress = Some(now);
                self.emit(TcpControl::None, self.snd_nxt, &[], false);
            }
            State::Established | State::Closed => self.established(repr),
            _ => {}
        }
    }

    fn sack_rel(&self, ranges: &[Option<(u32, u32)>; 3]) -> Vec<(i64, i64)> {
        ranges
            .iter()
            .flatten()
            .map(|(l, r)| {
                (
                    i64::from(l.wrapping_sub(self.irs) as i32),
                    i64::from(r.wrapping_sub(self.irs) as i32),
                )
            })
            .collect()
    }

    fn established(&mut self, repr: &TcpRepr) {
        let now = self.now;
        if self.trace.is_some() {
            let sacks: Vec<(i64, i64)> = repr
                .sack_ranges
                .iter()
                .flatten()
                .map(|(l, r)| {
                    (
                        i64::from(l.wrapping_sub(self.iss) as i32),
                        i64::from(r.wrapping_sub(self.iss) as i32),
                    )
                })
                .collect();
            let line = format!(
                "<- {:?} seq {} len {} ack {} win {} sack {:?}",
                repr.control,
                self.rcv_abs(repr.seq_number),
                repr.payload.len(),
                repr.ack_number.map_or(0, |a| self.snd_abs(a)),
                u64::from(repr.window_len) << self.peer_wscale,
                sacks
            );
            if let Some(trace) = &mut self.trace {
                trace.push((now, line));
            }
        }
        let fin = repr.control == TcpControl::Fin;
        let seq = self.rcv_abs(repr.seq_number);
        let end = seq + repr.payload.len() as u64 + u64::from(fin);
        // tcp_sequence (via tcp_validate_incoming): the whole segment, ACK included.
        if end < self.rcv_wup || seq > self.rcv_adv.max(self.rcv_nxt) {
            self.stats.discarded_unacceptable += 1;
            if repr.control != TcpControl::Rst {
                let pure = seq == end;
                let limited = pure && self.last_oow_ack.is_some_and(|t| now < t + OOW_RATE);
                if !limited {
                    if pure {
                        self.last_oow_ack = Some(now);
                    } else if seq < self.rcv_nxt && self.sack_ok {
                        self.dsack = Some((seq, end.min(self.rcv_nxt)));
                    }
                    self.stats.dupacks_sent += 1;
                    self.ack_now = true;
                }
            }
            return;
        }
        if repr.control == TcpControl::Rst {
            self.state = State::Reset;
            return;
        }
        if repr.control == TcpControl::Syn {
            return;
        }
        let Some(ack) = repr.ack_number else { return };
        if !self.ack(repr, self.snd_abs(ack), seq) {
            return;
        }
        self.data(seq, repr.payload, fin);
    }

    /// tcp_ack. Returns false when the segment must be dropped (ACK of unsent data).
    fn ack(&mut self, repr: &TcpRepr, ack: u64, seq: u64) -> bool {
        let now = self.now;
        if ack > self.snd_nxt {
            return false;
        }
        let nwin = u64::from(repr.window_len) << self.peer_wscale;
        if ack < self.snd_una {
            self.stats.old_acks += 1;
            let _ = self.sack(repr);
            return true;
        }
        let window_update = nwin != self.snd_wnd;
        // tcp_may_update_window.
        if ack > self.snd_una
            || seq > self.snd_wl1
            || (seq == self.snd_wl1 && (nwin > self.snd_wnd || nwin == 0))
        {
            self.snd_wnd = nwin;
            self.snd_wl1 = seq;
        }
        let (newly_sacked, newly_sacked_sent) = self.sack(repr);
        if ack > self.snd_una {
            let acked = ack - self.snd_una;
            self.snd_una = ack;
            let mut acked_segs = 0usize;
            // tcp_clean_rtx_queue: an RTT sample from the oldest newly acknowledged segment,
            // none if the ACK also covers a retransmission (Karn).
            let mut first_sent: Option<Instant> = None;
            let mut delivered = Vec::new();
            let mut retrans_acked = false;
            while let Some(front) = self.segs.front_mut() {
                if front.end <= ack {
                    let (sent_at, retransmitted) = (front.sent_at, front.retransmitted);
                    delivered.push((sent_at, retransmitted));
                    if front.retransmitted {
                        retrans_acked = true;
                    } else if !front.sacked && first_sent.is_none() {
                        first_sent = Some(front.sent_at);
                    }
                    acked_segs += 1;
                    self.segs.pop_front();
                } else {
                    if front.start < ack {
                        front.start = ack;
                    }
                    break;
                }
            }
            let _ = acked;
            for (sent_at, retransmitted) in delivered {
                self.rack_delivered(sent_at, retransmitted);
            }
            if let Some(sent) = first_sent
                && !retrans_acked
            {
                self.rtt_sample(now - sent);
            } else if let Some(sent) = newly_sacked_sent {
                self.rtt_sample(now - sent);
            }
            self.dupacks = 0;
            self.backoff = 0;
            self.probe_backoff = 0;
            self.rto_at = if self.segs.is_empty() {
                None
            } else {
                Some(now + self.rto())
            };
            match self.recovery_until {
                Some(point) if ack >= point => {
                    self.recovery_until = None;
                    self.in_loss = false;
                }
                // Fast recovery holds cwnd at ssthresh; after an RTO (loss state) cwnd
                // grows by slow start.
                Some(_) if !self.in_loss => {}
                _ => {
                    if self.cwnd < self.ssthresh {
                        self.cwnd += acked_segs.max(1);
                    } else {
                        self.cwnd += acked_segs.max(1).div_ceil(self.cwnd);
                    }
                }
            }
        } else if repr.payload.is_empty()
            && repr.control == TcpControl::None
            && !window_update
            && self.snd_nxt > self.snd_una
        {
            self.dupacks += 1;
        }
        let _ = newly_sacked;
        self.detect_loss();
        true
    }

    fn rtt_sample(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let err = if rtt > srtt { rtt - srtt } else { srtt - rtt };
                self.rttvar = (self.rttvar * 3 + err) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// Mark SACKed segments; returns whether any became SACKed, and the oldest transmission
    /// time among newly SACKed segments never retransmitted (for an RTT sample).
    fn sack(&mut self, repr: &TcpRepr) -> (bool, Option<Instant>) {
        if !self.sack_ok {
            return (false, None);
        }
        let mut any = false;
        let mut first: Option<Instant> = None;
        let mut sacked_now = Vec::new();
        for (l, r) in repr.sack_ranges.iter().flatten() {
            let l = self.snd_abs(TcpSeqNumber(*l as i32));
            let r = self.snd_abs(TcpSeqNumber(*r as i32));
            if r <= self.snd_una || r > self.snd_nxt || l >= r {
                continue; // D-SACK or junk
            }
            for seg in self.segs.iter_mut() {
                if seg.start >= l && seg.end <= r && !seg.sacked {
                    seg.sacked = true;
                    seg.lost = false;
                    any = true;
                    if !seg.retransmitted {
                        first = Some(first.map_or(seg.sent_at, |f: Instant| f.min(seg.sent_at)));
                    }
                    sacked_now.push((seg.sent_at, seg.retransmitted));
                }
            }
        }
        for (sent_at, retransmitted) in sacked_now {
            self.rack_delivered(sent_at, retransmitted);
        }
        (any, first)
    }

    /// RACK (tcp_recovery.c): a segment is lost once a segment sent after it was delivered
    /// and it has been out for `RACK.rtt + reo_wnd` (`reo_wnd = min_rtt / 4`, reordering
    /// seen); otherwise the reorder timer waits for that. Without SACK, three duplicate ACKs
    /// mark the head lost (NewReno).
    fn detect_loss(&mut self) {
        let now = self.now;
        let mut newly_lost = false;
        let reo_wnd = self.min_rtt.map_or(Duration::from_millis(1), |m| {
            (m / 4).min(self.srtt.unwrap_or(m))
        });
        self.rack_timer = None;
        if let Some(rack_xmit) = self.rack_xmit {
            let wait = self.rack_rtt + reo_wnd;
            for seg in self.segs.iter_mut() {
                if seg.sacked || seg.lost || seg.sent_at >= rack_xmit {
                    continue;
                }
                if now >= seg.sent_at + wait {
                    seg.lost = true;
                    newly_lost = true;
                } else {
                    let at = seg.sent_at + wait;
                    self.rack_timer = Some(self.rack_timer.map_or(at, |t: Instant| t.min(at)));
                }
            }
        }
        if !self.sack_ok
            && self.dupacks == 3
            && let Some(head) = self.segs.front_mut()
        {
            head.lost = true;
            newly_lost = true;
        }
        if newly_lost && self.recovery_until.is_none() {
            self.stats.fast_retransmits += 1;
            self.ssthresh = (self.cwnd * 7 / 10).max(2);
            self.cwnd = self.ssthresh;
            self.recovery_until = Some(self.snd_nxt);
        }
    }

    /// A segment sent at `sent_at` was delivered: advance RACK.
    fn rack_delivered(&mut self, sent_at: Instant, retransmitted: bool) {
        let rtt = self.now - sent_at;
        // A retransmission delivered faster than min_rtt was the original's delivery.
        if retransmitted && self.min_rtt.is_some_and(|m| rtt < m) {
            return;
        }
        if self.rack_xmit.is_none_or(|x| sent_at > x) {
            self.rack_xmit = Some(sent_at);
            self.rack_rtt = rtt;
        }
    }

    fn data(&mut self, seq: u64, payload: &[u8], fin: bool) {
        let now = self.now;
        let end = seq + payload.len() as u64;
        if !payload.is_empty() {
            if end <= self.rcv_nxt {
                // Entirely old: D-SACK and an immediate ACK.
                self.dsack = Some((seq, end));
                self.ack_now = true;
            } else if seq <= self.rcv_nxt {
                let fresh = &payload[(self.rcv_nxt - seq) as usize..];
                if seq < self.rcv_nxt {
                    self.dsack = Some((seq, self.rcv_nxt));
                    self.ack_now = true;
                }
                self.accept(fresh);
                let had_ooo = !self.ooo.is_empty();
                self.drain_ooo();
                if had_ooo {
                    self.ack_now = true;
                }
                self.unacked_segs += 1;
                if self.unacked_segs >= 2 {
                    self.ack_now = true;
                } else if self.delack_at.is_none() {
                    self.delack_at = Some(now + self.cfg.delack);
                }
            } else {
                if seq < self.rcv_adv {
                    self.ooo.entry(seq).or_insert_with(|| payload.to_vec());
                    self.last_ooo = Some(seq);
                }
                self.ack_now = true;
            }
        }
        if fin && !self.fin_received && end == self.rcv_nxt {
            self.fin_received = true;
            self.rcv_nxt += 1;
            self.ack_now = true;
        }
    }

    fn accept(&mut self, fresh: &[u8]) {
        let offset = self.echoed;
        let expected = self.data.get(offset..offset + fresh.len());
        if expected != Some(fresh) {
            self.mismatch = true;
        }
        self.echoed += fresh.len();
        self.rcv_nxt += fresh.len() as u64;
        if !fresh.is_empty() {
            self.progress();
        }
    }

    fn progress(&mut self) {
        let now = self.now;
        if let Some(last) = self.last_progress
            && now - last > self.longest_gap
        {
            self.longest_gap = now - last;
            self.longest_gap_from = Some(last);
        }
        self.last_progress = Some(now);
        if self.echoed >= self.data.len() && self.echo_done_at.is_none() {
            self.echo_done_at = Some(now);
        }
    }

    fn drain_ooo(&mut self) {
        while let Some((&s, _)) = self.ooo.first_key_value() {
            if s > self.rcv_nxt {
                break;
            }
            let v = self.ooo.remove(&s).unwrap_or_default();
            let e = s + v.len() as u64;
            if e > self.rcv_nxt {
                let fresh = v[(self.rcv_nxt - s) as usize..].to_vec();
                self.accept(&fresh);
            }
        }
        if self.ooo.is_empty() {
            self.last_ooo = None;
        }
    }

    // ---- transmit ----

    fn payload(&self, start: u64, end: u64) -> &'static [u8] {
        let data = self.data;
        &data[(start - 1) as usize..(end - 1) as usize]
    }

    fn send_seg(&mut self, start: u64, end: u64) {
        let fin = end == self.data_end() + 1;
        let data_end = end.min(self.data_end());
        let payload = if start < data_end {
            self.payload(start, data_end)
        } else {
            &[]
        };
        let control = if fin {
            TcpControl::Fin
        } else if data_end == self.data_end() {
            TcpControl::Psh
        } else {
            TcpControl::None
        };
        self.emit(control, start, payload, false);
    }

    fn transmit(&mut self) {
        let now = self.now;
        if self.state != State::Established && self.state != State::Closed {
            return;
        }
        if self.rack_timer.is_some_and(|t| now >= t) {
            self.detect_loss();
        }
        // RTO.
        if let Some(at) = self.rto_at
            && now >= at
            && !self.segs.is_empty()
        {
            self.stats.rto_fires += 1;
            self.ssthresh = (self.in_flight() / 2).max(2);
            self.cwnd = 1;
            for seg in self.segs.iter_mut() {
                if !seg.sacked {
                    seg.lost = true;
                }
            }
            self.recovery_until = Some(self.snd_nxt);
            self.in_loss = true;
            self.backoff += 1;
            self.rto_at = Some(now + self.rto());
        }
        // Lost segments first, fitted to the window (tcp_retransmit_skb).
        let mut i = 0;
        while i < self.segs.len() && self.in_flight() < self.cwnd {
            let seg = self.segs[i];
            if !seg.lost {
                i += 1;
                continue;
            }
            let mss = self.cur_mss();
            let wnd_end = self.wnd_end();
            let mut avail = wnd_end.saturating_sub(seg.start) as usize;
            if avail == 0 {
                if seg.start != self.snd_una {
                    break;
                }
                avail = mss;
            }
            let len = (seg.end - seg.start) as usize;
            let take = len.min(mss).min(if self.cfg.recut { avail } else { len });
            if (take as u64) < seg.end - seg.start {
                let mut rest = seg;
                rest.start = seg.start + take as u64;
                self.segs[i].end = rest.start;
                self.segs.insert(i + 1, rest);
                self.stats.recut += 1;
            }
            let s = self.segs[i];
            self.send_seg(s.start, s.end);
            let sent = &mut self.segs[i];
            sent.lost = false;
            sent.retransmitted = true;
            sent.sent_at = now;
            self.stats.retransmits += 1;
            if self.rto_at.is_none() {
                self.rto_at = Some(now + self.rto());
            }
            i += 1;
        }
        // New data: whole MSS segments that fit the window (tcp_snd_wnd_test).
        while self.snd_nxt < self.data_end() && self.in_flight() < self.cwnd {
            let len = (self.data_end() - self.snd_nxt).min(self.cur_mss() as u64);
            if self.snd_nxt + len > self.wnd_end() {
                break;
            }
            let (start, end) = (self.snd_nxt, self.snd_nxt + len);
            self.send_seg(start, end);
            self.segs.push_back(Seg {
                start,
                end,
                sacked: false,
                lost: false,
                retransmitted: false,
                sent_at: now,
            });
            self.snd_nxt = end;
            if self.rto_at.is_none() {
                self.rto_at = Some(now + self.rto());
            }
        }
        // FIN once everything is echoed.
        if !self.fin_sent
            && self.echo_complete()
            && self.snd_una == self.data_end()
            && self.snd_nxt == self.data_end()
        {
            let start = self.snd_nxt;
            self.send_seg(start, start + 1);
            self.segs.push_back(Seg {
                start,
                end: start + 1,
                sacked: false,
                lost: false,
                retransmitted: false,
                sent_at: now,
            });
            self.snd_nxt += 1;
            self.fin_sent = true;
            self.state = State::Closed;
            self.rto_at = Some(now + self.rto());
        }
        // Window probes: data waiting, nothing in flight, the window too small for it.
        if self.segs.is_empty() && self.snd_nxt < self.data_end() {
            match self.probe_at {
                None => self.probe_at = Some(now + self.rto()),
                Some(at) if now >= at => {
                    self.stats.probes += 1;
                    let room = self.wnd_end().saturating_sub(self.snd_nxt);
                    if room > 0 {
                        // tcp_write_wakeup: send what fits.
                        let len = room
                            .min(self.cur_mss() as u64)
                            .min(self.data_end() - self.snd_nxt);
                        let (start, end) = (self.snd_nxt, self.snd_nxt + len);
                        self.stats.recut += 1;
                        self.send_seg(start, end);
                        self.segs.push_back(Seg {
                            start,
                            end,
                            sacked: false,
                            lost: false,
                            retransmitted: false,
                            sent_at: now,
                        });
                        self.snd_nxt = end;
                        self.rto_at = Some(now + self.rto());
                        self.probe_at = None;
                    } else {
                        // tcp_xmit_probe_skb: an old sequence number, no data.
                        self.emit(TcpControl::None, self.snd_una - 1, &[], false);
                        self.probe_backoff += 1;
                        let wait = (self.rto() * (1u32 << self.probe_backoff.min(10))).min(MAX_RTO);
                        self.probe_at = Some(now + wait);
                    }
                }
                Some(_) => {}
            }
        } else {
            self.probe_at = None;
        }
        // A pure ACK when one is due and nothing carried it.
        let due = self.ack_now || self.delack_at.is_some_and(|t| now >= t);
        if due {
            let seq = self.snd_nxt.min(self.wnd_end().max(self.snd_una));
            self.emit(TcpControl::None, seq, &[], false);
        }
    }
}

impl LinuxPeer {
    /// Act on the clock: connect (at `start_at`), retransmit, send. Frames go to `out`.
    fn act(&mut self, now: Instant) {
        self.now = now;
        match self.state {
            State::Arp if now < self.start_at => {}
            State::Arp => {
                if self.server_mac.is_some() {
                    self.state = State::SynSent;
                    self.emit(TcpControl::Syn, 0, &[], true);
                    self.snd_nxt = 1;
                    self.rto_at = Some(now + SYN_RTO);
                } else if now >= self.arp_at {
                    self.send_arp(ArpOperation::Request, EthernetAddress([0; 6]));
                    self.arp_at = now + Duration::from_secs(1);
                }
            }
            State::SynSent => {
                if self.rto_at.is_some_and(|t| now >= t) {
                    self.backoff += 1;
                    self.emit(TcpControl::Syn, 0, &[], true);
                    self.rto_at = Some(now + self.rto());
                }
            }
            State::Done | State::Reset => {}
            _ => {
                self.transmit();
                if self.state == State::Closed && self.fin_received && self.segs.is_empty() {
                    self.state = State::Done;
                    self.rto_at = None;
                }
            }
        }
    }

    /// Whether `frame` is for this peer's connection (TCP to its port), or ARP.
    fn wants(&self, frame: &[u8]) -> bool {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return false;
        };
        if eth.ethertype() == EthernetProtocol::Arp {
            return true;
        }
        Ipv4Packet::new_checked(eth.payload())
            .ok()
            .filter(|ip| ip.next_header() == IpProtocol::Tcp)
            .and_then(|ip| {
                TcpPacket::new_checked(ip.payload())
                    .ok()
                    .map(|t| t.dst_port())
            })
            == Some(self.cfg.local_port)
    }
}

fn receive_all(now: Instant, link: &mut Link<LINK_FRAMES>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut end = link.end(Side::B);
    while let Some((rx, _)) = end.receive(now) {
        rx.consume(|f| frames.push(f.to_vec()));
    }
    frames
}

fn transmit_all(now: Instant, link: &mut Link<LINK_FRAMES>, out: &mut Vec<Vec<u8>>) {
    let mut end = link.end(Side::B);
    for f in out.drain(..) {
        if let Some(token) = end.transmit(now) {
            token.consume(f.len(), |buf| buf.copy_from_slice(&f));
        }
    }
}

impl WirePeer for LinuxPeer {
    fn step(&mut self, now: Instant, link: &mut Link<LINK_FRAMES>) -> bool {
        self.now = now;
        let frames = receive_all(now, link);
        let got = !frames.is_empty();
        for f in &frames {
            self.receive(f);
        }
        self.act(now);
        let sent = !self.out.is_empty();
        transmit_all(now, link, &mut self.out);
        got || sent
    }

    fn poll_at(&self) -> Option<Instant> {
        [
            self.rto_at,
            self.rack_timer,
            self.delack_at,
            self.probe_at,
            (self.state == State::Arp).then_some(self.arp_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn finished(&self) -> bool {
        match self.state {
            State::Reset | State::Done => true,
            State::Closed => self.fin_received && self.segs.is_empty(),
            _ => false,
        }
    }
}

/// Many peers on one link end, each on its own local port (all with the same addresses, as
/// many connections from one host). Frames are handed to the peer whose port they are for;
/// ARP to every peer, only the first of which answers.
pub struct PeerGroup {
    pub peers: Vec<LinuxPeer>,
}

impl WirePeer for PeerGroup {
    fn step(&mut self, now: Instant, link: &mut Link<LINK_FRAMES>) -> bool {
        let frames = receive_all(now, link);
        let got = !frames.is_empty();
        for f in &frames {
            let arp = EthernetFrame::new_checked(&f[..])
                .is_ok_and(|eth| eth.ethertype() == EthernetProtocol::Arp);
            for (i, peer) in self.peers.iter_mut().enumerate() {
                if peer.wants(f) {
                    peer.now = now;
                    let before = peer.out.len();
                    peer.receive(f);
                    if arp && i > 0 {
                        // One answer to an ARP request is enough.
                        peer.out.truncate(before);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for peer in &mut self.peers {
            peer.act(now);
            out.append(&mut peer.out);
        }
        let sent = !out.is_empty();
        transmit_all(now, link, &mut out);
        got || sent
    }

    fn poll_at(&self) -> Option<Instant> {
        self.peers
            .iter()
            .filter_map(|p| {
                let start = (p.state == State::Arp).then_some(p.start_at.max(p.arp_at));
                [p.poll_at(), start].into_iter().flatten().min()
            })
            .min()
    }

    fn finished(&self) -> bool {
        self.peers.iter().all(LinuxPeer::finished)
    }
}
