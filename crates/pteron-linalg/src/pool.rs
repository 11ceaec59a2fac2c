//! Persistent thread pool with a single, allocation-free `parallel_for` dispatch.
//!
//! Design: `n - 1` worker threads (the caller is the n-th participant). A dispatch
//! publishes a pointer to a stack-allocated job descriptor and bumps a generation
//! word (`generation << 1 | open`). Workers spin for a short while on that word and
//! then park on a condition variable. Tasks are counted when finished.
//!
//! Task order (as pthreadpool does it): every participant owns a contiguous range
//! of the task indices (the caller the first, worker `i` the `i`-th) and takes its
//! tasks from the front; a participant whose range is empty steals from the back
//! of the others'. Kernels number their tasks so that neighbouring indices touch
//! neighbouring data (pixel chunks, rows, column panels), so each thread works on
//! the same part of the activations from one layer to the next, and those stay in
//! its own cache; a thread that is slow or descheduled loses its tail to the others.
//!
//! The caller never waits for a worker that has not started: it runs tasks itself
//! until none are left, waits for the *tasks* to finish, closes the job, and then
//! waits only for workers that registered on it (`active`). A worker registers
//! before it reads the job and re-checks that the job is still open afterwards
//! (both sequentially consistent), so a worker either sees the job closed and leaves
//! without touching it, or is counted and waited for. That is what makes borrowing
//! from the caller's stack sound, and it keeps a dispatch cheap on a loaded machine,
//! where a sleeping worker may take milliseconds to be scheduled.
//!
//! Panics: a panic inside a task is caught (on whichever thread ran it), the
//! remaining unclaimed tasks are skipped, and once all participants are done the
//! first panic payload is re-raised on the caller with `resume_unwind`. The pool
//! stays usable afterwards.

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How long an idle worker spins before parking.
const SPIN_TIME: Duration = Duration::from_micros(200);
const MAX_THREADS: usize = 0xFFFF;
/// Most participants of one job (the caller and the first `SLOTS - 1` workers);
/// with more threads than that, the others sit jobs out.
const SLOTS: usize = 64;
/// Tasks per dispatch (a range packs two `u32` bounds); larger jobs run in rounds.
const MAX_TASKS: usize = u32::MAX as usize;

struct Job {
    data: *const (),
    call: unsafe fn(*const (), usize),
    /// Index of task 0 of this round.
    base: usize,
    n_tasks: usize,
    /// Participants that own a range (`ranges[..parts]`).
    parts: usize,
}

/// One participant's remaining tasks, `start | end << 32`, alone on its cache lines.
#[repr(align(128))]
struct Range(AtomicU64);

fn pack(start: usize, end: usize) -> u64 {
    start as u64 | (end as u64) << 32
}

fn unpack(v: u64) -> (usize, usize) {
    ((v & 0xFFFF_FFFF) as usize, (v >> 32) as usize)
}

/// Takes the first task of `r` (its owner) or the last one (a thief).
fn take(r: &Range, front: bool) -> Option<usize> {
    let mut v = r.0.load(Ordering::Acquire);
    loop {
        let (s, e) = unpack(v);
        if s >= e {
            return None;
        }
        let (task, rest) = if front {
            (s, pack(s + 1, e))
        } else {
            (e - 1, pack(s, e - 1))
        };
        match r
            .0
            .compare_exchange_weak(v, rest, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Some(task),
            Err(cur) => v = cur,
        }
    }
}

struct Shared {
    /// generation << 1 | open.
    state: AtomicU64,
    job: AtomicPtr<Job>,
    ranges: [Range; SLOTS],
    /// Tasks finished (or skipped after a panic) in the current job.
    done: AtomicUsize,
    /// Workers registered on the current job.
    active: AtomicUsize,
    /// Workers that have finished starting up (thread setup, scratch reserved).
    started: AtomicUsize,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

struct Pool {
    shared: &'static Shared,
    /// Held for the whole dispatch; the Vec counts the spawned workers.
    dispatch: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

static POOL: OnceLock<Pool> = OnceLock::new();
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool {
        shared: Box::leak(Box::new(Shared {
            state: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            ranges: std::array::from_fn(|_| Range(AtomicU64::new(0))),
            done: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            panic: Mutex::new(None),
        })),
        dispatch: Mutex::new(Vec::new()),
    })
}

