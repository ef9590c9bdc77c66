//! `framecache`: thin binary. Sets up logging, parses arguments, runs, prints the error chain.

use clap::Parser;
use framecache_app::{bench, cli};

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FRAMECACHE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<bench::Interrupted>() => {
            eprintln!("interrupted: the report above covers what was measured");
            std::process::ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
