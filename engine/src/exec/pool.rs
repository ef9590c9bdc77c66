//! [`SpinPool`]: the fork-join workers of a session, which spin through a frame instead of
//! falling asleep between its parallel nodes.
//!
//! A frame alternates parallel nodes with short serial stretches (global pools, the
//! squeeze-and-excitation vectors, the node loop's own bookkeeping), tens of microseconds each.
//! rayon's workers go to sleep after a few microseconds without work, and waking one on the
//! 2-core VMs this project is measured on took 50–65 µs (a halted virtual CPU is woken by an
//! interrupt through the hypervisor): a 50 µs node split in two then took longer than on one
//! thread (docs/results-kernels.md). Here the workers spin while a frame is being computed
//! ([`SpinPool::frame`]) and park as soon as it ends, so they cost nothing between camera
//! frames; each frame pays one wake-up, at its start.
//!
//! One job runs at a time. A call made while another is running (from a task, or from a
//! second session sharing the pool) runs its tasks on the calling thread, so calls never wait
//! on each other and never deadlock.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// `threads - 1` worker threads; the calling thread is the last one.
pub(crate) struct SpinPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held by the call whose job is running.
    running: Mutex<()>,
}

struct Shared {
    /// Bumped for every new job (and at shutdown), so that spinning workers notice it.
    epoch: AtomicU64,
    /// Frames in progress ([`SpinPool::frame`]): the workers spin while there are any.
    frames: AtomicUsize,
    slot: Mutex<Slot>,
    wake: Condvar,
}

#[derive(Default)]
struct Slot {
    job: Option<Arc<Job>>,
    parked: usize,
    shutdown: bool,
}

/// Tasks `0..count` of one call. Whoever claims index `i < count` runs task `i`; once every
/// index is claimed, later claims get `count` or more and touch nothing.
struct Job {
    /// The caller's closure, its lifetime erased: [`SpinPool::run`] does not return before
    /// `done` reaches `count`, so it is alive whenever a claimed index calls it.
    task: *const (dyn Fn(usize) + Sync + 'static),
    count: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `task` is only called through a claimed index while `SpinPool::run` waits for it
// (see `Job::task`), and the closure is `Sync`.
unsafe impl Send for Job {}
unsafe impl Sync for Job {}

impl Job {
    /// Claims and runs tasks until none is left. A panicking task is recorded, and counted
    /// as done, so that the caller stops waiting and raises it.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.count {
                return;
            }
            // SAFETY: `i < count` was claimed here, so `done < count` until this task ends, and
            // `SpinPool::run` keeps the closure alive until then.
            let task = unsafe { &*self.task };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| task(i))) {
                *lock(&self.panic) = Some(p);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Tasks run under `catch_unwind`, so no lock is held across a panic; a poisoned lock
    // still holds consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SpinPool {
    /// A pool of `threads` threads (at least 2): the caller and `threads - 1` workers.
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            frames: AtomicUsize::new(0),
            slot: Mutex::default(),
            wake: Condvar::new(),
        });
        let mut pool = Self { shared, workers: Vec::new(), running: Mutex::new(()) };
        for i in 1..threads {
            let shared = Arc::clone(&pool.shared);
            // On error, dropping `pool` stops the workers started so far.
            let worker = std::thread::Builder::new().name(format!("framecache-{i}")).spawn(move || worker(&shared))?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// Marks a frame in progress until the guard drops: the workers wake now and spin for
    /// tasks until then, instead of parking between them. Frames nest (a bundle's frame holds
    /// its backbones' frames); the workers park when the outermost one ends.
    pub(crate) fn frame(&self) -> FrameGuard<'_> {
        if self.shared.frames.fetch_add(1, Ordering::AcqRel) == 0 {
            // Under the lock, so that a worker deciding to park either sees the frame or is
            // already waiting for this notification.
            let slot = lock(&self.shared.slot);
            if slot.parked > 0 {
                self.shared.wake.notify_all();
            }
        }
        FrameGuard(self)
    }

    /// Runs `task(k, chunk)` for each chunk `k` of `data`, `len` items long (the last one
    /// shorter), as [`SpinPool::run`] runs its tasks.
    pub(crate) fn run_chunks<T: Send>(&self, data: &mut [T], len: usize, task: &(dyn Fn(usize, &mut [T]) + Sync)) {
        let (n, len) = (data.len(), len.max(1));
        let base = Chunks(data.as_mut_ptr());
        self.run(n.div_ceil(len), &|k| {
            let start = k * len;
            // SAFETY: `run` calls each index once, so chunk `k` (`start..start + len`, clipped to
            // `n`, inside `data`) is handed to one task only, and `data` stays borrowed until
            // `run` returns. No per-call allocation or lock, as the frame's hot path wants.
            let chunk = unsafe { std::slice::from_raw_parts_mut(base.at(start), len.min(n - start)) };
            task(k, chunk);
        });
    }

    /// Runs `task(0)` … `task(count - 1)`, each once, on the workers and the calling thread,
    /// and returns when all have finished. A panic in a task is raised here, after the others
    /// finished.
    pub(crate) fn run(&self, count: usize, task: &(dyn Fn(usize) + Sync)) {
        let serial = || (0..count).for_each(task);
        if count < 2 || self.workers.is_empty() {
            return serial();
        }
        let Ok(_running) = self.running.try_lock() else {
            return serial();
        };
        // SAFETY: only the lifetime is erased; this function waits below until no task can
        // call `task` any more (see `Job::task`).
        let task: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(task) };
        let job = Arc::new(Job {
            task,
            count,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panic: Mutex::new(None),
        });
        {
            let mut slot = lock(&self.shared.slot);
            slot.job = Some(Arc::clone(&job));
            self.shared.epoch.fetch_add(1, Ordering::Release);
            if slot.parked > 0 {
                self.shared.wake.notify_all();
            }
        }
        job.work();
        let mut spins = 0;
        while job.done.load(Ordering::Acquire) < count {
            backoff(&mut spins);
        }
        lock(&self.shared.slot).job = None;
        let panic = lock(&job.panic).take();
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }
}

