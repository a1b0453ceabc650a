//! The phy-layer wrappers the node puts in front of the caller's device.
//!
//! - [`Gate`] shows every received frame to [`Admission`] before smoltcp sees it, and hands
//!   smoltcp an empty buffer instead of a frame that admission holds (every medium rejects an
//!   empty frame as truncated before it reaches any state).
//! - [`Replay`] hands the interface one saved frame (a held SYN), answering through the real
//!   device.

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::admission::{Admission, Verdict};
use crate::tcp_server::TcpSlot;

/// A device whose received frames pass through admission, for one frame at a time.
pub(crate) struct Gate<'g, 'a, D: ?Sized> {
    inner: &'g mut D,
    admission: &'g mut Admission<'a>,
    slots: &'g mut [TcpSlot],
    /// The verdict on the last frame received.
    verdict: Verdict,
}

impl<'g, 'a, D: Device + ?Sized> Gate<'g, 'a, D> {
    pub(crate) fn new(
        inner: &'g mut D,
        admission: &'g mut Admission<'a>,
        slots: &'g mut [TcpSlot],
    ) -> Self {
        Self {
            inner,
            admission,
            slots,
            verdict: Verdict::Pass,
        }
    }

    /// The verdict on the last frame received.
    pub(crate) fn verdict(&self) -> Verdict {
        self.verdict
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
        let medium = self.inner.capabilities().medium;
        self.verdict = Verdict::Pass;
        let (rx, tx) = self.inner.receive(timestamp)?;
        let token = GateRxToken {
            inner: rx,
            admission: &mut *self.admission,
            slots: &mut *self.slots,
            verdict: &mut self.verdict,
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
            medium,
        } = self;
        inner.consume(|frame| {
            *verdict = admission.judge(medium, frame, slots);
            match *verdict {
                Verdict::Pass => f(frame),
                Verdict::Hold | Verdict::Take => f(&[]),
            }
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
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
