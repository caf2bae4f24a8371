//! Where connections run: one single-threaded tokio runtime per worker thread, each accepting
//! on listening sockets of its own (`SO_REUSEPORT`: the kernel spreads connections over them),
//! so a connection lives and ends on the thread that accepted it — no work stealing, no wakeup
//! handed across threads. Configuration, discovery, the admin endpoint and parking run on the
//! control runtime (the one that calls [`start`]). Without workers (the library in tests),
//! everything runs on the runtime in use.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle};
use tokio::task::JoinHandle;

/// The environment variable that sets the number of worker threads.
pub const WORKER_THREADS_ENV: &str = "CH_EDGE_PROXY_WORKER_THREADS";

static WORKERS: OnceLock<Vec<Handle>> = OnceLock::new();
/// Round robin over the workers for work that belongs to no listening socket.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How many worker threads to start: `CH_EDGE_PROXY_WORKER_THREADS` if set to a positive
/// number, else one per core the process may use (its CPU affinity, e.g. `taskset`, and its
/// cgroup's CPU quota, as `std::thread::available_parallelism` reads them).
pub fn wanted() -> Result<usize, String> {
    match std::env::var(WORKER_THREADS_ENV) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{WORKER_THREADS_ENV}={v:?}: want a positive number of threads"
            )),
        },
        Err(_) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Starts `n` worker threads (`worker-0`…), each running a current-thread runtime until the
/// process ends. Once per process.
pub fn start(n: usize) -> io::Result<()> {
    let mut handles = Vec::with_capacity(n);
    for i in 0..n.max(1) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(
                move || match Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => {
                        let _ = tx.send(Ok(runtime.handle().clone()));
                        runtime.block_on(std::future::pending::<()>());
                    }
                    Err(error) => {
                        let _ = tx.send(Err(error));
                    }
                },
            )?;
        let handle = rx
            .recv()
            .map_err(|_| io::Error::other("a worker thread ended while starting"))??;
        handles.push(handle);
    }
    WORKERS
        .set(handles)
        .map_err(|_| io::Error::other("worker threads already started"))
}

/// How many accept loops (and listening sockets) each listener gets: one per worker, or one
/// on the runtime in use without workers.
pub fn count() -> usize {
    WORKERS.get().map_or(1, |w| w.len().max(1))
}

/// Runs `task` on worker `i` (on the runtime in use without workers). The future is first
/// polled there, so sockets it registers belong to that worker's reactor.
pub fn spawn_on<F>(i: usize, task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match WORKERS.get().filter(|w| !w.is_empty()) {
        Some(workers) => workers[i % workers.len()].spawn(task),
        None => tokio::spawn(task),
    }
}

/// Runs `task` on the next worker in turn: for work that arrives from outside any worker (a
/// parked connection woken by the control runtime's set).
pub fn spawn<F>(task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_on(NEXT.fetch_add(1, Ordering::Relaxed), task)
}
