//! Shared measuring helpers: a time-boxed throughput loop and JSON-lines output.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Runs `op` repeatedly for about `budget` (after a short warm-up) and returns operations per second.
///
/// The loop checks the clock only every `batch` calls so that timing overhead stays out of the figure
/// for very fast operations.
pub fn throughput<T>(budget: Duration, mut op: impl FnMut() -> T) -> f64 {
    let warm_up = budget / 10;
    let start = Instant::now();
    while start.elapsed() < warm_up {
        black_box(op());
    }
    let mut batch: u64 = 1;
    let mut done: u64 = 0;
    let start = Instant::now();
    loop {
        for _ in 0..batch {
            black_box(op());
        }
        done += batch;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return done as f64 / elapsed.as_secs_f64();
        }
        if elapsed < budget / 100 {
            batch = batch.saturating_mul(2);
        }
    }
}

/// Prints one figure as a JSON line on standard output.
pub fn emit(figure: serde_json::Value) {
    println!("{figure}");
}

/// The file name of a payload, for the `payload` field of figures.
pub fn payload_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// CPU time this process has used so far (user and system, every thread, live or ended), in
/// seconds; `None` off Linux. Read from `/proc/self/stat` in clock ticks (100 per second on
/// Linux), which is fine for the seconds-long phases it measures.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}
