//! First-run set-up (SPEC §1): the `admin` user, its API token in
//! `data_dir/admin-token`, and for `berth dev` the workspace `dev` with agent
//! `main`, whose token goes to `data_dir/dev-agent-token`. Token files are
//! written atomically with mode 0600 and hold the token without a newline.
//!
//! Running it again on the same data directory recreates nothing: the admin's
//! password is not reset (so it is returned only the first time) and the
//! tokens in the files keep working. Only a token file that is missing or no
//! longer valid is replaced with a fresh token.
//!
//! A new database next to files of an earlier deployment (token files, the
//! local CA) means the database was lost, e.g. `berth.db-wal` deleted:
//! [`refuse_over_leftovers`] stops the start rather than silently making a
//! new deployment that overwrites those files.

use crate::auth::{password, Secret, TokenHash};
use crate::catalog::Catalog;
use crate::store::{NewUser, Role, Store, StoreError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The bootstrap admin's user name.
pub(crate) const ADMIN_USER: &str = "admin";
/// The bootstrap admin's e-mail.
pub(crate) const ADMIN_EMAIL: &str = "admin@berth.localhost";
/// File in the data directory holding the admin's API token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// File in the data directory holding the dev agent's token.
pub const DEV_AGENT_TOKEN_FILE: &str = "dev-agent-token";
/// The `berth dev` workspace and agent names.
pub(crate) const DEV_WORKSPACE: &str = "dev";
/// The `berth dev` agent name.
pub(crate) const DEV_AGENT: &str = "main";

/// What [`bootstrap`] did, for the start-up banner.
#[derive(Debug)]
pub struct Bootstrap {
    /// The admin's password; `Some` only on the very first run (print it once).
    pub admin_password: Option<String>,
    /// Where the admin's API token is.
    pub admin_token_path: PathBuf,
    /// The dev agent's token (`dev` only), for the in-process agent.
    pub dev_agent_token: Option<Secret>,
}

/// Why bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The database refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database is new but the data directory says a deployment existed.
    #[error(
        "the database {database} has no users (it is new), but {data_dir} holds files of an \
         earlier deployment: {files}. berth will not start a new deployment over them: that \
         would replace the admin and agent tokens without a word. If the database was lost \
         (for example berth.db-wal was deleted, or berth.db restored without it), stop berth \
         and restore it from a backup. To start over as a new deployment instead, remove {files} \
         from {data_dir} (clients must then trust the new CA and use new tokens)."
    )]
    Leftovers {
        /// The database, as the operator names it (never a password).
        database: String,
        /// The data directory.
        data_dir: PathBuf,
        /// The files found, by name, comma-separated.
        files: String,
    },
    /// A token file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The files in `data_dir` that only an existing deployment writes: the
/// token files and the local CA. Read before anything is created.
pub fn deployment_files(data_dir: &Path) -> Vec<PathBuf> {
    [
        ADMIN_TOKEN_FILE,
        DEV_AGENT_TOKEN_FILE,
        crate::tls::ca::CA_CERT_FILE,
        crate::tls::ca::CA_KEY_FILE,
    ]
    .iter()
    .map(|f| data_dir.join(f))
    .filter(|p| p.exists())
    .collect()
}

/// Whether a start may go on: not when the database is new while
/// `leftovers` (from [`deployment_files`]) says a deployment existed.
pub fn refuse_over_leftovers(
    database_is_new: bool,
    leftovers: &[PathBuf],
    database: &str,
    data_dir: &Path,
) -> Result<(), BootstrapError> {
    if !database_is_new || leftovers.is_empty() {
        return Ok(());
    }
    let files: Vec<String> = leftovers
        .iter()
        .map(|p| {
            p.file_name()
                .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
        })
        .collect();
    Err(BootstrapError::Leftovers {
        database: database.to_owned(),
        data_dir: data_dir.to_owned(),
        files: files.join(", "),
    })
}

/// Creates what a fresh deployment needs (see the module docs), then fills
/// `catalog` from the store's snapshot so the edge knows every record.
/// `announce` gets the new admin's password right after the user is made,
/// before the token file is written or anything else can fail.
pub async fn bootstrap(
    store: &Store,
    catalog: &Catalog,
    data_dir: &Path,
    dev: bool,
    announce: &(dyn Fn(&str) + Sync),
) -> Result<Bootstrap, BootstrapError> {
    std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let admin_token_path = data_dir.join(ADMIN_TOKEN_FILE);
    let mut admin_password = None;

    if store.user_count().await? == 0 {
        let pw = password::generate();
        let admin = store
            .create_user(NewUser {
                username: ADMIN_USER.into(),
                email: ADMIN_EMAIL.into(),
                password: pw.clone(),
                role: Role::Admin,
                organization: None,
            })
            .await?;
        announce(&pw);
        let (_, token) = store.create_api_token(admin.id, "bootstrap").await?;
        write_secret(&admin_token_path, token.expose())?;
        tracing::info!(path = %admin_token_path.display(), "created user admin");
        admin_password = Some(pw);
    } else {
        ensure_admin_token(store, &admin_token_path).await?;
    }

    let dev_agent_token = if dev {
        dev_agent(store, &data_dir.join(DEV_AGENT_TOKEN_FILE)).await?
    } else {
        None
    };

    for change in store.snapshot().await? {
        catalog.apply(change);
    }
    Ok(Bootstrap {
        admin_password,
        admin_token_path,
        dev_agent_token,
    })
}

