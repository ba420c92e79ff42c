//! The revision graph as alembic's `RevisionMap` builds it (script/revision.py): heads are the
//! revisions no `down_revision` names (a `depends_on` does not make a head), bases have no
//! `down_revision`. On top of it: the verdict of `alembic current --check-heads` for the rows of
//! the version table, and the per-revision status that `migrate status` prints.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::revision::RevisionScript;

/// The scripts of a script directory, checked; built by [`Graph::build`].
#[derive(Debug)]
pub struct Graph {
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

#[derive(Debug)]
struct Node {
    script: RevisionScript,
    file: PathBuf,
    /// `down_revision`, as indices.
    down: Vec<usize>,
    /// `depends_on` resolved (branch labels to the revision that declares them), as indices.
    depends: Vec<usize>,
    /// The revisions whose `down_revision` names this one.
    children: Vec<usize>,
}

/// A script directory alembic itself would refuse (or, for duplicates, silently half-read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// Two files declare the same revision id (alembic warns and keeps the later one).
    DuplicateRevision {
        revision: String,
        files: [PathBuf; 2],
    },
    /// A `down_revision` (or `depends_on`) names nothing in the scripts.
    UnknownReference {
        revision: String,
        file: PathBuf,
        /// `down_revision` or `depends_on`.
        field: &'static str,
        missing: String,
    },
    /// Two revisions declare the same branch label, or a label is also a revision id.
    DuplicateBranchLabel { label: String, files: [PathBuf; 2] },
    /// These revisions are their own ancestors (through `down_revision` or `depends_on`).
    Cycle { revisions: Vec<String> },
    /// A shape alembic reads in a way not worth reproducing: run alembic instead.
    Unsupported { file: PathBuf, why: String },
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::DuplicateRevision { revision, files } => write!(
                f,
                "two alembic revision files declare revision {revision}: {} and {}",
                files[0].display(),
                files[1].display()
            ),
            GraphError::UnknownReference {
                revision,
                file,
                field,
                missing,
            } => write!(
                f,
                "alembic revision {revision} ({}) has {field} {missing}, which no revision file declares",
                file.display()
            ),
            GraphError::DuplicateBranchLabel { label, files } => write!(
                f,
                "alembic branch label {label:?} is used twice: {} and {}",
                files[0].display(),
                files[1].display()
            ),
            GraphError::Cycle { revisions } => {
                write!(
                    f,
                    "alembic revisions form a cycle: {}",
                    revisions.join(", ")
                )
            }
            GraphError::Unsupported { file, why } => write!(f, "{}: {why}", file.display()),
        }
    }
}

impl std::error::Error for GraphError {}

/// What the version table says against the scripts, as `alembic current --check-heads` decides
/// "at head": the rows are exactly the set of heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    AtHead,
    /// Not at head; the revisions not yet applied, base first (empty when the rows are only
    /// redundant, e.g. a head and its own ancestor: alembic then decides what to do).
    Pending {
        missing: Vec<String>,
    },
    /// The database holds revisions no script declares (the image is older than the schema).
    UnknownRevision {
        unknown: Vec<String>,
    },
}

/// One line of `migrate status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionStatus {
    pub revision: String,
    pub state: State,
    /// The file that declares it; `None` for a revision known only to the database.
    pub file: Option<PathBuf>,
    pub down_revisions: Vec<String>,
    pub depends_on: Vec<String>,
    pub branch_labels: Vec<String>,
    pub head: bool,
    pub base: bool,
    pub branch_point: bool,
    pub merge_point: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Applied,
    Pending,
    /// In the version table, in no script.
    UnknownInDatabase,
}

impl Graph {
    /// Checks and links `scripts` (in alembic's load order, with their files).
    pub fn build(scripts: Vec<(RevisionScript, PathBuf)>) -> Result<Graph, GraphError> {
        let (index, labels) = Self::names(&scripts)?;
        // A computed `branch_labels` hides labels: a name that resolves to nothing may be one.
        let computed = scripts
            .iter()
            .find_map(|(s, f)| s.computed_labels.map(|line| (f, line)));
        let mut nodes: Vec<Node> = Vec::with_capacity(scripts.len());
        for (script, file) in &scripts {
            let unknown = |field, missing: &String| match computed {
                Some((labelled, line)) => GraphError::Unsupported {
                    file: file.clone(),
                    why: format!(
                        "{field} {missing} names no revision; it may be a branch label that {} \
                         computes on line {line}",
                        labelled.display()
                    ),
                },
                None => GraphError::UnknownReference {
                    revision: script.revision.clone(),
                    file: file.clone(),
                    field,
                    missing: missing.clone(),
                },
            };
            let mut down = Vec::new();
            for id in &script.down_revisions {
                if labels.contains_key(id.as_str()) && !index.contains_key(id) {
                    return Err(GraphError::Unsupported {
                        file: file.clone(),
                        why: format!("down_revision names the branch label {id:?}"),
                    });
                }
                down.push(*index.get(id).ok_or_else(|| unknown("down_revision", id))?);
            }
            let mut depends = Vec::new();
            for id in &script.depends_on {
                let target = index.get(id).or_else(|| labels.get(id.as_str()));
                depends.push(*target.ok_or_else(|| unknown("depends_on", id))?);
            }
            nodes.push(Node {
                script: script.clone(),
                file: file.clone(),
                down,
                depends,
                children: Vec::new(),
            });
        }
        drop(labels);
        for i in 0..nodes.len() {
            for d in nodes[i].down.clone() {
                nodes[d].children.push(i);
            }
        }
        let graph = Graph { nodes, index };
        graph.check_acyclic()?;
        Ok(graph)
    }

