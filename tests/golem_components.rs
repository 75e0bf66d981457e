//! The Golem components: their logic driven natively through an in-memory
//! stand-in for agent-to-agent calls, the manifest, and (after
//! `scripts/build-components.sh`) the built `.wasm` files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use event_processor::LeafWorker;
use timeline::metric::InputFold;
use timeline::{AggFn, NodeId, Operator, Output, Partial, WorkerKind};
use timeline_core::{JobRegistry, service};
use timeline_processor::DerivedWorker;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const CIRR: &str = include_str!("../examples/cirr.tl");

/// The agents of one deployment, with calls between them made in memory
/// exactly as the agent shells make them over RPC.
#[derive(Default)]
struct Cluster {
    core: JobRegistry,
    leaves: HashMap<(String, NodeId), LeafWorker>,
    /// `Contributor(node, key)`
    contributors: HashMap<(String, String), timeline_aggregator::Contributor>,
    /// `Aggregator(node, group label, shard)`
    aggregators: HashMap<(String, String, u32), timeline_aggregator::GroupAggregator>,
    /// `Aggregate(node)`
    directories: HashMap<String, timeline_aggregator::GroupDirectory>,
}

impl Cluster {
    /// `EventProcessor(key, node).add_events(...)`: the worker is made on first
    /// use from `Core.node(node)`.
    fn add_events(&mut self, key: &str, node: &NodeId, events: &[String]) {
        let core = &self.core;
        let worker = self.leaves.entry((key.to_string(), node.clone())).or_insert_with(|| {
            let definition = service::node_definition(core, node.as_str()).expect("Core knows the node");
            LeafWorker::from_definition(key, &definition).unwrap()
        });
        let result = worker.add_events("session_id", events);
        assert!(result.rejected.is_empty(), "{:?}", result.rejected);
    }

    /// `output()` of any worker: timeline processors read their children
    /// first, as `TimelineProcessor::compute` does. Outputs cross as JSON.
    fn output(&self, key: &str, node: &NodeId) -> Output {
        let json = match node.worker_kind() {
            WorkerKind::EventProcessor => {
                serde_json::to_string(&self.leaves[&(key.to_string(), node.clone())].output()).unwrap()
            }
            WorkerKind::TimelineProcessor => {
                let definition = service::node_definition(&self.core, node.as_str()).unwrap();
                let worker = DerivedWorker::from_definition(key, &definition).unwrap();
                let inputs: Vec<Output> = worker.children().iter().map(|c| self.output(key, c)).collect();
                serde_json::to_string(&worker.evaluate(&inputs).unwrap()).unwrap()
            }
            WorkerKind::Aggregator | WorkerKind::Metric => panic!("{node} is not a per-key worker"),
        };
        serde_json::from_str(&json).unwrap()
    }

    /// `Contributor(node, key).refresh()`, as the feeder calls it after a
    /// key's batch: reads the source and group column, pushes what changed
    /// to the aggregators (contributions cross as JSON) and registers new
    /// groups with `Aggregate(node)`.
    fn refresh(&mut self, node: &str, key: &str) {
        let definition = service::node_definition(&self.core, node).unwrap();
        let definition = timeline_aggregator::AggregateDefinition::from_definition(&definition).unwrap();
        let source = self.output(key, &definition.source);
        let group = definition.group.as_ref().map(|g| self.output(key, g).timeline);
        let contributor = self
            .contributors
            .entry((node.to_string(), key.to_string()))
            .or_default();
        let before = contributor.groups();
        for push in contributor.pushes(&definition.spec, key, &source.timeline, group.as_ref()) {
            if push.contribution.is_some() && !before.contains(&push.group) {
                let json = serde_json::to_string(&push.group).unwrap();
                self.directories
                    .entry(node.to_string())
                    .or_default()
                    .register(serde_json::from_str(&json).unwrap());
            }
            let contribution = push
                .contribution
                .map(|c| serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap());
            self.aggregators
                .entry((node.to_string(), push.group.label(), push.shard))
                .or_default()
                .replace(key, contribution, source.latest);
        }
    }

