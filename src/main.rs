//! `panoptes`: network video recorder with real-time analytics.

use std::process::ExitCode;

fn main() -> ExitCode {
    panoptes::cli::main()
}
