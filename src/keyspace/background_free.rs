//! Freeing a set of a million members takes tens of milliseconds. Large sets
//! are handed to one background thread so DEL, FLUSHALL and overwrites never
//! stall the server, whatever the `lazyfree-*` settings say.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crossbeam_channel::Sender;

use crate::core::Campaign;
use crate::redis_glue::thread_priority;

/// Sets smaller than this are freed at once: it costs less than a hand-off.
const BACKGROUND_FREE_MIN_MEMBERS: usize = 1_024;

static FREE_QUEUE: OnceLock<Option<Sender<Box<Campaign>>>> = OnceLock::new();

/// Sets handed to the background thread since start (for STATUS).
pub static BACKGROUND_FREES: AtomicU64 = AtomicU64::new(0);

pub fn release(set: Box<Campaign>) {
    if set.len() < BACKGROUND_FREE_MIN_MEMBERS {
        drop(set);
        return;
    }
    match FREE_QUEUE.get_or_init(start_free_thread) {
        Some(queue) => {
            BACKGROUND_FREES.fetch_add(1, Ordering::Relaxed);
            // If the thread is gone the set comes back and is freed here.
            let _ = queue.send(set);
        }
        None => drop(set),
    }
}

fn start_free_thread() -> Option<Sender<Box<Campaign>>> {
    let (sender, receiver) = crossbeam_channel::unbounded::<Box<Campaign>>();
    std::thread::Builder::new()
        .name("campaign-free".into())
        .spawn(move || {
            thread_priority::lower_this_thread();
            receiver.iter().for_each(drop)
        })
        .ok()
        .map(|_| sender)
}
