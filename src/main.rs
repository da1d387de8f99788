//! The `mediflow` binary: parse arguments, run the command, map the error class to an
//! exit code (2 bad input, 3 run mismatch, 4 teacher unavailable, 5 output directory in use
//! by another process, 1 anything else).

mod cli;

/// mimalloc: the quality gate allocates many small strings per record on every thread,
/// where it scales better across threads than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