/// Set the total number of threads used by [`parallel_for`] (workers plus the
/// calling thread). `0` is treated as `1`. Workers are spawned lazily.
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n.clamp(1, MAX_THREADS), Ordering::Relaxed);
}

/// Current total thread count (default: `std::thread::available_parallelism`).
pub fn num_threads() -> usize {
    let n = NUM_THREADS.load(Ordering::Relaxed);
    if n != 0 {
        return n;
    }
    let d = std::thread::available_parallelism()
        .map(|v| v.get())
        .unwrap_or(1)
        .clamp(1, MAX_THREADS);
    // A racing set_num_threads wins.
    let _ = NUM_THREADS.compare_exchange(0, d, Ordering::Relaxed, Ordering::Relaxed);
    NUM_THREADS.load(Ordering::Relaxed)
}

/// # Safety
/// `data` must point to a live `F`.
unsafe fn call_shim<F: Fn(usize) + Sync>(data: *const (), i: usize) {
    // SAFETY: guaranteed by the caller (data was created from `&F` in parallel_for
    // and the F outlives the dispatch).
    let f = unsafe { &*(data as *const F) };
    f(i);
}

/// The next task for participant `me`: from the front of its own range, else
/// stolen from the back of the next non-empty one.
/// `me < job.parts`.
fn claim(sh: &Shared, job: &Job, me: usize) -> Option<usize> {
    take(&sh.ranges[me], true).or_else(|| {
        (1..job.parts)
            .map(|d| (me + d) % job.parts)
            .find_map(|j| take(&sh.ranges[j], false))
    })
}

fn run_tasks(sh: &Shared, job: &Job, me: usize) {
    while let Some(i) = claim(sh, job, me) {
        // SAFETY: job.data/job.call were built together from one `&F` that stays
        // alive until every task has finished and every registered worker has left.
        let r = catch_unwind(AssertUnwindSafe(|| unsafe {
            (job.call)(job.data, job.base + i)
        }));
        match r {
            Ok(()) => {
                sh.done.fetch_add(1, Ordering::Release);
            }
            Err(payload) => {
                // Skip the remaining tasks (count them as done); keep the first payload.
                let skipped: usize = sh.ranges[..job.parts]
                    .iter()
                    .map(|r| {
                        let (s, e) = unpack(r.0.swap(0, Ordering::AcqRel));
                        e.saturating_sub(s)
                    })
                    .sum();
                let mut slot = sh.panic.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.is_none() {
                    *slot = Some(payload);
                }
                drop(slot);
                sh.done.fetch_add(1 + skipped, Ordering::Release);
            }
        }
    }
}

fn wait_for_new(sh: &Shared, last_gen: u64) -> u64 {
    let start = Instant::now();
    let mut spins: u32 = 0;
    loop {
        let w = sh.state.load(Ordering::Acquire);
        if w >> 1 != last_gen {
            return w;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) && start.elapsed() > SPIN_TIME {
            let mut g = sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
            sh.sleepers.fetch_add(1, Ordering::SeqCst);
            loop {
                let w = sh.state.load(Ordering::SeqCst);
                if w >> 1 != last_gen {
                    sh.sleepers.fetch_sub(1, Ordering::SeqCst);
                    return w;
                }
                g = sh.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
            }
        }
        std::hint::spin_loop();
    }
}

