//! The layers under the flags: the TOML file, then `BERTH_{SECTION}_{KEY}`
//! environment variables over it (later wins). The flags themselves come
//! last, as [`Overrides`], when the result is resolved.

use super::schema::FileConfig;
use super::ConfigError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Every key, as (section, key); `BERTH_{SECTION}_{KEY}` sets it.
const KEYS: &[(&str, &str)] = &[
    ("server", "listen"),
    ("server", "base_domain"),
    ("server", "wildcard"),
    ("server", "data_dir"),
    ("server", "database_url"),
    ("server", "database_max_connections"),
    ("server", "public_port"),
    ("server", "relay_url"),
    ("server", "trusted_proxies"),
    ("server", "dev_agent_ports"),
    ("server", "runtime"),
    ("tls", "mode"),
    ("tls", "cert_file"),
    ("tls", "key_file"),
    ("admin", "listen"),
    ("limits", "upstream_timeout_secs"),
    ("limits", "connect_timeout_secs"),
    ("limits", "header_read_timeout_secs"),
    ("limits", "max_header_bytes"),
    ("limits", "max_connections"),
    ("limits", "max_concurrent_streams"),
    ("limits", "max_streams_per_agent"),
    ("limits", "client_write_timeout_secs"),
    ("limits", "shutdown_grace_secs"),
    ("limits", "login_per_minute"),
    ("limits", "login_burst"),
    ("limits", "max_password_hashes"),
    ("limits", "password_hash_queue"),
    ("log", "format"),
    ("sharing", "max_level"),
    ("sharing", "max_link_ttl_secs"),
    ("sharing", "max_share_ttl_secs"),
    ("sharing", "public_rate_limit"),
    ("sharing", "public_rate_burst"),
    ("oidc", "issuer"),
    ("oidc", "client_id"),
    ("oidc", "client_secret"),
    ("oidc", "scopes"),
    ("oidc", "allowed_domains"),
    ("oidc", "organization"),
    ("oidc", "create_users"),
    ("oidc", "ca_file"),
    ("oidc", "label"),
    ("inspector", "enabled"),
    ("inspector", "body_bytes"),
    ("inspector", "max_entries_per_port"),
    ("inspector", "max_bytes_per_port"),
    ("inspector", "max_bytes_per_edge"),
    ("oidc", "groups_claim"),
    ("activity", "webhook_url"),
    ("activity", "webhook_secret"),
    ("activity", "idle_after"),
    ("wake", "webhook_url"),
    ("wake", "webhook_secret"),
    ("wake", "cooldown_secs"),
    ("jwt", "enabled"),
    ("jwt", "ttl_secs"),
    ("jwt", "rotation_secs"),
    ("jwt", "grace_secs"),
    ("github", "client_id"),
    ("github", "client_secret"),
    ("github", "client_secret_file"),
    ("github", "url"),
    ("github", "api_url"),
    ("github", "allowed_organizations"),
    ("github", "allowed_teams"),
    ("github", "organization"),
    ("github", "create_users"),
    ("github", "ca_file"),
    ("github", "label"),
    ("github", "teams_as_groups"),
];

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[(&str, &str)] = &[
    ("oidc", "allowed_domains"),
    ("server", "trusted_proxies"),
    ("github", "allowed_organizations"),
    ("github", "allowed_teams"),
];

/// Variables that belong to the command line, not to the file's keys.
const CLI_VARS: &[&str] = &[
    "BERTH_URL",
    "BERTH_TOKEN",
    "BERTH_CA_FILE",
    "BERTH_CONFIG",
    "BERTH_REGION_TOKEN",
];

impl FileConfig {
    /// Reads `path` (if given) and overlays `BERTH_*` variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<FileConfig, ConfigError> {
        let (text, shown) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?,
                p.to_owned(),
            ),
            None => (String::new(), PathBuf::from("<none>")),
        };
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("BERTH_") else {
                continue;
            };
            if CLI_VARS.contains(&var.as_str()) || var.starts_with("BERTH_AGENT_") {
                continue;
            }
            let Some((section, key)) = KEYS
                .iter()
                .find(|(s, k)| rest.eq_ignore_ascii_case(&format!("{s}_{k}")))
            else {
                let known = [
                    "SERVER_", "TLS_", "ADMIN_", "LIMITS_", "LOG_", "SHARING_", "OIDC_", "GITHUB_",
                ];
                if known.iter().any(|p| rest.starts_with(p)) {
                    return Err(ConfigError::Env {
                        var,
                        message: "unknown key: see config/ for the keys berth reads".into(),
                    });
                }
                continue;
            };
            let sec = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            let toml::Value::Table(sec) = sec else {
                return Err(ConfigError::Env {
                    var,
                    message: format!("[{section}] in the file is not a table"),
                });
            };
            let value = if LIST_KEYS.contains(&(*section, *key)) {
                toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| toml::Value::String(v.to_owned()))
                        .collect(),
                )
            } else {
                env_value(&value)
            };
            sec.insert(key.to_string(), value);
        }
        FileConfig::deserialize(table).map_err(|e| ConfigError::Parse {
            path: shown,
            message: e.to_string(),
        })
    }
}

/// An environment value as TOML: numbers and booleans as such, else a string.
fn env_value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = v.parse::<f64>() {
        toml::Value::Float(f)
    } else if let Ok(b) = v.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(v.to_owned())
    }
}

/// Flag values that override the file and environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub base_domain: Option<String>,
    pub wildcard: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub tls_mode: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub admin_listen: Option<String>,
    pub log_format: Option<String>,
}
