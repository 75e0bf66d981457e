//! Golem's route rules for agents' HTTP endpoints.
//!
//! A route is a method and a path of segments: literals, variables and a
//! final catch-all. Its key is the method and the *shape* of the path: the
//! literals and where the variables are, not their names, and never the query
//! string. Two routes with one key are ambiguous, and the whole set is refused,
//! as `golem deploy` refuses it (`RouteIsAmbiguous`). A request's path is
//! percent-decoded, trimmed of `/` and split at `/`; at each segment a literal
//! wins over a variable, a variable over a catch-all, and a choice is never
//! undone (no backtracking).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// One segment of a route's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches itself.
    Literal(String),
    /// Matches any one segment, bound to the name.
    Var(String),
    /// Matches the rest of the path (last segment only), bound to the name.
    Rest(String),
}

/// A path as a list of segments, displayed as Golem shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(pub Vec<Segment>);

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for s in &self.0 {
            match s {
                Segment::Literal(l) => write!(f, "/{l}")?,
                Segment::Var(v) => write!(f, "/{{{v}}}")?,
                Segment::Rest(v) => write!(f, "/{{*{v}}}")?,
            }
        }
        Ok(())
    }
}

/// A route set that is not deployable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Two routes share a method and a path shape.
    #[error("the HTTP API of {domain} has multiple routes for pattern {method} {pattern} ({first} and {second})")]
    Ambiguous {
        /// The deployment's domain.
        domain: String,
        /// The method.
        method: String,
        /// The path, as the second route spells it.
        pattern: String,
        /// What the first route calls.
        first: String,
        /// What the second route calls.
        second: String,
    },
    /// A catch-all that is not the last segment.
    #[error("in {pattern}: a catch-all variable must be the last segment")]
    RestNotLast {
        /// The path.
        pattern: String,
    },
}

/// A request's path matched to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'a, T> {
    /// The route's target.
    pub target: &'a T,
    /// Each variable's name and value, in path order.
    pub vars: Vec<(String, String)>,
}

struct Entry<T> {
    pattern: Pattern,
    label: String,
    target: T,
}

#[derive(Default)]
struct Node {
    literals: BTreeMap<String, Node>,
    var: Option<Box<Node>>,
    rest: Option<usize>,
    end: Option<usize>,
}

/// Routes of one domain, by method.
pub struct Router<T> {
    domain: String,
    entries: Vec<Entry<T>>,
    trees: HashMap<String, Node>,
}

impl<T> Router<T> {
    /// An empty route set for `domain`.
    pub fn new(domain: &str) -> Self {
        Router {
            domain: domain.to_string(),
            entries: Vec::new(),
            trees: HashMap::new(),
        }
    }

    /// Adds a route; `label` names it in errors.
    pub fn insert(&mut self, method: &str, pattern: Pattern, label: String, target: T) -> Result<(), RouteError> {
        let method = method.to_ascii_uppercase();
        let index = self.entries.len();
        let mut node = self.trees.entry(method.clone()).or_default();
        let last = pattern.0.len().saturating_sub(1);
        let mut slot = None;
        for (i, segment) in pattern.0.iter().enumerate() {
            match segment {
                Segment::Literal(l) => node = node.literals.entry(l.clone()).or_default(),
                Segment::Var(_) => node = node.var.get_or_insert_with(Default::default),
                Segment::Rest(_) if i == last => {
                    slot = Some(&mut node.rest);
                    break;
                }
                Segment::Rest(_) => {
                    return Err(RouteError::RestNotLast {
                        pattern: pattern.to_string(),
                    });
                }
            }
        }
        let slot = match slot {
            Some(slot) => slot,
            None => &mut node.end,
        };
        if let Some(existing) = *slot {
            return Err(RouteError::Ambiguous {
                domain: self.domain.clone(),
                method,
                pattern: pattern.to_string(),
                first: self.entries[existing].label.clone(),
                second: label,
            });
        }
        *slot = Some(index);
        self.entries.push(Entry { pattern, label, target });
        Ok(())
    }

