//! The repository is self-contained: every Markdown link in the README and
//! `docs/` points at a file in the repository (and, with `#anchor`, at one of
//! its headings), and no document sends the reader outside it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The documents a reader starts from.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut docs = vec![root.join("README.md"), root.join("tests/data/README.md")];
    let mut in_docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    in_docs.sort();
    docs.extend(in_docs);
    docs
}

/// The targets of `[text](target)` links outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, spaces to dashes, most
/// punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> HashSet<String> {
    let mut fenced = false;
    let mut out = HashSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_link_in_the_docs_points_inside_the_repository() {
    let root = std::fs::canonicalize(root()).unwrap();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc
            .strip_prefix(&root)
            .unwrap_or(&doc)
            .display()
            .to_string();
        assert!(
            !text.contains("../shared"),
            "{name} sends the reader to ../shared, outside the repository"
        );
        for link in links(&text) {
            assert!(
                !link.contains("://"),
                "{name} links outside the repository: {link}"
            );
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(file)
            };
            let target = std::fs::canonicalize(&target)
                .unwrap_or_else(|_| panic!("{name} links to {link}, which does not exist"));
            assert!(
                target.starts_with(&root),
                "{name} links to {link}, outside the repository"
            );
            if !fragment.is_empty() {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap());
                assert!(
                    headings.contains(fragment),
                    "{name} links to {link}, but {} has no heading #{fragment}",
                    Path::new(file).display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "found {checked} links");
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(anchor(" Your first process"), "your-first-process");
    assert_eq!(anchor("Try it from Python"), "try-it-from-python");
    assert_eq!(anchor("`server/` — klad-server"), "server--klad-server");
}
