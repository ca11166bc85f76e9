//! `berth groups [create|show|rename|add|remove|rm]`: berth groups, which
//! shares may name (admins manage them).

use super::{print_json, signed_in};
use crate::client::{format, ClientError, GroupsArgs, GroupsCommand};
use http::Method;
use serde_json::{json, Value};

/// One path segment, percent-encoded: group names may hold spaces or `/`.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn group_path(name: &str) -> String {
    format!("/api/v1/groups/{}", segment(name))
}

/// `berth groups`, and its subcommands.
pub(super) async fn groups(g: GroupsArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    let show = |answer: &Value, what: String| {
        if g.json {
            print_json(answer);
        } else {
            println!("{what}");
            print!("{}", format::groups_table(&json!([answer])));
        }
    };
    match g.command {
        None => {
            let answer = s.get_ok("/api/v1/groups").await?;
            if g.json {
                print_json(&answer);
            } else {
                print!("{}", format::groups_table(&answer));
            }
        }
        Some(GroupsCommand::Create { name, members }) => {
            let body = json!({"name": name, "members": members});
            let answer = s
                .expect_ok(Method::POST, "/api/v1/groups", Some(&body))
                .await?;
            show(&answer, format!("Group {name} created."));
        }
        Some(GroupsCommand::Show { name }) => {
            let answer = s.get_ok(&group_path(&name)).await?;
            if g.json {
                print_json(&answer);
            } else {
                print!("{}", format::groups_table(&json!([answer])));
            }
        }
        Some(GroupsCommand::Rename { name, new_name }) => {
            let body = json!({"name": new_name});
            let answer = s
                .expect_ok(Method::PATCH, &group_path(&name), Some(&body))
                .await?;
            show(
                &answer,
                format!("Group {name} is now {new_name}; shares that named it keep it."),
            );
        }
        Some(GroupsCommand::Add { name, users }) | Some(GroupsCommand::Remove { name, users })
            if users.is_empty() =>
        {
            return Err(ClientError::Usage(format!(
                "name the users to change in {name}"
            )));
        }
        Some(GroupsCommand::Add { name, users }) => {
            let mut answer = Value::Null;
            for u in &users {
                let path = format!("{}/members/{}", group_path(&name), segment(u));
                answer = s.expect_ok(Method::PUT, &path, None).await?;
            }
            show(&answer, format!("Added {} to {name}.", users.join(", ")));
        }
        Some(GroupsCommand::Remove { name, users }) => {
            let mut answer = Value::Null;
            for u in &users {
                let path = format!("{}/members/{}", group_path(&name), segment(u));
                answer = s.expect_ok(Method::DELETE, &path, None).await?;
            }
            show(
                &answer,
                format!(
                    "Took {} out of {name}; every edge stops letting them in through it within seconds.",
                    users.join(", ")
                ),
            );
        }
        Some(GroupsCommand::Rm { name }) => {
            s.expect_ok(Method::DELETE, &group_path(&name), None)
                .await?;
            if g.json {
                print_json(&json!({"deleted": name}));
            } else {
                println!("Group {name} is deleted; shares that named it no longer do.");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(super::segment("eng"), "eng");
        assert_eq!(super::segment("Platform Team/x"), "Platform%20Team%2Fx");
        assert_eq!(super::segment("é"), "%C3%A9");
    }
}
