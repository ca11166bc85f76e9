//! `berth regions [create|rm]`: the regions and their health.

use super::target::check_name;
use super::{print_json, signed_in};
use crate::client::{format, ClientError, RegionsArgs, RegionsCommand};
use http::Method;
use serde_json::json;

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
                println!(
                    "Region {} created. Its token, shown only now:\n  {}\nStart its edges with:\n  BERTH_REGION_TOKEN=... berth edge --url {} --base-domain HOST --wildcard '{}'",
                    a.name,
                    answer["region_token"].as_str().unwrap_or("-"),
                    s.url,
                    answer["wildcard"].as_str().unwrap_or("-"),
                );
            }
        }
        Some(RegionsCommand::Rm(a)) => {
            check_name("region", &a.name)?;
            s.expect_ok(Method::DELETE, &format!("/api/v1/regions/{}", a.name), None)
                .await?;
            println!(
                "Region {} is deleted; its edges are refused from now on.",
                a.name
            );
        }
    }
    Ok(())
}
