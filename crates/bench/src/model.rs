//! `provtrail-bench model`: parse + validate and serialize throughput of the event model, next to
//! two baselines measured in the same run: `serde_json::Value` on the same bytes, and SailPoint's
//! Python SDK (`sailpoint.triggers.models.provisioning_completed.ProvisioningCompleted`) when
//! `python3` can import it.
//!
//! The figures are measured in rounds, each giving every figure a slice of the time in turn (this
//! crate, `Value`, the SDK), so that a change in the machine's load during the run weighs on all of
//! them alike; a figure is the median of its rounds, and a ratio the median of the ratios within
//! each round.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
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
    /// Seconds to spend on each figure, over all rounds.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds the time is split into (see the module's documentation).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The Python interpreter that has the `sailpoint` package (skip the SDK baseline with "none").
    #[arg(long, default_value = "python3")]
    python: String,
}

/// The rates of one round, events per second.
#[derive(Debug, Default, Clone, Copy)]
struct Round {
    parse: f64,
    serialize: f64,
    value: f64,
    sdk_parse: Option<f64>,
    sdk_serialize: Option<f64>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.payload)
        .with_context(|| format!("cannot read {}", args.payload.display()))?;
    let name = payload_name(&args.payload);
    let rounds = args.rounds.max(1);
    let slice = Duration::from_secs_f64(args.seconds / rounds as f64);
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

    let mut sdk = if args.python == "none" {
        None
    } else {
        match Sdk::start(&args.python, &args.payload) {
            Ok(sdk) => Some(sdk),
            Err(err) => {
                eprintln!("skipping the Python SDK baseline: {err:#}");
                None
            }
        }
    };
    let mut buffer = Vec::with_capacity(bytes.len() * 2);
    let mut measured = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut round = Round {
            parse: throughput(slice, || validate_slice(&bytes, &options)),
            value: throughput(slice, || serde_json::from_slice::<Value>(&bytes)),
            ..Round::default()
        };
        round.sdk_parse = sdk_rate(&mut sdk, "parse", slice);
        round.serialize = throughput(slice, || {
            buffer.clear();
            event.write_json(&mut buffer)
        });
        round.sdk_serialize = sdk_rate(&mut sdk, "serialize", slice);
        measured.push(round);
    }
    let of = |pick: fn(&Round) -> f64| median(measured.iter().map(pick).collect());
    let parse = of(|r| r.parse);
    emit(figure("model.parse_validate", parse));
    emit(figure("model.serialize", of(|r| r.serialize)));
    emit(figure("baseline.serde_value_parse", of(|r| r.value)));
    emit(json!({
        "bench": "ratio.parse_validate_vs_serde_value",
        "payload": name,
        "ratio": (of(|r| r.parse / r.value) * 100.0).round() / 100.0,
    }));

    let complete: Vec<(f64, f64, f64, f64)> = measured
        .iter()
        .filter_map(|r| Some((r.parse, r.serialize, r.sdk_parse?, r.sdk_serialize?)))
        .filter(|(_, _, parse, serialize)| *parse > 0.0 && *serialize > 0.0)
        .collect();
    if let (Some(sdk), false) = (&sdk, complete.is_empty()) {
        let medians =
            |pick: fn(&(f64, f64, f64, f64)) -> f64| median(complete.iter().map(pick).collect());
        let mut line = figure("baseline.python_sdk_parse_validate", medians(|r| r.2));
        line["sdk"] = json!(format!(
            "sailpoint {} on CPython {}",
            sdk.version["sdk_version"].as_str().unwrap_or("?"),
            sdk.version["python"].as_str().unwrap_or("?")
        ));
        emit(line);
        emit(figure("baseline.python_sdk_serialize", medians(|r| r.3)));
        let round_to_tenth = |x: f64| (x * 10.0).round() / 10.0;
        emit(json!({
            "bench": "ratio.vs_python_sdk",
            "payload": name,
            "parse_validate": round_to_tenth(medians(|r| r.0 / r.2)),
            "serialize": round_to_tenth(medians(|r| r.1 / r.3)),
            "rounds": complete.len(),
            "parse_validate_per_round": complete.iter().map(|r| round_to_tenth(r.0 / r.2)).collect::<Vec<_>>(),
        }));
    }
    Ok(())
}

/// The SDK's rate of `op` over `time`; on a failure the SDK is dropped from the run (said once).
fn sdk_rate(sdk: &mut Option<Sdk>, op: &str, time: Duration) -> Option<f64> {
    match sdk.as_mut()?.rate(op, time) {
        Ok(rate) => Some(rate),
        Err(err) => {
            eprintln!("skipping the Python SDK baseline: {err:#}");
            *sdk = None;
            None
        }
    }
}

/// The SDK's measuring script, running beside the bench and measuring on request.
struct Sdk {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    /// `{"sdk_version", "python"}`.
    version: Value,
}

impl Sdk {
    fn start(python: &str, payload: &std::path::Path) -> anyhow::Result<Sdk> {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(SDK_SCRIPT)
            .arg(payload)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {python}"))?;
        let input = child.stdin.take().context("no input to the SDK script")?;
        let output = BufReader::new(
            child
                .stdout
                .take()
                .context("no output from the SDK script")?,
        );
        let mut sdk = Sdk {
            child,
            input,
            output,
            version: Value::Null,
        };
        sdk.version = sdk.read().map_err(|err| {
            let mut stderr = String::new();
            if let Some(mut pipe) = sdk.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            err.context(format!(
                "{python} failed (is `pip install sailpoint` done?): {}",
                stderr.trim()
            ))
        })?;
        Ok(sdk)
    }

    fn read(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        self.output.read_line(&mut line)?;
        anyhow::ensure!(!line.is_empty(), "the SDK script stopped");
        serde_json::from_str(line.trim()).context("unexpected output from the SDK script")
    }

    /// Events per second of `op` (`parse` or `serialize`) over `time`.
    fn rate(&mut self, op: &str, time: Duration) -> anyhow::Result<f64> {
        writeln!(self.input, "{op} {}", time.as_secs_f64())?;
        self.input.flush()?;
        self.read()?["per_s"]
            .as_f64()
            .context("unexpected output from the SDK script")
    }
}

impl Drop for Sdk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