/// Replaces the admin token file if it is missing or its token no longer works
/// (and the `admin` user still exists).
async fn ensure_admin_token(store: &Store, path: &Path) -> Result<(), BootstrapError> {
    if let Some(token) = read_secret(path)? {
        if store
            .user_for_api_token(&TokenHash::of(token.expose()))
            .await?
            .is_some()
        {
            return Ok(());
        }
    }
    let admin = match store.user_by_name(ADMIN_USER).await {
        Ok(u) if u.role == Role::Admin => u,
        Ok(_) | Err(StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let (_, token) = store.create_api_token(admin.id, "bootstrap").await?;
    write_secret(path, token.expose())?;
    tracing::warn!(path = %path.display(), "admin token file was missing or stale; wrote a new token");
    Ok(())
}

/// Makes sure `admin/dev` has agent `main` and `path` holds its working token.
async fn dev_agent(store: &Store, path: &Path) -> Result<Option<Secret>, BootstrapError> {
    let admin = match store.user_by_name(ADMIN_USER).await {
        Ok(u) => u,
        Err(StoreError::NotFound(_)) => {
            tracing::warn!("user admin no longer exists; not setting up the dev workspace");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let ws = match store.workspace_by_name(ADMIN_USER, DEV_WORKSPACE).await {
        Ok(ws) => ws,
        Err(StoreError::NotFound(_)) => store.create_workspace(admin.id, DEV_WORKSPACE).await?,
        Err(e) => return Err(e.into()),
    };
    let secret = match store.agent_by_name(ws.id, DEV_AGENT).await {
        Ok(agent) => match read_secret(path)? {
            Some(s) if TokenHash::of(s.expose()) == agent.token_hash => return Ok(Some(s)),
            _ => {
                tracing::warn!(path = %path.display(), "dev agent token file was missing or stale; rotating the token");
                store.rotate_agent_token(agent.id).await?.1
            }
        },
        Err(StoreError::NotFound(_)) => store.create_agent(ws.id, DEV_AGENT).await?.1,
        Err(e) => return Err(e.into()),
    };
    write_secret(path, secret.expose())?;
    Ok(Some(secret))
}

/// Reads a token file; `None` if it does not exist or is empty.
fn read_secret(path: &Path) -> Result<Option<Secret>, BootstrapError> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => Ok(Some(Secret::new(s.trim()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Writes a token file atomically (temporary file, then rename), mode 0600.
fn write_secret(path: &Path, secret: &str) -> Result<(), BootstrapError> {
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            opts.mode(0o600);
            let mut f = opts.open(&tmp)?;
            // The mode above applies only when the file is new.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(secret.as_bytes())?;
            f.sync_all()?;
        }
        #[cfg(not(unix))]
        {
            let mut f = opts.open(&tmp)?;
            f.write_all(secret.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_is_refused_only_next_to_an_old_deployments_files() {
        let dir = Path::new("/var/lib/berth");
        let files = |names: &[&str]| names.iter().map(|n| dir.join(n)).collect::<Vec<_>>();
        for (new, found, refused) in [
            (true, files(&[]), false),
            (false, files(&[ADMIN_TOKEN_FILE, "ca.pem"]), false),
            (true, files(&[ADMIN_TOKEN_FILE]), true),
            (true, files(&[DEV_AGENT_TOKEN_FILE]), true),
            (true, files(&["ca.pem"]), true),
            (true, files(&["ca-key.pem"]), true),
            (
                true,
                files(&[ADMIN_TOKEN_FILE, "ca.pem", "ca-key.pem"]),
                true,
            ),
        ] {
            let r = refuse_over_leftovers(new, &found, "/var/lib/berth/berth.db", dir);
            assert_eq!(r.is_err(), refused, "{new} {found:?}");
            if let Err(e) = r {
                let msg = e.to_string();
                for f in &found {
                    let name = f.file_name().unwrap().to_str().unwrap();
                    assert!(msg.contains(name), "{msg}");
                }
                assert!(msg.contains("/var/lib/berth/berth.db"), "{msg}");
                assert!(msg.contains("restore") && msg.contains("remove"), "{msg}");
            }
        }
    }

    #[test]
    fn deployment_files_are_the_tokens_and_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(deployment_files(tmp.path()).is_empty());
        for f in ["berth.db", "berth.db-wal", "unrelated"] {
            std::fs::write(tmp.path().join(f), "x").unwrap();
        }
        assert!(deployment_files(tmp.path()).is_empty());
        for f in [ADMIN_TOKEN_FILE, "ca.pem"] {
            std::fs::write(tmp.path().join(f), "x").unwrap();
        }
        assert_eq!(
            deployment_files(tmp.path()),
            [tmp.path().join(ADMIN_TOKEN_FILE), tmp.path().join("ca.pem")]
        );
    }
}
