//! Request paths on app hosts (SPEC section 3): which belong to the edge,
//! and where a redirect made from one may point. Pure functions.

use std::borrow::Cow;

/// The first path segment the edge keeps for itself: `/_berth/...`.
const EDGE_SEGMENT: &str = "_berth";

/// How many rounds of percent-decoding to undo (`%255F` is `%5F` is `_`).
const DECODE_ROUNDS: usize = 3;

/// True when `path` is, or might be read by an app as, a path under
/// `/_berth/` (or `/_berth` itself). Apps and their frameworks normalize
/// paths in many ways, so this one errs towards the edge: it percent-decodes
/// every escape (a few rounds), reads `\` as `/`, drops empty segments, `.`
/// and `;parameters`, resolves `..`, and compares case-insensitively. A path
/// it claims is answered by the edge (404), never by the app.
pub(crate) fn is_edge_path(path: &str) -> bool {
    let mut bytes: Vec<u8> = path.as_bytes().to_vec();
    for _ in 0..DECODE_ROUNDS {
        match percent_decode(&bytes) {
            Some(decoded) => bytes = decoded,
            None => break,
        }
    }
    let edge = |s: &[u8]| s.eq_ignore_ascii_case(EDGE_SEGMENT.as_bytes());
    // Both the first segment as written and the first after `..` count.
    let mut first = None;
    let mut segments: Vec<&[u8]> = Vec::new();
    for raw in bytes.split(|b| *b == b'/' || *b == b'\\') {
        let segment = raw.split(|b| *b == b';').next().unwrap_or_default();
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => {
                first.get_or_insert(s);
                segments.push(s);
            }
        }
    }
    first.is_some_and(edge) || segments.first().is_some_and(|s| edge(s))
}

/// `bytes` with every `%XX` decoded; `None` when there was nothing to decode.
fn percent_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                changed = true;
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// A `Location` for a redirect to `path_and_query` on the same host: always
/// a path that starts with exactly one `/`. A path such as `//evil.com/` or
/// `/\evil.com` would make browsers leave for another host, so the leading
/// run of slashes and backslashes becomes one `/`; spaces, control
/// characters and non-ASCII bytes are percent-encoded (a header value holds
/// visible ASCII only).
pub(crate) fn same_origin_location(path_and_query: &str) -> Cow<'_, str> {
    let rest = path_and_query.trim_start_matches(['/', '\\']);
    let clean = |b: u8| b.is_ascii_graphic();
    if rest.len() + 1 == path_and_query.len()
        && path_and_query.starts_with('/')
        && rest.bytes().all(clean)
    {
        return Cow::Borrowed(path_and_query);
    }
    let mut out = String::with_capacity(rest.len() + 1);
    out.push('/');
    for b in rest.bytes() {
        if clean(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edges_paths_in_every_disguise() {
        for path in [
            "/_berth/",
            "/_berth",
            "/_berth/auth/callback",
            "/_berth/anything?x",
            "/%5Fberth/",
            "/%5fberth/x",
            "/%5F%62%65%72%74%68/",
            "/%255Fberth/",
            "/%25255Fberth/",
            "//_berth/",
            "///_berth",
            "/./_berth/",
            "/.%2F_berth/",
            "/%2e/_berth/",
            "/%2E%2E/_berth/",
            "/x/../_berth/",
            "/x/y/../../_berth/",
            "/../_berth/",
            "/\\_berth/",
            "\\_berth\\x",
            "/%5C_berth/",
            "/%2F_berth/",
            "/_BERTH/",
            "/_Berth/x",
            "/_berth;x=1/",
            "/;/_berth/",
            "_berth/",
            "/_berth/../x",
            "/%5Fberth%2F..%2Fapp",
        ] {
            assert!(is_edge_path(path), "{path}");
        }
    }

    #[test]
    fn the_apps_paths_stay_the_apps() {
        for path in [
            "/",
            "",
            "/berth/",
            "/_berth_/",
            "/_berthx",
            "/x_berth/",
            "/_ber th/",
            "/api/_berth/",
            "/x/_berth",
            "/%5",
            "/%",
            "/%zz_berth",
            "/%5Gberth/",
            "/..%2Fapp/_berth",
            "/..",
            "*",
        ] {
            assert!(!is_edge_path(path), "{path}");
        }
    }

    #[test]
    fn redirects_never_leave_the_host() {
        for (path, want) in [
            ("/", "/"),
            ("/a?b=1", "/a?b=1"),
            ("/a//b", "/a//b"),
            ("/a\\b", "/a\\b"),
            ("//evil.com/", "/evil.com/"),
            ("///evil.com", "/evil.com"),
            ("/\\evil.com", "/evil.com"),
            ("\\\\evil.com", "/evil.com"),
            ("/\\/evil.com/x?y", "/evil.com/x?y"),
            ("//", "/"),
            ("", "/"),
            ("evil.com", "/evil.com"),
            ("https://evil.com/", "/https://evil.com/"),
            ("/\t/evil.com", "/%09/evil.com"),
            ("/a b", "/a%20b"),
            ("/x\r\nSet-Cookie: y", "/x%0D%0ASet-Cookie:%20y"),
            ("/é", "/%C3%A9"),
        ] {
            let got = same_origin_location(path);
            assert_eq!(got, want, "{path:?}");
            assert!(got.starts_with('/'), "{got}");
            assert!(!got[1..].starts_with(['/', '\\']), "{got}");
        }
    }
}
