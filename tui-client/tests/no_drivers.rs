//! Built without its `demo` feature, the terminal client links no database driver:
//! `cargo tree` (normal dependencies, the ones linked into the binary) lists none.

use std::process::Command;

fn tree(features: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "-p", "tui-client"])
        .args(["-e", "normal", "--prefix", "none", "--format", "{p}"])
        .args(features)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn drivers(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter(|line| {
            let name = line.split(' ').next().unwrap_or("");
            ["rusqlite", "postgres", "mysql", "mock-master"].contains(&name)
        })
        .collect()
}

#[test]
fn no_default_features_link_no_database_driver() {
    let tree = tree(&["--no-default-features"]);
    assert!(tree.contains("lotsync"), "{tree}");
    assert_eq!(drivers(&tree), Vec::<&str>::new());
}

#[test]
fn the_default_build_has_the_demo_and_its_drivers() {
    // The check above can fail: the default build does link them.
    let tree = tree(&[]);
    for driver in ["rusqlite", "postgres", "mysql"] {
        assert!(
            drivers(&tree)
                .iter()
                .any(|l| l.starts_with(&format!("{driver} "))),
            "{driver} missing from\n{tree}"
        );
    }
}
