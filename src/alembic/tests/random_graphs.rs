//! Random revision graphs (branches, merges, depends_on, branch labels, ids of alembic's shapes)
//! against alembic: the same heads, and the same "at head" verdict as `current --check-heads` for
//! several version tables each. Seeded, so a failure reproduces.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Project, Rev, ask_alembic, assert_agrees, ini};

const GRAPHS: u64 = 20;
/// Measured at about 5 s for the 20 graphs; 10x margin.
const DEADLINE: Duration = Duration::from_secs(60);

/// An id in one of the shapes alembic users have: its 12 hex digits, a `--rev-id` counter, a
/// date stamp, a word.
fn id(rng: &mut fastrand::Rng, shape: u8, i: usize) -> String {
    match shape {
        0 => (0..12)
            .map(|_| char::from_digit(rng.u32(0..16), 16).expect("UNWRAP: < 16"))
            .collect(),
        1 => format!("{i:04}"),
        2 => format!("2026120{}_{i:03}", rng.u8(1..10)),
        _ => format!("step_{i}_{}", ["users", "orders", "fix"][rng.usize(0..3)]),
    }
}

fn random_graph(rng: &mut fastrand::Rng) -> Vec<Rev> {
    let shape = rng.u8(0..4);
    let n = rng.usize(1..=12);
    let mut revs: Vec<Rev> = Vec::new();
    for i in 0..n {
        let heads: Vec<usize> = (0..revs.len())
            .filter(|&h| !revs.iter().any(|r| r.down.contains(&revs[h].id)))
            .collect();
        let mut rev = Rev::new(&id(rng, shape, i), &[]);
        if i > 0 && rng.u8(0..10) > 0 {
            if heads.len() >= 2 && rng.u8(0..4) == 0 {
                let first = rng.usize(0..heads.len());
                let second = (first + rng.usize(1..heads.len())) % heads.len();
                rev.down = vec![
                    revs[heads[first]].id.clone(),
                    revs[heads[second]].id.clone(),
                ];
            } else {
                let parent = if rng.bool() {
                    heads[rng.usize(0..heads.len())]
                } else {
                    rng.usize(0..revs.len())
                };
                rev.down = vec![revs[parent].id.clone()];
            }
        }
        if i > 0 && rng.u8(0..4) == 0 {
            // Often a current head: a dependency that stays a head is where alembic's heads differ
            // from a plain graph's leaves.
            let target = if rng.bool() {
                &revs[heads[rng.usize(0..heads.len())]]
            } else {
                &revs[rng.usize(0..revs.len())]
            };
            let name = target.labels.first().unwrap_or(&target.id).clone();
            if !rev.down.contains(&target.id) {
                rev.depends = vec![name];
            }
        }
        if rng.u8(0..6) == 0 {
            rev.labels = vec![format!("label{i}")];
        }
        revs.push(rev);
    }
    revs
}

/// The version table after `alembic upgrade` to some revisions: the tips of what they need.
fn partial_rows(rng: &mut fastrand::Rng, revs: &[Rev]) -> Vec<String> {
    let by_name = |name: &str| {
        revs.iter()
            .position(|r| r.id == name || r.labels.iter().any(|l| l == name))
            .expect("UNWRAP: the generator only names existing revisions")
    };
    let mut applied = BTreeSet::new();
    let mut todo: Vec<usize> = (0..revs.len()).filter(|_| rng.u8(0..3) == 0).collect();
    while let Some(i) = todo.pop() {
        if applied.insert(i) {
            todo.extend(
                revs[i]
                    .down
                    .iter()
                    .chain(&revs[i].depends)
                    .map(|n| by_name(n)),
            );
        }
    }
    applied
        .iter()
        .filter(|&&i| !applied.iter().any(|&j| revs[j].down.contains(&revs[i].id)))
        .map(|&i| revs[i].id.clone())
        .collect()
}

#[test]
fn alembic_random_graphs_have_alembics_heads_and_check_heads_verdicts() {
    let projects: Vec<(Project, Vec<Vec<String>>)> = (0..GRAPHS)
        .map(|seed| {
            let mut rng = fastrand::Rng::with_seed(0x5eed_0000 + seed);
            let revs = random_graph(&mut rng);
            let p = Project::new();
            p.write(
                "alembic.ini",
                &ini("alembic", "script_location = %(here)s/migrations"),
            );
            p.script_dir("migrations");
            for rev in &revs {
                p.revision("migrations/versions", rev);
            }
            let heads: Vec<String> = revs
                .iter()
                .filter(|r| !revs.iter().any(|o| o.down.contains(&r.id)))
                .map(|r| r.id.clone())
                .collect();
            let mut with_unknown = heads.clone();
            with_unknown.push("ffffffffffff".into());
            let row_sets = vec![
                heads,
                partial_rows(&mut rng, &revs),
                with_unknown,
                Vec::new(),
            ];
            (p, row_sets)
        })
        .collect();
    let cases: Vec<_> = projects
        .iter()
        .map(|(p, row_sets)| p.case(&[], "", row_sets.clone()))
        .collect();
    let answers = ask_alembic(&cases, DEADLINE);
    for (case, answer) in cases.iter().zip(&answers) {
        assert_agrees(case, answer);
    }
}
