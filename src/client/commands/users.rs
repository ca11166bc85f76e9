//! `berth users [passwd|create|rm]`: one's own password, and (admins) the
//! user list.

use super::login::{prompt_password, read_line};
use super::target::check_name;
use super::{print_json, signed_in};
use crate::client::{format, ClientError, PasswdArgs, UsersArgs, UsersCommand};
use http::Method;
use serde_json::json;
use std::io::IsTerminal;

/// `berth users`, and its subcommands.
pub(super) async fn users(u: UsersArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    match u.command {
        None => {
            let answer = s.get_ok("/api/v1/users").await?;
            if u.json {
                print_json(&answer);
            } else {
                print!("{}", format::users_table(&answer));
            }
        }
        Some(UsersCommand::Passwd(a)) => {
            let (current, new) = passwords(&a).await?;
            s.expect_ok(
                Method::PUT,
                "/api/v1/me/password",
                Some(&json!({"current_password": current, "new_password": new})),
            )
            .await?;
            if u.json || a.json {
                print_json(&json!({"changed": true}));
            } else {
                println!("Your password is changed.");
            }
        }
        Some(UsersCommand::Create(a)) => {
            check_name("user", &a.name)?;
            let (password, generated) = if a.password_stdin {
                (read_line().await?, false)
            } else {
                (crate::auth::password::generate(), true)
            };
            let mut body = json!({
                "username": a.name, "email": a.email, "password": password, "role": a.role,
            });
            if let Some(org) = &a.organization {
                body["organization"] = json!(org);
            }
            let mut answer = s
                .expect_ok(Method::POST, "/api/v1/users", Some(&body))
                .await?;
            if a.json {
                if generated {
                    answer["password"] = json!(password);
                }
                print_json(&answer);
            } else {
                println!("User {} created ({}).", a.name, a.role);
                if generated {
                    println!("  password  {password}   (shown once: pass it on; they can change it with `berth users passwd`)");
                }
            }
        }
        Some(UsersCommand::Rm(a)) => {
            check_name("user", &a.name)?;
            s.expect_ok(Method::DELETE, &format!("/api/v1/users/{}", a.name), None)
                .await?;
            println!(
                "User {} is deleted, with their workspaces and tokens.",
                a.name
            );
        }
    }
    Ok(())
}

/// The current and the new password: two lines of stdin, or asked twice
/// on the terminal (the new one confirmed).
async fn passwords(a: &PasswdArgs) -> Result<(String, String), ClientError> {
    if a.password_stdin || !std::io::stdin().is_terminal() {
        let current = read_line().await?;
        let new = read_line().await?;
        if current.is_empty() || new.is_empty() {
            return Err(ClientError::Usage(
                "--password-stdin reads two lines: the current password, then the new one".into(),
            ));
        }
        return Ok((current, new));
    }
    let current = prompt_password("Current password: ").await?;
    let new = prompt_password("New password: ").await?;
    let again = prompt_password("New password again: ").await?;
    if new != again {
        return Err(ClientError::Usage(
            "the two new passwords differ; nothing changed".into(),
        ));
    }
    Ok((current, new))
}
