//! Everything that depends on how smoltcp 0.14 works inside, in one place.
//!
//! Each item names the upstream code it works around, so it can be revisited when smoltcp
//! changes.
//!
//! - **`SocketSet::add` panics when the set is full** (`iface/socket_set.rs`, `add`: "adding
//!   a socket to a full SocketSet"). [`Sockets`](crate::Sockets) knows its capacity, so a
//!   full set is an [`Error`](crate::Error).
//! - **`SocketSet::get_mut` panics on a handle that is not in the set or of another type**
//!   (`get_mut`: "handle does not refer to a valid socket"). The services never call it:
//!   [`find_mut`] and [`pair_by_handle`] look sockets up without a panic path.
//! - **A set iterates in handle order.** A handle is the index of its storage entry, and
//!   `SocketSet::iter_mut` walks the entries in order; [`pair_by_handle`] relies on that to
//!   find every slot's socket in one pass, which keeps large pools linear.
//! - **Neighbour silence lives in the set's entry, not in the socket**
//!   (`iface/socket_meta.rs`: `Meta::neighbor_missing` silences the socket for
//!   `NEIGHBOR_DISCOVERY_TIMEOUT`, 1 s). A socket that tried to reach a host that does not
//!   answer (a spoofed SYN's source, a datagram's unresolvable sender) stays silent for a
//!   second even after it is reset for someone else. [`renew`] gives it a fresh entry.
//! - **A UDP socket's head datagram blocks the queue while its neighbour is unresolved**
//!   (`socket/udp.rs`, `dispatch`: the packet stays queued when `emit` fails with
//!   `Unaddressable`): the UDP server flushes a stalled queue through [`renew`].

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::AnySocket;

/// The socket of type `T` behind `handle`, without `SocketSet::get_mut`'s panic.
pub(crate) fn find_mut<'s, 'a, T: AnySocket<'a>>(
    set: &'s mut SocketSet<'a>,
    handle: SocketHandle,
) -> Option<&'s mut T> {
    set.iter_mut()
        .find(|(h, _)| *h == handle)
        .and_then(|(_, socket)| T::downcast_mut(socket))
}

/// Call `f` with each of `items` and its socket of type `T` (or `None` when it is missing),
/// in one pass over the set. `items` must be sorted by `handle` (items without one first).
pub(crate) fn pair_by_handle<'a, I, T: AnySocket<'a>>(
    set: &mut SocketSet<'a>,
    items: &mut [I],
    handle: impl Fn(&I) -> Option<SocketHandle>,
    mut f: impl FnMut(&mut I, Option<&mut T>),
) {
    let mut entries = set.iter_mut().peekable();
    for item in items.iter_mut() {
        let Some(wanted) = handle(item) else {
            f(item, None);
            continue;
        };
        while entries.peek().is_some_and(|(h, _)| *h < wanted) {
            entries.next();
        }
        let socket = match entries.peek() {
            Some((h, _)) if *h == wanted => entries.next().and_then(|(_, s)| T::downcast_mut(s)),
            _ => None,
        };
        f(item, socket);
    }
}

/// Move the socket behind `handle` into a fresh set entry (callers reset it first, in place);
/// returns its new handle (`None`, with the set unchanged, when `handle` is not in the set).
///
/// smoltcp's `add` takes the first free entry, which is the one just vacated unless the
/// caller left an earlier one free: the handle then changes, and callers that keep handles
/// sorted must sort again. Not inlined: one copy serves every caller.
#[inline(never)]
pub(crate) fn renew(set: &mut SocketSet<'_>, handle: SocketHandle) -> Option<SocketHandle> {
    // Checked first, so `remove` cannot panic.
    set.iter().find(|(h, _)| *h == handle)?;
    let socket = set.remove(handle);
    // The entry just freed is there for it: `add` cannot find the set full.
    Some(set.add(socket))
}
