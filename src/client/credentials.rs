//! The saved sign-in: `credentials.toml` with `url`, `token` and `ca_file`,
//! and the current `workspace` and `agent` that `berth use` chose,
//! in `$BERTH_CONFIG_DIR`, else `$XDG_CONFIG_HOME/berth`, else
//! `~/.config/berth`. The file is mode 0600 and a directory berth creates
//! for it is mode 0700.

use super::http::Session;
use super::ClientError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name inside the configuration directory.
pub(crate) const FILE_NAME: &str = "credentials.toml";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    url: String,
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<String>,
}

/// The configuration directory from these environment values
/// (`BERTH_CONFIG_DIR`, `XDG_CONFIG_HOME`, `HOME`); empty values count as unset.
pub(crate) fn config_dir_from(
    berth_config_dir: Option<&str>,
    xdg_config_home: Option<&str>,
    home: Option<&str>,
) -> Result<PathBuf, ClientError> {
    let set = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Some(d) = set(berth_config_dir) {
        return Ok(d);
    }
    if let Some(d) = set(xdg_config_home) {
        return Ok(d.join("berth"));
    }
    if let Some(h) = set(home) {
        return Ok(h.join(".config").join("berth"));
    }
    Err(ClientError::Usage(
        "cannot tell where to keep credentials: set BERTH_CONFIG_DIR or HOME".into(),
    ))
}

/// The credentials file for this process's environment.
pub(crate) fn default_path() -> Result<PathBuf, ClientError> {
    let var = |k: &str| std::env::var(k).ok();
    Ok(config_dir_from(
        var("BERTH_CONFIG_DIR").as_deref(),
        var("XDG_CONFIG_HOME").as_deref(),
        var("HOME").as_deref(),
    )?
    .join(FILE_NAME))
}

/// Reads a saved session; `Ok(None)` when there is no file.
pub(crate) fn load(path: &Path) -> Result<Option<Session>, ClientError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ClientError::Usage(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let saved: Saved = toml::from_str(&text).map_err(|e| {
        ClientError::Usage(format!(
            "{} is damaged ({}); run `berth login` again",
            path.display(),
            e.message()
        ))
    })?;
    Ok(Some(Session {
        url: saved.url,
        token: saved.token,
        ca_file: saved.ca_file,
        workspace: saved.workspace,
        agent: saved.agent,
    }))
}

/// Writes `session` to `path` (mode 0600, replacing any old file
/// atomically), creating its directory with mode 0700 if needed.
pub(crate) fn save(path: &Path, session: &Session) -> Result<(), ClientError> {
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        ClientError::Usage(format!("cannot {what} {}: {e}", p.display()))
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.as_os_str().is_empty() && !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(|e| fail("create", dir, e))?;
    }
    let text = toml::to_string(&Saved {
        url: session.url.clone(),
        token: session.token.clone(),
        ca_file: session.ca_file.clone(),
        workspace: session.workspace.clone(),
        agent: session.agent.clone(),
    })
    .expect("credentials serialize");
    let tmp = path.with_extension(format!("toml.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let write = || -> std::io::Result<()> {
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail("write", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_dir_precedence() {
        let d = |a, b, c| config_dir_from(a, b, c).unwrap();
        assert_eq!(d(Some("/b"), Some("/x"), Some("/h")), PathBuf::from("/b"));
        assert_eq!(
            d(Some(""), Some("/x"), Some("/h")),
            PathBuf::from("/x/berth")
        );
        assert_eq!(d(None, None, Some("/h")), PathBuf::from("/h/.config/berth"));
        assert!(config_dir_from(None, Some(""), None).is_err());
    }

    #[test]
    fn round_trip_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a").join("berth").join(FILE_NAME);
        assert_eq!(load(&path).unwrap(), None);
        let s = Session {
            url: "https://berth.localhost:8443".into(),
            token: "berth_api_x".into(),
            ca_file: Some("/tmp/ca \"quoted\".pem".into()),
            workspace: Some("api".into()),
            agent: Some("main".into()),
        };
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), Some(s.clone()));
        let s2 = Session {
            ca_file: None,
            agent: None,
            ..s
        };
        save(&path, &s2).unwrap();
        assert_eq!(load(&path).unwrap(), Some(s2));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(FILE_NAME)]);

        std::fs::write(&path, "url = 1\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
