//! Turns a [`FlowSpec`] into a [`CompiledFlow`], or lists every reason it cannot be run.

use crate::duration;
use crate::error::{Issue, SpecError};
use crate::flow::{
    BranchPaths, CompiledFlow, CompiledNode, DEFAULT_NODE_TIMEOUT, DEFAULT_QUEUE, NodeIdx,
};
use crate::nodes::{self, HTTP_METHODS, NodeKind, StatusRange};
use crate::retry::RetryPolicy;
use crate::spec::{FlowSpec, RetrySpec};
use crate::template;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Most attempts a retry policy may allow.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// Validates a flow and compiles it. Every problem is reported, each with its path.
pub fn compile(spec: &FlowSpec) -> Result<CompiledFlow, SpecError> {
    let mut v = Validator { issues: Vec::new() };
    let flow = v.compile(spec);
    if v.issues.is_empty() {
        Ok(flow)
    } else {
        Err(SpecError { issues: v.issues })
    }
}

struct Validator {
    issues: Vec<Issue>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

/// Flow and queue names: letters, digits, `_`, `-`, `.`, 1 to 128 characters.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    match closest(word, candidates.iter().copied()) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

impl Validator {
    fn push(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.issues.push(Issue::new(path, msg));
    }

    fn duration(&mut self, path: &str, text: &Option<String>) -> Option<Duration> {
        let text = text.as_ref()?;
        match duration::parse(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.push(path, e);
                None
            }
        }
    }

