//! `berth link create|ls|rm`: share links to one port.

use super::target::{resolve_target, Resolved};
use super::{print_json, signed_in};
use crate::client::{format, ClientError, LinkCreateArgs, LinkLsArgs, LinkRmArgs};
use http::Method;
use serde_json::{json, Value};

/// `berth link create`.
pub(super) async fn create(a: LinkCreateArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    let t = resolve_target(&s, &a.target).await?;
    let answer = s
        .expect_ok(
            Method::POST,
            "/api/v1/share-links",
            Some(&link_body(&t, a.port, a.ttl, a.max_uses)),
        )
        .await?;
    if a.json {
        print_json(&answer);
    } else {
        print!("{}", format::link_created(&answer, a.port, a.max_uses));
    }
    Ok(())
}

/// `berth link ls`.
pub(super) async fn ls(a: LinkLsArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    let answer = s.get_ok("/api/v1/share-links").await?;
    if a.json {
        print_json(&answer);
    } else {
        print!("{}", format::links_table(&answer, unix_now()));
    }
    Ok(())
}

/// `berth link rm`.
pub(super) async fn rm(a: LinkRmArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    check_link_id(&a.id)?;
    s.expect_ok(
        Method::DELETE,
        &format!("/api/v1/share-links/{}", a.id),
        None,
    )
    .await?;
    if a.json {
        print_json(&json!({"id": a.id, "revoked": true}));
    } else {
        println!(
            "Share link {} is revoked; its visitors lose access within seconds.",
            a.id
        );
    }
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The `POST /share-links` body.
fn link_body(t: &Resolved, port: u16, ttl: Option<u64>, max_uses: Option<u64>) -> Value {
    let mut body = json!({
        "user": t.user, "workspace": t.workspace, "agent": t.agent, "port": port,
    });
    if let Some(ttl) = ttl {
        body["ttl_seconds"] = json!(ttl);
    }
    if let Some(n) = max_uses {
        body["max_uses"] = json!(n);
    }
    body
}

/// A link ID must be safe to put in a URL path as it is.
fn check_link_id(id: &str) -> Result<(), ClientError> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ClientError::Usage(format!(
            "{id:?} is not a share link ID (see `berth link ls`)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_request_body() {
        let t = Resolved {
            user: "admin".into(),
            workspace: "dev".into(),
            agent: "main".into(),
        };
        assert_eq!(
            link_body(&t, 5173, Some(7200), None),
            json!({"user": "admin", "workspace": "dev", "agent": "main", "port": 5173,
                   "ttl_seconds": 7200})
        );
        assert_eq!(
            link_body(&t, 1, None, Some(3)),
            json!({"user": "admin", "workspace": "dev", "agent": "main", "port": 1,
                   "max_uses": 3})
        );
        assert_eq!(
            t.share_path(3000),
            "/api/v1/workspaces/admin/dev/agents/main/ports/3000/share"
        );
        assert!(check_link_id("a1_b-2").is_ok());
        assert!(check_link_id("../x").is_err());
        assert!(check_link_id("").is_err());
    }
}
