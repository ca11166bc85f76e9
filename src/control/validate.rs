//! Field checks for API bodies; each failure is a 422 naming the field.

use super::error::ApiError;
use crate::host::{port_label_len, validate_name};

/// Shortest password accepted.
pub(crate) const MIN_PASSWORD: usize = 8;
/// Longest password accepted (argon2 cost does not depend on it, but a bound
/// keeps bodies honest).
pub(crate) const MAX_PASSWORD: usize = 1024;

/// A user, workspace or agent name: `[a-z0-9-]`, no `--`, no edge `-`.
pub(crate) fn name(field: &str, value: &str) -> Result<(), ApiError> {
    validate_name(value).map_err(|e| ApiError::invalid_field(field, e))
}

/// Refuses a name whose longest app label (`65535s--agent--workspace--user`)
/// would not fit in `budget` characters. Parts not yet known are passed as
/// one-character placeholders, the shortest they can be; `value` is the
/// field's own part, for the hint on how long it may be.
pub(crate) fn label_fits(
    field: &str,
    value: &str,
    (agent, workspace, user): (&str, &str, &str),
    budget: usize,
) -> Result<(), ApiError> {
    let len = port_label_len(agent, workspace, user);
    if len <= budget {
        return Ok(());
    }
    let max = value.len().saturating_sub(len - budget);
    Err(ApiError::invalid_field(
        field,
        format!(
            "is too long: app host names such as `65535s--{agent}--{workspace}--{user}` would be \
             {len} characters, more than the {budget} that fit in one DNS label; use at most \
             {max} characters"
        ),
    ))
}

/// An e-mail address: a plain ASCII `local@domain` (see
/// [`crate::auth::email`]); it reaches apps in `X-Berth-Email`.
pub(crate) fn email(value: &str) -> Result<(), ApiError> {
    crate::auth::email::check(value).map_err(|e| ApiError::invalid_field("email", e))
}

/// A group name: 1 to [`MAX_GROUP_NAME`](crate::store::MAX_GROUP_NAME)
/// characters, no control characters, no space at either end. Looser than
/// user names, because sign-in providers name groups as they like
/// (`Platform Team`, `/eng/backend`).
pub(crate) fn group_name(field: &str, value: &str) -> Result<(), ApiError> {
    group_name_problem(value).map_or(Ok(()), |p| Err(ApiError::invalid_field(field, p)))
}

/// What is wrong with a group name, if anything (see [`group_name`]).
pub(crate) fn group_name_problem(value: &str) -> Option<String> {
    let max = crate::store::MAX_GROUP_NAME;
    if value.is_empty() {
        Some("must not be empty".into())
    } else if value.chars().count() > max {
        Some(format!("must have at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else if value.trim() != value {
        Some("must not start or end with a space".into())
    } else {
        None
    }
}

/// A password: 8 to 1024 characters.
pub(crate) fn password(value: &str) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < MIN_PASSWORD {
        return Err(ApiError::invalid_field(
            "password",
            format!("must have at least {MIN_PASSWORD} characters"),
        ));
    }
    if n > MAX_PASSWORD {
        return Err(ApiError::invalid_field(
            "password",
            format!("must have at most {MAX_PASSWORD} characters"),
        ));
    }
    Ok(())
}

/// An organization: 1 to 100 printable characters without surrounding spaces.
pub(crate) fn organization(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.chars().count() > 100 {
        return Err(ApiError::invalid_field(
            "organization",
            "must have between 1 and 100 characters",
        ));
    }
    if value.trim() != value || value.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "organization",
            "must not start or end with spaces or contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MAX_LABEL;

    #[test]
    fn names_and_label_lengths() {
        assert!(name("username", "alice").is_ok());
        let e = name("username", "Alice").unwrap_err();
        assert_eq!(
            e.message,
            "username: may only contain lower-case letters, digits and '-'"
        );
        // 6 + 6 + 1 + 1 + 49 = 63
        let user = "u".repeat(49);
        assert!(label_fits("username", &user, ("a", "a", &user), MAX_LABEL).is_ok());
        let user = "u".repeat(50);
        let e = label_fits("username", &user, ("a", "a", &user), MAX_LABEL).unwrap_err();
        assert!(
            e.message.starts_with("username: is too long"),
            "{}",
            e.message
        );
        assert!(e.message.contains("at most 49 characters"), "{}", e.message);
        let e = label_fits(
            "name",
            &"g".repeat(50),
            (&"g".repeat(50), "api", "alice"),
            MAX_LABEL,
        )
        .unwrap_err();
        assert!(e.message.contains("at most 43 characters"), "{}", e.message);
        let e = label_fits(
            "name",
            &"w".repeat(50),
            ("a", &"w".repeat(50), "alice"),
            MAX_LABEL,
        )
        .unwrap_err();
        assert!(e.message.contains("at most 45 characters"), "{}", e.message);
    }

    #[test]
    fn emails_passwords_organizations() {
        assert!(email("a@b").is_ok());
        for bad in [
            "",
            "ab",
            "@b",
            "a@",
            "a b@c",
            "<script>@x.y",
            "\u{202E}a@x.y",
        ] {
            let e = email(bad).unwrap_err();
            assert_eq!(
                e.status,
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{bad}"
            );
            assert!(e.message.starts_with("email: "), "{bad}: {}", e.message);
        }
        assert!(password("12345678").is_ok());
        assert!(password("1234567")
            .unwrap_err()
            .message
            .starts_with("password:"));
        assert!(organization("Acme Corp").is_ok());
        assert!(organization(" acme").is_err());
        assert!(organization("").is_err());
    }
}
