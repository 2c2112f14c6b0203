//! `provtrail-bench model`: parse + validate and serialize throughput of the event model, next to
//! two baselines measured in the same run: `serde_json::Value` on the same bytes, and SailPoint's
//! Python SDK (`sailpoint.triggers.models.provisioning_completed.ProvisioningCompleted`) when
//! `python3` can import it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use provtrail_model::{Options, validate_slice};
use serde_json::{Value, json};

use crate::measure::{emit, payload_name, throughput};

const SDK_SCRIPT: &str = include_str!("../scripts/sdk_model.py");

/// Arguments of `provtrail-bench model`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// The event to measure (a JSON file).
    #[arg(long)]
    payload: PathBuf,
    /// Seconds to spend on each figure.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// The Python interpreter that has the `sailpoint` package (skip the SDK baseline with "none").
    #[arg(long, default_value = "python3")]
    python: String,
}

pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.payload)
        .with_context(|| format!("cannot read {}", args.payload.display()))?;
    let name = payload_name(&args.payload);
    let budget = Duration::from_secs_f64(args.seconds);
    let size = bytes.len() as f64;
    let figure = |bench: &str, per_s: f64| {
        json!({
            "bench": bench,
            "payload": name,
            "bytes": bytes.len(),
            "events_per_s": per_s.round(),
            "mb_per_s": (per_s * size / 1e6 * 100.0).round() / 100.0,
        })
    };

    let options = Options::lenient();
    let report = validate_slice(&bytes, &options).context("the payload is not JSON")?;
    anyhow::ensure!(
        report.is_valid(),
        "the payload is not a valid event: {:?}",
        report.errors
    );
    let event = report.event.context("the payload is not a valid event")?;

    let parse = throughput(budget, || validate_slice(&bytes, &options));
    emit(figure("model.parse_validate", parse));
    let mut buffer = Vec::with_capacity(bytes.len() * 2);
    let serialize = throughput(budget, || {
        buffer.clear();
        event.write_json(&mut buffer)
    });
    emit(figure("model.serialize", serialize));
    let baseline = throughput(budget, || serde_json::from_slice::<Value>(&bytes));
    emit(figure("baseline.serde_value_parse", baseline));
    emit(json!({
        "bench": "ratio.parse_validate_vs_serde_value",
        "payload": name,
        "ratio": (parse / baseline * 100.0).round() / 100.0,
    }));

    if args.python != "none" {
        match run_sdk(&args.python, &args.payload, args.seconds) {
            Ok(sdk) => {
                let parse_sdk = sdk["parse_per_s"].as_f64().unwrap_or(0.0);
                let serialize_sdk = sdk["serialize_per_s"].as_f64().unwrap_or(0.0);
                let mut line = figure("baseline.python_sdk_parse_validate", parse_sdk);
                line["sdk"] = json!(format!(
                    "sailpoint {} on CPython {}",
                    sdk["sdk_version"].as_str().unwrap_or("?"),
                    sdk["python"].as_str().unwrap_or("?")
                ));
                emit(line);
                emit(figure("baseline.python_sdk_serialize", serialize_sdk));
                if parse_sdk > 0.0 && serialize_sdk > 0.0 {
                    emit(json!({
                        "bench": "ratio.vs_python_sdk",
                        "payload": name,
                        "parse_validate": (parse / parse_sdk * 10.0).round() / 10.0,
                        "serialize": (serialize / serialize_sdk * 10.0).round() / 10.0,
                    }));
                }
            }
            Err(err) => eprintln!("skipping the Python SDK baseline: {err:#}"),
        }
    }
    Ok(())
}

fn run_sdk(python: &str, payload: &std::path::Path, seconds: f64) -> anyhow::Result<Value> {
    let output = Command::new(python)
        .arg("-c")
        .arg(SDK_SCRIPT)
        .arg(payload)
        .arg(seconds.to_string())
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{python} failed (is `pip install sailpoint` done?): {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).context("unexpected output from the SDK script")
}
