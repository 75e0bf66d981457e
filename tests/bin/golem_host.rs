fn main() -> std::process::ExitCode {
    golem_host::cli::main()
}
