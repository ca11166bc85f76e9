//! App host names (SPEC section 2): `{port}[s]--{agent}--{workspace}--{user}`,
//! `{app}--{agent}--{workspace}--{user}` and the short form
//! `{port}[s]--{workspace}--{user}`, one DNS label under an edge's wildcard.
//!
//! Everything here is pure: parsing, building and name validation.

use std::fmt;

/// Longest DNS label.
pub const MAX_LABEL: usize = 63;

/// Longest DNS host name (without the trailing dot).
const MAX_HOST: usize = 253;

/// Shortest possible app label, `1--w--u`: a wildcard must leave room for it.
const MIN_APP_LABEL: usize = 7;

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

/// True for names that read as a port in an app host (`3000`, `3000s`,
/// `0`, `99999`): the API must refuse them as app names, or a host could
/// mean two things.
pub fn is_port_like(name: &str) -> bool {
    let digits = name.strip_suffix('s').unwrap_or(name);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

// ---------------------------------------------------------------------------
// Wildcards

/// An edge's wildcard: `*.apps.example.com` (dot form) or
/// `*--apps.example.com` (prefix form, where the app label and the first
/// label of the base domain share one DNS label).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wildcard {
    /// `*.apps.example.com`, lower case, no trailing dot.
    pattern: String,
    /// What follows the app label in a host: `.apps.example.com` or
    /// `--apps.example.com`.
    suffix: String,
}

/// Why a configured wildcard is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WildcardError {
    #[error(
        "the wildcard '{0}' must start with '*.' (like '*.apps.example.com') \
         or '*--' (like '*--apps.example.com')"
    )]
    NoStar(String),
    #[error("the wildcard '{0}' has no domain after the '*'")]
    NoDomain(String),
    #[error(
        "the wildcard '{wildcard}' contains '{label}', which is not a valid DNS label: {reason}"
    )]
    BadLabel {
        wildcard: String,
        label: String,
        reason: &'static str,
    },
    #[error("the wildcard '{0}' is too long to leave room for app host names")]
    TooLong(String),
}

/// Checks one label of a base domain (`xn--` labels are allowed here).
fn dns_label_error(label: &str) -> Option<&'static str> {
    if label.is_empty() {
        Some("it is empty")
    } else if label.len() > MAX_LABEL {
        Some("it is longer than 63 characters")
    } else if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("it may only contain letters, digits and '-'")
    } else if label.starts_with('-') || label.ends_with('-') {
        Some("it must not start or end with '-'")
    } else {
        None
    }
}

impl Wildcard {
    /// Parses `*.apps.example.com` or `*--apps.example.com` (case-insensitive,
    /// one trailing dot ignored).
    pub fn parse(s: &str) -> Result<Wildcard, WildcardError> {
        let lower = s.trim().to_ascii_lowercase();
        let (sep, base) = if let Some(base) = lower.strip_prefix("*.") {
            (".", base)
        } else if let Some(base) = lower.strip_prefix("*--") {
            ("--", base)
        } else {
            return Err(WildcardError::NoStar(s.to_string()));
        };
        let base = base.strip_suffix('.').unwrap_or(base);
        if base.is_empty() {
            return Err(WildcardError::NoDomain(s.to_string()));
        }
        for label in base.split('.') {
            if let Some(reason) = dns_label_error(label) {
                return Err(WildcardError::BadLabel {
                    wildcard: s.to_string(),
                    label: label.to_string(),
                    reason,
                });
            }
        }
        let suffix = format!("{sep}{base}");
        let wildcard = Wildcard {
            pattern: format!("*{suffix}"),
            suffix,
        };
        if wildcard.max_label() < MIN_APP_LABEL || wildcard.suffix.len() + MIN_APP_LABEL > MAX_HOST
        {
            return Err(WildcardError::TooLong(s.to_string()));
        }
        Ok(wildcard)
    }

    /// The host for an app label: `3000--main--dev--admin.berth.localhost`.
    pub fn host_for(&self, label: &str) -> String {
        format!("{label}{}", self.suffix)
    }

    /// The wildcard as configured (lower case): `*.apps.example.com`.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The base domain: `apps.example.com` for both forms.
    pub fn base(&self) -> &str {
        self.suffix.trim_start_matches(['.', '-'])
    }

