//! Where every log line goes: one buffer, written to stdout in batches by its own thread.
//!
//! A write per access-log line was a syscall per connection; here lines (access lines and
//! `tracing` events alike, so they never interleave mid-line) are appended to a buffer that a
//! writer thread empties at least every [`FLUSH_EVERY`], sooner when it fills, and on
//! [`flush`] (drain and exit). The buffer is bounded: when stdout cannot keep up, whole lines
//! are dropped and counted (`ch_edge_proxy_log_lines_dropped_total`), and the next write says
//! how many.

use std::io::{self, Write};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::log_text;
use crate::model::config::LogFormat;
use crate::runtime::meters;

/// Longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// The writer is woken early once this much is waiting.
const WAKE_AT: usize = 64 * 1024;
/// Most bytes held while stdout is slow; further lines are dropped.
const MAX_PENDING: usize = 8 << 20;

/// The buffer and what the writer thread needs to know.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Lines dropped since the writer last reported it.
    dropped: u64,
    /// A flush was asked for; `written` counts completed writes, so the asker can wait.
    flush_asked: bool,
    written: u64,
}

struct Sink {
    pending: Mutex<Pending>,
    /// Wakes the writer (early) and the callers of [`flush`] (when written).
    wake: Condvar,
    done: Condvar,
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        // The writer is started with the first line; it lives as long as the process.
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(writer);
        if let Err(error) = spawned {
            eprintln!("cannot start the log writer: {error}");
        }
        Sink {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
        }
    })
}

fn lock(sink: &Sink) -> MutexGuard<'_, Pending> {
    sink.pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// Appends whole lines (each ending in `\n`).
pub fn append(lines: &[u8]) {
    let sink = sink();
    let mut pending = lock(sink);
    if pending.bytes.len() + lines.len() > MAX_PENDING {
        pending.dropped += lines.iter().filter(|&&b| b == b'\n').count() as u64;
        return;
    }
    pending.bytes.extend_from_slice(lines);
    if pending.bytes.len() >= WAKE_AT {
        sink.wake.notify_one();
    }
}

/// Writes out everything appended so far; returns once it is written (or after a second, if
/// stdout is stuck).
pub fn flush() {
    let sink = sink();
    let mut pending = lock(sink);
    let target = pending.written + 1;
    pending.flush_asked = true;
    sink.wake.notify_one();
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while pending.written < target {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        pending = sink
            .done
            .wait_timeout(pending, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

/// The writer thread: waits for lines (at most [`FLUSH_EVERY`]), swaps the buffer out and writes
/// it with the lock released.
fn writer() {
    let sink = sink();
    let mut spare = Vec::new();
    let mut stdout = io::stdout().lock();
    loop {
        let (mut batch, dropped, asked) = {
            let mut pending = lock(sink);
            if pending.bytes.len() < WAKE_AT && !pending.flush_asked {
                pending = sink
                    .wake
                    .wait_timeout(pending, FLUSH_EVERY)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            let asked = std::mem::take(&mut pending.flush_asked);
            let dropped = std::mem::take(&mut pending.dropped);
            (
                std::mem::replace(&mut pending.bytes, std::mem::take(&mut spare)),
                dropped,
                asked,
            )
        };
        if dropped > 0 {
            metrics::counter!(meters::LOG_LINES_DROPPED).increment(dropped);
            let _ = match log_text::current() {
                LogFormat::Json => writeln!(
                    stdout,
                    "{{\"timestamp\":\"{}\",\"level\":\"WARN\",\"message\":\"log lines dropped: stdout too slow\",\"dropped\":{dropped},\"target\":\"log\"}}",
                    log_text::timestamp()
                ),
                LogFormat::Text => writeln!(
                    stdout,
                    "{} WARN log lines dropped: stdout too slow dropped={dropped} target=log",
                    log_text::timestamp()
                ),
            };
        }
        if !batch.is_empty() {
            // A failed write (stdout closed) loses the batch; nothing better to do with it.
            let _ = stdout.write_all(&batch).and_then(|()| stdout.flush());
        }
        batch.clear();
        if batch.capacity() > 4 * WAKE_AT {
            batch = Vec::new(); // a burst's buffer is not kept for ever
        }
        spare = batch;
        let mut pending = lock(sink);
        pending.written += 1;
        if asked || pending.flush_asked {
            sink.done.notify_all();
        }
    }
}

/// `tracing`'s writer: every event goes through the same buffer as the access lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lines;

/// One `tracing` event, appended whole when it is dropped.
pub struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            append(&self.0);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}
