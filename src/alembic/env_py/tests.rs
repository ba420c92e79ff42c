use super::*;
use rstest::rstest;

/// The online half of alembic's generic template, with `configure`'s arguments replaced.
fn generic(configure_args: &str) -> String {
    format!(
        "\
from alembic import context
config = context.config

def run_migrations_offline() -> None:
    url = config.get_main_option(\"sqlalchemy.url\")
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()

def run_migrations_online() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {{}}))
    with connectable.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata{configure_args}
        )
        with context.begin_transaction():
            context.run_migrations()

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"
    )
}

fn table(name: &str, line: usize) -> Option<(String, usize)> {
    Some((name.to_string(), line))
}

#[rstest]
#[case::default(generic(""), EnvSettings::default())]
#[case::literal_table(generic(", version_table=\"activity_alembic_version\""), EnvSettings { version_table: table("activity_alembic_version", 14), version_table_schema: None, ..EnvSettings::default() })]
#[case::literal_schema(generic(",\n            version_table_schema='public',\n            version_table='fief_alembic_version',\n"), EnvSettings { version_table: table("fief_alembic_version", 16), version_table_schema: table("public", 15), ..EnvSettings::default() })]
#[case::schema_none(generic(", version_table_schema=None"), EnvSettings::default())]
#[case::offline_only_settings_ignored(
    "from alembic import context\ndef off():\n    context.configure(url='x', version_table=T)\n    context.run_migrations()\ndef on():\n    context.configure(connection=c)\n    context.run_migrations()\nif not context.is_offline_mode():\n    on()\nelse:\n    off()\n".to_string(),
    EnvSettings::default()
)]
#[case::module_level(
    "from alembic import context\nwith engine.connect() as connection:\n    context.configure(connection=connection, version_table='v')\n    with context.begin_transaction():\n        context.run_migrations()\n".to_string(),
    EnvSettings { version_table: table("v", 3), ..EnvSettings::default() }
)]
#[case::strings_and_comments_do_not_count(
    format!("{}\n# context.configure(version_table=x) in a loop\nDOC = 'for tenant in tenants: context.run_migrations()'\n", generic("")),
    EnvSettings::default()
)]
#[case::branches_of_one_if_are_one_run(
    "from alembic import context\ndef off():\n    context.configure(url=u)\n    context.run_migrations()\ndef on():\n    context.configure(connection=c)\n    context.run_migrations()\nif offline:\n    off()\nelse:\n    on()\n".to_string(),
    EnvSettings::default()
)]
#[case::the_cookbooks_connection_sharing(ASYNC_CONNECTION_SHARING.to_string(), EnvSettings::default())]
fn reads_what_the_online_configure_names(#[case] source: String, #[case] expected: EnvSettings) {
    assert_eq!(read(&source), Ok(expected));
}

/// alembic's cookbook, "Programmatic API use (connection sharing) With Asyncio".
const ASYNC_CONNECTION_SHARING: &str = "\
import asyncio
from alembic import context

def do_run_migrations(connection):
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()

async def run_async_migrations():
    connectable = async_engine_from_config(config.get_section(config.config_ini_section, {}))
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()

def run_migrations_online():
    connectable = config.attributes.get('connection', None)
    if connectable is None:
        asyncio.run(run_async_migrations())
    else:
        do_run_migrations(connectable)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
";

const TENANT_LOOP: &str = "\
from alembic import context
def run_migrations_online():
    with engine.connect() as connection:
        for tenant in tenants():
            connection.execute(text(f'SET search_path TO {tenant}'))
            context.configure(connection=connection, version_table_schema=tenant)
            with context.begin_transaction():
                context.run_migrations()
if context.is_offline_mode():
    pass
else:
    run_migrations_online()
";

const TENANT_LOOP_THROUGH_A_FUNCTION: &str = "\
from alembic import context
def migrate(connection, tenant):
    context.configure(connection=connection, version_table='alembic_version', version_table_schema='public')
    with context.begin_transaction():
        context.run_migrations()
def run_migrations_online():
    with engine.connect() as connection:
        for tenant in TENANTS:
            migrate(connection, tenant)
run_migrations_online()
";

const TWICE: &str = "\
from alembic import context
def migrate(connection, table):
    context.configure(connection=connection, version_table=table)
    with context.begin_transaction():
        context.run_migrations()
with engine.connect() as connection:
    migrate(connection, 'a_version')
    migrate(connection, 'b_version')
";

