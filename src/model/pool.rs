//! The kernels' own thread pool: persistent helpers that spin between jobs instead of sleeping.
//!
//! A forward pass is a chain of short parallel steps (a 17-token MiniLM layer is five products,
//! an attention and two layer norms of tens of microseconds each). Rayon's workers fall asleep
//! within microseconds of running out of work, so every step paid a futex wake-up and a context
//! switch on each helper: on two cores a fifth of MiniLM 1x17's time went to `try_to_wake_up`,
//! `futex_wait` and `sched_yield` (`perf record`). Here the caller runs a share of the tasks itself
//! and each helper spins for `SPIN` after its last job before parking, as ONNX Runtime's pool
//! does, so consecutive steps hand over in well under a microsecond. Waits pause the CPU for a
//! few microseconds and then yield their core at each round (`pause`), so that on an
//! oversubscribed machine (two models predicting at once in the app) a waiting thread does not
//! hold a core the thread it waits for needs: A's f32 and B's int8 ViT-B/16 predicting at once
//! took 650 ms with pure spinning and 444 ms with the yields.
//!
//! One caller at a time owns the helpers; a second caller (two models predicting at once, or a
//! task that itself calls `run`) runs its tasks on its own thread, which is always correct. The
//! helper count follows `kernels::threads()` (`RAYON_NUM_THREADS`) minus the caller.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks: long enough to bridge the serial gaps between
/// the steps of a forward pass and between back-to-back requests, short enough that an idle app
/// gives its cores back at once.
const SPIN: Duration = Duration::from_millis(2);

/// The task function of the current job, its lifetime erased: `run` does not return before every
/// helper that took the job has finished with it.
#[derive(Clone, Copy)]
struct Job {
    epoch: u64,
    f: *const (dyn Fn(usize) + Sync),
    helpers: usize,
}

// SAFETY: the pointer is only dereferenced by helpers while `run`, which owns the closure, waits
// for them; the closure itself is `Sync`.
unsafe impl Send for Job {}

struct Shared {
    /// Bumped after each new job is stored: what the helpers spin on.
    epoch: AtomicU64,
    job: Mutex<Option<Job>>,
    /// The next task index to hand out, and the number of tasks.
    next: AtomicUsize,
    tasks: AtomicUsize,
    /// Helpers finished with the current job.
    done: AtomicUsize,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

struct Pool {
    shared: Arc<Shared>,
    busy: AtomicBool,
    spawned: Mutex<usize>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        shared: Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: Mutex::new(None),
            next: AtomicUsize::new(0),
            tasks: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        }),
        busy: AtomicBool::new(false),
        spawned: Mutex::new(0),
    })
}

/// Runs `f(0)`, ..., `f(tasks - 1)` across `threads` threads (the caller and `threads - 1`
/// helpers), each task exactly once, and returns when all are done. A panic in a task is raised
/// again here once every thread has stopped touching `f`.
pub fn run<F: Fn(usize) + Sync>(threads: usize, tasks: usize, f: F) {
    let helpers = threads.saturating_sub(1).min(tasks.saturating_sub(1));
    let pool = pool();
    if helpers == 0 || pool.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        (0..tasks).for_each(f);
        return;
    }
    let helpers = pool.ensure(helpers);
    if helpers == 0 {
        pool.busy.store(false, Ordering::Release);
        (0..tasks).for_each(f);
        return;
    }
    let shared = &*pool.shared;
    let dynf: &(dyn Fn(usize) + Sync) = &f;
    // SAFETY: only the lifetime is erased; see `Job`.
    let ptr: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(dynf) };
    shared.next.store(0, Ordering::Relaxed);
    shared.tasks.store(tasks, Ordering::Relaxed);
    shared.done.store(0, Ordering::Relaxed);
    shared.panicked.store(false, Ordering::Relaxed);
    let epoch = shared.epoch.load(Ordering::Relaxed) + 1;
    *lock(&shared.job) = Some(Job { epoch, f: ptr, helpers });
    shared.epoch.store(epoch, Ordering::SeqCst);
    if shared.sleepers.load(Ordering::SeqCst) > 0 {
        let _guard = lock(&shared.sleep);
        shared.wake.notify_all();
    }
    let mine = panic::catch_unwind(AssertUnwindSafe(|| take_tasks(shared, &f)));
    let mut spins = 0u32;
    while shared.done.load(Ordering::Acquire) < helpers {
        pause(&mut spins);
    }
    *lock(&shared.job) = None;
    let helper_panicked = shared.panicked.load(Ordering::Relaxed);
    pool.busy.store(false, Ordering::Release);
    if let Err(payload) = mine {
        panic::resume_unwind(payload);
    }
    if helper_panicked {
        panic!("a kernel task panicked on a helper thread");
    }
}