    /// True for the prefix form `*--apps.example.com`.
    pub fn is_prefix_form(&self) -> bool {
        self.suffix.starts_with("--")
    }

    /// Longest app label this wildcard can carry: 63, less what the prefix
    /// form adds to the same DNS label (`--apps`).
    pub fn max_label(&self) -> usize {
        if self.is_prefix_form() {
            let shared = self.suffix.split('.').next().unwrap_or_default();
            MAX_LABEL.saturating_sub(shared.len())
        } else {
            MAX_LABEL
        }
    }
}

impl fmt::Display for Wildcard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl std::str::FromStr for Wildcard {
    type Err = WildcardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Wildcard::parse(s)
    }
}

/// A host and a wildcard as certificate names: `*--apps.example.com` hosts
/// are one label under `example.com`, so that form needs `*.example.com`.
pub fn cert_names(host: &str, wildcard: &str) -> Vec<String> {
    let wildcard_san = match wildcard.strip_prefix("*--") {
        Some(rest) => match rest.split_once('.') {
            Some((_, parent)) => format!("*.{parent}"),
            None => wildcard.to_owned(),
        },
        None => wildcard.to_owned(),
    };
    let mut names = vec![host.to_owned(), wildcard_san];
    names.dedup();
    names
}

// ---------------------------------------------------------------------------
// Targets

/// What the first part of an app label names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    /// A TCP port, 1-65535.
    Port(u16),
    /// A named app (a name the owner gave to a port); never port-like.
    App(String),
}

/// What an app host names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppTarget {
    pub service: Service,
    /// The `s` suffix: speak HTTPS to the app. Only ports carry it in a
    /// label; [`parse_host`] always gives `false` for apps.
    pub tls: bool,
    /// `None` for the short form `{port}--{workspace}--{user}`.
    pub agent: Option<String>,
    pub workspace: String,
    pub user: String,
}

impl AppTarget {
    /// The canonical label; `parse_host` of it gives back `self` for every
    /// target that `parse_host` can produce (an app with `tls`, or an app in
    /// the short form, has no label of its own).
    pub fn label(&self) -> String {
        let service = match &self.service {
            Service::Port(port) if self.tls => format!("{port}s"),
            Service::Port(port) => port.to_string(),
            Service::App(app) => app.clone(),
        };
        match &self.agent {
            Some(agent) => format!("{service}--{agent}--{}--{}", self.workspace, self.user),
            None => format!("{service}--{}--{}", self.workspace, self.user),
        }
    }
}

/// Why a host is not an app host. The texts are shown to users (404 pages).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("The request has no host name.")]
    Empty,
    #[error("The host '{host}' is not under this edge's domain ({wildcard}).")]
    Outside { host: String, wildcard: String },
    #[error(
        "The host '{host}' is not a single label under {base}: an app host looks like \
         '{example}'."
    )]
    NotSingleLabel {
        host: String,
        base: String,
        example: String,
    },
    #[error(
        "The app host name '{label}' is {len} characters long, but at most {max} fit in one \
         DNS label."
    )]
    TooLong {
        label: String,
        len: usize,
        max: usize,
    },
    #[error("'{label}' is not a valid app host name: {reason}.")]
    Malformed { label: String, reason: String },
}

