//! Moving a campaign's heap buffers to new addresses (active
//! defragmentation), without knowing who moves them.
//!
//! The containers own their buffers privately, so they walk them here;
//! the allocator side (Redis's `RedisModule_DefragAlloc`, or a fake in the
//! tests) sits behind [`Relocator`]. A set is walked in **units** (a dense
//! bitmap, the sparse ids, the UUID table, one prefix, the strings): a
//! walk can stop between two units when the relocator says its time is up
//! and resume later from the unit number it returned. The set may change
//! between two calls; a resumed walk then skips or repeats a unit, which
//! costs nothing but a missed or a second move.
//!
//! What cannot be reached is renewed instead: the roaring bitmaps keep
//! their buffers private to their crate, so a dense bitmap is replaced by a
//! copy of itself (fresh allocations, the old ones freed); hash sets of
//! the standard library are rebuilt the same way.

use std::alloc::Layout;
use std::mem::size_of;
use std::ptr::{self, NonNull};

/// Moves allocations of the global allocator.
///
/// # Safety
///
/// An implementation's `relocate` either returns `None` and leaves the
/// allocation alone, or copies at least `layout.size()` bytes from `ptr`
/// into a new allocation of the global allocator that the global
/// allocator frees with `layout` (same size class, aligned for it), frees
/// the old one and returns the new one.
pub unsafe trait Relocator {
    /// Moves the allocation at `ptr` if its allocator sees a gain.
    ///
    /// # Safety
    ///
    /// `ptr` is a live allocation of the global allocator made with
    /// `layout`, and nothing refers to it but the owner that will take the
    /// returned pointer instead.
    unsafe fn relocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Option<NonNull<u8>>;

    /// True when the walk should stop at the next unit boundary.
    fn should_stop(&mut self) -> bool;
}

/// What a walk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// Buffers moved by the relocator.
    pub moved: u64,
    /// Structures renewed by a copy (roaring bitmaps, hash sets).
    pub renewed: u64,
}

impl Moved {
    pub(crate) fn relocated(&mut self, moved: bool) {
        self.moved += u64::from(moved);
    }
}

/// Where a walk over units ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Every unit from the start one was visited.
    Done,
    /// Stopped before this unit (resume from it).
    StoppedAt(usize),
}

/// Moves a vector's buffer.
pub(crate) fn vec<T>(v: &mut Vec<T>, relocator: &mut dyn Relocator) -> bool {
    if size_of::<T>() == 0 || v.capacity() == 0 {
        return false;
    }
    let (len, capacity) = (v.len(), v.capacity());
    let Ok(layout) = Layout::array::<T>(capacity) else {
        return false;
    };
    let Some(old) = NonNull::new(v.as_mut_ptr().cast::<u8>()) else {
        return false;
    };
    // SAFETY: a vector with a capacity owns a global-allocator buffer of
    // exactly this layout, and only it refers to the buffer (`&mut`).
    let Some(new) = (unsafe { relocator.relocate(old, layout) }) else {
        return false;
    };
    // SAFETY: the relocator copied the buffer (its first `len` elements
    // initialised) into an allocation of the same layout and freed the old
    // one; the old vector is overwritten without being dropped.
    unsafe {
        ptr::write(
            v,
            Vec::from_raw_parts(new.as_ptr().cast::<T>(), len, capacity),
        )
    };
    true
}

/// Moves a boxed slice's buffer.
pub(crate) fn boxed_slice<T>(slice: &mut Box<[T]>, relocator: &mut dyn Relocator) -> bool {
    if size_of::<T>() == 0 || slice.is_empty() {
        return false;
    }
    let len = slice.len();
    let layout = Layout::for_value::<[T]>(slice);
    let old = NonNull::from(&mut **slice).cast::<u8>();
    // SAFETY: a non-empty boxed slice owns a global-allocator buffer of
    // its value's layout, referred to only through `slice` (`&mut`).
    let Some(new) = (unsafe { relocator.relocate(old, layout) }) else {
        return false;
    };
    let moved = ptr::slice_from_raw_parts_mut(new.as_ptr().cast::<T>(), len);
    // SAFETY: the new allocation holds the same `len` elements with the
    // same layout and the old one is freed: the old box is overwritten
    // without being dropped.
    unsafe { ptr::write(slice, Box::from_raw(moved)) };
    true
}

