//! `golem-host`: serves the application's built components as a local Golem
//! would, for tests and trials. See the `golem_host` crate for what it does
//! and does not.

fn main() -> std::process::ExitCode {
    golem_host::cli::main()
}