/// Shortens user-supplied text for error messages.
fn clip(s: &str) -> String {
    const MAX: usize = 100;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

const FORMS: &str = "expected {port}--{agent}--{workspace}--{user}, \
                     {app}--{agent}--{workspace}--{user} or {port}--{workspace}--{user}";

/// Parses a Host header (or TLS server name) into the target it names.
///
/// Case-insensitive; one trailing dot and a `:port` suffix are ignored; an
/// IPv6 literal is outside every wildcard.
pub fn parse_host(host: &str, wildcard: &Wildcard) -> Result<AppTarget, HostError> {
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    let outside = || HostError::Outside {
        host: clip(host),
        wildcard: wildcard.as_str().to_string(),
    };
    if host.starts_with('[') {
        return Err(outside());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return Err(outside()),
        None => host,
    };
    if name.contains(':') {
        return Err(outside());
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    let label = match name.strip_suffix(&wildcard.suffix) {
        Some(label) if !label.is_empty() => label,
        _ => return Err(outside()),
    };
    if label.contains('.') {
        return Err(HostError::NotSingleLabel {
            host: clip(&name),
            base: wildcard.base().to_string(),
            example: wildcard.host_for("3000--main--dev--alice"),
        });
    }
    if label.len() > wildcard.max_label() {
        return Err(HostError::TooLong {
            label: clip(label),
            len: label.len(),
            max: wildcard.max_label(),
        });
    }
    parse_label(label).map_err(|reason| HostError::Malformed {
        label: clip(label),
        reason,
    })
}

/// Parses an app label (already lower case, no dots).
fn parse_label(label: &str) -> Result<AppTarget, String> {
    let parts: Vec<&str> = label.split("--").collect();
    let (first, agent, workspace, user) = match parts.as_slice() {
        [first, agent, workspace, user] => (*first, Some(*agent), *workspace, *user),
        [first, workspace, user] => (*first, None, *workspace, *user),
        _ => {
            let n = parts.len();
            let noun = if n == 1 { "part" } else { "parts" };
            return Err(format!("{FORMS}, but it has {n} {noun} separated by '--'"));
        }
    };
    let (service, tls) = parse_service(first)?;
    if let (Service::App(app), None) = (&service, agent) {
        return Err(format!(
            "the short form {{port}}--{{workspace}}--{{user}} takes a port, not an app name; \
             for the app '{app}' use {{app}}--{{agent}}--{{workspace}}--{{user}}"
        ));
    }
    let check = |role: &str, part: &str| {
        validate_name(part).map_err(|e| match e {
            NameError::Empty => format!("the {role} part is empty"),
            e => format!("the {role} part '{part}' is not a valid name: it {e}"),
        })
    };
    if let Some(agent) = agent {
        check("agent", agent)?;
    }
    check("workspace", workspace)?;
    check("user", user)?;
    Ok(AppTarget {
        service,
        tls,
        agent: agent.map(str::to_string),
        workspace: workspace.to_string(),
        user: user.to_string(),
    })
}

/// Parses the first part: `3000`, `3000s` or an app name.
fn parse_service(part: &str) -> Result<(Service, bool), String> {
    if !is_port_like(part) {
        return match validate_name(part) {
            Ok(()) => Ok((Service::App(part.to_string()), false)),
            Err(NameError::Empty) => Err("the port or app part is empty".to_string()),
            Err(e) => Err(format!("the part '{part}' is not a valid name: it {e}")),
        };
    }
    let (digits, tls) = match part.strip_suffix('s') {
        Some(digits) => (digits, true),
        None => (part, false),
    };
    let port = if digits.len() > 5 {
        None
    } else {
        digits.parse::<u32>().ok()
    };
    match port {
        Some(port @ 1..=65535) if !digits.starts_with('0') => Ok((Service::Port(port as u16), tls)),
        Some(port @ 1..=65535) => Err(format!(
            "the port '{digits}' has a leading zero (write {port})"
        )),
        _ => Err(format!("port {digits} is out of range 1-65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot() -> Wildcard {
        Wildcard::parse("*.apps.example.com").unwrap()
    }

    fn prefix() -> Wildcard {
        Wildcard::parse("*--apps.example.com").unwrap()
    }

    fn port(p: u16, tls: bool, agent: Option<&str>, ws: &str, user: &str) -> AppTarget {
        AppTarget {
            service: Service::Port(p),
            tls,
            agent: agent.map(str::to_string),
            workspace: ws.to_string(),
            user: user.to_string(),
        }
    }

    fn app(name: &str, agent: &str, ws: &str, user: &str) -> AppTarget {
        AppTarget {
            service: Service::App(name.to_string()),
            tls: false,
            agent: Some(agent.to_string()),
            workspace: ws.to_string(),
            user: user.to_string(),
        }
    }

    #[test]
    fn validate_name_table() {
        let table: &[(&str, Result<(), NameError>)] = &[
            ("a", Ok(())),
            ("alice", Ok(())),
            ("a-b-c", Ok(())),
            ("3000", Ok(())),
            ("", Err(NameError::Empty)),
            ("Alice", Err(NameError::BadChar)),
            ("a_b", Err(NameError::BadChar)),
            ("a.b", Err(NameError::BadChar)),
            ("a%2d", Err(NameError::BadChar)),
            ("é", Err(NameError::BadChar)),
            ("-a", Err(NameError::EdgeHyphen)),
            ("a-", Err(NameError::EdgeHyphen)),
            ("-", Err(NameError::EdgeHyphen)),
            ("a--b", Err(NameError::DoubleHyphen)),
            ("a---b", Err(NameError::DoubleHyphen)),
        ];
        for (name, want) in table {
            assert_eq!(&validate_name(name), want, "{name:?}");
        }
        assert_eq!(validate_name(&"a".repeat(63)), Ok(()));
        assert_eq!(validate_name(&"a".repeat(64)), Err(NameError::TooLong));
    }

    #[test]
    fn port_label_len_is_the_longest_port_label() {
        let t = port(65535, true, Some("main"), "dev", "alice");
        assert_eq!(port_label_len("main", "dev", "alice"), t.label().len());
    }

    #[test]
    fn is_port_like_table() {
        for yes in ["0", "1", "3000", "3000s", "0s", "99999999", "007"] {
            assert!(is_port_like(yes), "{yes}");
        }
        for no in [
            "", "s", "ss", "3000ss", "s3000", "30a0", "web", "3000-s", "3000S", "-1",
        ] {
            assert!(!is_port_like(no), "{no}");
        }
    }

    #[test]
    fn wildcard_parse_table() {
        let ok: &[(&str, &str, &str, usize)] = &[
            (
                "*.apps.example.com",
                "*.apps.example.com",
                "apps.example.com",
                63,
            ),
            (
                "*.Apps.Example.COM.",
                "*.apps.example.com",
                "apps.example.com",
                63,
            ),
            ("*.localhost", "*.localhost", "localhost", 63),
            (
                "*.xn--bcher-kva.example",
                "*.xn--bcher-kva.example",
                "xn--bcher-kva.example",
                63,
            ),
            (
                "*--apps.example.com",
                "*--apps.example.com",
                "apps.example.com",
                57,
            ),
            (
                "*--berth.localhost",
                "*--berth.localhost",
                "berth.localhost",
                56,
            ),
        ];
        for (input, pattern, base, max) in ok {
            let w = Wildcard::parse(input).unwrap();
            assert_eq!(w.as_str(), *pattern);
            assert_eq!(w.to_string(), *pattern);
            assert_eq!(w.base(), *base);
            assert_eq!(w.max_label(), *max, "{input}");
            assert_eq!(w.is_prefix_form(), pattern.starts_with("*--"));
            assert_eq!(input.parse::<Wildcard>().as_ref(), Ok(&w));
        }
        let bad = [
            "apps.example.com",
            "",
            "*",
            "*apps.example.com",
            "*-apps.example.com",
            "**.apps.example.com",
            ".apps.example.com",
            "*.",
            "*--",
            "*..example.com",
            "*.apps..example.com",
            "*.apps.example.com..",
            "*.-apps.example.com",
            "*.apps-.example.com",
            "*---apps.example.com",
            "*.apps_1.example.com",
            "*.*.example.com",
            "*.bücher.example",
            "*.apps.example.com:443",
        ];
        for input in bad {
            assert!(Wildcard::parse(input).is_err(), "{input:?}");
        }
        assert!(matches!(
            Wildcard::parse("apps.example.com"),
            Err(WildcardError::NoStar(_))
        ));
        assert!(matches!(
            Wildcard::parse("*."),
            Err(WildcardError::NoDomain(_))
        ));
        let long = format!("*.{}.example.com", "a".repeat(64));
        assert!(matches!(
            Wildcard::parse(&long),
            Err(WildcardError::BadLabel { .. })
        ));
        // The prefix form must leave room for the shortest app label.
        let tight = format!("*--{}.example.com", "a".repeat(54));
        assert_eq!(Wildcard::parse(&tight).unwrap().max_label(), 7);
        let full = format!("*--{}.example.com", "a".repeat(55));
        assert!(matches!(
            Wildcard::parse(&full),
            Err(WildcardError::TooLong(_))
        ));
        let huge = format!("*.{}", vec!["a".repeat(60); 5].join("."));
        assert!(matches!(
            Wildcard::parse(&huge),
            Err(WildcardError::TooLong(_))
        ));
    }

    #[test]
    fn wildcard_host_for() {
        assert_eq!(
            dot().host_for("3000--main--dev--admin"),
            "3000--main--dev--admin.apps.example.com"
        );
        assert_eq!(
            Wildcard::parse("*.berth.localhost")
                .unwrap()
                .host_for("3000--main--dev--admin"),
            "3000--main--dev--admin.berth.localhost"
        );
        assert_eq!(
            prefix().host_for("3000--main--dev--admin"),
            "3000--main--dev--admin--apps.example.com"
        );
    }

    /// What a table row expects.
    enum Want {
        Ok(AppTarget),
        Empty,
        Outside,
        NotSingle,
        TooLong,
        /// Malformed, with a fragment of the reason.
        Bad(&'static str),
    }

    fn check(w: &Wildcard, host: &str, want: &Want) {
        let got = parse_host(host, w);
        let ok = match (want, &got) {
            (Want::Ok(t), Ok(g)) => t == g,
            (Want::Empty, Err(HostError::Empty)) => true,
            (Want::Outside, Err(HostError::Outside { .. })) => true,
            (Want::NotSingle, Err(HostError::NotSingleLabel { .. })) => true,
            (Want::TooLong, Err(HostError::TooLong { .. })) => true,
            (Want::Bad(frag), Err(HostError::Malformed { reason, .. })) => reason.contains(frag),
            _ => false,
        };
        assert!(ok, "{} {host:?}: got {got:?}", w.as_str());
        if let Err(e) = got {
            let text = e.to_string();
            assert!(text.ends_with('.'), "not a sentence: {text}");
            assert!(
                text.starts_with(|c: char| c.is_uppercase() || c == '\''),
                "{text}"
            );
        }
    }

    #[test]
    fn parse_host_dot_form_table() {
        let w = dot();
        let l63 = format!("3000--main--dev--{}", "u".repeat(63 - 17));
        let l64 = format!("3000--main--dev--{}", "u".repeat(64 - 17));
        assert_eq!((l63.len(), l64.len()), (63, 64));
        let long_user = "u".repeat(63 - 17);
        let table: Vec<(String, Want)> = vec![
            // Valid forms.
            (
                "3000--main--dev--alice.apps.example.com".into(),
                Want::Ok(port(3000, false, Some("main"), "dev", "alice")),
            ),
            (
                "3000s--main--dev--alice.apps.example.com".into(),
                Want::Ok(port(3000, true, Some("main"), "dev", "alice")),
            ),
            (
                "web--main--dev--alice.apps.example.com".into(),
                Want::Ok(app("web", "main", "dev", "alice")),
            ),
            (
                "my-app2--a-1--ws-2--u-3.apps.example.com".into(),
                Want::Ok(app("my-app2", "a-1", "ws-2", "u-3")),
            ),
            (
                "s--main--dev--alice.apps.example.com".into(),
                Want::Ok(app("s", "main", "dev", "alice")),
            ),
            (
                "s3000--main--dev--alice.apps.example.com".into(),
                Want::Ok(app("s3000", "main", "dev", "alice")),
            ),
            (
                "3000--dev--alice.apps.example.com".into(),
                Want::Ok(port(3000, false, None, "dev", "alice")),
            ),
            (
                "8443s--dev--alice.apps.example.com".into(),
                Want::Ok(port(8443, true, None, "dev", "alice")),
            ),
            (
                "1--1--2--3.apps.example.com".into(),
                Want::Ok(port(1, false, Some("1"), "2", "3")),
            ),
            // Ports.
            (
                "1--main--dev--alice.apps.example.com".into(),
                Want::Ok(port(1, false, Some("main"), "dev", "alice")),
            ),
            (
                "65535--main--dev--alice.apps.example.com".into(),
                Want::Ok(port(65535, false, Some("main"), "dev", "alice")),
            ),
            (
                "65535s--main--dev--alice.apps.example.com".into(),
                Want::Ok(port(65535, true, Some("main"), "dev", "alice")),
            ),
            (
                "0--main--dev--alice.apps.example.com".into(),
                Want::Bad("port 0 is out of range 1-65535"),
            ),
            (
                "0s--main--dev--alice.apps.example.com".into(),
                Want::Bad("port 0 is out of range"),
            ),
            (
                "65536--main--dev--alice.apps.example.com".into(),
                Want::Bad("port 65536 is out of range"),
            ),
            (
                "99999999999999999999--main--dev--alice.apps.example.com".into(),
                Want::Bad("out of range"),
            ),
            (
                "03000--main--dev--alice.apps.example.com".into(),
                Want::Bad("leading zero (write 3000)"),
            ),
            (
                "03000s--main--dev--alice.apps.example.com".into(),
                Want::Bad("leading zero"),
            ),
            (
                "00--main--dev--alice.apps.example.com".into(),
                Want::Bad("out of range"),
            ),
            (
                "3000ss--main--dev--alice.apps.example.com".into(),
                Want::Ok(app("3000ss", "main", "dev", "alice")),
            ),
            (
                "3000S--main--dev--alice.apps.example.com".into(),
                Want::Ok(port(3000, true, Some("main"), "dev", "alice")),
            ),
            // Case, trailing dot, port suffix.
            (
                "3000--Main--DEV--Alice.Apps.Example.COM".into(),
                Want::Ok(port(3000, false, Some("main"), "dev", "alice")),
            ),
            (
                "WEB--MAIN--DEV--ALICE.APPS.EXAMPLE.COM".into(),
                Want::Ok(app("web", "main", "dev", "alice")),
            ),
            (
                "3000--main--dev--alice.apps.example.com.".into(),
                Want::Ok(port(3000, false, Some("main"), "dev", "alice")),
            ),
            (
                "3000--main--dev--alice.apps.example.com:443".into(),
                Want::Ok(port(3000, false, Some("main"), "dev", "alice")),
            ),
            (
                "3000--main--dev--alice.apps.example.com.:8443".into(),
                Want::Ok(port(3000, false, Some("main"), "dev", "alice")),
            ),
            (
                "3000--main--dev--alice.apps.example.com:".into(),
                Want::Ok(port(3000, false, Some("main"), "dev", "alice")),
            ),
            (
                "3000--main--dev--alice.apps.example.com..".into(),
                Want::Outside,
            ),
            (
                "3000--main--dev--alice.apps.example.com:https".into(),
                Want::Outside,
            ),
            (
                "3000--main--dev--alice.apps.example.com:443:443".into(),
                Want::Outside,
            ),
            // Outside the wildcard.
            ("".into(), Want::Empty),
            (".".into(), Want::Empty),
            (":443".into(), Want::Empty),
            ("apps.example.com".into(), Want::Outside),
            ("apps.example.com.".into(), Want::Outside),
            (".apps.example.com".into(), Want::Outside),
            ("3000--main--dev--alice.example.com".into(), Want::Outside),
            (
                "3000--main--dev--alice.apps.example.org".into(),
                Want::Outside,
            ),
            (
                "3000--main--dev--aliceapps.example.com".into(),
                Want::Outside,
            ),
            (
                "3000--main--dev--alice--apps.example.com".into(),
                Want::Outside,
            ),
            ("example.com".into(), Want::Outside),
            ("localhost".into(), Want::Outside),
            ("127.0.0.1".into(), Want::Outside),
            ("127.0.0.1:8080".into(), Want::Outside),
            ("[::1]".into(), Want::Outside),
            ("[::1]:443".into(), Want::Outside),
            ("[::1".into(), Want::Outside),
            ("::1".into(), Want::Outside),
            (
                "[3000--main--dev--alice.apps.example.com]:443".into(),
                Want::Outside,
            ),
            (" ".into(), Want::Outside),
            // Not a single label.
            ("a.b.apps.example.com".into(), Want::NotSingle),
            (
                "x.3000--main--dev--alice.apps.example.com".into(),
                Want::NotSingle,
            ),
            ("..apps.example.com".into(), Want::NotSingle),
            // Length.
            (
                format!("{l63}.apps.example.com"),
                Want::Ok(port(3000, false, Some("main"), "dev", &long_user)),
            ),
            (format!("{l64}.apps.example.com"), Want::TooLong),
            (
                format!("{}.apps.example.com", "a".repeat(5000)),
                Want::TooLong,
            ),
            // Part counts.
            (
                "3000.apps.example.com".into(),
                Want::Bad("it has 1 part separated"),
            ),
            (
                "web.apps.example.com".into(),
                Want::Bad("expected {port}--{agent}--{workspace}--{user}"),
            ),
            (
                "3000--alice.apps.example.com".into(),
                Want::Bad("it has 2 parts"),
            ),
            (
                "3000--a--main--dev--alice.apps.example.com".into(),
                Want::Bad("it has 5 parts"),
            ),
            // Short form with an app.
            (
                "web--dev--alice.apps.example.com".into(),
                Want::Bad("short form {port}--{workspace}--{user} takes a port, not an app name"),
            ),
            // Hyphens.
            (
                "-3000--main--dev--alice.apps.example.com".into(),
                Want::Bad("the part '-3000' is not a valid name"),
            ),
            (
                "3000--main--dev--alice-.apps.example.com".into(),
                Want::Bad("the user part 'alice-'"),
            ),
            (
                "3000---main--dev--alice.apps.example.com".into(),
                Want::Bad("the agent part '-main'"),
            ),
            (
                "3000--main---dev--alice.apps.example.com".into(),
                Want::Bad("the workspace part '-dev'"),
            ),
            (
                "3000----dev--alice.apps.example.com".into(),
                Want::Bad("the agent part is empty"),
            ),
            (
                "--main--dev--alice.apps.example.com".into(),
                Want::Bad("the port or app part is empty"),
            ),
            (
                "3000--main--dev--.apps.example.com".into(),
                Want::Bad("the user part is empty"),
            ),
            ("-.apps.example.com".into(), Want::Bad("1 part")),
            ("--.apps.example.com".into(), Want::Bad("2 parts")),
            // Characters.
            (
                "foo_--main--dev--alice.apps.example.com".into(),
                Want::Bad("the part 'foo_' is not a valid name"),
            ),
            (
                "Foo_--main--dev--alice.apps.example.com".into(),
                Want::Bad("'foo_'"),
            ),
            (
                "3000--ma_in--dev--alice.apps.example.com".into(),
                Want::Bad("agent part 'ma_in'"),
            ),
            (
                "3000--main--dev--al%69ce.apps.example.com".into(),
                Want::Bad("user part 'al%69ce'"),
            ),
            (
                "3000--main--dév--alice.apps.example.com".into(),
                Want::Bad("workspace part 'dév'"),
            ),
            (
                "3000--main--dev--ALİCE.apps.example.com".into(),
                Want::Bad("user part"),
            ),
            (
                "3000--main--dev--a lice.apps.example.com".into(),
                Want::Bad("user part"),
            ),
            (
                "3000--main--dev--a*b.apps.example.com".into(),
                Want::Bad("user part"),
            ),
            (
                "😀--main--dev--alice.apps.example.com".into(),
                Want::Bad("is not a valid name"),
            ),
            (
                "3000--main--dev--alice.apps.example.com\0".into(),
                Want::Outside,
            ),
        ];
        for (host, want) in &table {
            check(&w, host, want);
        }
    }

    #[test]
    fn parse_host_prefix_form_table() {
        let w = prefix();
        let l57 = format!("3000--main--dev--{}", "u".repeat(57 - 17));
        let l58 = format!("3000--main--dev--{}", "u".repeat(58 - 17));
        let long_user = "u".repeat(57 - 17);
        let table: Vec<(String, Want)> = vec![
            (
                "3000--main--dev--alice--apps.example.com".into(),
                Want::Ok(port(3000, false, Some("main"), "dev", "alice")),
            ),
            (
                "3000s--main--dev--alice--apps.example.com".into(),
                Want::Ok(port(3000, true, Some("main"), "dev", "alice")),
            ),
            (
                "web--main--dev--alice--apps.example.com".into(),
                Want::Ok(app("web", "main", "dev", "alice")),
            ),
            (
                "3000--dev--alice--apps.example.com".into(),
                Want::Ok(port(3000, false, None, "dev", "alice")),
            ),
            (
                "3000--Dev--Alice--APPS.example.com.:443".into(),
                Want::Ok(port(3000, false, None, "dev", "alice")),
            ),
            (
                format!("{l57}--apps.example.com"),
                Want::Ok(port(3000, false, Some("main"), "dev", &long_user)),
            ),
            (format!("{l58}--apps.example.com"), Want::TooLong),
            ("apps.example.com".into(), Want::Outside),
            ("--apps.example.com".into(), Want::Outside),
            (
                "3000--main--dev--alice.apps.example.com".into(),
                Want::Outside,
            ),
            (
                "3000--main--dev--alice-apps.example.com".into(),
                Want::Outside,
            ),
            ("[::1]:443".into(), Want::Outside),
            (
                "x.3000--main--dev--alice--apps.example.com".into(),
                Want::NotSingle,
            ),
            (
                "3000--main--dev--alice---apps.example.com".into(),
                Want::Bad("the user part 'alice-'"),
            ),
            (
                "3000--a--main--dev--alice--apps.example.com".into(),
                Want::Bad("5 parts"),
            ),
            (
                "web--dev--alice--apps.example.com".into(),
                Want::Bad("short form"),
            ),
            (
                "0--main--dev--alice--apps.example.com".into(),
                Want::Bad("port 0 is out of range 1-65535"),
            ),
        ];
        for (host, want) in &table {
            check(&w, host, want);
        }
    }

    #[test]
    fn error_texts() {
        let w = dot();
        let e = parse_host("example.org", &w).unwrap_err();
        assert_eq!(
            e.to_string(),
            "The host 'example.org' is not under this edge's domain (*.apps.example.com)."
        );
        let e = parse_host("0--main--dev--alice.apps.example.com", &w).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'0--main--dev--alice' is not a valid app host name: port 0 is out of range 1-65535."
        );
        let e = parse_host("a.b.apps.example.com", &w).unwrap_err();
        assert_eq!(
            e.to_string(),
            "The host 'a.b.apps.example.com' is not a single label under apps.example.com: an \
             app host looks like '3000--main--dev--alice.apps.example.com'."
        );
        let e = parse_host("3000--Main_--dev--alice.apps.example.com", &w).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'3000--main_--dev--alice' is not a valid app host name: the agent part 'main_' is \
             not a valid name: it may only contain lower-case letters, digits and '-'."
        );
        // Huge hosts are clipped in messages.
        let huge = format!("{}.example.org", "x".repeat(10_000));
        assert!(parse_host(&huge, &w).unwrap_err().to_string().len() < 300);
    }

    /// SplitMix64: a tiny deterministic generator for the property test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// A valid name of 1..=max characters.
        fn name(&mut self, max: usize) -> String {
            const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
            let len = 1 + self.below(max);
            let mut out = String::with_capacity(len);
            for i in 0..len {
                let hyphen_ok = i > 0 && i + 1 < len && !out.ends_with('-');
                if hyphen_ok && self.below(5) == 0 {
                    out.push('-');
                } else {
                    out.push(ALPHABET[self.below(ALPHABET.len())] as char);
                }
            }
            out
        }
    }

    #[test]
    fn generated_targets_round_trip() {
        let wildcards = [
            dot(),
            prefix(),
            Wildcard::parse("*.berth.localhost").unwrap(),
            Wildcard::parse(&format!("*--{}.example.com", "a".repeat(50))).unwrap(),
        ];
        let mut rng = Rng(0x5EED);
        let mut checked = 0;
        while checked < 20_000 {
            let w = &wildcards[rng.below(wildcards.len())];
            let short = rng.below(4) == 0;
            let service = if short || rng.below(2) == 0 {
                let p = match rng.below(4) {
                    0 => 1,
                    1 => 65535,
                    _ => 1 + rng.below(65535) as u16,
                };
                Service::Port(p)
            } else {
                let mut name = rng.name(20);
                if is_port_like(&name) {
                    name.insert(0, 'x');
                }
                Service::App(name)
            };
            let t = AppTarget {
                tls: matches!(service, Service::Port(_)) && rng.below(2) == 0,
                service,
                agent: (!short).then(|| rng.name(20)),
                workspace: rng.name(20),
                user: rng.name(20),
            };
            let label = t.label();
            if label.len() > w.max_label() {
                assert!(matches!(
                    parse_host(&w.host_for(&label), w),
                    Err(HostError::TooLong { .. })
                ));
                continue;
            }
            let host = w.host_for(&label);
            assert_eq!(parse_host(&host, w).as_ref(), Ok(&t), "{host}");
            let variant = format!("{}.:443", host.to_ascii_uppercase());
            assert_eq!(parse_host(&variant, w).as_ref(), Ok(&t), "{variant}");
            checked += 1;
        }
    }

    #[test]
    fn cert_names_cover_host_and_wildcard() {
        assert_eq!(
            cert_names("berth.example.com", "*.apps.example.com"),
            ["berth.example.com", "*.apps.example.com"]
        );
        // The prefix form's hosts are one label under the parent domain.
        assert_eq!(
            cert_names("berth.example.com", "*--apps.example.com"),
            ["berth.example.com", "*.example.com"]
        );
        assert_eq!(cert_names("*.x.test", "*.x.test"), ["*.x.test"]);
    }
}
