//! What berth accepts as an e-mail address: a plain ASCII `local@domain`
//! (RFC 5322 dot-atom local part, DNS host name domain), nothing that could
//! be markup, a header trick or text that reads differently from what it is
//! (control characters, bidirectional overrides, zero-width characters).
//! Users get one at creation and from an identity provider; the edge hands
//! it to apps in `X-Berth-Email` only when it still passes.

/// Longest address (RFC 5321 path limit less the angle brackets).
pub const MAX_LEN: usize = 254;
/// Longest local part (RFC 5321 4.5.3.1.1).
const MAX_LOCAL: usize = 64;

/// Why a value is not a plain address; the text completes "email: ...".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("must be an e-mail address such as alice@example.com")]
    Shape,
    #[error("must have at most 254 characters")]
    TooLong,
    #[error("must not contain control, invisible or text-direction characters")]
    Invisible,
    #[error(
        "must be a plain address (letters, digits and . _ + - and the like before the @, a host name after it) without spaces, quotes, brackets or non-ASCII characters"
    )]
    Characters,
}

/// Checks `value` as an address berth will store and forward.
pub fn check(value: &str) -> Result<(), EmailError> {
    if value.chars().any(is_hidden) {
        return Err(EmailError::Invisible);
    }
    if value.len() > MAX_LEN {
        return Err(EmailError::TooLong);
    }
    if !value.is_ascii() {
        return Err(EmailError::Characters);
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return Err(EmailError::Shape);
    };
    if local.is_empty() || domain.is_empty() {
        return Err(EmailError::Shape);
    }
    if local.len() > MAX_LOCAL || !local.bytes().all(is_atext_or_dot) || !dot_atom(local) {
        return Err(EmailError::Characters);
    }
    if !domain.split('.').all(is_host_label) {
        return Err(EmailError::Characters);
    }
    Ok(())
}

/// True when `value` passes [`check`]: what may go into `X-Berth-Email`.
pub fn is_plain(value: &str) -> bool {
    check(value).is_ok()
}

/// Control characters and the format characters that hide or reorder text:
/// bidirectional marks, embeddings, overrides and isolates, zero-width
/// characters, the byte-order mark, and interlinear annotation marks.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// RFC 5322 `atext`, plus `.` (placement checked by [`dot_atom`]).
fn is_atext_or_dot(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b)
}

/// No leading, trailing or doubled dot.
fn dot_atom(s: &str) -> bool {
    !s.starts_with('.') && !s.ends_with('.') && !s.contains("..")
}

/// A DNS label of a host name: 1 to 63 letters, digits and `-`, not at
/// either end.
fn is_host_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_pass() {
        for ok in [
            "alice@example.com",
            "a@b",
            "admin@berth.localhost",
            "A.B_c+tag@x.example",
            "o'brien@example.ie",
            "x-y@sub-domain.example.co.uk",
            "1234567890@123.example",
            &format!("{}@{}.com", "l".repeat(64), "d".repeat(63)),
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn odd_addresses_are_refused_with_a_reason() {
        use EmailError::*;
        let long_domain = format!("a@{}", vec!["d".repeat(60); 5].join("."));
        let cases: &[(&str, EmailError)] = &[
            ("", Shape),
            ("ab", Shape),
            ("@b", Shape),
            ("a@", Shape),
            ("<script>@x.y", Characters),
            ("a@<script>.y", Characters),
            ("\"a b\"@x.y", Characters),
            ("a b@c", Characters),
            ("a@b c", Characters),
            ("a@b@c", Characters),
            ("a,b@c", Characters),
            ("a;b@c", Characters),
            ("a\\b@c", Characters),
            ("(comment)a@c", Characters),
            ("a@[127.0.0.1]", Characters),
            (".a@c", Characters),
            ("a.@c", Characters),
            ("a..b@c", Characters),
            ("a@.c", Characters),
            ("a@c.", Characters),
            ("a@-c", Characters),
            ("a@c_d", Characters),
            ("jörg@example.de", Characters),
            ("a@exämple.de", Characters),
            ("alice@example.com\r\nX-Berth-User: root", Invisible),
            ("a\tb@c", Invisible),
            ("a\u{0}@c", Invisible),
            ("a\u{7f}@c", Invisible),
            ("a\u{85}@c", Invisible),
            // "moc.elpmaxe@ecila" read right to left.
            ("\u{202E}moc.elpmaxe@ecila", Invisible),
            ("alice\u{202D}@x.y", Invisible),
            ("al\u{200B}ice@x.y", Invisible),
            ("alice@x.y\u{2066}", Invisible),
            ("\u{FEFF}alice@x.y", Invisible),
            ("alice\u{061C}@x.y", Invisible),
            ("alice\u{200E}@x.y", Invisible),
            (&long_domain, TooLong),
        ];
        for (bad, want) in cases {
            assert_eq!(check(bad), Err(*want), "{bad:?}");
            assert!(!is_plain(bad), "{bad:?}");
        }
        let long_local = format!("{}@x.y", "l".repeat(65));
        assert_eq!(check(&long_local), Err(Characters));
        let long_label = format!("a@{}.com", "d".repeat(64));
        assert_eq!(check(&long_label), Err(Characters));
    }
}
