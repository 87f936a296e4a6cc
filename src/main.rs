//! The `mocker` command line: parses arguments, calls the library, prints.

mod cli;

fn main() {
    // `mocker run` re-executes itself as the container's init: a fresh,
    // single-threaded process, which a fork of the threaded CLI is not.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__init") {
        std::process::exit(mocker::runtime::init::main());
    }
    std::process::exit(cli::run());
}
