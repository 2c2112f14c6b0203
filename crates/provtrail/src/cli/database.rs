//! Which database file a command that works on a store uses, when `--db` does not say: the one
//! `provtrail serve` would use, so that `ingest`, `export` and the read commands never work on
//! another store than the server's (or make a new one beside it).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use provtrail::config::FileConfig;

/// The flags that say which database file to work on.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DatabaseArgs {
    /// The database file [default: $PROVTRAIL_DB, else the configuration file's store.path,
    /// else provtrail.db].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The configuration file whose store.path names the database when neither --db nor
    /// PROVTRAIL_DB does [default: $PROVTRAIL_CONFIG, else ./provtrail.toml when it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl DatabaseArgs {
    /// The configuration file's `store.max_size` (the file `serve` would read: `--config`, else
    /// `PROVTRAIL_CONFIG`, else `./provtrail.toml` when it exists), so that a command that
    /// writes to the store keeps to the cap the server keeps to.
    pub fn configured_max_size(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = configuration_file(self.config.as_deref())? else {
            return Ok(None);
        };
        let file = FileConfig::load(&path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        Ok(file.store.max_size)
    }

    /// The database file: `--db`, else as [`default_database`] finds it.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.db {
            Some(db) if db.as_os_str().is_empty() => {
                anyhow::bail!("--db is empty: give the database file's path")
            }
            Some(db) => Ok(db.clone()),
            None => default_database(self.config.as_deref()),
        }
    }
}

/// The database `serve` would use with no `--db`: `PROVTRAIL_DB`, else the `store.path` of the
/// configuration file (`config`, else `PROVTRAIL_CONFIG`, else `./provtrail.toml` when it
/// exists), else `provtrail.db`. A configuration file that cannot be read is an error, as it is
/// for `serve`: the store it names is unknown.
pub fn default_database(config: Option<&Path>) -> anyhow::Result<PathBuf> {
    match std::env::var_os("PROVTRAIL_DB") {
        Some(db) if db.is_empty() => anyhow::bail!(
            "PROVTRAIL_DB is set but empty: set it to the database file's path, or unset it"
        ),
        Some(db) => return Ok(PathBuf::from(db)),
        None => {}
    }
    if let Some(path) = configuration_file(config)? {
        let named_by = if config.is_none() && std::env::var_os("PROVTRAIL_CONFIG").is_some() {
            ", named by the environment's PROVTRAIL_CONFIG"
        } else {
            ""
        };
        let file = FileConfig::load(&path).with_context(|| {
            format!(
                "cannot tell which database to use: it would be the store.path of the \
                 configuration file {}{named_by}; give --db to choose one",
                path.display()
            )
        })?;
        if let Some(db) = file.store.path {
            anyhow::ensure!(
                !db.as_os_str().is_empty(),
                "store.path in {} is empty: give the database file's path",
                path.display()
            );
            return Ok(db);
        }
    }
    Ok(PathBuf::from("provtrail.db"))
}

/// The configuration file a command reads: `config`, else `PROVTRAIL_CONFIG`, else
/// `./provtrail.toml` when it exists.
fn configuration_file(config: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    Ok(match config {
        Some(path) => Some(path.to_path_buf()),
        None => match std::env::var_os("PROVTRAIL_CONFIG") {
            Some(path) if path.is_empty() => anyhow::bail!(
                "PROVTRAIL_CONFIG is set but empty: set it to the configuration file's path, or \
                 unset it"
            ),
            Some(path) => Some(PathBuf::from(path)),
            None => FileConfig::default_path(),
        },
    })
}
