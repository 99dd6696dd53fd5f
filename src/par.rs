//! Work spread over the cores: one thread per core, each taking the next
//! piece of work when it is done with the last, so a thread that drew cheap
//! items does not sit idle while another finishes a long tail. The calling
//! thread is one of them: a look spreads work a dozen times, and each
//! thread started and ended costs its creation and the allocator's flush
//! of its caches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// `threads` (0: one per core), at most 16 and at most one per item.
pub fn thread_count(threads: usize, items: usize) -> usize {
    // Asked once: each ask reads the process's cgroup files (its CPU
    // quota), a dozen times a look; a later change of quota only changes
    // how work is spread.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    match threads {
        0 => *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        n => n,
    }
    .clamp(1, 16)
    .min(items.max(1))
}

/// Run `work` on `thread_count(threads, items.len())` threads; each gets an
/// iterator that hands it the next unclaimed item, one at a time. One result
/// per thread; a panic in a thread is raised again here (a result missing
/// silently would be an incomplete report).
pub fn spread<'a, T: Sync, R: Send>(
    items: &'a [T],
    threads: usize,
    work: impl Fn(&mut dyn Iterator<Item = &'a T>) -> R + Sync,
) -> Vec<R> {
    let n = thread_count(threads, items.len());
    let next = AtomicUsize::new(0);
    let (work, next) = (&work, &next);
    let run = move || {
        let mut mine = std::iter::from_fn(|| items.get(next.fetch_add(1, Ordering::Relaxed)));
        work(&mut mine)
    };
    on_threads(n, run)
}

/// As `spread`, over `items` to change in place, handed out `chunk` at a
/// time with each chunk's offset in `items`.
pub fn spread_mut<T: Send, R: Send>(
    items: &mut [T],
    chunk: usize,
    threads: usize,
    work: impl Fn(&mut dyn Iterator<Item = (usize, &mut [T])>) -> R + Sync,
) -> Vec<R> {
    let chunk = chunk.max(1);
    let n = thread_count(threads, items.len().div_ceil(chunk));
    let queue = Mutex::new(items.chunks_mut(chunk).enumerate());
    let (work, queue) = (&work, &queue);
    let run = move || {
        // The lock is held only to take a chunk, which cannot panic.
        let mut mine = std::iter::from_fn(|| {
            let (i, c) = queue.lock().ok()?.next()?;
            Some((i * chunk, c))
        });
        work(&mut mine)
    };
    on_threads(n, run)
}

/// `run` on `n` threads, the calling thread one of them: one result each.
fn on_threads<R: Send>(n: usize, run: impl Fn() -> R + Copy + Send) -> Vec<R> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..n).map(|_| s.spawn(run)).collect();
        let here = run();
        std::iter::once(here)
            .chain(handles.into_iter().map(join))
            .collect()
    })
}

/// A scoped thread's result; its panic, if it panicked, raised again here.
pub fn join<R>(h: std::thread::ScopedJoinHandle<'_, R>) -> R {
    h.join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once() {
        let items: Vec<u32> = (0..1000).collect();
        let mut seen: Vec<u32> = spread(&items, 3, |it| it.copied().collect::<Vec<_>>())
            .into_iter()
            .flatten()
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, items);
    }

    #[test]
    fn every_chunk_once_at_its_offset() {
        let mut items: Vec<usize> = vec![0; 1003];
        let counts = spread_mut(&mut items, 10, 4, |it| {
            let mut n = 0;
            for (off, c) in it {
                for (i, x) in c.iter_mut().enumerate() {
                    *x += off + i + 1;
                }
                n += 1;
            }
            n
        });
        assert_eq!(counts.iter().sum::<usize>(), 101);
        assert!(items.iter().enumerate().all(|(i, x)| *x == i + 1));
    }
}
