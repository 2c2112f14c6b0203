//! `provtrail-bench filter`: cost of evaluating a compiled subscription filter on an
//! already-parsed event, next to the cost of parsing that event into a `serde_json::Value`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use crate::measure::{emit, throughput};

/// Arguments of `provtrail-bench filter`.
#[derive(Debug, clap::Args)]
pub struct FilterBenchArgs {
    /// The event to evaluate on (a JSON file).
    #[arg(long)]
    pub payload: PathBuf,
    /// The filter expression (Jayway JsonPath).
    #[arg(long)]
    pub filter: String,
    /// Seconds to spend on each figure.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
}

/// Prints `filter.evaluate`, `baseline.serde_value_parse` and the ratio of their costs.
pub fn run(args: FilterBenchArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.payload)
        .with_context(|| format!("cannot read {}", args.payload.display()))?;
    let name = args
        .payload
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doc: serde_json::Value = serde_json::from_str(&text).context("payload is not JSON")?;
    let path = provtrail_jsonpath::compile(&args.filter).map_err(|e| anyhow::anyhow!("{e}"))?;
    let budget = Duration::from_secs(args.seconds.max(1));

    let evals_per_s = throughput(budget, || {
        path.evaluate(black_box(&doc))
            .map(|e| e.is_match())
            .unwrap_or(false)
    });
    emit(json!({
        "bench": "filter.evaluate",
        "filter": args.filter,
        "payload": name,
        "matches": path.matches(&doc),
        "evals_per_s": evals_per_s.round(),
    }));

    let parses_per_s = throughput(budget, || {
        serde_json::from_str::<serde_json::Value>(black_box(&text))
            .map(|v| v.is_object())
            .unwrap_or(false)
    });
    let bytes = text.len();
    emit(json!({
        "bench": "baseline.serde_value_parse",
        "payload": name,
        "bytes": bytes,
        "events_per_s": parses_per_s.round(),
        "mb_per_s": (parses_per_s * bytes as f64 / 1e6 * 100.0).round() / 100.0,
    }));

    // Cost ratio: time per evaluation over time per parse (target: at most 0.2).
    let ratio = parses_per_s / evals_per_s;
    emit(json!({
        "bench": "filter.ratio_eval_cost_to_parse",
        "filter": args.filter,
        "payload": name,
        "ratio_eval_cost_to_parse": (ratio * 1000.0).round() / 1000.0,
        "target_max": 0.2,
        "meets_target": ratio <= 0.2,
    }));
    Ok(())
}
