//! Black-box tests of the real roadie binary: one file per behaviour family, every behaviour
//! run both as a subreaper and as PID 1 of a PID namespace (see support/).

mod support;

mod command_line;
mod containers;
mod deploy_files;
mod example_apps;
mod example_fastapi;
mod example_rust;
mod exit_codes;
mod forwarding;
mod hooks;
mod lock_fencing;
mod migrating;
mod migrating_alembic;
mod migrating_alembic_at_head;
mod migrating_alembic_landed;
mod migrating_alembic_off_path;
mod migrating_ddl;
mod migrating_other_databases;
mod migrating_partitions;
mod pooler;
mod prestart;
mod reaping;
mod shipping;
mod stopping;
mod terminal;
mod user;
mod waiting;
mod waiting_for_schema;
mod waiting_mariadb;
