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

/// This process's resident memory (`/proc/self/statm`, in pages of 4 KiB on Lambda).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
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
