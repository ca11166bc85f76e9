//! `berth regions [create|rm]`: the regions and their health.

use super::target::check_name;
use super::{print_json, signed_in};
use crate::client::{format, ClientError, RegionsArgs, RegionsCommand};
use http::Method;
use serde_json::{json, Value};

/// What `berth regions create` prints: the token, and the one `berth edge`
/// command that starts an edge for it, with the control plane's CA when
/// this CLI trusts one (a regional edge must, or it fails on UnknownIssuer).
fn edge_help(name: &str, answer: &Value, s: &crate::client::Session) -> String {
    let token = answer["region_token"].as_str().unwrap_or("-");
    let wildcard = answer["wildcard"].as_str().unwrap_or("-");
    let host = answer["url"]
        .as_str()
        .and_then(|u| u.strip_prefix("https://"))
        .map(|h| h.split(['/', ':']).next().unwrap_or(h))
        .unwrap_or("HOST");
    let ca = s
        .ca_file
        .as_ref()
        .map(|p| format!(" --ca-file {}", p.display()))
        .unwrap_or_default();
    let mut out = format!(
        "Region {name} created. Its token, shown only now:\n  {token}\nStart its edges with:\n  \
         BERTH_REGION_TOKEN={token} berth edge --url {}{ca} --base-domain {host} --wildcard '{wildcard}'\n",
        s.url
    );
    if let Some(p) = &s.ca_file {
        out.push_str(&format!(
            "(copy {} to the edge's machine first, or change --ca-file to where it is there)\n",
            p.display()
        ));
    }
    out
}

/// `berth regions`, and its subcommands.
pub(super) async fn regions(r: RegionsArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    match r.command {
        None => {
            let answer = s.get_ok("/api/v1/regions").await?;
            if r.json {
                print_json(&answer);
            } else {
                print!("{}", format::regions_table(&answer));
            }
        }
        Some(RegionsCommand::Create(a)) => {
            check_name("region", &a.name)?;
            let body = json!({"name": a.name, "url": a.url, "wildcard": a.wildcard});
            let answer = s
                .expect_ok(Method::POST, "/api/v1/regions", Some(&body))
                .await?;
            if a.json {
                print_json(&answer);
            } else {
                print!("{}", edge_help(&a.name, &answer, &s));
            }
        }
        Some(RegionsCommand::Rm(a)) => {
            check_name("region", &a.name)?;
            s.expect_ok(Method::DELETE, &format!("/api/v1/regions/{}", a.name), None)
                .await?;
            if a.json {
                print_json(&json!({"name": a.name, "deleted": true}));
            } else {
                println!(
                    "Region {} is deleted; its edges are refused from now on.",
                    a.name
                );
            }
        }
    }
    Ok(())
}
