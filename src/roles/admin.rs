//! `berth admin reset-password`: recovers an account (usually `admin`)
//! straight on the deployment's database, for when nobody can sign in to
//! change a password through the API.

use super::StartError;
use crate::auth::password;
use crate::config::ServerConfig;
use crate::store::Store;

/// Sets a new random password for `username` in the deployment `cfg`
/// names (its SQLite file in the data directory, or its database URL) and
/// returns it. Refuses a data directory with no database rather than
/// creating an empty one. Works while the server runs: sign-in reads the
/// password from the database.
pub async fn reset_password(cfg: &ServerConfig, username: &str) -> Result<String, StartError> {
    let store = match &cfg.database_url {
        Some(url) => Store::connect(url.expose(), cfg.database_pool).await?,
        None => {
            let file = cfg.data_dir.join(crate::store::DB_FILE);
            if !file.exists() {
                return Err(StartError::Control(format!(
                    "there is no berth database at {}: name the server's data directory with \
                     --data-dir (berth dev's is .berth where it was started), or its \
                     configuration with --config",
                    file.display()
                )));
            }
            Store::open(&cfg.data_dir).await?
        }
    };
    let pw = password::generate();
    let user = store.set_password(username, &pw).await?;
    if let Err(e) = store
        .record_audit("berth admin", "user.password_reset", &user.username, "")
        .await
    {
        tracing::error!(error = %e, "cannot store audit event");
    }
    Ok(pw)
}
