//! `provtrail demo`: serve on a demo store and drive realistic synthetic traffic through the real
//! HTTP path (authentication, validation, deduplication, group commit), then say where to look.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use provtrail::sender::{Answer, Auth, SendOptions, SendReport, client, post, send_all};
use provtrail::synth::{Generator, SynthOptions};
use tokio::sync::mpsc;

use super::serve::{ServerArgs, prepare};

/// Arguments of `provtrail demo`.
#[derive(Debug, clap::Args)]
// The server's options as the demo uses them: its own store, loopback, and no configuration or
// store taken from the environment, so that the help says what the demo does.
#[command(
    mut_arg("db", |arg| arg
        .env(None::<&str>)
        .help("The demo's database file [default: provtrail-demo.db]")),
    mut_arg("config", |arg| arg
        .env(None::<&str>)
        .help("Configuration file (TOML); the demo reads none unless named here")),
    mut_arg("listen", |arg| arg.help("Address to listen on [default: 127.0.0.1:8080]")),
)]
pub struct DemoArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Synthetic events to send (at least 1).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Events per second (0: as fast as the server takes them).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Share of account requests that fail.
    #[arg(long, default_value_t = 0.05)]
    failure_rate: f64,
    /// Stop after the traffic instead of serving until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

pub async fn run(mut args: DemoArgs) -> anyhow::Result<ExitCode> {
    // Made-up traffic must not land in a real deployment: the demo takes its store and its
    // configuration only from its own command line (its `--db` and `--config` read no
    // PROVTRAIL_DB or PROVTRAIL_CONFIG, set for the real server), never ./provtrail.toml, and
    // runs no routes.
    args.server.only_named_config = true;
    if args.server.db.is_none() {
        args.server.db = Some("provtrail-demo.db".into());
    }
    if args.server.listen.is_none() {
        args.server.listen = Some("127.0.0.1:8080".into());
    }
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.failure_rate),
        "--failure-rate is a share between 0 and 1, not {}",
        args.failure_rate
    );
    anyhow::ensure!(
        args.rate == 0.0 || (0.001..=1e6).contains(&args.rate),
        "--rate is events per second from 0.001 to 1000000, or 0 (as fast as possible), not {}",
        args.rate
    );
    let mut prepared = prepare(&args.server)?;
    if !prepared.settings.routes.is_empty() {
        super::tell(
            "provtrail demo: the configuration's routes are not run: the demo's events are made up",
        );
        prepared.settings.routes = std::sync::Arc::new(provtrail::routes::Routes::none());
    }
    super::serve::ensure_open_file_room(prepared.settings.server.max_connections);
    let app = prepared.start().await?;
    let addr = app.server.local_addr();
    // Served over TLS (PROVTRAIL_TLS_CERT and _KEY apply to the demo as to serve), its traffic
    // is HTTPS too.
    let tls = prepared.settings.server.tls.is_some();
    let base = format!("{}://{addr}", if tls { "https" } else { "http" });
    let auth = match (
        prepared.settings.ingest_tokens.first(),
        prepared.settings.ingest_basic.first(),
    ) {
        (Some(token), _) => Auth::Bearer(token.clone()),
        (None, Some(pair)) => Auth::Basic(pair.clone()),
        (None, None) => Auth::None,
    };
    super::tell(&format!(
        "provtrail demo: serving on {base} (store: {})",
        prepared.settings.store.path.display()
    ));
    super::tell(&format!(
        "sending {} synthetic events to {base}/events/demo at {} …",
        args.events,
        if args.rate > 0.0 {
            format!("{}/s", args.rate)
        } else {
            "full speed".to_owned()
        }
    ));

    let options = SendOptions {
        url: format!("{base}/events/demo"),
        auth: auth.clone(),
        concurrency: 8,
        rate: (args.rate > 0.0).then_some(args.rate),
        timeout: Duration::from_secs(30),
        // Its own server on this machine, whose certificate names the host ISC reaches rather
        // than the loopback address the demo sends to.
        insecure: tls,
        // Its own server: an answer to send again later is something to show, not to hide.
        retries: 0,
    };
    let (documents, generated) = mpsc::channel::<(u64, Bytes)>(64);
    // Ctrl-C during the traffic stops it; the demo then says what it sent and stops serving.
    let (receiver, interrupted) = super::stop_on_ctrl_c(generated);
    // Listened for from now on: a Ctrl-C between the traffic's end and the serving is kept for
    // the serving to end on (unheard, it would be lost).
    let mut serving_stop = super::StopSignals::listen();
    let synth = SynthOptions {
        seed: rand::random(),
        failure_rate: args.failure_rate,
        ..SynthOptions::default()
    };
    let count = args.events;
    let producer = tokio::task::spawn_blocking(move || {
        let mut generator = Generator::new(&synth);
        let mut resend = Vec::new();
        for n in 0..count {
            let body = Bytes::from(generator.next_json());
            // ISC may deliver an event twice: every twentieth event goes again.
            if n % 20 == 0 {
                resend.push(body.clone());
            }
            if documents.blocking_send((n + 1, body)).is_err() {
                return;
            }
        }
        for (n, body) in (count + 1..).zip(resend) {
            if documents.blocking_send((n, body)).is_err() {
                return;
            }
        }
    });
    let progress = super::progress_bar(Some(count + count.div_ceil(20)), "demo traffic");
    let bar = progress.clone();
    let report = send_all(&options, receiver, &interrupted, move |_: &Answer| {
        bar.inc(1)
    })
    .await?;
    progress.finish_and_clear();
    let interrupted = interrupted.is_set();
    if interrupted {
        // The generator stops at its next event, which has nowhere to go.
        drop(producer);
        say!()?;
        say!(
            "interrupted: sent {} requests in {:.1}s: {}",
            report.sent,
            report.elapsed.as_secs_f64(),
            outcomes(&report)
        )?;
        say!(
            "the events are in {}; stopping the server",
            prepared.settings.store.path.display()
        )?;
        app.shutdown().await;
        return Ok(ExitCode::from(130));
    }
    producer
        .await
        .context("the demo's event generator stopped")?;

    // What else a real endpoint sees: an invalid event, a body that is not JSON, a wrong token.
    let http = client(&options)?;
    let invalid = Bytes::from_static(
        br#"{"trackingNumber": "demo-invalid", "sources": "Corp AD", "recipient": {"type": "IDENTITY", "id": "x"}, "accountRequests": [{"source": {"id": "s", "type": "SOURCE", "name": "Corp AD"}, "accountOperation": "Modify", "provisioningResult": "DONE"}]}"#,
    );
    let quarantined = post(&http, &options, invalid).await;
    let not_json = post(
        &http,
        &options,
        Bytes::from_static(b"<html>not an event</html>"),
    )
    .await;
    // Without authentication there is no wrong token: the body would only be kept.
    let refused = if prepared.settings.no_auth {
        None
    } else {
        let wrong_token = SendOptions {
            auth: Auth::Bearer("not-the-token".into()),
            ..options.clone()
        };
        Some(post(&http, &wrong_token, Bytes::from_static(b"{}")).await)
    };

    say!()?;
    say!(
        "sent {} requests in {:.1}s: {}",
        report.sent,
        report.elapsed.as_secs_f64(),
        outcomes(&report)
    )?;
    for (label, answer) in [
        ("an invalid event", Some(&quarantined)),
        ("a body that is not JSON", Some(&not_json)),
        ("a wrong token", refused.as_ref()),
    ] {
        if let Some(Answer::Http { status, .. }) = answer {
            say!("and {label}: HTTP {status}")?;
        }
    }
    say!()?;
    if args.exit {
        app.shutdown().await;
        where_to_look(&prepared, &base, false)?;
        return Ok(ExitCode::SUCCESS);
    }
    where_to_look(&prepared, &base, true)?;
    say!()?;
    say!("Serving until Ctrl-C.")?;
    serving_stop.next().await;
    app.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The pages, commands and endpoints that show what the traffic left behind.
