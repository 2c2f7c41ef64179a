//! `synapse-token-auth`: the verifier daemon and the admin's command line.
//!
//! Only dispatch lives here; each subcommand is a file in `cli/`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
