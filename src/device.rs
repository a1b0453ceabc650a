//! The phy-layer wrappers the node puts in front of the caller's device.
//!
//! - [`Gate`] shows every received frame to [`Admission`] before smoltcp sees it, and hands
//!   smoltcp an empty buffer instead of a frame that admission holds (every medium rejects an
//!   empty frame as truncated before it reaches any state). A frame that reports a loss
//!   through its SACK blocks also leaves a duplicate ACK to replay ([`recovery`]).
//! - [`Replay`] hands the interface one saved frame (a held SYN), answering through the real
//!   device.

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::admission::{Admission, Verdict};
use crate::recovery::{self, DupAck};
use crate::tcp_server::TcpSlot;
use crate::wire::{self, TcpInFrame};

/// A device whose received frames pass through admission, for one frame at a time.
pub(crate) struct Gate<'g, 'a, D: ?Sized> {
    inner: &'g mut D,
    admission: &'g mut Admission<'a>,
    slots: &'g mut [TcpSlot],
    /// The verdict on the last frame received.
    verdict: Verdict,
    /// A duplicate ACK to hand to the interface after the last frame ([`recovery`]).
    dup_ack: Option<(DupAck, bool)>,
    /// Recovery is on.
    recovery: bool,
    /// The device's medium (asked once per poll, not per frame).
    medium: Medium,
}

impl<'g, 'a, D: Device + ?Sized> Gate<'g, 'a, D> {
    pub(crate) fn new(
        inner: &'g mut D,
        medium: Medium,
        admission: &'g mut Admission<'a>,
        slots: &'g mut [TcpSlot],
        recovery: bool,
    ) -> Self {
        Self {
            inner,
            admission,
            slots,
            verdict: Verdict::Pass,
            dup_ack: None,
            recovery,
            medium,
        }
    }

    /// The verdict on the last frame received.
    pub(crate) fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The duplicate ACK the last frame asked for, if any.
    /// `true` with it: the segment it came from carried no data, and may have been a window
    /// probe, whose sequence number is one below the receiver's.
    pub(crate) fn take_dup_ack(&mut self) -> Option<(DupAck, bool)> {
        self.dup_ack.take()
    }
}

impl<'a, D: Device + ?Sized> Device for Gate<'_, 'a, D> {
    type RxToken<'t>
        = GateRxToken<'t, 'a, D::RxToken<'t>>
    where
        Self: 't;
    type TxToken<'t>
        = D::TxToken<'t>
    where
        Self: 't;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let medium = self.medium;
        self.verdict = Verdict::Pass;
        self.dup_ack = None;
        let (rx, tx) = self.inner.receive(timestamp)?;
        let token = GateRxToken {
            inner: rx,
            admission: &mut *self.admission,
            slots: &mut *self.slots,
            verdict: &mut self.verdict,
            dup_ack: &mut self.dup_ack,
            recovery: self.recovery,
            medium,
        };
        Some((token, tx))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// The receive token of a [`Gate`].
pub(crate) struct GateRxToken<'t, 'a, T> {
    inner: T,
    admission: &'t mut Admission<'a>,
    slots: &'t mut [TcpSlot],
    verdict: &'t mut Verdict,
    dup_ack: &'t mut Option<(DupAck, bool)>,
    recovery: bool,
    medium: Medium,
}

impl<T: phy::RxToken> phy::RxToken for GateRxToken<'_, '_, T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let Self {
            inner,
            admission,
            slots,
            verdict,
            dup_ack,
            recovery,
            medium,
        } = self;
        inner.consume(|frame| {
            let tcp = wire::tcp_in_frame(medium, frame);
            *verdict = admission.judge_parsed(tcp.as_ref(), frame, slots);
            match (*verdict, tcp) {
                (Verdict::Pass, Some(tcp)) if cfg!(feature = "recovery") && recovery => {
                    pass(&tcp, frame, admission, slots, dup_ack, f)
                }
                (Verdict::Pass | Verdict::Admit, _) => f(frame),
                (Verdict::Hold | Verdict::Take, _) => f(&[]),
            }
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
    }
}

/// Hand `frame` to `f`, reshaped where [`recovery`] says smoltcp would lose data or time on
/// it; a loss the frame reports leaves a duplicate ACK in `dup_ack`.
#[inline]
fn pass<R>(
    tcp: &TcpInFrame,
    frame: &[u8],
    admission: &Admission<'_>,
    slots: &mut [TcpSlot],
    dup_ack: &mut Option<(DupAck, bool)>,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let Some(segment) = recovery::inspect(tcp, frame, admission.port()) else {
        return f(frame);
    };
    let Some(slot) = slots.iter_mut().find(|s| s.is_sender_of(tcp, frame)) else {
        return f(frame);
    };
    let verified = || {
        let (Some(source), Some(destination)) = (tcp.source(frame), tcp.destination(frame)) else {
            return false;
        };
        tcp.segment(frame)
            .is_some_and(|s| s.verify_checksum(&source, &destination))
    };
    if let Some((ack, window)) = slot.recovery_mut().freshen(&segment, verified) {
        slot.count_stale_ack();
        return pass_rewritten(tcp, frame, ack, window, f);
    }
    if segment.reports_loss
        && let Some(ack) = recovery::dup_ack(tcp, frame)
        && slot.recovery_mut().start(segment.ack, admission.now())
    {
        *dup_ack = Some((ack, segment.payload == 0));
    }
    f(frame)
}

/// Hand `f` a copy of `frame` with acknowledgement `ack` and window `window`. Not inlined:
/// the copy's buffer is on the stack only while this runs.
#[inline(never)]
fn pass_rewritten<R>(
    tcp: &TcpInFrame,
    frame: &[u8],
    ack: u32,
    window: u16,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    match recovery::with_ack(tcp, frame, ack, window) {
        Some(copy) => f(&copy),
        None => f(frame),
    }
}

/// A device that yields one saved frame, then nothing; transmissions go to the real device.
pub(crate) struct Replay<'r, D: ?Sized> {
    inner: &'r mut D,
    frame: Option<&'r [u8]>,
}

impl<'r, D: Device + ?Sized> Replay<'r, D> {
    /// Replay `frame` once, answering through `inner`.
    pub(crate) fn new(inner: &'r mut D, frame: &'r [u8]) -> Self {
        Self {
            inner,
            frame: Some(frame),
        }
    }
}

impl<D: Device + ?Sized> Device for Replay<'_, D> {
    type RxToken<'t>
        = ReplayRxToken<'t>
    where
        Self: 't;
    type TxToken<'t>
        = D::TxToken<'t>
    where
        Self: 't;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.frame.take()?;
        let tx = self.inner.transmit(timestamp)?;
        Some((ReplayRxToken(frame), tx))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// The receive token of a [`Replay`].
pub(crate) struct ReplayRxToken<'a>(&'a [u8]);

impl phy::RxToken for ReplayRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}
