//! The `voiceprint` command line: server, client and offline tools over the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
