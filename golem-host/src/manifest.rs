//! What the host reads of `golem.yaml` (manifest 1.6.0): where each
//! component's `.wasm` is, and which agents each HTTP API deployment serves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The parts of an application manifest the host uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    environments: BTreeMap<String, RawEnvironment>,
    #[serde(default)]
    component_templates: BTreeMap<String, RawTemplate>,
    #[serde(default)]
    components: BTreeMap<String, RawComponent>,
    #[serde(default)]
    http_api: Option<RawHttpApi>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvironment {
    #[serde(default)]
    component_presets: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawTemplate {
    #[serde(default)]
    presets: BTreeMap<String, RawPreset>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPreset {
    #[serde(default)]
    default: bool,
    #[serde(default)]
    component_wasm: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawComponent {
    dir: Option<String>,
    #[serde(default)]
    templates: Option<String>,
    #[serde(default)]
    component_wasm: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawHttpApi {
    #[serde(default)]
    deployments: BTreeMap<String, Vec<RawDeployment>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDeployment {
    domain: Option<String>,
    subdomain: Option<String>,
    #[serde(default)]
    agents: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    openapi_endpoint: Option<String>,
}

/// A component of the application and its built `.wasm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentEntry {
    /// The component's name (`timeline:event-processor`).
    pub name: String,
    /// The built component.
    pub wasm: PathBuf,
}

/// An HTTP API deployment: a domain and the agent types it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The domain as requests must name it in `Host` (`localhost:9006`).
    pub domain: String,
    /// Agent type names.
    pub agents: Vec<String>,
}

/// The application as one environment of the manifest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// Every component, in name order.
    pub components: Vec<ComponentEntry>,
    /// The environment's HTTP API deployments.
    pub deployments: Vec<Deployment>,
}

/// Where a local Golem server serves custom routes (subdomains hang off it).
const LOCAL_ROUTES: &str = "localhost:9006";

impl Application {
    /// Reads `manifest` for `environment`; `{{ cargoTarget }}` is `target_dir`.
    pub fn load(manifest: &Path, environment: &str, target_dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
        let root = manifest.parent().unwrap_or(Path::new("."));
        Self::parse(&text, root, environment, target_dir).with_context(|| format!("in {}", manifest.display()))
    }

    /// Parses a manifest's text; relative paths are relative to `root`.
    pub fn parse(text: &str, root: &Path, environment: &str, target_dir: &Path) -> Result<Self> {
        let raw: Raw = serde_norway::from_str(text).context("not a Golem application manifest")?;
        let env = raw.environments.get(environment).with_context(|| {
            format!(
                "no environment `{environment}` (it has: {})",
                names(raw.environments.keys())
            )
        })?;
        let mut components = Vec::new();
        for (name, component) in &raw.components {
            let dir = component.dir.clone().unwrap_or_else(|| ".".to_string());
            let template = match &component.component_wasm {
                Some(wasm) => wasm.clone(),
                None => preset_wasm(&raw, name, component, env.component_presets.as_deref())?,
            };
            let cargo_target = target_dir.to_string_lossy();
            let wasm =
                render(&template, name, &cargo_target, &dir).with_context(|| format!("componentWasm of `{name}`"))?;
            let wasm = PathBuf::from(wasm);
            let wasm = if wasm.is_absolute() || wasm.starts_with(target_dir) {
                wasm
            } else {
                root.join(wasm)
            };
            components.push(ComponentEntry {
                name: name.clone(),
                wasm,
            });
        }
        let mut deployments = Vec::new();
        let listed = raw
            .http_api
            .as_ref()
            .and_then(|api| api.deployments.get(environment))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for d in listed {
            let _ = (&d.webhook_url, &d.openapi_endpoint);
            let domain = match (&d.domain, &d.subdomain) {
                (Some(domain), None) => domain.clone(),
                (None, Some(sub)) => format!("{sub}.{LOCAL_ROUTES}"),
                _ => bail!("an httpApi deployment names exactly one of `domain` and `subdomain`"),
            };
            deployments.push(Deployment {
                domain,
                agents: d.agents.keys().cloned().collect(),
            });
        }
        Ok(Application {
            components,
            deployments,
        })
    }
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    it.map(String::as_str).collect::<Vec<_>>().join(", ")
}

fn preset_wasm(raw: &Raw, name: &str, component: &RawComponent, preset: Option<&str>) -> Result<String> {
    let template = component
        .templates
        .as_deref()
        .with_context(|| format!("component `{name}` has neither componentWasm nor templates"))?;
    let template = raw
        .component_templates
        .get(template)
        .with_context(|| format!("component `{name}` uses the unknown template `{template}`"))?;
    let chosen = match preset {
        Some(p) => template
            .presets
            .get(p)
            .with_context(|| format!("template of `{name}` has no preset `{p}`"))?,
        None => template
            .presets
            .values()
            .find(|p| p.default)
            .with_context(|| format!("template of `{name}` has no default preset"))?,
    };
    chosen
        .component_wasm
        .clone()
        .with_context(|| format!("the preset of `{name}` names no componentWasm"))
}

/// Renders the manifest's template placeholders the host knows.
fn render(template: &str, component: &str, cargo_target: &str, component_dir: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .with_context(|| format!("unclosed `{{{{` in `{template}`"))?;
        let inner = rest[start + 2..start + end].trim();
        let value = match inner.split('|').map(str::trim).collect::<Vec<_>>().as_slice() {
            ["cargoTarget"] => cargo_target.to_string(),
            ["componentDir"] => component_dir.to_string(),
            ["component_name"] => component.to_string(),
            ["component_name", "to_snake_case"] => snake_case(component),
            _ => bail!("the host does not know the placeholder `{{{{ {inner} }}}}`"),
        };
        out.push_str(&value);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `timeline:event-processor` -> `timeline_event_processor`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_projects_manifest() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let app = Application::load(&root.join("golem.yaml"), "local", Path::new("/t")).unwrap();
        let names: Vec<&str> = app.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "timeline:aggregator",
                "timeline:changes",
                "timeline:core",
                "timeline:driver",
                "timeline:event-processor",
                "timeline:processor"
            ]
        );
        assert_eq!(
            app.components[4].wasm,
            Path::new("/t/wasm32-wasip2/component/timeline_event_processor.wasm")
        );
        assert_eq!(app.deployments.len(), 1);
        assert!(app.deployments[0].agents.iter().any(|a| a == "EventProcessor"));
    }

    #[test]
    fn placeholders_and_errors() {
        assert_eq!(snake_case("timeline:event-processor"), "timeline_event_processor");
        assert_eq!(snake_case("MyApp:Comp"), "my_app_comp");
        assert!(
            render("{{ nope }}", "a", "t", "d")
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
        let yaml = "environments: {local: {}}\ncomponents: {a: {dir: a, componentWasm: x.wasm}}\n\
                    httpApi: {deployments: {local: [{subdomain: app, agents: {A: {}}}]}}\n";
        let app = Application::parse(yaml, Path::new("/r"), "local", Path::new("/t")).unwrap();
        assert_eq!(app.components[0].wasm, Path::new("/r/x.wasm"));
        assert_eq!(app.deployments[0].domain, "app.localhost:9006");
        let err = Application::parse(yaml, Path::new("/r"), "prod", Path::new("/t")).unwrap_err();
        assert!(err.to_string().contains("no environment `prod`"), "{err}");
    }
}