fn worker(sh: &'static Shared, me: usize, mut last_gen: u64) {
    IN_POOL.with(|c| c.set(true));
    crate::util::reserve_scratch();
    sh.started.fetch_add(1, Ordering::SeqCst);
    loop {
        let w = wait_for_new(sh, last_gen);
        last_gen = w >> 1;
        if w & 1 == 0 {
            continue; // already closed
        }
        sh.active.fetch_add(1, Ordering::SeqCst);
        if sh.state.load(Ordering::SeqCst) == w {
            // SAFETY: this worker is registered in `active` and saw the job still
            // open afterwards; the dispatching caller closes the job before waiting
            // for `active` to drain, and keeps the job (and what it borrows) alive
            // and unchanged until then.
            let job = unsafe { &*sh.job.load(Ordering::Acquire) };
            // Workers above the thread count (left from a larger earlier setting,
            // or beyond SLOTS) sit the job out.
            if me < job.parts {
                run_tasks(sh, job, me);
            }
        }
        sh.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Publishes `job`, runs tasks on the calling thread (participant 0) and returns
/// once every task has finished and every worker that joined has left.
fn dispatch(sh: &Shared, job: &Job) {
    for (p, r) in sh.ranges[..job.parts].iter().enumerate() {
        let (lo, hi) = (
            p * job.n_tasks / job.parts,
            (p + 1) * job.n_tasks / job.parts,
        );
        r.0.store(pack(lo, hi), Ordering::Relaxed);
    }
    sh.job
        .store(job as *const Job as *mut Job, Ordering::Relaxed);
    sh.done.store(0, Ordering::Relaxed);
    let cur_gen = sh.state.load(Ordering::Relaxed) >> 1;
    let gen = (cur_gen + 1) & ((1u64 << 62) - 1);
    let open = (gen << 1) | 1;
    sh.state.store(open, Ordering::SeqCst);
    if sh.sleepers.load(Ordering::SeqCst) > 0 {
        let _g = sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
        sh.cv.notify_all();
    }
    crate::util::reserve_scratch();
    IN_POOL.with(|c| c.set(true));
    run_tasks(sh, job, 0);
    IN_POOL.with(|c| c.set(false));
    // Wait for tasks other threads are still running (not for idle workers).
    let mut spins: u32 = 0;
    while sh.done.load(Ordering::Acquire) < job.n_tasks {
        if spins < 4096 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
    // Close the job, then wait for registered workers to leave it.
    sh.state.store(gen << 1, Ordering::SeqCst);
    let mut spins: u32 = 0;
    while sh.active.load(Ordering::SeqCst) != 0 {
        if spins < 4096 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
    sh.job.store(std::ptr::null_mut(), Ordering::Relaxed);
}

/// Run `f(i)` for every `i in 0..n_tasks` on the pool; the calling thread
/// participates and the call returns once all tasks have finished.
///
/// * `f` may borrow from the caller's stack.
/// * Runs inline when `n_tasks <= 1`, when [`num_threads`] is 1, or when called
///   from inside a task (nested parallelism is serialized, never deadlocks).
/// * Concurrent dispatches from different threads are serialized.
/// * No heap allocation per call in steady state.
/// * If a task panics, unclaimed tasks are skipped and the first panic payload is
///   re-raised on the caller after all running tasks have returned.
pub fn parallel_for<F: Fn(usize) + Sync>(n_tasks: usize, f: F) {
    if n_tasks == 0 {
        return;
    }
    let nt = num_threads();
    if n_tasks == 1 || nt <= 1 || IN_POOL.with(|c| c.get()) {
        for i in 0..n_tasks {
            f(i);
        }
        return;
    }
    let pool = pool();
    let sh = pool.shared;
    let mut workers = pool.dispatch.lock().unwrap_or_else(PoisonError::into_inner);
    let cur_gen = sh.state.load(Ordering::Relaxed) >> 1;
    while workers.len() < nt - 1 {
        let index = workers.len() + 1;
        let spawned = std::thread::Builder::new()
            .name(format!("pteron-linalg-{index}"))
            .spawn(move || worker(sh, index, cur_gen));
        match spawned {
            Ok(h) => workers.push(h),
            Err(_) => break,
        }
    }
    // Workers allocate while starting; wait for them here (first dispatch only) so
    // that nothing allocates in steady state.
    while sh.started.load(Ordering::SeqCst) < workers.len() {
        std::thread::yield_now();
    }
    if workers.is_empty() {
        drop(workers);
        for i in 0..n_tasks {
            f(i);
        }
        return;
    }
    let mut base = 0;
    while base < n_tasks {
        let round = (n_tasks - base).min(MAX_TASKS);
        let job = Job {
            data: &f as *const F as *const (),
            call: call_shim::<F>,
            base,
            n_tasks: round,
            parts: (workers.len() + 1).min(nt).min(round).min(SLOTS),
        };
        dispatch(sh, &job);
        base += round;
        if base < n_tasks
            && sh
                .panic
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
        {
            break;
        }
    }
    let payload = sh
        .panic
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    drop(workers);
    if let Some(p) = payload {
        std::panic::resume_unwind(p);
    }
}
