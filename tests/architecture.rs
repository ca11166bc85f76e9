//! The layering rule of `src/`, enforced (docs/architecture.md, "Module
//! map"). Every top-level module sits in one band:
//!
//! 1. vocabulary: pure types and functions (no I/O);
//! 2. infrastructure: storage, TLS, telemetry, the tunnel;
//! 3. roles: edge, control, agent, client;
//! 4. composition: the server kinds built from the roles;
//! 5. the binary (`main.rs`, `cli.rs`).
//!
//! A file may import from its own band and the bands below it; a role never
//! imports another role; and no files may import each other in a circle.
//! The checker reads the source as text: every `crate::`, `super::` and
//! `self::` path in `use` items and in code (comments and strings left
//! out), resolved to the file that defines the module it names.
//!
//! Two things are not counted, on purpose:
//! - inline `#[cfg(test)]` modules: a unit test may assemble parts from
//!   anywhere, as the e2e tests do (test files such as `control/tests.rs`
//!   are checked like any other file);
//! - a file's use of its own folder's face (`super::ControlState` from
//!   `control/users.rs` to `control/mod.rs`): the face declares its files
//!   and they share its items; that pairing is not a circle.
//!
//! Run it alone with `cargo test --test architecture`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// The bands, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Band {
    Vocabulary = 1,
    Infrastructure = 2,
    Role = 3,
    Composition = 4,
    Binary = 5,
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Band::Vocabulary => "vocabulary",
            Band::Infrastructure => "infrastructure",
            Band::Role => "roles",
            Band::Composition => "composition",
            Band::Binary => "binary",
        };
        write!(f, "{} {name}", *self as u8)
    }
}

/// Every top-level module of `src/` and its band. A new module must be
/// placed here (and in the Layout of `src/lib.rs`).
const BANDS: &[(&str, Band)] = &[
    ("host", Band::Vocabulary),
    ("secret", Band::Vocabulary),
    ("auth", Band::Vocabulary),
    ("catalog", Band::Vocabulary),
    ("config", Band::Vocabulary),
    ("html", Band::Vocabulary),
    ("protocol", Band::Vocabulary),
    ("store", Band::Infrastructure),
    ("tls", Band::Infrastructure),
    ("telemetry", Band::Infrastructure),
    ("tunnel", Band::Infrastructure),
    ("edge", Band::Role),
    ("control", Band::Role),
    ("agent", Band::Role),
    ("client", Band::Role),
    ("roles", Band::Composition),
    ("main", Band::Binary),
    ("cli", Band::Binary),
];

fn band_of(top: &str) -> Option<Band> {
    BANDS.iter().find(|(m, _)| *m == top).map(|(_, b)| *b)
}

#[test]
fn src_keeps_its_bands_and_has_no_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&root, &root, &mut files);
    assert!(files.len() > 20, "read only {} files of src/", files.len());
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "{} layering problem(s) in src/:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Every `.rs` file under `dir`, as (path relative to `src/`, text).
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy();
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((rel.replace('\\', "/"), text));
        }
    }
}

/// The module path a file defines: `edge/mod.rs` is `[edge]`,
/// `edge/proxy.rs` `[edge, proxy]`, `lib.rs` (and `main.rs`) the root.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The binary's own files: `main.rs` and the modules it declares (`cli.rs`);
/// they import the library as `berth::`, and `crate::` means the binary.
fn is_binary(file: &str) -> bool {
    matches!(file, "main.rs" | "cli.rs")
}

/// One import: from a file (line), as written, to the file that defines
/// the module it names.
#[derive(Debug)]
struct Import {
    from: String,
    line: usize,
    path: String,
    to: String,
}

