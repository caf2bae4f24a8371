//! Command line (the contract in DESIGN.md).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ch-edge-proxy",
    version,
    about = "L4 edge proxy for ClickHouse: PROXY protocol in, SNI routing, per-route allowlists, PROXY protocol out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run {
        #[arg(long, default_value = "config/ch-edge-proxy.yaml")]
        config: PathBuf,
    },
    /// Validate the config and every route file; print a summary; exit 1 on error.
    Check {
        #[arg(long, default_value = "config/ch-edge-proxy.yaml")]
        config: PathBuf,
    },
}
