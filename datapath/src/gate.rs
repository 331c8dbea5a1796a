//! A reader-writer lock whose readers do not share a cache line (a "big reader" lock, as
//! Linux's brlock was): each worker takes a lock of its own to read, and a writer takes all of
//! them. The slow path's misses read the running snapshot and its tables side by side without
//! passing one lock word between cores for every miss; a reload, the timers or a report write,
//! and wait for every reader to leave.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Readers' locks: enough for a worker per core of the hosts edgepath runs on; workers past
/// that share them (which is still correct, only slower).
const READERS: usize = 64;

/// One reader's lock on a cache line of its own (two, for the adjacent-line prefetcher).
#[repr(align(128))]
#[derive(Default)]
struct Padded(RwLock<()>);

pub struct Gate<T> {
    readers: Box<[Padded; READERS]>,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is reached only through a `Read` (shared, while one reader lock is held) or a
// `Write` (exclusive, while every reader lock is held), so a `&mut T` never coexists with
// another reference; T must be Sync for readers on several threads, and Send to be written by
// any of them.
unsafe impl<T: Send + Sync> Sync for Gate<T> {}
unsafe impl<T: Send> Send for Gate<T> {}

pub struct Read<'a, T> {
    _held: RwLockReadGuard<'a, ()>,
    data: &'a T,
}

pub struct Write<'a, T> {
    _held: [RwLockWriteGuard<'a, ()>; READERS],
    data: &'a mut T,
}

impl<T> Gate<T> {
    pub fn new(data: T) -> Gate<T> {
        Gate { readers: Box::new(std::array::from_fn(|_| Padded::default())), data: UnsafeCell::new(data) }
    }

    /// Read as reader `who` (a worker's number; any number is correct).
    pub fn read(&self, who: usize) -> Read<'_, T> {
        let lock = &self.readers[who % READERS].0;
        // A reader that panicked leaves nothing half-written: it only read.
        let held = lock.read().unwrap_or_else(|e| e.into_inner());
        // SAFETY: a reader lock is held, so no `Write` exists (see the `Sync` impl).
        Read { _held: held, data: unsafe { &*self.data.get() } }
    }

    /// Write, alone: every reader lock, always in the same order.
    pub fn write(&self) -> Write<'_, T> {
        // In order, taken without allocating (the timers write from the packet path).
        let held = std::array::from_fn(|k| self.readers[k].0.write().unwrap_or_else(|e| e.into_inner()));
        // SAFETY: every reader lock is held, so no other `Read` or `Write` exists.
        Write { _held: held, data: unsafe { &mut *self.data.get() } }
    }
}

impl<T> Deref for Read<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data
    }
}

impl<T> Deref for Write<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data
    }
}

impl<T> DerefMut for Write<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers exclude readers: a counter bumped by writers is never seen half-way by a reader
    /// that checks two copies of it.
    #[test]
    fn writers_exclude_readers() {
        let g = std::sync::Arc::new(Gate::new((0u64, 0u64)));
        std::thread::scope(|s| {
            for w in 0..3 {
                let g = g.clone();
                s.spawn(move || {
                    for _ in 0..20_000 {
                        let r = g.read(w);
                        assert_eq!(r.0, r.1);
                    }
                });
            }
            let g = g.clone();
            s.spawn(move || {
                for _ in 0..2_000 {
                    let mut w = g.write();
                    w.0 += 1;
                    std::hint::spin_loop();
                    w.1 += 1;
                }
            });
        });
        assert_eq!(*g.read(0), (2_000, 2_000));
    }
}