#[rstest]
#[case::tenant_loop(TENANT_LOOP.to_string(), "line 6: context.configure(...) runs inside the loop of line 4")]
#[case::tenant_loop_through_a_function(TENANT_LOOP_THROUGH_A_FUNCTION.to_string(), "line 9: migrate(), which migrates, runs inside the loop of line 8")]
#[case::called_twice(TWICE.to_string(), "lines 7 and 8 both run migrate(), which migrates")]
#[case::comprehension("from alembic import context\n[context.configure(connection=c) for c in conns]\ncontext.run_migrations()\n".to_string(), "line 2: context.configure(...) runs once per item")]
#[case::two_configures_online("from alembic import context\ncontext.configure(connection=a)\ncontext.configure(connection=b)\ncontext.run_migrations()\n".to_string(), "lines 2 and 3: more than one context.configure(...) call")]
#[case::x_argument(generic("").replace("connectable = ", "tenant = context.get_x_argument(as_dictionary=True).get('tenant')\n    connectable = "), "line 11: reads alembic's -x arguments (get_x_argument)")]
#[case::script_location_at_run_time(generic("").replace("config = context.config\n", "config = context.config\nconfig.set_main_option('script_location', 'migrations/' + DIALECT)\n"), "line 3: names script_location")]
#[case::version_locations_at_run_time(generic("").replace("config = context.config\n", "config = context.config\nconfig.set_main_option(\"version_locations\", f\"versions/{dialect}\")\n"), "line 3: names version_locations")]
#[case::two_branches_two_tables("from alembic import context\nif A:\n    context.configure(connection=c, version_table='a')\nelse:\n    context.configure(connection=c, version_table='b')\ncontext.run_migrations()\n".to_string(), "lines 3 and 5: the context.configure(...) calls of two branches name different version tables")]
#[case::a_branch_then_again("from alembic import context\ndef on():\n    context.configure(connection=c)\n    context.run_migrations()\nif A:\n    on()\non()\n".to_string(), "lines 6 and 7 both run on(), which migrates")]
#[case::elif_chain_then_after("from alembic import context\nif A:\n    context.configure(connection=a)\nelif B:\n    pass\ncontext.configure(connection=b)\ncontext.run_migrations()\n".to_string(), "lines 3 and 6: more than one context.configure(...) call")]
#[case::delegated("from myapp.db import run_alembic\nrun_alembic()\n".to_string(), "no context.configure(...) call roadie can see")]
#[case::getattr("from alembic import context\ngetattr(context, 'configure')(connection=c)\ncontext.run_migrations()\n".to_string(), "line 2: context.configure is used other than by calling it")]
#[case::unreadable("context.configure(connection=c\n".to_string(), "cannot be read as Python")]
fn falls_back_naming_the_line_and_why(#[case] source: String, #[case] says: &str) {
    let why = read(&source).expect_err("must fall back");
    assert!(why.contains(says), "{why:?} should say {says:?}");
}

#[rstest]
#[case::computed_table(
    generic(", version_table=f\"{PREFIX}_alembic_version\""),
    "line 14: version_table is not a literal string"
)]
#[case::table_from_a_name(
    generic(", version_table=VERSION_TABLE"),
    "line 14: version_table is not a literal string"
)]
#[case::kwargs(
    generic(", **settings.alembic_options"),
    "line 14: context.configure(...) takes arguments roadie cannot see (**...)"
)]
#[case::not_an_identifier(
    generic(", version_table='my-versions'"),
    "line 14: version_table=\"my-versions\" is not a plain SQL identifier"
)]
#[case::literal_beside_a_computed_one(
    generic(", version_table='v', version_table_schema=SCHEMA"),
    "line 14: version_table_schema is not a literal string"
)]
fn a_table_roadie_cannot_know_is_said_for_the_flag_to_settle(
    #[case] source: String,
    #[case] says: &str,
) {
    let settings = read(&source).expect("the rest is readable");
    let why = settings.table_unknown.expect("the table is unknown");
    assert!(why.contains(says), "{why:?} should say {says:?}");
    assert_eq!(settings.version_table, None);
}

mod never_panics {
    use super::super::read;
    use proptest::prelude::*;

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("context.configure(".to_string()),
            Just("context.run_migrations()".to_string()),
            Just("version_table=".to_string()),
            Just("'t'".to_string()),
            Just("def f():".to_string()),
            Just("if context.is_offline_mode():".to_string()),
            Just("else:".to_string()),
            Just("for x in y:".to_string()),
            Just(")".to_string()),
            Just("f()".to_string()),
            Just(",".to_string()),
            Just("\n".to_string()),
            Just("    ".to_string()),
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn on_mixtures_of_env_py_fragments(parts in proptest::collection::vec(fragment(), 0..40)) {
            let _ = read(&parts.concat());
        }
    }
}
