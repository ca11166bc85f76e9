//! Opening a store: which backend a `database_url` names, its pool, its
//! migrations, and errors that name the database without its password.

use super::{Pool, Store, StoreError, DB_FILE};
use crate::config::{redact_url, PoolSettings};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// The schema for each backend: one numbering, one file per version in each
/// directory (`migrations/sqlite/000N_*.sql`, `migrations/postgres/000N_*.sql`).
pub(super) static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/sqlite");
pub(super) static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/postgres");

/// SQLite's pool: one writer at a time anyway; readers share WAL snapshots.
const SQLITE_MAX_CONNECTIONS: u32 = 8;

impl Store {
    /// Opens (creating if missing) `data_dir/berth.db` and brings its schema up
    /// to date. Creates `data_dir` too.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        Self::open_file(&data_dir.join(DB_FILE)).await
    }

    /// Opens the database named by `server.database_url`, with default pool
    /// settings: `sqlite://PATH` (or `sqlite:PATH`), or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (or `postgresql://`).
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        Self::connect(url, PoolSettings::default()).await
    }

    /// [`Store::open_url`] with explicit pool settings.
    pub async fn connect(url: &str, settings: PoolSettings) -> Result<Store, StoreError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::Unsupported(format!(
                    "{url:?} names no file: use sqlite:///absolute/path.db or sqlite://relative.db"
                )));
            }
            return Self::open_file(Path::new(path)).await;
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::open_postgres(url, settings).await;
        }
        Err(StoreError::Unsupported(format!(
            "database_url {:?} is not supported: use sqlite://PATH or \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE (postgresql:// also works)",
            redact_url(url)
        )))
    }

    async fn open_file(file: &Path) -> Result<Store, StoreError> {
        // The database holds the cookie-signing key: owner only, from the
        // moment it exists (SQLite gives -wal and -shm the same mode).
        private_file(file, true)?;
        let options = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(SQLITE_MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        if let Err(e) = SQLITE_MIGRATIONS.run(&pool).await {
            let target = format!("the database {}", file.display());
            let newest = || async {
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                    .fetch_one(&pool)
                    .await
            };
            let err = migrate_error(e, &SQLITE_MIGRATIONS, target, newest).await;
            pool.close().await;
            return Err(err);
        }
        // Files left by an older berth may be readable by others.
        for suffix in ["-wal", "-shm"] {
            let mut side = file.as_os_str().to_owned();
            side.push(suffix);
            private_file(Path::new(&side), false)?;
        }
        Ok(Self::ready(Pool::Sqlite(pool)))
    }

    /// Ends this process's use of the database (a clean shutdown). On
    /// SQLite the write-ahead log is copied into the database file and
    /// truncated first, so `berth.db` alone holds every committed write
    /// (a copy or backup of it misses nothing, and losing `berth.db-wal`
    /// later loses nothing). Later calls on any clone of this store fail.
    pub async fn close(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                let (busy, log, done): (i64, i64, i64) =
                    sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                        .fetch_one(pool)
                        .await?;
                if busy != 0 {
                    tracing::warn!(
                        log_pages = log,
                        checkpointed = done,
                        "the database's write-ahead log could not be fully checkpointed at shutdown"
                    );
                }
                pool.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
        Ok(())
    }

    async fn open_postgres(url: &str, settings: PoolSettings) -> Result<Store, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Connect {
            target: redact_url(url),
            cause: e,
        })?;
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name("berth"),
        };
        let target = describe(&options);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|cause| StoreError::Connect {
                target: target.clone(),
                cause,
            })?;
        // The migrator holds an advisory lock, so replicas starting together
        // apply each migration once.
        if let Err(e) = POSTGRES_MIGRATIONS.run(&pool).await {
            let newest = || async {
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                    .fetch_one(&pool)
                    .await
            };
            let target = format!("the database {target}");
            let err = migrate_error(e, &POSTGRES_MIGRATIONS, target, newest).await;
            // Closing releases the migrator's advisory lock at once.
            pool.close().await;
            return Err(err);
        }
        tracing::info!(database = %target, "using PostgreSQL");
        Ok(Self::ready(Pool::Postgres(pool)))
    }

    /// A private in-memory SQLite database, for tests: one connection that
    /// lives as long as the store.
    pub async fn open_memory() -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        Ok(Self::ready(Pool::Sqlite(pool)))
    }

    fn ready(pool: Pool) -> Store {
        // Compute the dummy hash now, off the async threads, so that the first
        // login for an unknown user is not slower than the others.
        drop(tokio::task::spawn_blocking(crate::auth::password::warm_up));
        Store {
            pool,
            replica: format!("{:016x}", rand::random::<u64>()).into(),
            catalog_sync: Default::default(),
        }
    }
}

