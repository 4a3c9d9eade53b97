//! Background threads run below the main thread's priority: Redis answers
//! every client from one thread, and on a small machine a load parsing a
//! million rows (or a set being freed) would otherwise take the core the
//! main thread needs and show up as HAS latency.

/// Nice value of the module's background threads (the main thread: 0).
const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority (Linux: per thread);
/// elsewhere, or when refused, nothing changes.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id.
        unsafe {
            let thread_id = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread_id, BACKGROUND_NICE);
        }
    }
}
