//! CPU time of one parse + validate (lenient) of a payload, for comparing changes to the reader on
//! a machine shared with other work, where wall-clock throughput (the bench binary's measure)
//! swings with the load. Linux only: it reads the thread's CPU time from
//! `/proc/thread-self/schedstat`.
//!
//! ```sh
//! cargo run --release -p provtrail-model --example cpu_per_parse -- /work/shared/payloads/doc_example.json
//! ```
//!
//! Prints the lowest and the median of ten rounds, in nanoseconds per parse. For a count that does
//! not depend on the load at all, run the same under `valgrind --tool=callgrind` and divide the
//! instructions by the number of parses (the second argument).

use std::hint::black_box;
use std::process::ExitCode;

use provtrail_model::{Options, validate_slice};

// The allocator of `provtrail` and `provtrail-bench`, so that the figure is theirs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU time of this thread so far, in nanoseconds (the first field of schedstat).
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: cpu_per_parse PAYLOAD [PARSES]");
        return ExitCode::FAILURE;
    };
    let parses: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000_000);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("cannot read {path}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let options = Options::lenient();
    let rounds = 10;
    let per_round = (parses / rounds).max(1);
    let mut times = Vec::new();
    for _ in 0..rounds {
        let Some(start) = cpu_ns() else {
            eprintln!("cannot read /proc/thread-self/schedstat");
            return ExitCode::FAILURE;
        };
        for _ in 0..per_round {
            drop(black_box(validate_slice(black_box(&bytes), &options)));
        }
        let end = cpu_ns().unwrap_or(start);
        times.push(end.saturating_sub(start) as f64 / per_round as f64);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "CPU ns per parse + validate: lowest {:.0}, median {:.0}",
        times.first().copied().unwrap_or_default(),
        times.get(times.len() / 2).copied().unwrap_or_default()
    );
    ExitCode::SUCCESS
}