/// With `serving` false (the server has stopped: `--exit`), only what reads the store.
fn where_to_look(
    prepared: &super::serve::Prepared,
    base: &str,
    serving: bool,
) -> anyhow::Result<()> {
    let db = prepared.settings.store.path.display();
    // The demo's store holds made-up events only, so its read token can be shown every time.
    let sign_in = match &prepared.read_token_file {
        Some(path) => {
            let token = prepared
                .new_read_token
                .clone()
                .or_else(|| std::fs::read_to_string(path).ok())
                .map(|token| token.trim().to_owned())
                .unwrap_or_default();
            format!(
                "sign in with the read token {token}, kept in {}",
                path.display()
            )
        }
        None => "sign in with one of the configured read tokens".to_owned(),
    };
    let send = match &prepared.token_file {
        Some(token_file) => format!(
            "provtrail send {base}/events FILE --token-file {}",
            token_file.display()
        ),
        None if prepared.settings.no_auth => format!("provtrail send {base}/events FILE"),
        None => format!("provtrail send {base}/events FILE --token …"),
    };
    let on_disk = [
        (
            "failed requests",
            format!("provtrail search --db {db} --result FAILED"),
        ),
        ("outcomes by source", format!("provtrail stats --db {db}")),
        (
            "refused documents",
            format!("provtrail quarantine --db {db}"),
        ),
        ("every stored event", format!("provtrail export --db {db}")),
    ];
    let places: Vec<(&str, String)> = if serving {
        [("the web UI", format!("{base}/")), ("", sign_in)]
            .into_iter()
            .chain(on_disk)
            .chain([
                ("metrics", format!("{base}/metrics")),
                ("post your own events", send),
            ])
            .collect()
    } else {
        // The server has stopped: its URLs lead nowhere now.
        on_disk
            .into_iter()
            .chain([(
                "the web UI again",
                format!("provtrail demo --db {db} (or provtrail serve --db {db})"),
            )])
            .collect()
    };
    let width = places.iter().map(|(what, _)| what.len()).max().unwrap_or(0);
    say!("Where to look:")?;
    for (what, place) in places {
        say!("  {what:<width$}  {place}")?;
    }
    Ok(())
}

/// "12 accepted, 1 duplicate": the report's answers by outcome.
fn outcomes(report: &SendReport) -> String {
    report
        .by_outcome
        .iter()
        .map(|(outcome, n)| format!("{n} {outcome}"))
        .collect::<Vec<_>>()
        .join(", ")
}