/// The start of the slice [`SpinPool::run_chunks`] hands out in disjoint chunks.
struct Chunks<T>(*mut T);

// SAFETY: the tasks only reach disjoint chunks through it (see `SpinPool::run_chunks`), and
// `T: Send` lets each chunk be used on another thread.
unsafe impl<T: Send> Sync for Chunks<T> {}

impl<T> Chunks<T> {
    /// Item `i` (a method, so that closures capture the `Sync` wrapper, not the raw pointer).
    ///
    /// # Safety
    /// `i` lies inside the slice.
    unsafe fn at(&self, i: usize) -> *mut T {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(i) }
    }
}

/// A frame in progress on a [`SpinPool`] ([`SpinPool::frame`]).
pub(crate) struct FrameGuard<'a>(&'a SpinPool);

impl Drop for FrameGuard<'_> {
    fn drop(&mut self) {
        self.0.shared.frames.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        {
            let mut slot = lock(&self.shared.slot);
            slot.shutdown = true;
            self.shared.epoch.fetch_add(1, Ordering::Release);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            // A worker's tasks run under `catch_unwind`, so it does not panic.
            let _ = w.join();
        }
    }
}

/// Busy-wait steps before a waiting thread starts yielding its CPU on every step.
const SPINS: u32 = 64;

/// One step of a busy wait: a pause instruction for the first [`SPINS`] steps, then a yield
/// of the CPU. The guest scheduler may put a woken worker on the same virtual CPU as the
/// thread waiting for it; a wait that never yields then keeps the worker off that CPU until
/// the time slice ends (4 ms per frame measured on MobileNetV2 with frames 20 ms apart).
fn backoff(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if *spins < SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// A worker: waits for a new epoch, spinning while a frame is in progress and parked
/// otherwise, and works on the job it finds.
fn worker(shared: &Shared) {
    let mut seen = 0;
    loop {
        let mut spins = 0u32;
        while shared.epoch.load(Ordering::Acquire) == seen {
            if spins.is_multiple_of(SPINS) && shared.frames.load(Ordering::Acquire) == 0 {
                let mut slot = lock(&shared.slot);
                slot.parked += 1;
                while shared.epoch.load(Ordering::Acquire) == seen && shared.frames.load(Ordering::Acquire) == 0 {
                    slot = shared.wake.wait(slot).unwrap_or_else(PoisonError::into_inner);
                }
                slot.parked -= 1;
            }
            backoff(&mut spins);
        }
        seen = shared.epoch.load(Ordering::Acquire);
        let (job, shutdown) = {
            let slot = lock(&shared.slot);
            (slot.job.clone(), slot.shutdown)
        };
        if shutdown {
            return;
        }
        if let Some(job) = job {
            job.work();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every task runs exactly once per call, over many calls, with the workers parked
    /// between calls and spinning through a frame.
    #[test]
    fn every_task_runs_once() {
        let pool = SpinPool::new(3).unwrap();
        for count in [0, 1, 2, 3, 7, 64] {
            let mut frame = None;
            for round in 0..50 {
                if round == 25 {
                    frame = Some(pool.frame());
                }
                let hits: Vec<AtomicUsize> = (0..count).map(|_| AtomicUsize::new(0)).collect();
                pool.run(count, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "count {count}, round {round}");
            }
            drop(frame);
        }
    }

    /// Each chunk goes to the task of its index, the last one shorter.
    #[test]
    fn chunks_are_handed_out_by_index() {
        let pool = SpinPool::new(2).unwrap();
        let mut data = vec![0usize; 10];
        pool.run_chunks(&mut data, 4, &|k, chunk| {
            let len = chunk.len();
            chunk.iter_mut().for_each(|v| *v = k * 10 + len);
        });
        assert_eq!(data, [4, 4, 4, 4, 14, 14, 14, 14, 22, 22]);
    }

    /// A call from inside a task runs on its own thread instead of waiting for the pool.
    #[test]
    fn nested_calls_run_serially() {
        let pool = SpinPool::new(2).unwrap();
        let total = AtomicUsize::new(0);
        pool.run(4, &|_| {
            pool.run(3, &|j| {
                total.fetch_add(j + 1, Ordering::Relaxed);
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 6);
    }

    /// Two threads sharing the pool each get all their tasks run.
    #[test]
    fn concurrent_callers_share_the_pool() {
        let pool = SpinPool::new(2).unwrap();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let sum = AtomicUsize::new(0);
                        pool.run(5, &|i| {
                            sum.fetch_add(i, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 10);
                    }
                });
            }
        });
    }

    /// A panicking task reaches the caller once the other tasks are done, and the pool still
    /// works afterwards.
    #[test]
    fn a_task_panic_reaches_the_caller() {
        let pool = SpinPool::new(2).unwrap();
        let ran = AtomicUsize::new(0);
        let err = catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, &|i| {
                ran.fetch_add(1, Ordering::Relaxed);
                assert!(i != 5, "task five");
            })
        }));
        assert!(err.is_err());
        assert_eq!(ran.load(Ordering::Relaxed), 8);
        let sum = AtomicUsize::new(0);
        pool.run(4, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 6);
    }
}
