//! Keeping a warm instance's memory to what its current request needs.
//!
//! A request of a few megabytes builds millions of small values (a 6 MB message of one-item
//! arrays: 1,490,000 of them) and a few large vectors. With glibc's allocator as it starts,
//! two things made a warm instance hold more than a fresh one (the `bounded` bench, every
//! shape one after another in one process: 223 MB at the peak, past the 200 MB the memory
//! model allows, where no shape took more than 161 MB alone):
//!
//! * the freed small values stay in the heap, scattered between values still in use, so
//!   about 120 MB stayed resident after such a request and the next large one came on top;
//! * glibc raises its threshold for serving a large block by `mmap` to the largest block
//!   freed so far (up to 32 MB), so after one large request the large vectors of the next
//!   came from the heap, where growing one copies it (held twice) instead of remapping it.
//!
//! So the threshold is fixed at start ([`configure`]), and after a request of at least
//! [`LARGE_BODY`] that leaves more than [`TRIM_ABOVE`] resident the free pages go back to the
//! system ([`after_request`]): a walk over the heap's free chunks, small beside the request that
//! made them, and never paid by Segment's batches (at most 500 KB).
//!
//! That left a third cause: glibc serves a large block from a free chunk of its heap before it
//! maps one, and after such a request the heap is a wide free region. The next request's large
//! vectors grew there by copying, and a message that takes 139 MB in a fresh process took
//! 190 MB. So large blocks always have a mapping of their own ([`Allocator`]).

/// The body size from which a request may be followed by a trim.
pub const LARGE_BODY: usize = 1 << 20;

/// What may stay resident after a large request without a trim: a warm instance holds about
/// 30 MB after a 4,000-event batch, which is left as it is.
pub const TRIM_ABOVE: u64 = 48 << 20;

/// Blocks from 1 MiB up are mapped on their own, whatever was freed before: a large vector
/// grows by remapping, and is returned to the system when freed. Call once, at start.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a parameter of the allocator, under the allocator's own
    // lock (the runtime's threads may already be running).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// After a request whose body was `body_len` bytes, its values freed: if the body was at
/// least [`LARGE_BODY`] and more than [`TRIM_ABOVE`] is resident, the heap's free pages go
/// back to the system (Linux with glibc; elsewhere nothing).
pub fn after_request(body_len: usize) {
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = body_len;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if body_len >= LARGE_BODY && resident_bytes().is_some_and(|r| r > TRIM_ABOVE) {
        // SAFETY: `malloc_trim` has no preconditions; it only releases memory no one holds.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// The functions' global allocator (each function's `main.rs`): the system's `malloc` (glibc's,
/// in Lambda) for blocks under [`MAPPED_FROM`], and for larger ones a mapping of their own
/// (`mmap`, grown and shrunk by `mremap`), always. Only on Linux; elsewhere the system's.
///
/// glibc maps a large block only when no free chunk of its heap can hold it. In a fresh
/// process there is none; after a request of millions of small values (freed, and their pages
/// given back by [`after_request`]) the heap is a wide free region, and the next request's large
/// vectors were carved from it, where growing one copies it, old and new held at once: the
/// `bounded` bench's identify of 650,000 traits took 139 MB in a fresh process and 190 MB right
/// after the track of towers. A block of its own mapping is grown by remapping its pages.
pub struct Allocator;

/// Elsewhere (a developer's machine) the system's allocator as it is.
#[cfg(not(target_os = "linux"))]
// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: a block of the system's, with its layout.
        unsafe { std::alloc::System.dealloc(block, layout) }
    }
}

/// Blocks from this size have a mapping of their own (glibc's default `mmap` threshold is
/// 128 KiB; [`configure`] sets 1 MiB for what glibc itself allocates).
pub const MAPPED_FROM: usize = 1 << 20;

#[cfg(target_os = "linux")]
mod mapped {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::ptr;

    use super::{Allocator, MAPPED_FROM};

    /// Whether a block of this size and alignment has a mapping of its own. A mapping starts
    /// on a page, so any alignment up to 4 KiB holds.
    fn mapped(size: usize, align: usize) -> bool {
        size >= MAPPED_FROM && align <= 4096
    }

    /// A new mapping of `size` bytes (zeroed, as every new anonymous mapping is), or null.
    fn map(size: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no memory in use.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            p.cast()
        }
    }

    // SAFETY: every block is either the system allocator's (under `MAPPED_FROM`, or
    // over-aligned) or a mapping of its own, and which one is told by the size and alignment
    // of its layout, which Rust passes unchanged to `dealloc` and `realloc`.
    unsafe impl GlobalAlloc for Allocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if mapped(layout.size(), layout.align()) {
                map(layout.size())
            } else {
                // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
                unsafe { System.alloc(layout) }
            }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if mapped(layout.size(), layout.align()) {
                map(layout.size())
            } else {
                // SAFETY: as in `alloc`.
                unsafe { System.alloc_zeroed(layout) }
            }
        }

        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            if mapped(layout.size(), layout.align()) {
                // SAFETY: `block` is a mapping of `layout.size()` bytes made by `map` or
                // `realloc` (the layout it was allocated with).
                unsafe {
                    libc::munmap(block.cast(), layout.size());
                }
            } else {
                // SAFETY: a block of the system allocator's, with its layout.
                unsafe { System.dealloc(block, layout) }
            }
        }

        unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            match (
                mapped(layout.size(), layout.align()),
                mapped(new_size, layout.align()),
            ) {
                // SAFETY: a block of the system allocator's staying its.
                (false, false) => unsafe { System.realloc(block, layout, new_size) },
                (true, true) => {
                    // SAFETY: `block` is a mapping of `layout.size()` bytes; the kernel moves
                    // its pages if it cannot grow in place (no copy, never held twice).
                    let p = unsafe {
                        libc::mremap(block.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE)
                    };
                    if p == libc::MAP_FAILED {
                        ptr::null_mut()
                    } else {
                        p.cast()
                    }
                }
                // From the system allocator to a mapping or back: a new block, the bytes copied.
                _ => {
                    // SAFETY: `new_size` is non-zero and, rounded to the alignment, does not
                    // overflow (`GlobalAlloc::realloc`'s own requirements).
                    let new_layout =
                        unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                    // SAFETY: as in `alloc`, `dealloc`; the two blocks are distinct.
                    unsafe {
                        let moved = self.alloc(new_layout);
                        if !moved.is_null() {
                            ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                            self.dealloc(block, layout);
                        }
                        moved
                    }
                }
            }
        }
    }
}