/// Moves a box's allocation.
pub(crate) fn boxed<T>(value: &mut Box<T>, relocator: &mut dyn Relocator) -> bool {
    if size_of::<T>() == 0 {
        return false;
    }
    let layout = Layout::new::<T>();
    let old = NonNull::from(&mut **value).cast::<u8>();
    // SAFETY: a box of a sized, non-zero-sized value owns a
    // global-allocator allocation of `Layout::new::<T>()`.
    let Some(new) = (unsafe { relocator.relocate(old, layout) }) else {
        return false;
    };
    // SAFETY: as in `boxed_slice`, for one value.
    unsafe { ptr::write(value, Box::from_raw(new.as_ptr().cast::<T>())) };
    true
}

/// Moves a boxed string's buffer.
pub(crate) fn boxed_str(text: Box<str>, relocator: &mut dyn Relocator) -> (Box<str>, bool) {
    let mut bytes = text.into_boxed_bytes();
    let moved = boxed_slice(&mut bytes, relocator);
    // SAFETY: the bytes are those of the string, copied unchanged.
    (unsafe { std::str::from_boxed_utf8_unchecked(bytes) }, moved)
}

#[cfg(test)]
pub(crate) mod fake {
    //! A relocator that moves every buffer it is shown (poisoning the
    //! old bytes before freeing them) and can stop after a number of units.

    use super::*;
    use std::alloc::{alloc, dealloc};

    #[derive(Default)]
    pub(crate) struct MoveAll {
        pub moves: u64,
        /// `should_stop` answers true once it has been asked this often.
        pub stop_after: Option<u64>,
        pub asked: u64,
    }

    // SAFETY: `relocate` copies `layout.size()` bytes into a fresh global
    // allocation of `layout` and frees the old one with that layout.
    unsafe impl Relocator for MoveAll {
        unsafe fn relocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Option<NonNull<u8>> {
            // SAFETY: layouts of live allocations have a non-zero size.
            let new = NonNull::new(unsafe { alloc(layout) })?;
            // SAFETY: both are live allocations of `layout.size()` bytes
            // and do not overlap; the old one is then poisoned and freed
            // with the layout it was made with (the caller's contract).
            unsafe {
                ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), layout.size());
                ptr::write_bytes(ptr.as_ptr(), 0xA5, layout.size());
                dealloc(ptr.as_ptr(), layout);
            }
            self.moves += 1;
            Some(new)
        }

        fn should_stop(&mut self) -> bool {
            self.asked += 1;
            self.stop_after.is_some_and(|limit| self.asked >= limit)
        }
    }

    /// Moves nothing.
    pub(crate) struct MoveNone;

    // SAFETY: never moves anything.
    unsafe impl Relocator for MoveNone {
        unsafe fn relocate(&mut self, _: NonNull<u8>, _: Layout) -> Option<NonNull<u8>> {
            None
        }
        fn should_stop(&mut self) -> bool {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::MoveAll;
    use super::*;

    #[test]
    fn buffers_keep_their_contents_when_moved() {
        let mut relocator = MoveAll::default();
        let mut numbers: Vec<u64> = (0..1000).collect();
        numbers.reserve(24);
        let capacity = numbers.capacity();
        let before = numbers.as_ptr();
        assert!(vec(&mut numbers, &mut relocator));
        assert_ne!(before, numbers.as_ptr());
        assert_eq!(numbers, (0..1000).collect::<Vec<_>>());
        assert_eq!(numbers.capacity(), capacity);
        numbers.push(7);

        let mut slice: Box<[u128]> = (0..77u128).collect();
        assert!(boxed_slice(&mut slice, &mut relocator));
        assert_eq!(&*slice, &(0..77u128).collect::<Vec<_>>()[..]);

        let mut one = Box::new([3u32; 9]);
        assert!(boxed(&mut one, &mut relocator));
        assert_eq!(*one, [3u32; 9]);

        let (text, moved) = boxed_str("user:42 ü".into(), &mut relocator);
        assert!(moved);
        assert_eq!(&*text, "user:42 ü");
        assert_eq!(relocator.moves, 4);
    }

    #[test]
    fn empty_buffers_are_left_alone() {
        let mut relocator = MoveAll::default();
        assert!(!vec(&mut Vec::<u8>::new(), &mut relocator));
        assert!(!boxed_slice(&mut Box::<[u64]>::from([]), &mut relocator));
        assert!(!vec(&mut vec![(); 5], &mut relocator));
        assert_eq!(relocator.moves, 0);
    }
}
