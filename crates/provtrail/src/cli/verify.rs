//! `provtrail verify`: whether a database file still holds every document it acknowledged, as
//! it arrived: SQLite's check of the file, then every stored body read back.

use std::process::ExitCode;

use provtrail::store::StoreError;
use provtrail::store::sqlite::{EventFile, Verification};
use serde_json::json;

use super::OutputFormat;

/// Arguments of `provtrail verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    database: super::database::DatabaseArgs,
    /// SQLite's quick check (pages and records) instead of its full one, which also checks
    /// that every index entry matches its row and takes longer on a large store.
    #[arg(long)]
    quick: bool,
    /// The report: for people (`text`) or one JSON object (`json`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let db = args.database.path()?;
    anyhow::ensure!(
        db.exists(),
        "there is no database at {} (give --db)",
        db.display()
    );
    let path = db.clone();
    let quick = args.quick;
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Verification> {
        // Read-only, beside a running server too: nothing is written, no lock is waited for.
        let file = match EventFile::open(&path) {
            Ok(file) => file,
            // A file cut short or overwritten where SQLite reads first is what this command is
            // for: a finding, not a failure to check.
            Err(StoreError::Damaged(reason)) => {
                return Ok(Verification {
                    structure: vec![format!("the file cannot be opened: {reason}")],
                    quick,
                    ..Verification::default()
                });
            }
            Err(err) => return Err(err.into()),
        };
        let Some(file) = file else {
            anyhow::bail!(
                "{} has an older schema: start `provtrail serve` (or run `provtrail ingest`) on \
                 it once to bring it up to date, then verify it",
                path.display()
            );
        };
        // Best effort: a count read through a damaged index fails, and the check says why.
        let progress = super::progress_bar(file.documents().ok(), "reading back");
        let bar = progress.clone();
        let found = file.verify(quick, &mut |read| bar.set_position(read))?;
        progress.finish_and_clear();
        Ok(found)
    })
    .await??;
    report(&db, &found, args.format)?;
    Ok(if found.intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report(db: &std::path::Path, found: &Verification, format: OutputFormat) -> std::io::Result<()> {
    let check = if found.quick {
        "quick_check"
    } else {
        "integrity_check"
    };
    match format {
        OutputFormat::Json => {
            let summary = json!({
                "database": db.display().to_string(),
                "intact": found.intact(),
                "sqlite_check": check,
                "sqlite_problems": found.structure,
                "events_read": found.events,
                "quarantined_read": found.quarantined,
                "problems": found.problems,
                "problems_unlisted": found.problems_unlisted,
            });
            say!("{summary}")?;
        }
        OutputFormat::Text => {
            say!(
                "{}: {} event(s) and {} quarantined document(s) read back",
                db.display(),
                provtrail::grouped_thousands(found.events),
                provtrail::grouped_thousands(found.quarantined)
            )?;
            if found.structure.is_empty() {
                say!("SQLite's {check}: ok")?;
            } else {
                say!("SQLite's {check} found problems:")?;
                for line in &found.structure {
                    say!("  {}", super::terminal_line(line))?;
                }
            }
            for problem in &found.problems {
                say!(
                    "{} {}: {}",
                    problem.kind,
                    problem.id,
                    super::terminal_line(&problem.problem)
                )?;
            }
            if found.problems_unlisted > 0 {
                say!("and {} more", found.problems_unlisted)?;
            }
            if found.intact() {
                say!("intact: every stored document reads back as it arrived")?;
            } else {
                say!(
                    "NOT INTACT: keep a copy of the files as they are (the database with its -wal \
                     file) before anything else writes to them; `provtrail export` saves the \
                     events that still read back"
                )?;
            }
        }
    }
    Ok(())
}
