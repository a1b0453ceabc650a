//! A smoltcp [`SocketSet`] that knows its capacity, so adding a socket can fail instead of
//! panicking.
//!
//! smoltcp's `SocketSet::add` panics when fixed storage is full and offers no way to ask how
//! much room is left. [`Sockets`] remembers the length of the storage it was built on and
//! checks before adding. It dereferences to the `SocketSet`, so it is passed to
//! `Interface::poll` and to the services' `poll` as is.

use core::ops::{Deref, DerefMut};

use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::AnySocket;

use crate::Error;

/// A socket set over caller-provided storage, with a known capacity.
#[derive(Debug)]
pub struct Sockets<'a> {
    set: SocketSet<'a>,
    capacity: usize,
}

impl<'a> Sockets<'a> {
    /// Build a set over `storage`; every entry is cleared first.
    pub fn new(storage: &'a mut [SocketStorage<'a>]) -> Self {
        for entry in storage.iter_mut() {
            *entry = SocketStorage::EMPTY;
        }
        let capacity = storage.len();
        Self {
            set: SocketSet::new(storage),
            capacity,
        }
    }

    /// How many sockets the storage holds in all.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many more sockets can be added.
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.set.iter().count())
    }

    /// Add a socket, or fail with [`Error::SocketSetFull`] when there is no room.
    pub fn add<T: AnySocket<'a>>(&mut self, socket: T) -> Result<SocketHandle, Error> {
        if self.free() == 0 {
            return Err(Error::SocketSetFull);
        }
        Ok(self.set.add(socket))
    }
}

impl<'a> Deref for Sockets<'a> {
    type Target = SocketSet<'a>;
    fn deref(&self) -> &SocketSet<'a> {
        &self.set
    }
}

impl<'a> DerefMut for Sockets<'a> {
    fn deref_mut(&mut self) -> &mut SocketSet<'a> {
        &mut self.set
    }
}