    fn params<T: DeserializeOwned>(&mut self, path: &str, params: &Value) -> Option<T> {
        let value = if params.is_null() {
            Value::Object(Default::default())
        } else {
            params.clone()
        };
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let sub = e.path().to_string();
                let full = if sub == "." {
                    path.to_string()
                } else {
                    format!("{path}.{}", sub.trim_start_matches('.'))
                };
                self.push(full, e.into_inner().to_string());
                None
            }
        }
    }

    fn retry(&mut self, path: &str, base: &RetryPolicy, spec: &Option<RetrySpec>) -> RetryPolicy {
        let mut p = base.clone();
        let Some(r) = spec else { return p };
        if let Some(n) = r.max_attempts {
            if n == 0 || n > MAX_ATTEMPTS_LIMIT {
                self.push(
                    format!("{path}.max_attempts"),
                    format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {n}"),
                );
            }
            p.max_attempts = n.clamp(1, MAX_ATTEMPTS_LIMIT);
        }
        if let Some(d) = self.duration(&format!("{path}.initial_delay"), &r.initial_delay) {
            p.initial_delay = d;
        }
        if let Some(d) = self.duration(&format!("{path}.max_delay"), &r.max_delay) {
            p.max_delay = d;
        }
        if let Some(m) = r.multiplier {
            if !(1.0..=10.0).contains(&m) {
                self.push(
                    format!("{path}.multiplier"),
                    format!("must be between 1.0 and 10.0, got {m}"),
                );
            }
            p.multiplier = m;
        }
        if let Some(j) = r.jitter {
            if !(0.0..=1.0).contains(&j) {
                self.push(
                    format!("{path}.jitter"),
                    format!("must be between 0.0 and 1.0, got {j}"),
                );
            }
            p.jitter = j;
        }
        if p.max_delay < p.initial_delay {
            self.push(
                format!("{path}.max_delay"),
                "must not be shorter than initial_delay",
            );
        }
        p
    }

    /// A node's limit: its own, else the flow default's (reported once, at `defaults`).
    fn limit<S, T>(
        &mut self,
        path: &str,
        own: &Option<S>,
        default: &Option<S>,
        compile: impl Fn(&str, &S, &mut Vec<Issue>) -> Option<T>,
    ) -> Option<T> {
        match (own, default) {
            (Some(s), _) => compile(path, s, &mut self.issues),
            (None, Some(s)) => compile("defaults", s, &mut Vec::new()),
            (None, None) => None,
        }
    }

    fn compile(&mut self, spec: &FlowSpec) -> CompiledFlow {
        if !is_valid_name(&spec.name) {
            self.push(
                "name",
                format!(
                    "{:?} is not a valid flow name: use 1 to 128 letters, digits, `_`, `-` or `.`",
                    spec.name
                ),
            );
        }
        if spec.nodes.is_empty() {
            self.push("nodes", "a flow needs at least one node");
        }
        if spec.nodes.len() > crate::MAX_NODES {
            self.push(
                "nodes",
                format!(
                    "{} nodes; at most {} are allowed",
                    spec.nodes.len(),
                    crate::MAX_NODES
                ),
            );
        }
        let names: Vec<&str> = spec.nodes.keys().map(String::as_str).collect();
        let index: HashMap<&str, NodeIdx> =
            names.iter().enumerate().map(|(i, n)| (*n, i)).collect();

        let d = &spec.defaults;
        let base_retry = self.retry("defaults.retry", &RetryPolicy::default(), &d.retry);
        let base_timeout = self
            .duration("defaults.timeout", &d.timeout)
            .unwrap_or(DEFAULT_NODE_TIMEOUT);
        if let Some(c) = &d.concurrency {
            crate::limits::compile_concurrency("defaults.concurrency", c, &mut self.issues);
        }
        if let Some(r) = &d.rate_limit {
            crate::limits::compile_rate("defaults.rate_limit", r, &mut self.issues);
        }
        let base_queue = d.queue.clone().unwrap_or_else(|| DEFAULT_QUEUE.to_string());
        if !is_valid_name(&base_queue) {
            self.push(
                "defaults.queue",
                format!(
                    "{base_queue:?} is not a valid queue name: use letters, digits, `_`, `-` or `.`"
                ),
            );
        }

        let mut nodes = Vec::with_capacity(names.len());
        for (name, n) in &spec.nodes {
            let path = format!("nodes.{name}");
            if !is_identifier(name) {
                self.push(&path, format!("{name:?} is not a valid node name: start with a letter or `_`, then letters, digits or `_` (at most 64), so templates can say `nodes.{}`", name.replace('-', "_")));
            }
            let known_kind = NodeKind::parse(&n.kind);
            let kind = match known_kind {
                Some(k) => k,
                None => {
                    let all: Vec<&str> = NodeKind::ALL.iter().map(|k| k.as_str()).collect();
                    self.push(
                        format!("{path}.type"),
                        format!(
                            "unknown node type `{}`{}; allowed: {}",
                            n.kind,
                            did_you_mean(&n.kind, &all),
                            all.join(", ")
                        ),
                    );
                    NodeKind::Noop
                }
            };
            let mut needs = Vec::new();
            let mut seen = HashSet::new();
            for (i, need) in n.needs.iter().enumerate() {
                let npath = format!("{path}.needs[{i}]");
                if need == name {
                    self.push(npath, "a node cannot need itself");
                } else if !seen.insert(need.as_str()) {
                    self.push(npath, format!("`{need}` is listed twice"));
                } else if let Some(&j) = index.get(need.as_str()) {
                    needs.push(j);
                } else {
                    let others: Vec<&str> = names.iter().copied().filter(|x| x != name).collect();
                    let known = if others.is_empty() {
                        "this flow has no other node to need".to_string()
                    } else {
                        format!("nodes in this flow: {}", others.join(", "))
                    };
                    self.push(
                        npath,
                        format!(
                            "unknown node `{need}`{}; {known}",
                            did_you_mean(need, &others)
                        ),
                    );
                }
            }
            let retry = self.retry(&format!("{path}.retry"), &base_retry, &n.retry);
            let timeout = self
                .duration(&format!("{path}.timeout"), &n.timeout)
                .unwrap_or(base_timeout);
            if timeout.is_zero() {
                self.push(format!("{path}.timeout"), "must be longer than zero");
            }
            let queue = n.queue.clone().unwrap_or_else(|| base_queue.clone());
            if n.queue.is_some() && !is_valid_name(&queue) {
                self.push(
                    format!("{path}.queue"),
                    format!(
                        "{queue:?} is not a valid queue name: use letters, digits, `_`, `-` or `.`"
                    ),
                );
            }
            let mut node = CompiledNode {
                name: name.clone(),
                kind,
                needs,
                successors: Vec::new(),
                params: n.params.clone(),
                templated: false,
                reads_nodes: Vec::new(),
                reads_input: false,
                retry,
                timeout,
                queue,
                priority: n.priority.or(d.priority).unwrap_or(0),
                delay: None,
                branch: None,
                concurrency: self.limit(&path, &n.concurrency, &d.concurrency, |p, c, i| {
                    crate::limits::compile_concurrency(&format!("{p}.concurrency"), c, i)
                }),
                rate_limit: self.limit(&path, &n.rate_limit, &d.rate_limit, |p, r, i| {
                    crate::limits::compile_rate(&format!("{p}.rate_limit"), r, i)
                }),
                breaker: n.circuit_breaker.as_ref().and_then(|b| {
                    let bpath = format!("{path}.circuit_breaker");
                    crate::resilience::compile_breaker(&bpath, b, &mut self.issues)
                }),
                adaptive_timeout: n.adaptive_timeout.as_ref().and_then(|a| {
                    let apath = format!("{path}.adaptive_timeout");
                    crate::resilience::compile_adaptive(&apath, a, timeout, &mut self.issues)
                }),
            };
            let remote = matches!(kind.as_str(), "http" | "email");
            for (field, set) in [
                ("circuit_breaker", n.circuit_breaker.is_some()),
                ("adaptive_timeout", n.adaptive_timeout.is_some()),
            ] {
                if set && known_kind.is_some() && !remote {
                    self.push(
                        format!("{path}.{field}"),
                        format!(
                            "applies only to nodes that call a target (http, email), not {}",
                            kind.as_str()
                        ),
                    );
                }
            }
            // An unknown type's params cannot be checked; its type error says enough.
            if known_kind.is_some() {
                self.check_params(&path, spec, &mut node, &index);
            }
            nodes.push(node);
        }
        for i in 0..nodes.len() {
            for j in nodes[i].needs.clone() {
                nodes[j].successors.push(i);
            }
        }
        let acyclic = self.check_cycles(&nodes);
        if acyclic {
            self.check_references(&mut nodes, &names);
        }
        CompiledFlow::new(spec.clone(), nodes)
    }

    fn check_params(
        &mut self,
        path: &str,
        spec: &FlowSpec,
        node: &mut CompiledNode,
        index: &HashMap<&str, NodeIdx>,
    ) {
        let ppath = format!("{path}.params");
        let raw = &node.params;
        match node.kind {
            NodeKind::Noop => {
                self.params::<nodes::NoopParams>(&ppath, raw);
            }
            NodeKind::Log => {
                self.params::<nodes::LogParams>(&ppath, raw);
            }
            NodeKind::Transform => {
                self.params::<nodes::TransformParams>(&ppath, raw);
            }
            NodeKind::Fail => {
                self.params::<nodes::FailParams>(&ppath, raw);
            }
            NodeKind::Delay => {
                if let Some(p) = self.params::<nodes::DelayParams>(&ppath, raw) {
                    if template::is_template(&p.duration) {
                        self.push(
                            format!("{ppath}.duration"),
                            "must be a fixed duration, not a template",
                        );
                    } else {
                        node.delay = self.duration(&format!("{ppath}.duration"), &Some(p.duration));
                    }
                }
            }
            NodeKind::Branch => {
                if let Some(p) = self.params::<nodes::BranchParams>(&ppath, raw) {
                    let mut paths = BranchPaths::default();
                    for (key, list, out) in [
                        ("then", &p.then, &mut paths.then),
                        ("else", &p.otherwise, &mut paths.otherwise),
                    ] {
                        for (i, target) in list.iter().enumerate() {
                            let tpath = format!("{ppath}.{key}[{i}]");
                            match index.get(target.as_str()) {
                                Some(&j) if spec.nodes[j].needs.iter().any(|x| x == &node.name) => out.push(j),
                                Some(_) => self.push(tpath, format!("`{target}` must list `{}` in its needs to be on one of its paths", node.name)),
                                None => self.push(tpath, format!("unknown node `{target}`")),
                            }
                        }
                    }
                    if let Some(j) = paths.then.iter().find(|j| paths.otherwise.contains(j)) {
                        self.push(
                            &ppath,
                            format!(
                                "`{}` is on both the then and the else path",
                                spec.nodes
                                    .get_index(*j)
                                    .map(|(k, _)| k.as_str())
                                    .unwrap_or("?")
                            ),
                        );
                    }
                    node.branch = Some(paths);
                }
            }
            NodeKind::Http => {
                if let Some(p) = self.params::<nodes::HttpParams>(&ppath, raw) {
                    if !HTTP_METHODS.contains(&p.method.to_ascii_uppercase().as_str()) {
                        self.push(
                            format!("{ppath}.method"),
                            format!(
                                "unknown method `{}`; allowed: {}",
                                p.method,
                                HTTP_METHODS.join(", ")
                            ),
                        );
                    }
                    let absolute = p.url.starts_with("http://") || p.url.starts_with("https://");
                    if !template::is_template(&p.url) && !absolute {
                        self.push(
                            format!("{ppath}.url"),
                            format!("{:?} is not an absolute http:// or https:// URL", p.url),
                        );
                    }
                    self.duration(&format!("{ppath}.timeout"), &p.timeout);
                    for (i, s) in p.fail_on.iter().flatten().enumerate() {
                        if let Err(e) = StatusRange::parse(s) {
                            self.push(format!("{ppath}.fail_on[{i}]"), e);
                        }
                    }
                }
            }
            NodeKind::Email => {
                if let Some(p) = self.params::<nodes::EmailParams>(&ppath, raw) {
                    for (field, msg) in p.problems() {
                        self.push(format!("{ppath}.{field}"), msg);
                    }
                }
            }
            NodeKind::Subflow => {
                if let Some(p) = self.params::<nodes::SubflowParams>(&ppath, raw) {
                    if p.flow == spec.name {
                        self.push(
                            format!("{ppath}.flow"),
                            "a flow cannot start itself as a subflow",
                        );
                    } else if !is_valid_name(&p.flow) {
                        self.push(
                            format!("{ppath}.flow"),
                            format!("{:?} is not a valid flow name", p.flow),
                        );
                    }
                }
            }
        }
    }

    /// Reports the first cycle found, naming every node on it. Returns true if there is none.
    fn check_cycles(&mut self, nodes: &[CompiledNode]) -> bool {
        // 0 = unvisited, 1 = on the stack, 2 = done
        let mut mark = vec![0u8; nodes.len()];
        let mut stack: Vec<NodeIdx> = Vec::new();
        fn visit(
            i: NodeIdx,
            nodes: &[CompiledNode],
            mark: &mut [u8],
            stack: &mut Vec<NodeIdx>,
        ) -> Option<Vec<NodeIdx>> {
            mark[i] = 1;
            stack.push(i);
            for &j in &nodes[i].needs {
                if mark[j] == 1 {
                    let start = stack.iter().position(|&x| x == j).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(j);
                    return Some(cycle);
                }
                if mark[j] == 0
                    && let Some(c) = visit(j, nodes, mark, stack)
                {
                    return Some(c);
                }
            }
            stack.pop();
            mark[i] = 2;
            None
        }
        for i in 0..nodes.len() {
            if mark[i] == 0
                && let Some(cycle) = visit(i, nodes, &mut mark, &mut stack)
            {
                // `cycle` follows needs edges (downstream -> upstream); show it in run order.
                let names: Vec<&str> = cycle
                    .iter()
                    .rev()
                    .map(|&k| nodes[k].name.as_str())
                    .collect();
                self.push(
                    format!("nodes.{}.needs", nodes[cycle[0]].name),
                    format!("cycle: {}", names.join(" -> ")),
                );
                return false;
            }
        }
        true
    }

    fn check_references(&mut self, nodes: &mut [CompiledNode], names: &[&str]) {
        for i in 0..nodes.len() {
            let mut reads_nodes = Vec::new();
            let mut reads_input = false;
            let mut templated = false;
            let mut issues = Vec::new();
            let node_name = nodes[i].name.clone();
            let nodes_ro: &[CompiledNode] = nodes;
            template::walk_strings(
                &nodes_ro[i].params,
                &format!("nodes.{node_name}.params"),
                &mut |path, text| {
                    if !template::is_template(text) {
                        return;
                    }
                    templated = true;
                    let refs = match template::references(text) {
                        Ok(r) => r,
                        Err(e) => return issues.push(Issue::new(path, e)),
                    };
                    for r in refs {
                        let mut parts = r.split('.');
                        match parts.next() {
                        Some("input") => reads_input = true,
                        Some("run") => {}
                        Some("nodes") => match parts.next() {
                            None => issues.push(Issue::new(path, "use `nodes.<name>` to read an upstream node's output")),
                            Some(other) => match names.iter().position(|n| *n == other) {
                                Some(j) if is_upstream(nodes_ro, i, j) => reads_nodes.push(other.to_string()),
                                Some(_) => issues.push(Issue::new(path, format!("reads `nodes.{other}`, which is not upstream of `{node_name}`; add it (or a node after it) to `needs`"))),
                                None => issues.push(Issue::new(path, format!("reads unknown node `{other}`{}", did_you_mean(other, names)))),
                            },
                        },
                        Some(other) => issues.push(Issue::new(path, format!("unknown variable `{other}`{}; templates can read: {}", did_you_mean(other, template::TOP_LEVEL_VARS), template::TOP_LEVEL_VARS.join(", ")))),
                        None => {}
                    }
                    }
                },
            );
            reads_nodes.sort();
            reads_nodes.dedup();
            let n = &mut nodes[i];
            n.templated = templated;
            n.reads_nodes = reads_nodes;
            n.reads_input = reads_input;
            self.issues.extend(issues);
        }
    }
}

/// True if `j` is upstream of `i` (transitively). Nodes must be acyclic.
fn is_upstream(nodes: &[CompiledNode], i: NodeIdx, j: NodeIdx) -> bool {
    let mut seen = HashSet::new();
    let mut stack = vec![i];
    while let Some(k) = stack.pop() {
        for &up in &nodes[k].needs {
            if up == j {
                return true;
            }
            if seen.insert(up) {
                stack.push(up);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests;
