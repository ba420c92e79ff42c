//! The bad-input table of the module docs, each row checked: what roadie decides, and that
//! alembic itself fails where roadie calls it an error (and works where roadie falls back to it).

use std::time::Duration;

use rstest::rstest;

use super::super::{ConfigFiles, GraphError, LoadError, load};
use super::{Project, Rev, ask_alembic, ini};

const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Roadie {
    BrokenConfig,
    Fallback,
    Duplicate,
    UnknownReference,
    Cycle,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Alembic {
    Fails,
    Works,
}

fn classify(result: Result<super::super::Project, LoadError>) -> Roadie {
    match result.expect_err("roadie refuses or falls back") {
        LoadError::Config(_) => Roadie::BrokenConfig,
        LoadError::Fallback(_) => Roadie::Fallback,
        LoadError::Graph(GraphError::DuplicateRevision { .. }) => Roadie::Duplicate,
        LoadError::Graph(GraphError::UnknownReference { .. }) => Roadie::UnknownReference,
        LoadError::Graph(GraphError::Cycle { .. }) => Roadie::Cycle,
        LoadError::Graph(other) => panic!("unexpected {other}"),
    }
}

/// A project with a plain alembic.ini and `revs`, then `tweak` applied.
fn project(revs: &[Rev], tweak: impl FnOnce(&Project)) -> Project {
    let p = Project::new();
    p.write(
        "alembic.ini",
        &ini("alembic", "script_location = %(here)s/migrations"),
    );
    p.script_dir("migrations");
    for rev in revs {
        p.revision("migrations/versions", rev);
    }
    tweak(&p);
    p
}

fn no_script_location(p: &Project) {
    p.write("alembic.ini", &ini("alembic", ""));
}

fn script_location_missing(p: &Project) {
    p.write(
        "alembic.ini",
        &ini("alembic", "script_location = %(here)s/nowhere"),
    );
}

fn ini_not_configparser(p: &Project) {
    p.write(
        "alembic.ini",
        &ini(
            "alembic",
            "script_location = %(here)s/migrations\njust words",
        ),
    );
}

fn pyproject_not_toml(p: &Project) {
    p.write("alembic.ini", &ini("alembic", ""));
    p.write("pyproject.toml", "[tool.alembic\nscript_location = 'x'\n");
}

fn revision_syntax_error(p: &Project) {
    p.write(
        "migrations/versions/b1_step.py",
        "revision = 'b1\ndown_revision = 'a1'\n",
    );
}

fn computed_revision(p: &Project) {
    p.write(
        "migrations/versions/b1_step.py",
        "revision = 'b' + '1'\ndown_revision = 'a1'\n",
    );
}

fn dangling_symlink(p: &Project) {
    std::os::unix::fs::symlink(
        p.path().join("nowhere.py"),
        p.path().join("migrations/versions/b1_step.py"),
    )
    .expect("symlink");
}

fn duplicate_revision(p: &Project) {
    p.write(
        "migrations/versions/a1_again.py",
        &Rev::new("a1", &[]).render(),
    );
}

fn unknown_down_revision(p: &Project) {
    p.revision("migrations/versions", &Rev::new("c1", &["zz"]));
}

fn cycle(p: &Project) {
    p.revision("migrations/versions", &Rev::new("c1", &["d1"]));
    p.revision("migrations/versions", &Rev::new("d1", &["c1"]));
}

#[rstest]
#[case::no_script_location(no_script_location, Roadie::BrokenConfig, Alembic::Fails)]
#[case::script_location_missing(script_location_missing, Roadie::BrokenConfig, Alembic::Fails)]
#[case::ini_not_configparser(ini_not_configparser, Roadie::BrokenConfig, Alembic::Fails)]
#[case::pyproject_not_toml(pyproject_not_toml, Roadie::BrokenConfig, Alembic::Fails)]
#[case::revision_syntax_error(revision_syntax_error, Roadie::Fallback, Alembic::Fails)]
#[case::computed_revision(computed_revision, Roadie::Fallback, Alembic::Works)]
#[case::dangling_symlink(dangling_symlink, Roadie::Fallback, Alembic::Fails)]
#[case::duplicate_revision(duplicate_revision, Roadie::Duplicate, Alembic::Works)]
#[case::unknown_down_revision(unknown_down_revision, Roadie::UnknownReference, Alembic::Fails)]
#[case::cycle(cycle, Roadie::Cycle, Alembic::Fails)]
fn alembic_bad_input_is_refused_or_left_to_alembic(
    #[case] tweak: fn(&Project),
    #[case] roadie: Roadie,
    #[case] alembic: Alembic,
) {
    let p = project(&[Rev::new("a1", &[])], tweak);
    assert_eq!(classify(load(&ConfigFiles::default(), p.path())), roadie);
    let case = p.case(&[], "", Vec::new());
    let answer = &ask_alembic(std::slice::from_ref(&case), DEADLINE)[0];
    let works = answer.heads_status == "ok";
    assert_eq!(
        if works {
            Alembic::Works
        } else {
            Alembic::Fails
        },
        alembic,
        "alembic heads said {}",
        answer.heads_status
    );
}