/// All the problems of a set of files (paths relative to `src/`), as
/// sentences naming the file and the import.
fn check(files: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter(|(f, _)| !is_binary(f))
        .map(|(f, _)| (module_of(f), f.clone()))
        .collect();
    let mut imports = Vec::new();
    for (file, text) in files {
        if file == "lib.rs" || is_binary(file) {
            continue;
        }
        let top = &module_of(file)[0];
        if band_of(top).is_none() {
            problems.push(format!(
                "src/{file}: module {top} is in no band: add it to BANDS in tests/architecture.rs and to the Layout in src/lib.rs"
            ));
            continue;
        }
        for (line, path) in paths_in(text, &module_of(file), &modules) {
            if let Some(to) = resolve(&path, &modules) {
                if &to != file {
                    let shown = format!("crate::{}", path.join("::"));
                    imports.push(Import {
                        from: file.clone(),
                        line,
                        path: shown,
                        to,
                    });
                }
            }
        }
    }
    for i in &imports {
        let (from_top, to_top) = (&module_of(&i.from)[0], &module_of(&i.to)[0]);
        let (Some(a), Some(b)) = (band_of(from_top), band_of(to_top)) else {
            continue;
        };
        if b > a {
            problems.push(format!(
                "src/{}:{} imports {} (band {b}) from band {a}: a module may import only from its own band or the bands below it",
                i.from, i.line, i.path
            ));
        } else if a == Band::Role && b == Band::Role && from_top != to_top {
            problems.push(format!(
                "src/{}:{} imports {} (band {b}) from band {a}: roles never import each other; move what both need down (protocol/, a vocabulary module) or compose them in roles/",
                i.from, i.line, i.path
            ));
        }
    }
    for circle in circles(&imports) {
        // What ties the circle: each pair of its files, with the first line
        // and the names one takes from the other.
        let mut ties: BTreeMap<(&str, &str), (usize, BTreeSet<&str>)> = BTreeMap::new();
        for i in imports.iter().filter(|i| !is_face_of(&i.to, &i.from)) {
            if circle.contains(&i.from) && circle.contains(&i.to) {
                let tie = ties
                    .entry((&i.from, &i.to))
                    .or_insert((i.line, BTreeSet::new()));
                tie.0 = tie.0.min(i.line);
                tie.1.insert(i.path.rsplit("::").next().unwrap_or(&i.path));
            }
        }
        let files: Vec<String> = circle.iter().map(|f| format!("src/{f}")).collect();
        let round = way_round(&circle, &ties);
        let ties: Vec<String> = ties
            .iter()
            .map(|((from, to), (line, names))| {
                let names: Vec<&str> = names.iter().copied().collect();
                format!("  src/{from}:{line} -> src/{to}: {}", names.join(", "))
            })
            .collect();
        problems.push(format!(
            "a circle of {} files: {}\n  one way round: {round}\n{}",
            circle.len(),
            files.join(", "),
            ties.join("\n")
        ));
    }
    problems
}

/// The shortest loop through the circle's first file, as `src/a.rs ->
/// src/b.rs -> src/a.rs` (breadth first over the imports that tie it).
fn way_round<T>(circle: &BTreeSet<String>, ties: &BTreeMap<(&str, &str), T>) -> String {
    let start = circle.iter().next().expect("a circle has files").as_str();
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for &(from, to) in ties.keys() {
            if from != at {
                continue;
            }
            if to == start {
                let mut path = vec![start, at];
                let mut back = at;
                while let Some(&prev) = came_from.get(back) {
                    path.push(prev);
                    back = prev;
                }
                path.reverse();
                path.pop();
                path.push(start);
                path.dedup();
                let shown: Vec<String> = path.iter().map(|f| format!("src/{f}")).collect();
                return shown.join(" -> ");
            }
            if to != start && !came_from.contains_key(to) {
                came_from.insert(to, at);
                queue.push_back(to);
            }
        }
    }
    format!("src/{start} -> ... (not found)")
}

/// Whether `face` defines a module that holds `file`'s (`control/mod.rs`,
/// or `config.rs` beside `config/`, for `control/users.rs` and
/// `config/acme.rs`).
fn is_face_of(face: &str, file: &str) -> bool {
    let (outer, inner) = (module_of(face), module_of(file));
    outer.len() < inner.len() && inner.starts_with(&outer)
}

/// The file that defines the module a path (from the crate root) names:
/// the longest prefix of the path that is a module of `modules`.
fn resolve(path: &[String], modules: &BTreeMap<Vec<String>, String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]).cloned())
}