/// This process's resident memory (`/proc/self/statm`, in pages of 4 KiB on Lambda).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(all(test, target_os = "linux"))]
mod allocator_tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::{Allocator, MAPPED_FROM};

    /// # Safety
    /// `block` holds at least `len` bytes, written by `fill`.
    unsafe fn check(block: *const u8, len: usize) {
        for i in (0..len).step_by(4093) {
            // SAFETY: `i < len` (the caller's promise).
            assert_eq!(
                unsafe { *block.add(i) },
                (i % 251) as u8,
                "byte {i} of {len}"
            );
        }
    }

    /// # Safety
    /// `block` holds at least `to` bytes.
    unsafe fn fill(block: *mut u8, from: usize, to: usize) {
        for i in from..to {
            // SAFETY: `i < to` (the caller's promise).
            unsafe { *block.add(i) = (i % 251) as u8 }
        }
    }

    /// A block keeps its bytes through every move: grown in the heap, from the heap to a
    /// mapping, grown and shrunk as a mapping, and back into the heap; a zeroed large block
    /// reads as zeros.
    #[test]
    fn a_block_keeps_its_bytes_across_the_threshold() {
        let a = Allocator;
        let mut size = 1000;
        let mut layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: every block is used within its size and freed once, with its layout.
        unsafe {
            let mut block = a.alloc(layout);
            assert!(!block.is_null());
            fill(block, 0, size);
            for next in [
                4000,
                MAPPED_FROM - 1,
                MAPPED_FROM,
                3 * MAPPED_FROM + 17,
                MAPPED_FROM + 1,
                MAPPED_FROM - 1,
                100,
            ] {
                block = a.realloc(block, layout, next);
                assert!(!block.is_null(), "{size} -> {next}");
                check(block, size.min(next));
                fill(block, size.min(next), next);
                size = next;
                layout = Layout::from_size_align(size, 8).unwrap();
            }
            a.dealloc(block, layout);
            let zeroed = Layout::from_size_align(2 * MAPPED_FROM, 64).unwrap();
            let block = a.alloc_zeroed(zeroed);
            assert!((0..zeroed.size()).step_by(511).all(|i| *block.add(i) == 0));
            a.dealloc(block, zeroed);
        }
    }

    /// A large block is a mapping of its own, even where the heap has room for it (40,000
    /// small blocks freed below one still in use, as a large request leaves it): freed, its
    /// addresses are no longer mapped (`/proc/self/maps`). glibc's `malloc` carves it from the
    /// heap, which stays mapped (this fails with `std::alloc::System`).
    #[test]
    fn a_freed_large_block_leaves_the_address_space() {
        let mapped_at = |block: usize| {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            maps.lines().any(|l| {
                let range = l.split(' ').next().unwrap_or_default();
                let (from, to) = range.split_once('-').unwrap_or_default();
                let at = |h: &str| usize::from_str_radix(h, 16).unwrap_or_default();
                (at(from)..at(to)).contains(&block)
            })
        };
        let a = Allocator;
        let large = Layout::from_size_align(3 * MAPPED_FROM + 4096, 8).unwrap();
        let small = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: each block is freed once, with its layout; only its address is used after.
        unsafe {
            let freed: Vec<*mut u8> = (0..40_000).map(|_| a.alloc(small)).collect();
            // A block still in use above them keeps their room from rejoining the heap's top.
            let pin = a.alloc(small);
            freed.into_iter().for_each(|block| a.dealloc(block, small));
            let (l, s) = (a.alloc(large), a.alloc(small));
            assert!(mapped_at(l as usize) && mapped_at(s as usize));
            a.dealloc(l, large);
            a.dealloc(s, small);
            assert!(
                !mapped_at(l as usize),
                "a freed large block is still mapped"
            );
            assert!(mapped_at(s as usize), "a freed small block left the heap");
            a.dealloc(pin, small);
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// The resident size is read, and a trim gives freed pages back: a million small blocks
    /// freed in an order that leaves the heap fragmented, then the trim `after_request` makes.
    #[test]
    fn freed_pages_go_back() {
        let before = resident_bytes().unwrap();
        assert!(before > 0);
        let mut blocks: Vec<Vec<u8>> = (0..1_000_000).map(|i| vec![i as u8; 48]).collect();
        let pinned: Vec<Vec<u8>> = blocks
            .iter_mut()
            .step_by(4096)
            .map(std::mem::take)
            .collect();
        drop(blocks);
        let fragmented = resident_bytes().unwrap();
        // SAFETY: as in `after_request`.
        unsafe {
            libc::malloc_trim(0);
        }
        let trimmed = resident_bytes().unwrap();
        assert!(
            trimmed + (16 << 20) < fragmented,
            "{fragmented} resident before the trim, {trimmed} after"
        );
        drop(pinned);
    }
}
