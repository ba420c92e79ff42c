//! The binary: everything is in the library (`lib.rs` holds the map of the pipeline).

fn main() -> std::process::ExitCode {
    roadie::run()
}
