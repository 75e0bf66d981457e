//! The Golem components as files: the manifest that names them and the
//! built `.wasm` files (after `scripts/build-components.sh`). They run, agents
//! and all, in `golem_host.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[derive(serde::Deserialize)]
struct Manifest {
    #[serde(rename = "manifestVersion")]
    manifest_version: String,
    components: BTreeMap<String, ComponentEntry>,
    #[serde(rename = "httpApi")]
    http_api: serde_norway::Value,
    #[serde(rename = "componentTemplates")]
    templates: BTreeMap<String, serde_norway::Value>,
    version: Option<serde_norway::Value>,
}

#[derive(serde::Deserialize)]
struct ComponentEntry {
    dir: String,
    templates: String,
}

#[test]
fn golem_manifest_names_every_component() {
    let manifest: Manifest =
        serde_norway::from_str(&std::fs::read_to_string(root().join("golem.yaml")).unwrap()).unwrap();
    assert_eq!(manifest.manifest_version, "1.6.0");
    let expected = [
        "timeline:aggregator",
        "timeline:changes",
        "timeline:core",
        "timeline:driver",
        "timeline:event-processor",
        "timeline:processor",
    ];
    assert_eq!(
        manifest.components.keys().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
    let deployed = serde_norway::to_string(&manifest.http_api).unwrap();
    assert!(deployed.contains("localhost:9006"), "{deployed}");
    // The CLI runs its Rust steps only for templates that say so, and an
    // environment that checks versions needs a version source.
    assert_eq!(manifest.templates["timeline-rust"]["guestLanguage"], "rust");
    assert!(manifest.version.is_some(), "golem.yaml names no version source");
    for (name, entry) in &manifest.components {
        let dir = root().join(&entry.dir);
        assert!(dir.join("src/lib.rs").is_file(), "{name}: {}", dir.display());
        assert_eq!(entry.templates, "timeline-rust");
        // The CLI finds `<component name in snake case>.wasm`: the crate's lib name.
        let cargo: toml_lite::Package = toml_lite::package(&dir.join("Cargo.toml"));
        assert_eq!(cargo.name.replace('-', "_"), name.replace([':', '-'], "_"), "{name}");
    }
}

/// Just enough of Cargo.toml: the package name.
mod toml_lite {
    pub struct Package {
        pub name: String,
    }
    pub fn package(path: &std::path::Path) -> Package {
        let text = std::fs::read_to_string(path).unwrap();
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = ").map(|v| v.trim_matches('"').to_string()))
            .expect("package name");
        Package { name }
    }
}

#[test]
#[ignore = "needs the release wasm components: scripts/build-components.sh builds them and runs this"]
fn components_are_valid_golem_1_6_agents() {
    let dir = root().join("target/wasm32-wasip2/component");
    for name in [
        "timeline_event_processor",
        "timeline_processor",
        "timeline_core",
        "timeline_driver",
        "timeline_aggregator",
        "timeline_changes",
    ] {
        let wasm = dir.join(format!("{name}.wasm"));
        assert!(
            wasm.is_file(),
            "{} is missing: run scripts/build-components.sh",
            wasm.display()
        );
        let validate = std::process::Command::new("wasm-tools")
            .arg("validate")
            .arg(&wasm)
            .status()
            .expect("wasm-tools on PATH");
        assert!(validate.success(), "{name} does not validate");
        let out = std::process::Command::new("wasm-tools")
            .args(["component", "wit"])
            .arg(&wasm)
            .output()
            .unwrap();
        assert!(out.status.success());
        let wit = String::from_utf8(out.stdout).unwrap();
        let world: Vec<&str> = wit
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("import ") || l.starts_with("export "))
            .collect();
        assert!(
            world.iter().any(|l| l.starts_with("export golem:agent/guest@")),
            "{name} exports no agent: {world:?}"
        );
        for import in world.iter().filter(|l| l.starts_with("import ")) {
            let interface = import.trim_start_matches("import ");
            assert!(
                interface.starts_with("golem:") || interface.starts_with("wasi:"),
                "{name} imports {interface}"
            );
        }
    }
}
