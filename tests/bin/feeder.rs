fn main() -> std::process::ExitCode {
    timeline_feeder::cli::main()
}
