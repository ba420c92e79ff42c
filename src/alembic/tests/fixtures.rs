//! One hand-made alembic project per configuration shape, each checked against alembic.

use std::time::Duration;

use super::{Project, Rev, ask_alembic, assert_agrees, ini, rows};

/// alembic starts in well under a second per case; this bound leaves a 10x margin on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);

fn agrees(project: &Project, args: &[&str], db_dir: &str, row_sets: Vec<Vec<String>>) {
    let case = project.case(args, db_dir, row_sets);
    let answers = ask_alembic(std::slice::from_ref(&case), DEADLINE);
    assert_agrees(&case, &answers[0]);
}

fn migrations(p: &Project, revs: &[Rev]) {
    p.write(
        "alembic.ini",
        &ini("alembic", "script_location = %(here)s/migrations"),
    );
    p.script_dir("migrations");
    for rev in revs {
        p.revision("migrations/versions", rev);
    }
}

#[test]
fn alembic_linear_history_as_alembic_generates_it() {
    let p = Project::new();
    migrations(
        &p,
        &[
            Rev::new("1975ea83b712", &[]),
            Rev::new("ae1027a6acf0", &["1975ea83b712"]),
            Rev::new("27c6a30d7c24", &["ae1027a6acf0"]),
        ],
    );
    agrees(
        &p,
        &[],
        "",
        vec![
            rows(&[]),
            rows(&["1975ea83b712"]),
            rows(&["27c6a30d7c24"]),
            rows(&["27c6a30d7c24", "0000deadbeef"]),
        ],
    );
}

#[test]
fn alembic_branches_with_branch_labels() {
    let p = Project::new();
    migrations(
        &p,
        &[
            Rev::new("a1", &[]),
            Rev::new("b1", &["a1"]).labels(&["shop"]),
            Rev::new("c1", &["a1"]).labels(&["billing", "invoices"]),
            Rev::new("d1", &["b1"]),
        ],
    );
    agrees(
        &p,
        &[],
        "",
        vec![
            rows(&["d1", "c1"]),
            rows(&["d1"]),
            rows(&["b1", "c1"]),
            rows(&["a1"]),
        ],
    );
}

#[test]
fn alembic_merges_with_a_tuple_down_revision() {
    let p = Project::new();
    migrations(
        &p,
        &[
            Rev::new("a1", &[]),
            Rev::new("b1", &["a1"]),
            Rev::new("c1", &["a1"]),
            Rev::new("m1", &["b1", "c1"]),
            Rev::new("n1", &["m1"]),
        ],
    );
    agrees(
        &p,
        &[],
        "",
        vec![
            rows(&["n1"]),
            rows(&["m1"]),
            rows(&["b1", "c1"]),
            rows(&["b1"]),
        ],
    );
}

#[test]
fn alembic_depends_on_across_independent_roots() {
    let p = Project::new();
    migrations(
        &p,
        &[
            Rev::new("a1", &[]).labels(&["main"]),
            Rev::new("b1", &["a1"]),
            Rev::new("x1", &[]).labels(&["other"]).depends(&["b1"]),
            Rev::new("y1", &["x1"]).depends(&["main"]),
        ],
    );
    agrees(
        &p,
        &[],
        "",
        vec![
            rows(&["b1", "y1"]),
            rows(&["y1"]),
            rows(&["b1", "x1"]),
            rows(&["x1"]),
        ],
    );
}

#[test]
fn alembic_several_version_locations_with_here_and_path_separator() {
    let p = Project::new();
    p.write(
        "alembic.ini",
        &ini(
            "alembic",
            "script_location = %(here)s/migrations\npath_separator = os\n\
             version_locations = %(here)s/migrations/versions:%(here)s/more:%(here)s/missing",
        ),
    );
    p.script_dir("migrations");
    p.revision("migrations/versions", &Rev::new("a1", &[]));
    p.revision("more", &Rev::new("b1", &["a1"]));
    p.revision("migrations/versions", &Rev::new("c1", &["b1"]));
    agrees(&p, &[], "", vec![rows(&["c1"]), rows(&["b1"])]);
}

#[test]
fn alembic_legacy_version_locations_split_on_spaces_and_commas() {
    let p = Project::new();
    p.write(
        "alembic.ini",
        &ini(
            "alembic",
            "script_location = migrations\nversion_locations = %(here)s/v1 %(here)s/v2,  %(here)s/v3",
        ),
    );
    p.script_dir("migrations");
    p.revision("v1", &Rev::new("a1", &[]));
    p.revision("v2", &Rev::new("b1", &["a1"]));
    p.revision("v3", &Rev::new("c1", &["a1"]));
    agrees(&p, &[], "", vec![rows(&["b1", "c1"]), rows(&["b1"])]);
}

