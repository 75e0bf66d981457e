fn main() -> std::process::ExitCode {
    timeline_local::cli::main()
}