/// The sets of files (two or more) that import each other in a circle,
/// leaving out each file's use of its own folder's face: Tarjan's strongly
/// connected components.
fn circles(imports: &[Import]) -> Vec<BTreeSet<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in imports.iter().filter(|i| !is_face_of(&i.to, &i.from)) {
        graph.entry(&i.from).or_default().insert(&i.to);
        graph.entry(&i.to).or_default();
    }
    struct Walk<'a> {
        graph: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in &self.graph[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.insert(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for &v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

// === reading Rust as text ===

/// A word or a piece of punctuation, with its line.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Punct(&'static str),
}

/// The code's tokens, without comments, strings and character literals
/// (which may hold anything, `crate::` included).
fn tokens(text: &str) -> Vec<(usize, Tok)> {
    let b = text.as_bytes();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied().unwrap_or(0);
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && next == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && next == b'*' {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(b[i] == b'\n');
                    i += 1;
                }
            }
        } else if c == b'"' {
            i = skip_string(b, i, None, &mut line);
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            let ch = text[i + 1..].chars().next().map_or(1, char::len_utf8);
            if next == b'\\' {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 1 + ch) == Some(&b'\'') {
                i += ch + 2;
            } else {
                i += 1;
            }
        } else if word(c) {
            let start = i;
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            let w = &text[start..i];
            let hashes = b[i..].iter().take_while(|&&h| h == b'#').count();
            if matches!(w, "r" | "br") && b.get(i + hashes) == Some(&b'"') {
                // A raw string: r"...", r#"..."#.
                i = skip_string(b, i + hashes, Some(hashes), &mut line);
            } else {
                out.push((line, Tok::Word(w.to_owned())));
            }
        } else if c == b':' && next == b':' {
            out.push((line, Tok::Punct("::")));
            i += 2;
        } else {
            let p = match c {
                b'{' => "{",
                b'}' => "}",
                b';' => ";",
                b',' => ",",
                b'#' => "#",
                b'[' => "[",
                b']' => "]",
                b'(' => "(",
                b')' => ")",
                _ => "?",
            };
            out.push((line, Tok::Punct(p)));
            i += 1;
        }
    }
    out
}

/// Skips the string whose opening quote is at `open`; `raw` gives a raw
/// string's number of `#` (no escapes; it ends at a quote and that many
/// `#`). Returns the index after it.
fn skip_string(b: &[u8], open: usize, raw: Option<usize>, line: &mut usize) -> usize {
    let hashes = raw.unwrap_or(0);
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if raw.is_none() => {
                *line += usize::from(b.get(i + 1) == Some(&b'\n'));
                i += 2;
                continue;
            }
            b'"' if b[i + 1..].iter().take_while(|&&h| h == b'#').count() >= hashes => {
                return i + 1 + hashes;
            }
            b'\n' => *line += 1,
            _ => {}
        }
        i += 1;
    }
    i
}

fn is_word(t: Option<&(usize, Tok)>, w: &str) -> bool {
    matches!(t, Some((_, Tok::Word(x))) if x == w)
}

fn is_punct(t: Option<&(usize, Tok)>, p: &str) -> bool {
    matches!(t, Some((_, Tok::Punct(x))) if *x == p)
}

