//! The README and docs/ link only files that exist in the repository (a
//! clone has no ../shared/), so a reader never follows a dead link.

use std::path::{Path, PathBuf};

/// The relative link targets in a Markdown text: `](target)`, without any
/// `#fragment`; web and mail links are left out.
fn relative_links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|t| t.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|t| {
            !t.is_empty()
                && !t.starts_with("http://")
                && !t.starts_with("https://")
                && !t.starts_with("mailto:")
        })
        .collect()
}

#[test]
fn readme_and_docs_link_only_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "md") {
            files.push(p);
        }
    }
    let mut dead = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let dir = file.parent().unwrap();
        for link in relative_links(&text) {
            let target = dir.join(&link);
            let inside = target
                .canonicalize()
                .is_ok_and(|t| t.starts_with(root.canonicalize().unwrap()));
            if !inside {
                dead.push(format!(
                    "{}: {link}",
                    file.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        dead.is_empty(),
        "links to files that are not in the repository:\n{}",
        dead.join("\n")
    );
}

#[test]
fn links_are_found() {
    let text =
        "see [a](docs/a.md#x), [b](https://x.org), ![s](docs/s.png) and [c](../shared/SPEC.md)";
    assert_eq!(
        relative_links(text),
        ["docs/a.md", "docs/s.png", "../shared/SPEC.md"]
    );
}
