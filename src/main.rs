//! The `mocker` command line: parses arguments, calls the library, prints.

mod cli;

fn main() {
    // `start` and `exec` re-execute mocker (from a protected binary) as a fresh,
    // single-threaded process, which a fork of the threaded CLI is not.
    match std::env::args_os().nth(1).as_ref().and_then(|a| a.to_str()) {
        Some("__monitor") => std::process::exit(mocker::container::monitor::main()),
        Some("__exec") => std::process::exit(mocker::runtime::exec::main()),
        Some("__thaw-watch") => std::process::exit(mocker::container::pause::watch_main()),
        _ => {}
    }
    std::process::exit(cli::run());
}