    /// The route `method path` reaches, with its variables bound.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_, T>> {
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        let segments: Vec<&str> = decoded.trim_matches('/').split('/').collect();
        let tree = self.trees.get(&method.to_ascii_uppercase())?;
        let mut node = tree;
        let mut values: Vec<String> = Vec::new();
        let mut index = None;
        for (i, segment) in segments.iter().enumerate() {
            if let Some(next) = node.literals.get(*segment) {
                node = next;
            } else if let Some(next) = &node.var {
                values.push(segment.to_string());
                node = next;
            } else if let Some(rest) = node.rest {
                values.push(segments[i..].join("/"));
                index = Some(rest);
                break;
            } else {
                return None;
            }
        }
        let index = match index {
            Some(i) => i,
            None => node.end?,
        };
        let entry = &self.entries[index];
        let names = entry.pattern.0.iter().filter_map(|s| match s {
            Segment::Literal(_) => None,
            Segment::Var(v) | Segment::Rest(v) => Some(v.clone()),
        });
        Some(Matched {
            target: &entry.target,
            vars: names.zip(values).collect(),
        })
    }

    /// The domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Every route: method, pattern and label.
    pub fn routes(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (method, tree) in &self.trees {
            let mut indices = Vec::new();
            collect(tree, &mut indices);
            for i in indices {
                let e = &self.entries[i];
                out.push((method.clone(), e.pattern.to_string(), e.label.clone()));
            }
        }
        out.sort();
        out
    }
}

fn collect(node: &Node, out: &mut Vec<usize>) {
    out.extend(node.end);
    out.extend(node.rest);
    for child in node.literals.values() {
        collect(child, out);
    }
    if let Some(v) = &node.var {
        collect(v, out);
    }
}

/// Parses `/a/{b}/{*c}` (as in `mount` and `endpoint` attributes).
pub fn pattern(path: &str) -> Pattern {
    let segments = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                match inner.strip_prefix('*') {
                    Some(rest) => Segment::Rest(rest.to_string()),
                    None => Segment::Var(inner.to_string()),
                }
            } else {
                Segment::Literal(s.to_string())
            }
        })
        .collect();
    Pattern(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Result<Router<usize>, RouteError> {
        let mut r = Router::new("localhost:9006");
        for (i, (method, path)) in routes.iter().enumerate() {
            r.insert(method, pattern(path), format!("route {i}"), i)?;
        }
        Ok(r)
    }

    #[test]
    fn the_query_is_not_part_of_the_key() {
        // `/timeline` and `/timeline?from=&to=` are one path to Golem.
        let err = router(&[
            ("get", "/v1/ep/{node}/{key}/timeline"),
            ("get", "/v1/ep/{node}/{key}/timeline"),
        ])
        .err()
        .unwrap();
        assert!(matches!(err, RouteError::Ambiguous { .. }));
        assert!(err.to_string().contains("GET /v1/ep/{node}/{key}/timeline"), "{err}");
    }

    #[test]
    fn variable_names_do_not_tell_routes_apart() {
        assert!(router(&[("get", "/a/{x}"), ("get", "/a/{y}")]).is_err());
        assert!(router(&[("get", "/a/{x}"), ("post", "/a/{y}")]).is_ok());
        assert!(router(&[("get", "/a/{x}"), ("get", "/a/b")]).is_ok());
        assert!(router(&[("get", "/a/{*x}"), ("get", "/a/{*y}")]).is_err());
        assert!(matches!(
            router(&[("get", "/a/{*x}/b")]),
            Err(RouteError::RestNotLast { .. })
        ));
    }

    #[test]
    fn literals_win_and_choices_are_not_undone() {
        let r = router(&[
            ("get", "/a/b/c"),
            ("get", "/a/{x}/d"),
            ("get", "/a/{x}"),
            ("get", "/f/{*rest}"),
        ])
        .unwrap();
        assert_eq!(*r.find("GET", "/a/b/c").unwrap().target, 0);
        assert_eq!(
            r.find("GET", "/a/z/d").unwrap().vars,
            [("x".to_string(), "z".to_string())]
        );
        // `b` takes the literal branch, which has no `d`: no match, as in Golem.
        assert!(r.find("GET", "/a/b/d").is_none());
        assert_eq!(*r.find("get", "/a/q/").unwrap().target, 2);
        assert_eq!(r.find("GET", "/f/x/y%2Fz").unwrap().vars[0].1, "x/y/z");
        assert!(r.find("POST", "/a/b/c").is_none());
        assert!(r.find("GET", "/nothing").is_none());
    }

    #[test]
    fn an_empty_suffix_is_the_mount_itself() {
        let r = router(&[("post", "/v1/jobs"), ("get", "/v1/jobs/{name}")]).unwrap();
        assert_eq!(*r.find("POST", "/v1/jobs").unwrap().target, 0);
        assert_eq!(*r.find("POST", "/v1/jobs/").unwrap().target, 0);
        assert_eq!(r.find("GET", "/v1/jobs/cirr").unwrap().vars[0].1, "cirr");
        assert_eq!(r.routes().len(), 2);
    }
}