    /// Depth-first search over `down_revision` and `depends_on`; a back edge is a cycle.
    fn check_acyclic(&self) -> Result<(), GraphError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let mut mark = vec![Mark::New; self.nodes.len()];
        let mut in_cycle = BTreeSet::new();
        for start in 0..self.nodes.len() {
            if mark[start] != Mark::New {
                continue;
            }
            // (node, next edge to follow); the path is the stack itself.
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = Mark::Open;
            while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
                let edges = self.parents(node);
                if let Some(&next) = edges.get(*edge) {
                    *edge += 1;
                    match mark[next] {
                        Mark::New => {
                            mark[next] = Mark::Open;
                            stack.push((next, 0));
                        }
                        Mark::Open => {
                            let from = stack.iter().position(|&(n, _)| n == next).unwrap_or(0);
                            in_cycle
                                .extend(stack[from..].iter().map(|&(n, _)| self.id(n).to_string()));
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
        if in_cycle.is_empty() {
            Ok(())
        } else {
            Err(GraphError::Cycle {
                revisions: in_cycle.into_iter().collect(),
            })
        }
    }

    fn parents(&self, node: usize) -> Vec<usize> {
        let n = &self.nodes[node];
        n.down.iter().chain(&n.depends).copied().collect()
    }

    fn id(&self, node: usize) -> &str {
        &self.nodes[node].script.revision
    }

    /// alembic's `heads`: revisions no `down_revision` names, in load order.
    pub fn heads(&self) -> Vec<&str> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].children.is_empty())
            .map(|i| self.id(i))
            .collect()
    }

