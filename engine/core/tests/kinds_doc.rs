//! The reference of node kinds is generated from the kinds table, and the README
//! shows every kind: a kind added to the table and not documented fails here.
//!
//! Run with `UPDATE_EXPECT=1` to rewrite `docs/node-kinds.md`, then review the diff.

use nagare_core::kinds::{markdown, KINDS};
use std::path::PathBuf;

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(name)
}

#[test]
fn the_node_kinds_reference_is_generated_from_the_table() {
    let path = repo_file("docs/node-kinds.md");
    let generated = markdown();
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == generated,
        "{} is not what the kinds table generates; run `UPDATE_EXPECT=1 cargo test --workspace --test kinds_doc` \
         and review the diff.\n--- generated ---\n{generated}",
        path.display()
    );
}

#[test]
fn every_kind_has_an_example_in_the_readme() {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let start = readme.find("## Writing a process").expect("README has § Writing a process");
    let end = readme[start + 1..].find("\n## ").map_or(readme.len(), |i| start + 1 + i);
    let section = &readme[start..end];
    let missing: Vec<&str> = KINDS
        .iter()
        .map(|k| k.key)
        .filter(|key| !section.contains(&format!(" {key}:")) && !section.contains(&format!("{{ {key}:")))
        .collect();
    assert!(missing.is_empty(), "README § Writing a process shows no example of: {}", missing.join(", "));
}

#[test]
fn the_reference_lists_every_kind_with_its_keys() {
    let doc = markdown();
    for k in KINDS {
        let row =
            doc.lines().find(|l| l.starts_with(&format!("| `{}` |", k.key))).unwrap_or_else(|| panic!("{}", k.key));
        for key in k.keys {
            assert!(row.contains(&format!("`{key}`")), "row of `{}` lacks `{key}`", k.key);
        }
    }
}