#[test]
fn alembic_recursive_version_locations_skip_pycache_init_and_lock_files() {
    let p = Project::new();
    p.write(
        "alembic.ini",
        &ini(
            "alembic",
            "script_location = %(here)s/migrations\nrecursive_version_locations = true",
        ),
    );
    p.script_dir("migrations");
    p.revision("migrations/versions", &Rev::new("a1", &[]));
    p.revision("migrations/versions/2025", &Rev::new("b1", &["a1"]));
    p.revision("migrations/versions/2026/q1", &Rev::new("c1", &["b1"]));
    p.write(
        "migrations/versions/__pycache__/junk.py",
        "this is not python (",
    );
    p.write("migrations/versions/__init__.py", "this is not python (");
    p.write("migrations/versions/.#c1_step.py", "this is not python (");
    p.write("migrations/versions/README.md", "notes");
    agrees(&p, &[], "", vec![rows(&["c1"]), rows(&["a1"])]);
}

#[test]
fn alembic_package_script_location_found_through_prepend_sys_path() {
    let p = Project::new();
    p.write(
        "alembic.ini",
        &ini(
            "alembic",
            "script_location = roadiefixture_app.db:migrations\nprepend_sys_path = .\npath_separator = os",
        ),
    );
    p.write("roadiefixture_app/__init__.py", "");
    p.write("roadiefixture_app/db/__init__.py", "");
    p.script_dir("roadiefixture_app/db/migrations");
    p.revision(
        "roadiefixture_app/db/migrations/versions",
        &Rev::new("a1", &[]),
    );
    p.revision(
        "roadiefixture_app/db/migrations/versions",
        &Rev::new("b1", &["a1"]),
    );
    agrees(&p, &[], "", vec![rows(&["b1"]), rows(&["a1"])]);
}

#[test]
fn alembic_pyproject_tool_alembic_with_only_the_url_in_alembic_ini() {
    let p = Project::new();
    p.write("alembic.ini", &ini("alembic", ""));
    p.write(
        "pyproject.toml",
        "[project]\nname = \"app\"\n\n[tool.alembic]\nscript_location = \"%(here)s/db\"\n\
         version_locations = [\"%(here)s/db/versions\", \"%(here)s/db/extra\"]\nprepend_sys_path = [\".\"]\n",
    );
    p.script_dir("db");
    p.revision("db/versions", &Rev::new("a1", &[]));
    p.revision("db/extra", &Rev::new("b1", &["a1"]));
    agrees(&p, &[], "", vec![rows(&["b1"]), rows(&[])]);
}

#[test]
fn alembic_config_file_and_section_from_options() {
    let p = Project::new();
    p.write(
        "conf/custom.ini",
        &format!(
            "{}\n{}",
            ini("alembic", "script_location = %(here)s/nothing-here"),
            ini("db2", "script_location = %(here)s/../migrations2")
        ),
    );
    p.script_dir("migrations2");
    p.revision("migrations2/versions", &Rev::new("a1", &[]));
    p.revision("migrations2/versions", &Rev::new("b1", &["a1"]));
    agrees(
        &p,
        &["-c", "conf/custom.ini", "-n", "db2"],
        "conf",
        vec![rows(&["b1"]), rows(&["a1"])],
    );
}

#[test]
fn alembic_revision_files_in_every_shape_and_id_style() {
    let p = Project::new();
    migrations(&p, &[]);
    let v = "migrations/versions";
    p.write(
        &format!("{v}/0001_initial.py"),
        "\"\"\"initial\n\nrevision = 'zzz' in a docstring counts for nothing\n\"\"\"\n\
         # revision = 'commented'\nrevision = '0001_initial'  # --rev-id 0001_initial\n\
         down_revision = None\n",
    );
    p.write(
        &format!("{v}/20261205_abc_second.py"),
        "from typing import Sequence, Union\n\nrevision: str = \"20261205_abc\"\n\
         down_revision: Union[str, None] = ('0001'\n    '_initial')\nbranch_labels: Sequence[str] | None = None\n",
    );
    p.write(
        &format!("{v}/ae10.py"),
        "# no revision variable: the id is the file name\ndown_revision = r'20261205_abc'\n",
    );
    p.write(
        &format!("{v}/x_third.py"),
        "revision = '''x'''; down_revision = [\"ae10\"]\nbranch_labels = ()\ndepends_on = None\n\n\
         def upgrade():\n    op.execute(f\"UPDATE {table} SET v = '{value!r:>{width}}'\")\n",
    );
    p.write(
        &format!("{v}/r\u{e9}vision_2.py"),
        "revision = u'r\u{e9}vision_2'\ndown_revision = 'x'\n",
    );
    p.write(
        &format!("{v}/__init__.py"),
        "raise RuntimeError('never imported by alembic')\n",
    );
    agrees(
        &p,
        &[],
        "",
        vec![rows(&["r\u{e9}vision_2"]), rows(&["ae10"]), rows(&["x"])],
    );
}