    /// Every revision id and branch label, with its script's position; a duplicate is an error
    /// (alembic's map_ holds ids and labels in one namespace).
    #[allow(clippy::type_complexity)]
    fn names(
        scripts: &[(RevisionScript, PathBuf)],
    ) -> Result<(HashMap<String, usize>, HashMap<&str, usize>), GraphError> {
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, (script, file)) in scripts.iter().enumerate() {
            if let Some(&first) = index.get(&script.revision) {
                return Err(GraphError::DuplicateRevision {
                    revision: script.revision.clone(),
                    files: [scripts[first].1.clone(), file.clone()],
                });
            }
            index.insert(script.revision.clone(), i);
        }
        // alembic's map_ holds ids and branch labels in one namespace.
        let mut labels: HashMap<&str, usize> = HashMap::new();
        for (i, (script, file)) in scripts.iter().enumerate() {
            for label in &script.branch_labels {
                let clash = labels
                    .get(label.as_str())
                    .or_else(|| index.get(label))
                    .copied();
                if let Some(other) = clash {
                    return Err(GraphError::DuplicateBranchLabel {
                        label: label.clone(),
                        files: [scripts[other].1.clone(), file.clone()],
                    });
                }
                labels.insert(label, i);
            }
        }
        Ok((index, labels))
    }

    /// alembic's `bases`: revisions without a `down_revision`, in load order (the oracle tests
    /// compare it with alembic's).
    #[cfg(test)]
    pub fn bases(&self) -> Vec<&str> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].down.is_empty())
            .map(|i| self.id(i))
            .collect()
    }

    /// Every revision id, in load order.
    #[cfg(test)]
    pub fn revisions(&self) -> Vec<&str> {
        (0..self.nodes.len()).map(|i| self.id(i)).collect()
    }

    /// The rows of the version table against the scripts.
    /// No revision at all is never at head (`load` falls back before asking).
    pub fn verdict<S: AsRef<str>>(&self, rows: &[S]) -> Verdict {
        let rows: BTreeSet<&str> = rows.iter().map(AsRef::as_ref).collect();
        let heads: BTreeSet<&str> = self.heads().into_iter().collect();
        if rows == heads && !heads.is_empty() {
            return Verdict::AtHead;
        }
        let unknown: Vec<String> = rows
            .iter()
            .filter(|r| !self.index.contains_key(**r))
            .map(|r| r.to_string())
            .collect();
        if !unknown.is_empty() {
            return Verdict::UnknownRevision { unknown };
        }
        let applied = self.applied(&rows);
        let missing = self
            .base_first()
            .into_iter()
            .filter(|i| !applied[*i])
            .map(|i| self.id(i).to_string())
            .collect();
        Verdict::Pending { missing }
    }

    /// Every revision, base first, with its state for `rows`; then the rows no script knows.
    pub fn status<S: AsRef<str>>(&self, rows: &[S]) -> Vec<RevisionStatus> {
        let row_set: BTreeSet<&str> = rows.iter().map(AsRef::as_ref).collect();
        let applied = self.applied(&row_set);
        let mut out: Vec<RevisionStatus> = self
            .base_first()
            .into_iter()
            .map(|i| {
                let node = &self.nodes[i];
                RevisionStatus {
                    revision: node.script.revision.clone(),
                    state: if applied[i] {
                        State::Applied
                    } else {
                        State::Pending
                    },
                    file: Some(node.file.clone()),
                    down_revisions: node.script.down_revisions.clone(),
                    depends_on: node.script.depends_on.clone(),
                    branch_labels: node.script.branch_labels.clone(),
                    head: node.children.is_empty(),
                    base: node.down.is_empty(),
                    branch_point: node.children.len() > 1,
                    merge_point: node.down.len() > 1,
                }
            })
            .collect();
        for row in row_set.iter().filter(|r| !self.index.contains_key(**r)) {
            out.push(RevisionStatus {
                revision: row.to_string(),
                state: State::UnknownInDatabase,
                file: None,
                down_revisions: Vec::new(),
                depends_on: Vec::new(),
                branch_labels: Vec::new(),
                head: false,
                base: false,
                branch_point: false,
                merge_point: false,
            });
        }
        out
    }

    /// The rows and all their ancestors through `down_revision` and `depends_on` (alembic's
    /// `_get_all_current` before it keeps only branch heads).
    fn applied(&self, rows: &BTreeSet<&str>) -> Vec<bool> {
        let mut applied = vec![false; self.nodes.len()];
        let mut todo: Vec<usize> = rows
            .iter()
            .filter_map(|r| self.index.get(*r).copied())
            .collect();
        while let Some(i) = todo.pop() {
            if !applied[i] {
                applied[i] = true;
                todo.extend(self.parents(i));
            }
        }
        applied
    }

    /// A topological order, parents (`down_revision` and `depends_on`) first, ties in load order.
    fn base_first(&self) -> Vec<usize> {
        let mut waiting: Vec<usize> = (0..self.nodes.len())
            .map(|i| self.parents(i).len())
            .collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for i in 0..self.nodes.len() {
            for p in self.parents(i) {
                dependents[p].push(i);
            }
        }
        let mut ready: BTreeSet<usize> =
            (0..self.nodes.len()).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &d in &dependents[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// `spec`: `id<down1,down2|dep1|label` entries separated by spaces; `-` for none.
    fn graph(spec: &str) -> Result<Graph, GraphError> {
        let list = |s: Option<&str>| -> Vec<String> {
            s.filter(|s| !s.is_empty() && *s != "-")
                .map(|s| s.split(',').map(String::from).collect())
                .unwrap_or_default()
        };
        let scripts = spec
            .split_whitespace()
            .map(|entry| {
                let (id, rest) = entry.split_once('<').unwrap_or((entry, ""));
                let mut parts = rest.split('|');
                let script = RevisionScript {
                    revision: id.to_string(),
                    down_revisions: list(parts.next()),
                    depends_on: list(parts.next()),
                    branch_labels: list(parts.next()),
                    computed_labels: None,
                };
                (script, PathBuf::from(format!("{id}.py")))
            })
            .collect();
        Graph::build(scripts)
    }

    #[rstest]
    #[case::empty("", &[], &[])]
    #[case::linear("a b<a c<b", &["c"], &["a"])]
    #[case::branch("a b<a c<a", &["b", "c"], &["a"])]
    #[case::merge("a b<a c<a m<b,c", &["m"], &["a"])]
    #[case::two_roots("a b<a x y<x", &["b", "y"], &["a", "x"])]
    #[case::depends_on_does_not_make_a_head_disappear("a b<a x<|b", &["b", "x"], &["a", "x"])]
    #[case::depends_on_a_label("a<-|-|shop b<a x<|shop", &["b", "x"], &["a", "x"])]
    fn heads_and_bases(#[case] spec: &str, #[case] heads: &[&str], #[case] bases: &[&str]) {
        let g = graph(spec).expect("builds");
        assert_eq!(g.heads(), heads);
        assert_eq!(g.bases(), bases);
    }

    #[test]
    fn a_computed_label_turns_an_unresolved_name_into_a_fallback() {
        let mut scripts: Vec<(RevisionScript, PathBuf)> = ["a", "b"]
            .iter()
            .map(|id| {
                let script = RevisionScript {
                    revision: id.to_string(),
                    down_revisions: Vec::new(),
                    depends_on: Vec::new(),
                    branch_labels: Vec::new(),
                    computed_labels: None,
                };
                (script, PathBuf::from(format!("{id}.py")))
            })
            .collect();
        scripts[0].0.computed_labels = Some(7);
        scripts[1].0.depends_on = vec!["shop".into()];
        match Graph::build(scripts.clone()) {
            Err(GraphError::Unsupported { why, .. }) => {
                assert!(why.contains("a.py computes on line 7"), "{why}")
            }
            other => panic!("expected a fallback, got {other:?}"),
        }
        scripts[1].0.depends_on = vec!["a".into()];
        let graph = Graph::build(scripts).expect("ids still resolve");
        assert_eq!(graph.heads(), ["a", "b"]);
    }

    #[rstest]
    #[case::duplicate("a a", "two alembic revision files declare revision a: a.py and a.py")]
    #[case::unknown_down(
        "a b<z",
        "alembic revision b (b.py) has down_revision z, which no revision file declares"
    )]
    #[case::unknown_dependency(
        "a b<a|z",
        "alembic revision b (b.py) has depends_on z, which no revision file declares"
    )]
    #[case::self_loop("a<a", "alembic revisions form a cycle: a")]
    #[case::cycle("a b<a,d c<b d<c", "alembic revisions form a cycle: b, c, d")]
    #[case::cycle_through_depends_on("a b<a|c c<b", "alembic revisions form a cycle: b, c")]
    #[case::label_twice(
        "a<-|-|x b<-|-|x",
        "alembic branch label \"x\" is used twice: a.py and b.py"
    )]
    #[case::label_is_an_id("a<-|-|b b", "alembic branch label \"b\" is used twice: b.py and a.py")]
    fn refuses_what_alembic_cannot_use(#[case] spec: &str, #[case] message: &str) {
        assert_eq!(graph(spec).expect_err("refused").to_string(), message);
    }

    #[rstest]
    #[case::empty_scripts_empty_table("", &[], Verdict::Pending { missing: vec![] })]
    #[case::at_head("a b<a", &["b"], Verdict::AtHead)]
    #[case::empty_table("a b<a", &[], Verdict::Pending { missing: vec!["a".into(), "b".into()] })]
    #[case::one_behind("a b<a c<b", &["b"], Verdict::Pending { missing: vec!["c".into()] })]
    #[case::both_branches("a b<a c<a", &["b", "c"], Verdict::AtHead)]
    #[case::one_branch("a b<a c<a", &["b"], Verdict::Pending { missing: vec!["c".into()] })]
    #[case::unknown("a b<a", &["b", "zz"], Verdict::UnknownRevision { unknown: vec!["zz".into()] })]
    #[case::only_unknown("a", &["zz"], Verdict::UnknownRevision { unknown: vec!["zz".into()] })]
    #[case::redundant_ancestor_row("a b<a", &["a", "b"], Verdict::Pending { missing: vec![] })]
    #[case::dependency_applied_first("a b<a x<|b", &["x"], Verdict::Pending { missing: vec![] })]
    #[case::dependency_head_kept("a b<a x<|b", &["b", "x"], Verdict::AtHead)]
    fn verdict_is_check_heads(
        #[case] spec: &str,
        #[case] rows: &[&str],
        #[case] expected: Verdict,
    ) {
        assert_eq!(graph(spec).expect("builds").verdict(rows), expected);
    }

    #[test]
    fn status_lists_base_first_with_branch_points_merges_and_unknown_rows() {
        let g = graph("a b<a c<a m<b,c").expect("builds");
        let status = g.status(&["b", "nope"]);
        let brief: Vec<(&str, State, bool, bool)> = status
            .iter()
            .map(|s| (s.revision.as_str(), s.state, s.branch_point, s.merge_point))
            .collect();
        assert_eq!(
            brief,
            [
                ("a", State::Applied, true, false),
                ("b", State::Applied, false, false),
                ("c", State::Pending, false, false),
                ("m", State::Pending, false, true),
                ("nope", State::UnknownInDatabase, false, false),
            ]
        );
        let json = serde_json::to_value(&status[4]).expect("serializes");
        assert_eq!(json["state"], "unknown_in_database");
        assert_eq!(json["file"], serde_json::Value::Null);
    }
}
