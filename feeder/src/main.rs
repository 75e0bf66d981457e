//! `feeder`: events from Apache Pulsar (or a file) into the leaf workers.

fn main() -> std::process::ExitCode {
    timeline_feeder::cli::main()
}