/// Makes `file` readable and writable by its owner only (mode 0600),
/// creating it empty first when `create` is set and it does not exist (an
/// empty file is an empty SQLite database). A file that does not exist is
/// left alone otherwise.
fn private_file(file: &Path, create: bool) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if file.as_os_str() == ":memory:" {
            return Ok(());
        }
        if create {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(file)
            {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        match std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    #[cfg(not(unix))]
    let _ = (file, create);
    Ok(())
}

/// The newest schema version (migration) this binary knows.
pub fn schema_version() -> i64 {
    latest(&SQLITE_MIGRATIONS)
}

fn latest(migrator: &sqlx::migrate::Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// A failed migration as a [`StoreError`]. sqlx refuses a database that has
/// applied a migration this binary does not have (`VersionMissing`, checked
/// before it applies anything); when that database is ahead of this binary,
/// i.e. a newer berth wrote it, say so with both schema versions.
/// `newest` reads the database's newest applied migration.
async fn migrate_error<F, Fut>(
    e: sqlx::migrate::MigrateError,
    migrator: &sqlx::migrate::Migrator,
    target: String,
    newest: F,
) -> StoreError
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<i64>, sqlx::Error>>,
{
    let sqlx::migrate::MigrateError::VersionMissing(_) = e else {
        return e.into();
    };
    let binary = latest(migrator);
    match newest().await {
        Ok(Some(database)) if database > binary => StoreError::SchemaTooNew {
            target,
            database,
            binary,
        },
        _ => e.into(),
    }
}

/// `postgres://USER@HOST:PORT/DATABASE`: where a PostgreSQL store connects,
/// for messages and logs (never the password).
fn describe(options: &PgConnectOptions) -> String {
    let user = options.get_username();
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let database = options.get_database().unwrap_or(user);
    format!("postgres://{user}@{host}/{database}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_database_is_private_and_a_clean_close_leaves_it_whole() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mode = |f: &str| {
            std::fs::metadata(tmp.path().join(f))
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        let store = Store::open(tmp.path()).await.unwrap();
        store.record_audit("alice", "test", "x", "").await.unwrap();
        assert_eq!(mode(DB_FILE), Some(0o600));
        assert_eq!(mode("berth.db-wal"), Some(0o600));
        store.close().await.unwrap();
        let wal = std::fs::metadata(tmp.path().join("berth.db-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "the log is checkpointed into berth.db");
        // berth.db alone has the write.
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(tmp.path().join(DB_FILE), copy.path().join(DB_FILE)).unwrap();
        let again = Store::open(copy.path()).await.unwrap();
        assert_eq!(again.list_audit(10).await.unwrap()[0].actor, "alice");
        // An existing file readable by others is made private.
        let loose = tempfile::tempdir().unwrap();
        let f = loose.path().join(DB_FILE);
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        Store::open(loose.path()).await.unwrap();
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[tokio::test]
    async fn unsupported_urls_name_both_schemes_and_hide_the_password() {
        let err = Store::open_url("mysql://root:hunter2@db/berth")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sqlite://") && err.contains("postgres://"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_postgres_names_host_and_database_not_password() {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = PoolSettings {
            acquire_timeout: Duration::from_secs(2),
            ..PoolSettings::default()
        };
        let url = format!("postgres://berth:hunter2@127.0.0.1:{port}/berthdb");
        let err = Store::connect(&url, settings).await.unwrap_err();
        assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("127.0.0.1:{port}/berthdb")), "{msg}");
        assert!(
            !msg.contains("hunter2") && !format!("{err:?}").contains("hunter2"),
            "{msg}"
        );
    }
}
