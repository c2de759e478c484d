//! Memory behaviour of the process.
//!
//! A mail is handled in buffers of up to tens of MiB that live for one request.
//! glibc's malloc raises its mmap threshold dynamically each time such a buffer is
//! freed, after which buffers of that size come from the heap and are kept by the
//! process after use: the resident size then grows with the largest mail ever seen.
//! A fixed threshold keeps every large buffer in its own mapping, returned to the
//! system when it is freed.

/// Buffers from this size on get their own mapping.
pub const MMAP_THRESHOLD: i32 = 4 * 1024 * 1024;

/// Fixes malloc's mmap threshold (glibc); call once at start.
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before threads start
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