    /// `Aggregate(node).fold(t, functions)`: every group's merged shards.
    fn fold(&self, node: &str, t: i64, functions: &[AggFn]) -> InputFold {
        let definition = service::node_definition(&self.core, node).unwrap();
        let definition = timeline_aggregator::AggregateDefinition::from_definition(&definition).unwrap();
        let mut groups = Vec::new();
        for group in self.directories[node].groups(None) {
            let shards: Vec<Partial> = (0..definition.spec.shards)
                .filter_map(|s| self.aggregators.get(&(node.to_string(), group.label(), s)))
                .map(|a| a.partial(t, functions))
                .collect();
            if let Some(merged) = timeline_aggregator::merge_shards(&shards, functions) {
                groups.push((group, merged));
            }
        }
        InputFold {
            grouped: definition.spec.group_by.is_some(),
            groups,
        }
    }
}

#[test]
fn agents_compute_cirr_like_timeline_eval() {
    let mut cluster = Cluster::default();
    // Driver("cirr").run(CIRR): the driver's check, then Core.submit.
    timeline_driver::check(CIRR).unwrap();
    let plan = service::submit(&mut cluster.core, Some("cirr"), CIRR).unwrap();

    // The feeder: each key's events to every leaf worker of the plan, in batches,
    // out of order, with repeats.
    let mut data = Vec::new();
    timeline_local::generate::write_cirr(
        &timeline_local::generate::CirrOptions {
            sessions: 60,
            seed: 9,
            late: 0.05,
            duplicates: 0.05,
        },
        &mut data,
    )
    .unwrap();
    let text = String::from_utf8(data).unwrap();
    let parser = timeline::EventParser::default();
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().rev() {
        by_key
            .entry(parser.parse(line).unwrap().key.to_string())
            .or_default()
            .push(line.to_string());
    }
    for (key, lines) in &by_key {
        for batch in lines.chunks(7) {
            for leaf in &plan.leaves {
                cluster.add_events(key, &NodeId::parse(leaf).unwrap(), batch);
            }
        }
    }

    // Results read from the result worker equal the batch evaluation.
    let mut batch = timeline_local::batch::Batch::new(CIRR, "session_id").unwrap();
    batch.read(text.as_bytes(), |bad| panic!("{bad:?}"), |_| {}).unwrap();
    let expected = batch.results();
    assert_eq!(expected.len(), by_key.len());
    let result = NodeId::parse(&plan.result).unwrap();
    for (key, output) in expected {
        let got = cluster.output(&key, &result);
        assert_eq!(got, output, "{key}");
    }
}

