//! examples/fastapi-alembic/Dockerfile, read instruction by instruction (no engine here builds
//! it): roadie comes from the roadie image, the image runs uvicorn the way the tests and the
//! Kubernetes manifests do, and every file it copies is in the build context.

use super::example_dir;

/// The Dockerfile's instructions as (INSTRUCTION, arguments): continuation lines joined,
/// comments and blank lines dropped.
fn instructions() -> Vec<(String, String)> {
    let path = example_dir().join("Dockerfile");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut joined = Vec::new();
    let mut pending = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                joined.push(std::mem::take(&mut pending));
            }
        }
    }
    joined
        .iter()
        .map(|l| {
            let (word, rest) = l.split_once(' ').unwrap_or((l, ""));
            (word.to_uppercase(), rest.trim().to_string())
        })
        .collect()
}

/// The arguments of every `word` instruction, in order.
fn all(word: &str) -> Vec<String> {
    instructions()
        .into_iter()
        .filter(|(w, _)| w == word)
        .map(|(_, rest)| rest)
        .collect()
}

/// The exec form (`["a", "b"]`) of the last `word` instruction.
fn exec_form(word: &str) -> Vec<String> {
    let last = all(word).pop().unwrap_or_else(|| panic!("no {word}"));
    serde_json::from_str(&last).unwrap_or_else(|e| panic!("{word} {last}: not exec form: {e}"))
}

/// The image's CMD: what the app container runs after roadie's `--`.
pub fn image_cmd() -> Vec<String> {
    exec_form("CMD")
}

/// The image's numeric user, which the manifests' runAsUser must match.
pub fn image_uid() -> i64 {
    let user = all("USER").pop().expect("a USER");
    let uid = user.split(':').next().unwrap_or_default();
    uid.parse()
        .unwrap_or_else(|_| panic!("USER {user}: numeric, so runAsNonRoot can verify it"))
}

#[test]
fn the_example_dockerfile_copies_roadie_from_the_roadie_image_and_runs_uvicorn_under_it() {
    let steps = instructions();
    // ARG before the first FROM, so FROM can use it.
    assert_eq!(
        steps[0],
        ("ARG".to_string(), "ROADIE_IMAGE=roadie".to_string())
    );
    assert_eq!(
        all("FROM"),
        ["${ROADIE_IMAGE} AS roadie", "python:3.11-slim"]
    );
    assert!(
        all("COPY").contains(&"--from=roadie /roadie /usr/local/bin/roadie".to_string()),
        "{steps:?}"
    );
    assert_eq!(exec_form("ENTRYPOINT"), ["roadie"]);
    // As tests/blackbox/example_fastapi.rs runs it, on every interface.
    assert_eq!(
        image_cmd(),
        [
            "uvicorn",
            "app.main:app",
            "--workers",
            "2",
            "--host",
            "0.0.0.0",
            "--port",
            "8000"
        ]
    );
    assert_eq!(image_uid(), 10001);
    assert_eq!(all("EXPOSE"), ["8000"]);
}

#[test]
fn every_file_the_dockerfile_copies_is_in_the_build_context_and_not_ignored() {
    let ignore =
        std::fs::read_to_string(example_dir().join(".dockerignore")).expect(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // The forms this .dockerignore uses: NAME, *.EXT, and either under **/.
    let ignored = |name: &str| {
        patterns.iter().any(|p| {
            let p = p.trim_start_matches("**/");
            match p.strip_prefix('*') {
                Some(suffix) => name.ends_with(suffix),
                None => name == p,
            }
        })
    };
    let copies: Vec<String> = all("COPY")
        .into_iter()
        .filter(|c| !c.starts_with("--from="))
        .collect();
    assert!(copies.len() >= 4, "{copies:?}");
    for copy in copies {
        let words: Vec<&str> = copy.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            let name = source.trim_end_matches('/');
            assert!(
                example_dir().join(name).exists(),
                "COPY {copy}: no {name} in the context"
            );
            assert!(!ignored(name), "COPY {copy}: .dockerignore drops {name}");
        }
    }
    // What a local run leaves behind stays out of the image.
    for name in ["example.db", "example.db.roadie-lock", "__pycache__"] {
        assert!(ignored(name), ".dockerignore lets {name} in");
    }
}