/// Every path from the crate root that the code of a file in module
/// `module` names, with its line: `use` trees expanded, `super::` and
/// `self::` resolved, inline `#[cfg(test)]` modules left out.
fn paths_in(
    text: &str,
    module: &[String],
    modules: &BTreeMap<Vec<String>, String>,
) -> Vec<(usize, Vec<String>)> {
    let toks = tokens(text);
    let mut out = Vec::new();
    // The inline modules we are in: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(m, _)| m.clone()))
            .collect();
        if is_test_module(&toks, i) {
            // Skip the attribute and the module's body.
            while i < toks.len() && !is_punct(toks.get(i), "{") && !is_punct(toks.get(i), ";") {
                i += 1;
            }
            if is_punct(toks.get(i), "{") {
                i = matching_brace(&toks, i);
            }
            i += 1;
            continue;
        }
        match &toks[i].1 {
            Tok::Punct("{") => depth += 1,
            Tok::Punct("}") => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            Tok::Word(w) if w == "mod" => {
                if let (Some((_, Tok::Word(name))), true) =
                    (toks.get(i + 1), is_punct(toks.get(i + 2), "{"))
                {
                    inline.push((name.clone(), depth + 1));
                }
            }
            Tok::Word(w) if w == "use" => {
                let line = toks[i].0;
                let end = (i..toks.len())
                    .find(|&j| is_punct(toks.get(j), ";"))
                    .unwrap_or(toks.len());
                let mut trees = Vec::new();
                use_tree(&toks[i + 1..end], &[], &mut trees);
                for p in trees {
                    if let Some(abs) = absolute(&p, &here, modules) {
                        out.push((line, abs));
                    }
                }
                i = end;
                continue;
            }
            Tok::Word(w)
                if is_punct(toks.get(i + 1), "::")
                    && !is_punct(toks.get(i.wrapping_sub(1)), "::") =>
            {
                let line = toks[i].0;
                let mut p = vec![w.clone()];
                let mut j = i + 1;
                while is_punct(toks.get(j), "::") {
                    match toks.get(j + 1) {
                        Some((_, Tok::Word(s))) => p.push(s.clone()),
                        _ => break,
                    }
                    j += 2;
                }
                if let Some(abs) = absolute(&p, &here, modules) {
                    out.push((line, abs));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Whether the tokens at `i` are `#[cfg(test)]` in front of a `mod`.
fn is_test_module(toks: &[(usize, Tok)], i: usize) -> bool {
    let cfg_test = is_punct(toks.get(i), "#")
        && is_punct(toks.get(i + 1), "[")
        && is_word(toks.get(i + 2), "cfg")
        && is_punct(toks.get(i + 3), "(")
        && is_word(toks.get(i + 4), "test")
        && is_punct(toks.get(i + 5), ")")
        && is_punct(toks.get(i + 6), "]");
    if !cfg_test {
        return false;
    }
    // Other attributes or `pub(crate)` may stand between.
    let mut j = i + 7;
    loop {
        if is_punct(toks.get(j), "#") && is_punct(toks.get(j + 1), "[") {
            j = (j..toks.len())
                .find(|&k| is_punct(toks.get(k), "]"))
                .map_or(toks.len(), |k| k + 1);
        } else if is_word(toks.get(j), "pub") {
            j += 1;
            if is_punct(toks.get(j), "(") {
                j = (j..toks.len())
                    .find(|&k| is_punct(toks.get(k), ")"))
                    .map_or(toks.len(), |k| k + 1);
            }
        } else {
            return is_word(toks.get(j), "mod");
        }
    }
}

/// The index of the `}` that closes the `{` at `open`.
fn matching_brace(toks: &[(usize, Tok)], open: usize) -> usize {
    let mut depth = 0;
    for (j, (_, t)) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Punct("{") => depth += 1,
            Tok::Punct("}") => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// Expands a use tree (`a::{b, c::{self, d}}`) into its paths.
fn use_tree(toks: &[(usize, Tok)], prefix: &[String], out: &mut Vec<Vec<String>>) {
    if toks.is_empty() {
        return;
    }
    let mut i = 0;
    let mut path = prefix.to_vec();
    while i < toks.len() {
        match &toks[i].1 {
            Tok::Word(w) if w == "as" => {
                i += 2;
                continue;
            }
            Tok::Word(w) if w == "self" && !path.is_empty() => {}
            Tok::Word(w) => path.push(w.clone()),
            Tok::Punct("{") => {
                let close = matching_brace(toks, i);
                // Split the group at its top-level commas.
                let mut start = i + 1;
                let mut depth = 0;
                for j in i + 1..close {
                    match toks[j].1 {
                        Tok::Punct("{") => depth += 1,
                        Tok::Punct("}") => depth -= 1,
                        Tok::Punct(",") if depth == 0 => {
                            use_tree(&toks[start..j], &path, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                use_tree(&toks[start..close], &path, out);
                return;
            }
            _ => {}
        }
        i += 1;
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// A path as seen from module `here`, from the crate root: one that starts
/// at `crate`, `super` or `self`, or at a child module of `here` (`use
/// links::create` in `control/mod.rs`); `None` for any other (other
/// crates, local names).
fn absolute(
    path: &[String],
    here: &[String],
    modules: &BTreeMap<Vec<String>, String>,
) -> Option<Vec<String>> {
    let mut base: Vec<String> = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "super" | "self" => here.to_vec(),
        child => {
            let mut p = here.to_vec();
            p.push(child.to_owned());
            if !modules.contains_key(&p) {
                return None;
            }
            p.extend(path[1..].iter().cloned());
            return Some(p);
        }
    };
    let mut rest = &path[1..];
    if path[0] == "super" {
        base.pop()?;
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(base)
}

// === the checker's own tests ===

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect()
}

#[test]
fn an_upward_import_is_named() {
    let problems = check(&files(&[
        ("lib.rs", "pub mod config; pub mod control;"),
        ("config/mod.rs", "use crate::control::SharingPolicy;\n"),
        ("control/mod.rs", "pub struct SharingPolicy;"),
    ]));
    assert_eq!(
        problems,
        ["src/config/mod.rs:1 imports crate::control::SharingPolicy (band 3 roles) from band 1 vocabulary: a module may import only from its own band or the bands below it"]
    );
}

#[test]
fn a_sibling_role_is_named_however_it_is_reached() {
    let problems = check(&files(&[
        (
            "edge/mod.rs",
            "mod pages;\nfn f() { crate::control::audit(); }\n",
        ),
        ("edge/pages.rs", "use super::super::control::CLIENT_ADDR;"),
        ("control/mod.rs", "pub fn audit() {}"),
    ]));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].starts_with("src/edge/mod.rs:2 imports crate::control::audit (band 3 roles) from band 3 roles: roles never import each other"), "{}", problems[0]);
    assert!(
        problems[1].starts_with("src/edge/pages.rs:1 imports crate::control::CLIENT_ADDR"),
        "{}",
        problems[1]
    );
}

#[test]
fn a_circle_is_named_with_its_files() {
    let problems = check(&files(&[
        (
            "control/mod.rs",
            "mod links; mod shares; use links::create;",
        ),
        (
            "control/links.rs",
            "use super::shares::agent_of; use super::ControlState;",
        ),
        ("control/shares.rs", "use super::links::redeem;"),
    ]));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = &problems[0];
    assert!(
        p.starts_with("a circle of 2 files: src/control/links.rs, src/control/shares.rs"),
        "{p}"
    );
    assert!(
        p.contains(
            "\n  one way round: src/control/links.rs -> src/control/shares.rs -> src/control/links.rs\n"
        ),
        "{p}"
    );
    assert!(
        p.contains("\n  src/control/links.rs:1 -> src/control/shares.rs: agent_of\n"),
        "{p}"
    );
    assert!(
        p.ends_with("\n  src/control/shares.rs:1 -> src/control/links.rs: redeem"),
        "{p}"
    );
    // Using the folder's face (control/mod.rs) is not a circle.
    assert!(!p.contains("ControlState"), "{p}");
}

#[test]
fn allowed_imports_pass() {
    let problems = check(&files(&[
        ("host.rs", "pub fn parse_host() {}"),
        ("auth/mod.rs", "use crate::host::parse_host;"),
        ("store/mod.rs", "use crate::{auth, host::{self, parse_host as p}};"),
        ("tls/mod.rs", "use crate::store::Store;"),
        ("roles/mod.rs", "use crate::edge::Edge; use crate::control::{self, ControlState};"),
        ("edge/mod.rs", "use crate::tls; // crate::control::x in a comment\nconst S: &str = \"crate::control::y\";"),
        ("control/mod.rs", "#[cfg(test)]\nmod tests {\n    use crate::edge::Edge;\n}\n"),
    ]));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_module_outside_the_table_is_named() {
    let problems = check(&files(&[("shiny.rs", "")]));
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("src/shiny.rs: module shiny is in no band"),
        "{problems:?}"
    );
}

#[test]
fn use_trees_expand() {
    let toks = tokens("crate::tunnel::{self, edge::{Tunnels, TunnelEvent as E}}, *");
    let mut out = Vec::new();
    use_tree(&toks, &[], &mut out);
    let shown: Vec<String> = out.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        shown,
        [
            "crate::tunnel",
            "crate::tunnel::edge::Tunnels",
            "crate::tunnel::edge::TunnelEvent"
        ]
    );
}