/// The article's completion rate on the aggregator agents' logic, fed as
/// the feeder feeds Golem (per leaf worker, then a refresh of every
/// contributor of the key), equals the local runtime's aggregates.
#[test]
fn aggregator_agents_compute_completion_rate_like_the_local_runtime() {
    const RATE: &str = include_str!("../examples/completion-rate.tl");
    let mut cluster = Cluster::default();
    timeline_driver::check(RATE).unwrap();
    let plan = service::submit(&mut cluster.core, Some("rate"), RATE).unwrap();
    assert_eq!(plan.aggregates.len(), 2);
    let mut data = Vec::new();
    timeline_local::generate::write_cirr(
        &timeline_local::generate::CirrOptions {
            sessions: 80,
            seed: 3,
            late: 0.1,
            duplicates: 0.05,
        },
        &mut data,
    )
    .unwrap();
    let text = String::from_utf8(data).unwrap();
    let parser = timeline::EventParser::default();
    // In arrival order, in batches of 40 events: each key's events to its
    // leaves, then its contributors refreshed. Late events retract.
    let lines: Vec<&str> = text.lines().collect();
    for batch in lines.chunks(40) {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in batch {
            by_key
                .entry(parser.parse(line).unwrap().key.to_string())
                .or_default()
                .push(line.to_string());
        }
        for (key, events) in &by_key {
            for leaf in &plan.leaves {
                cluster.add_events(key, &NodeId::parse(leaf).unwrap(), events);
            }
            for aggregate in &plan.aggregates {
                cluster.refresh(aggregate, key);
            }
        }
    }

    let mut batch = timeline_local::batch::Batch::new(RATE, "session_id").unwrap();
    batch.read(text.as_bytes(), |bad| panic!("{bad:?}"), |_| {}).unwrap();
    let end = batch.engine().latest().unwrap();
    let start = text.lines().map(|l| parser.parse(l).unwrap().time).min().unwrap();
    for t in [end, (start + end) / 2, start + 1000] {
        for output in batch.outputs().to_vec() {
            let local = batch.read_output(&output, Some(t)).unwrap();
            let golem: Vec<(String, u64, Vec<Option<timeline::Value>>)> = match output.worker {
                WorkerKind::Aggregator => {
                    let fold = cluster.fold(output.node.as_str(), t, &output.functions);
                    fold.groups
                        .iter()
                        .map(|(g, p)| {
                            (
                                g.label(),
                                p.keys,
                                output.functions.iter().map(|f| p.finish(*f)).collect(),
                            )
                        })
                        .collect()
                }
                _ => {
                    // `Metric(node).read(t)`: each input's fold, then the expression.
                    let definition = service::node_definition(&cluster.core, output.node.as_str()).unwrap();
                    let node: timeline::PlanNode = serde_json::from_str(&definition).unwrap();
                    let Operator::Metric(expr) = &node.operator else {
                        panic!("a metric")
                    };
                    let folds: Vec<InputFold> = node
                        .children
                        .iter()
                        .enumerate()
                        .map(|(i, input)| cluster.fold(input.as_str(), t, &expr.functions_of(i)))
                        .collect();
                    expr.evaluate_groups(&folds)
                        .into_iter()
                        .map(|(g, keys, v)| (g.label(), keys, vec![v]))
                        .collect()
                }
            };
            let local: Vec<(String, u64, Vec<Option<timeline::Value>>)> = local
                .groups
                .iter()
                .map(|r| {
                    (
                        r.group.label(),
                        r.keys,
                        r.values.iter().map(|(_, v)| v.clone()).collect(),
                    )
                })
                .collect();
            assert!(!local.is_empty(), "{} at {t}", output.name);
            assert_eq!(golem, local, "{} at {t}", output.name);
        }
    }
}

#[derive(serde::Deserialize)]
struct Manifest {
    #[serde(rename = "manifestVersion")]
    manifest_version: String,
    components: BTreeMap<String, ComponentEntry>,
    #[serde(rename = "httpApi")]
    http_api: serde_norway::Value,
}

#[derive(serde::Deserialize)]
struct ComponentEntry {
    dir: String,
    templates: String,
}

/// Agent type names defined in a crate's agent module.
fn agent_types(dir: &Path) -> Vec<String> {
    let source = std::fs::read_to_string(dir.join("src/agent.rs")).unwrap();
    let mut names = Vec::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("#[agent_definition") {
            let decl = lines.find(|l| l.contains("pub trait ")).unwrap();
            names.push(
                decl.split("pub trait ")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    names
}

#[test]
fn golem_manifest_names_every_component_and_agent() {
    let manifest: Manifest =
        serde_norway::from_str(&std::fs::read_to_string(root().join("golem.yaml")).unwrap()).unwrap();
    assert_eq!(manifest.manifest_version, "1.6.0");
    let expected = [
        "timeline:aggregator",
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
    for (name, entry) in &manifest.components {
        let dir = root().join(&entry.dir);
        assert!(dir.join("src/lib.rs").is_file(), "{name}: {}", dir.display());
        assert_eq!(entry.templates, "timeline-rust");
        // The CLI finds `<component name in snake case>.wasm`: the crate's lib name.
        let cargo: toml_lite::Package = toml_lite::package(&dir.join("Cargo.toml"));
        assert_eq!(cargo.name.replace('-', "_"), name.replace([':', '-'], "_"), "{name}");
        for agent in agent_types(&dir) {
            assert!(
                deployed.contains(&format!("{agent}:")),
                "{agent} of {name} is not in httpApi"
            );
        }
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
