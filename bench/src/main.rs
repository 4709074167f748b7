//! The `strata-bench` binary: parses options, runs the benchmark, exits
//! non-zero if it could not run or any cell failed.

use std::process::ExitCode;

use clap::Parser;
use strata_bench::cli::Options;

fn main() -> ExitCode {
    let options = Options::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(strata_bench::run(options)) {
        Ok(rows) if rows.iter().any(|r| r.notes.starts_with("FAILED")) => {
            eprintln!("strata-bench: some cells failed (see the table)");
            ExitCode::FAILURE
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-bench: {e}");
            ExitCode::from(2)
        }
    }
}
