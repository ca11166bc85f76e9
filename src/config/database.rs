//! `server.database_url` and `server.database_max_connections`: the pool
//! limits a server's store opens with, and how a database URL is shown
//! (never with its password).

use super::ConfigError;
use std::time::Duration;

/// Default size of a PostgreSQL pool: enough for a busy control plane, and
/// small enough that several replicas fit in PostgreSQL's default 100.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Default time a query waits for a pooled connection (and the first
/// connection at start) before failing, rather than hanging the request.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection pool limits for a server database (PostgreSQL; SQLite keeps
/// its own small pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections this process holds open (`server.database_max_connections`).
    pub max_connections: u32,
    /// How long to wait for a connection before the operation fails.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

/// `url` with any password replaced by `***`: the one in the user-info part
/// (`user:PASSWORD@host`) and a `password=` query parameter. Works on
/// malformed URLs too, since it is used to report them.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        // The user info ends at the last '@' (a password may hold '/' or '@').
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => match rest[..at].split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
                None => base.to_owned(),
            },
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Checks `server.database_url`: SQLite or PostgreSQL. The error shows the
/// URL without its password.
pub(super) fn url(url: Option<String>) -> Result<Option<String>, ConfigError> {
    if let Some(url) = &url {
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err(ConfigError::Invalid {
                key: "server.database_url",
                message: format!(
                    "{:?} is not supported: use sqlite://PATH or \
                     postgres://USER:PASSWORD@HOST:PORT/DATABASE (postgresql:// also works)",
                    redact_url(url)
                ),
            });
        }
    }
    Ok(url)
}

/// `server.database_max_connections`, as pool settings.
pub(super) fn pool(max_connections: Option<u32>) -> Result<PoolSettings, ConfigError> {
    match max_connections {
        Some(n) if !(1..=1000).contains(&n) => Err(ConfigError::Invalid {
            key: "server.database_max_connections",
            message: format!("{n} is outside 1..=1000"),
        }),
        n => Ok(PoolSettings {
            max_connections: n.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            ..PoolSettings::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://berth:s3cret@db.internal:5432/berth"),
            "postgres://berth:***@db.internal:5432/berth"
        );
        assert_eq!(
            redact_url("postgresql://u:p@ss:w@h/d?sslmode=require&password=x"),
            "postgresql://u:***@h/d?sslmode=require&password=***"
        );
        assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
        assert_eq!(redact_url("mysql://root:pw@h"), "mysql://root:***@h");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("postgres://u:pa/ss@h:1/d"),
            "postgres://u:***@h:1/d"
        );
    }
}
