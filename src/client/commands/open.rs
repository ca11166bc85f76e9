//! `berth open`: a port's URL, and the browser on it.

use super::signed_in;
use super::target::{resolve_target, Resolved};
use crate::client::{ClientError, OpenArgs, Session};

/// `berth open`.
pub(super) async fn open(a: OpenArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    let t = resolve_target(&s, &a.target).await?;
    let url = port_url(&s, &t, a.port).await?;
    if a.json {
        super::print_json(&serde_json::json!({"port": a.port, "url": url}));
    } else {
        println!("{url}");
    }
    if a.browser {
        open_browser(&url).await;
    }
    Ok(())
}

/// The URL of a port: from the ports list, else from the agent's URL template.
async fn port_url(s: &Session, t: &Resolved, port: u16) -> Result<String, ClientError> {
    let ports = s.get_ok(&t.ports_path()).await?;
    let listed = ports["ports"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        })
        .and_then(|p| p["url"].as_str());
    if let Some(url) = listed {
        return Ok(url.to_owned());
    }
    let agents = s
        .get_ok(&format!(
            "/api/v1/workspaces/{}/{}/agents",
            t.user, t.workspace
        ))
        .await?;
    let template = agents
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"].as_str() == Some(&t.agent)))
        .and_then(|a| a["url_template"].as_str())
        .ok_or_else(|| {
            ClientError::Transport(format!("the server did not say what port {port}'s URL is"))
        })?;
    eprintln!(
        "berth: note: nothing is listening on port {port} of {}/{}/{} yet",
        t.user, t.workspace, t.agent
    );
    Ok(template.replace("{port}", &port.to_string()))
}

/// Tries `xdg-open`, then `open`; says so on stderr if neither works.
async fn open_browser(url: &str) {
    for opener in ["xdg-open", "open"] {
        let status = tokio::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
        if matches!(status, Ok(s) if s.success()) {
            return;
        }
    }
    eprintln!(
        "berth: note: could not open a browser (no xdg-open or open); open the URL above yourself"
    );
}
