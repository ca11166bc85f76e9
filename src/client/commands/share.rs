//! `berth share` and `berth unshare`: who may open a port's URL.

use super::signed_in;
use super::target::resolve_target;
use crate::client::{format, ClientError, CorsMode, Protocol, ShareArgs, UnshareArgs};
use http::Method;
use serde_json::json;

/// `berth share`.
pub(super) async fn share(a: ShareArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    let t = resolve_target(&s, &a.target).await?;
    let mut body = json!({ "level": a.level.as_str() });
    if let Some(p) = a.protocol {
        body["protocol"] = json!(match p {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::H2c => "h2c",
        });
    }
    if let Some(c) = a.cors {
        body["cors"] = json!(match c {
            CorsMode::Berth => "berth",
            CorsMode::Passthru => "passthru",
        });
    }
    if !a.users.is_empty() {
        body["users"] = json!(a.users);
    }
    if !a.groups.is_empty() {
        body["groups"] = json!(a.groups);
    }
    if let Some(t) = a.ttl {
        body["ttl_seconds"] = json!(t);
    }
    let answer = s
        .expect_ok(Method::PUT, &t.share_path(a.port), Some(&body))
        .await?;
    if a.json {
        super::print_json(&answer);
        return Ok(());
    }
    let level = answer["level"].as_str().unwrap_or(a.level.as_str());
    println!(
        "Port {} is shared with level {level} ({}){}:",
        a.port,
        format::level_meaning(level),
        format::named_suffix(&answer)
    );
    println!("  {}", answer["url"].as_str().unwrap_or("-"));
    if let (Some(at), Some(left)) = (
        answer["expires_at"].as_str(),
        answer["expires_in_secs"].as_i64(),
    ) {
        println!(
            "It ends at {at} (in {}); then only you again.",
            format::remaining(left)
        );
    }
    Ok(())
}

/// `berth unshare`.
pub(super) async fn unshare(a: UnshareArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    let t = resolve_target(&s, &a.target).await?;
    s.expect_ok(Method::DELETE, &t.share_path(a.port), None)
        .await?;
    if a.json {
        super::print_json(&json!({"port": a.port, "level": "owner"}));
    } else {
        println!("Port {} is private again (owner only).", a.port);
    }
    Ok(())
}
