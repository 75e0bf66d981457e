// Worker state is many small, growing vectors; mimalloc serves them faster
// than the system allocator, and without glibc's per-thread arena growth.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    timeline_local::cli::main()
}
