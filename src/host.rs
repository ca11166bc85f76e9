//! App host names (SPEC section 2): `{port}[s]--{agent}--{workspace}--{user}`,
//! `{app}--{agent}--{workspace}--{user}` and the short form
//! `{port}[s]--{workspace}--{user}`, one DNS label under an edge's wildcard.
//!
//! Everything here is pure: parsing, building and name validation.

/// Longest DNS label.
pub const MAX_LABEL: usize = 63;

/// Why a user, workspace, agent or app name is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("may only contain lower-case letters, digits and '-'")]
    BadChar,
    #[error("must not start or end with '-'")]
    EdgeHyphen,
    #[error("must not contain '--' (it separates the parts of an app host name)")]
    DoubleHyphen,
    #[error("is too long: app host names would exceed {MAX_LABEL} characters")]
    TooLong,
}

/// Checks one name part: `[a-z0-9-]`, no `--`, no leading or trailing `-`, at
/// most 63 characters (the API applies the tighter whole-label limits).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(NameError::BadChar);
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::EdgeHyphen);
    }
    if name.contains("--") {
        return Err(NameError::DoubleHyphen);
    }
    if name.len() > MAX_LABEL {
        return Err(NameError::TooLong);
    }
    Ok(())
}

/// Longest label a port can need: `65535s--{agent}--{workspace}--{user}`.
pub fn port_label_len(agent: &str, workspace: &str, user: &str) -> usize {
    "65535s".len() + 6 + agent.len() + workspace.len() + user.len()
}