/// Takes task indices until none are left.
fn take_tasks(shared: &Shared, f: &(dyn Fn(usize) + Sync)) {
    let tasks = shared.tasks.load(Ordering::Relaxed);
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= tasks {
            return;
        }
        f(i);
    }
}

/// One round of a wait: a CPU pause for the first rounds (a hand-off within a forward pass takes
/// well under a microsecond), then a `sched_yield` per round, so that when the machine has more
/// runnable threads than cores (two models predicting at once, the UI drawing) a waiting thread
/// gives its core to the one it waits for instead of burning its time slice. With nothing else to
/// run, the yield returns at once.
fn pause(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if *spins < 2048 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pool {
    /// Starts helpers up to `wanted`; returns how many there are (fewer if a thread could not be
    /// started).
    fn ensure(&self, wanted: usize) -> usize {
        let mut spawned = lock(&self.spawned);
        while *spawned < wanted {
            let shared = Arc::clone(&self.shared);
            let index = *spawned;
            let started = std::thread::Builder::new()
                .name(format!("modeldeck-kernel-{index}"))
                .spawn(move || helper(&shared, index));
            if started.is_err() {
                break;
            }
            *spawned += 1;
        }
        (*spawned).min(wanted)
    }
}

fn helper(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        while shared.epoch.load(Ordering::Acquire) == seen {
            pause(&mut spins);
            if spins.is_multiple_of(256) && idle_since.elapsed() > SPIN {
                let mut guard = lock(&shared.sleep);
                shared.sleepers.fetch_add(1, Ordering::SeqCst);
                while shared.epoch.load(Ordering::SeqCst) == seen {
                    guard = shared.wake.wait(guard).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                shared.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(guard);
                idle_since = Instant::now();
                spins = 0;
            }
        }
        let Some(job) = *lock(&shared.job) else {
            // The job finished (without this helper) before it looked: wait for the next one.
            seen = shared.epoch.load(Ordering::Acquire);
            continue;
        };
        seen = job.epoch;
        if index >= job.helpers {
            continue;
        }
        // SAFETY: `run` keeps the closure alive until `done` counts this helper.
        let f = unsafe { &*job.f };
        if panic::catch_unwind(AssertUnwindSafe(|| take_tasks(shared, f))).is_err() {
            shared.panicked.store(true, Ordering::Relaxed);
        }
        shared.done.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_across_threads_and_nested_calls_run_inline() {
        for threads in [1, 2, 3] {
            for tasks in [0, 1, 2, 7, 100] {
                let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                run(threads, tasks, |i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                    // A nested call finds the pool busy and runs on this thread.
                    let inner = AtomicUsize::new(0);
                    run(threads, 3, |_| {
                        inner.fetch_add(1, Ordering::Relaxed);
                    });
                    assert_eq!(inner.load(Ordering::Relaxed), 3);
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1), "{threads} threads, {tasks} tasks");
            }
        }
    }

    #[test]
    fn concurrent_callers_and_a_panicking_task_leave_the_pool_working() {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let sum = AtomicUsize::new(0);
                        run(2, 10, |i| {
                            sum.fetch_add(i, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 45);
                    }
                });
            }
        });
        let caught = panic::catch_unwind(|| run(2, 4, |i| assert!(i != 3, "task 3 fails")));
        assert!(caught.is_err());
        let sum = AtomicUsize::new(0);
        run(2, 4, |i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 6);
        // Parked helpers wake for the next job.
        std::thread::sleep(SPIN * 3);
        run(2, 4, |i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 12);
    }
}
