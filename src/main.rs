//! The `mediflow` binary: parse arguments, run the command, map the error class to an
//! exit code (2 bad input, 3 run mismatch, 4 teacher unavailable, 1 anything else).

fn main() {
    let code = mediflow::cli::main();
    std::process::exit(code);
}
