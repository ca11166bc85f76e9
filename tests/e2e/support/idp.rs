//! A real OpenID Provider for the sign-in tests: `tests/oidc/provider.mjs`
//! (panva's certified `oidc-provider` on Node.js) over HTTPS on loopback, as
//! `https://idp.localhost:PORT`, with a certificate from the berth's own CA.

use berth::tls::LocalCa;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The client berth is registered as.
pub const CLIENT_ID: &str = "berth-test";
/// ...and its secret (with characters that Basic auth must form-encode).
pub const CLIENT_SECRET: &str = "s3cret:with/odd+chars";

pub struct Idp {
    _child: Child,
    _dir: tempfile::TempDir,
    issuer: String,
    /// Trusts the CA that signed the provider's certificate.
    ca_pem: PathBuf,
}

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Installs the provider's npm packages once (from the lock file).
fn npm_ci() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = provider_dir();
        if dir.join("node_modules/oidc-provider").exists() {
            return;
        }
        let ok = std::process::Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|e| {
                panic!("the OIDC tests need Node.js and npm (apt-get install nodejs npm): {e}")
            })
            .success();
        assert!(ok, "npm ci in {} failed", dir.display());
    });
}

impl Idp {
    /// A port for the provider and its issuer URL, to configure berth with
    /// before the provider starts (berth fetches discovery on first use).
    pub fn reserve() -> (u16, String) {
        let port = super::free_port();
        (port, format!("https://idp.localhost:{port}"))
    }

    /// Starts the provider on `port`, its certificate issued by the CA in
    /// `ca_dir`, accepting `redirect_uri` for [`CLIENT_ID`].
    pub async fn start(port: u16, ca_dir: &Path, redirect_uri: &str) -> Idp {
        Idp::start_with(port, ca_dir, redirect_uri, false).await
    }

    /// [`Idp::start`]; with `id_token_claims`, the provider also puts the
    /// claims of the granted scopes (`groups` among them) in the ID token,
    /// as providers configured to send groups there do.
    pub async fn start_with(
        port: u16,
        ca_dir: &Path,
        redirect_uri: &str,
        id_token_claims: bool,
    ) -> Idp {
        npm_ci();
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(ca_dir).unwrap();
        let leaf = ca.issue(&["idp.localhost".to_owned()]).unwrap();
        let pem = |label: &str, der: &[u8]| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                lines.join("\n")
            )
        };
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, pem("CERTIFICATE", &leaf.chain[0])).unwrap();
        std::fs::write(&key, pem("PRIVATE KEY", leaf.key.secret_der())).unwrap();
        let issuer = format!("https://idp.localhost:{port}");
        let mut child = Command::new("node")
            .arg(provider_dir().join("provider.mjs"))
            .env("OIDC_PORT", port.to_string())
            .env("OIDC_ISSUER", &issuer)
            .env("OIDC_CERT", &cert)
            .env("OIDC_KEY", &key)
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_REDIRECT_URI", redirect_uri)
            .env(
                "OIDC_ID_TOKEN_CLAIMS",
                if id_token_claims { "1" } else { "0" },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts (apt-get install nodejs)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.trim() == "ready" {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "the OpenID provider did not start");
        // Keep reading: the provider logs to stdout, and a closed pipe kills it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Idp {
            _child: child,
            _dir: dir,
            issuer,
            ca_pem: ca_dir.join(berth::tls::ca::CA_CERT_FILE),
        }
    }

    /// Sets the `groups` claim of account `sub` at the provider, as its
    /// admin would (the next sign-in carries it).
    pub async fn set_groups(&self, sub: &str, groups: &[&str]) {
        let pem = std::fs::read(&self.ca_pem).unwrap();
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .dns_resolver(std::sync::Arc::new(super::Loopback))
            .build()
            .unwrap();
        let res = client
            .post(format!("{}/_test/groups", self.issuer))
            .json(&serde_json::json!({ "sub": sub, "groups": groups }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "the provider took the groups");
    }
}
