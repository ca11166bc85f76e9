//! `berth certs status`: every certificate a server holds, with its names,
//! issuer, expiry and next renewal, read from the configuration, the data
//! directory and the store (safe while the server runs).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::info::cert_info;
use crate::config::FileConfig;
use crate::store::Store;

/// One certificate's status.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CertStatus {
    /// Where it comes from: "acme", "files" or "local-ca".
    pub source: &'static str,
    /// The names it covers.
    pub names: Vec<String>,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Expiry, RFC 3339.
    pub not_after: String,
    /// Seconds until expiry (negative once expired).
    pub expires_in_secs: i64,
    /// When berth next tries to renew it, RFC 3339 (ACME only).
    pub next_renewal: Option<String>,
    /// Why the last renewal failed, if it did (ACME only).
    pub last_error: Option<String>,
    /// Where it is kept.
    pub location: String,
}

/// Collects the certificates named by `config` (a server's TOML file) or
/// found in `data_dir`; a flag given wins over the file's value.
pub async fn collect(
    config: Option<&Path>,
    data_dir: Option<&Path>,
) -> Result<Vec<CertStatus>, String> {
    let file = FileConfig::load(config, std::env::vars()).map_err(|e| e.to_string())?;
    // Without a data_dir anywhere: a config file is a deployment's
    // (`berth control`'s default), no file is `berth dev`'s.
    let fallback = match config {
        Some(_) => crate::config::RoleDefaults::CONTROL.data_dir,
        None => crate::config::RoleDefaults::DEV.data_dir,
    };
    let data_dir: PathBuf = data_dir
        .map(Path::to_path_buf)
        .or(file.server.data_dir.clone())
        .unwrap_or_else(|| fallback.into());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut out = Vec::new();

    if file.tls.mode.as_deref() == Some("files") {
        if let Some(cert_file) = &file.tls.cert_file {
            let chain =
                super::files::read_certs(cert_file, "certificate file", "check tls.cert_file")
                    .map_err(|e| e.to_string())?;
            out.push(status(
                "files",
                &chain[0],
                now,
                None,
                None,
                cert_file.display().to_string(),
            )?);
        }
    }
    let ca = data_dir.join(super::ca::CA_CERT_FILE);
    if ca.exists() {
        let chain = super::files::read_certs(&ca, "CA certificate", "check the data directory")
            .map_err(|e| e.to_string())?;
        out.push(status(
            "local-ca",
            &chain[0],
            now,
            None,
            None,
            ca.display().to_string(),
        )?);
    }
    let store = match &file.server.database_url {
        Some(url) => Some(Store::open_url(url).await.map_err(|e| e.to_string())?),
        None if data_dir.join(crate::store::DB_FILE).exists() => {
            Some(Store::open(&data_dir).await.map_err(|e| e.to_string())?)
        }
        None => None,
    };
    if let Some(store) = store {
        for row in store.acme_certs().await.map_err(|e| e.to_string())? {
            let ck = super::acme::row_cert(&row)?;
            let location = format!("store: {}", row.id);
            out.push(status(
                "acme",
                &ck.chain[0],
                now,
                Some(rfc3339(row.renew_at)),
                row.last_error.clone(),
                location,
            )?);
        }
    }
    Ok(out)
}

fn status(
    source: &'static str,
    der: &[u8],
    now: i64,
    next_renewal: Option<String>,
    last_error: Option<String>,
    location: String,
) -> Result<CertStatus, String> {
    let info = cert_info(der).map_err(|e| format!("{location}: {e}"))?;
    Ok(CertStatus {
        source,
        names: info.names,
        issuer: info.issuer,
        serial: info.serial,
        not_after: rfc3339(info.not_after),
        expires_in_secs: info.not_after - now,
        next_renewal,
        last_error,
        location,
    })
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The human-readable listing.
pub fn render(certs: &[CertStatus]) -> String {
    if certs.is_empty() {
        return "no certificates found (check --config or --data-dir)\n".into();
    }
    let mut out = String::new();
    for c in certs {
        let days = c.expires_in_secs as f64 / 86_400.0;
        out.push_str(&format!("{} certificate ({})\n", c.source, c.location));
        out.push_str(&format!("  names         {}\n", c.names.join(", ")));
        out.push_str(&format!("  issuer        {}\n", c.issuer));
        out.push_str(&format!("  serial        {}\n", c.serial));
        out.push_str(&format!(
            "  expires       {} (in {days:.1} days)\n",
            c.not_after
        ));
        match (&c.next_renewal, c.source) {
            (Some(r), _) => out.push_str(&format!("  next renewal  {r}\n")),
            (None, "files") => {
                out.push_str("  next renewal  by whoever writes the files (reloaded on change)\n")
            }
            (None, _) => out.push_str("  next renewal  leaf reissued by this CA at every start\n"),
        }
        if let Some(e) = &c.last_error {
            out.push_str(&format!("  last error    {e}\n"));
        }
    }
    out
}
