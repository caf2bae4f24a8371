//! Command line (the contract in DESIGN.md).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::model::config::Format;

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
    /// Generate route files.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Print a routes file (`routes: [...]`) for every ClickHouseInstallation (Altinity
    /// operator) and ClickHouseCluster (official operator) in FILEs.
    #[command(name = "from-manifests", visible_alias = "from-chi")]
    FromChi {
        /// Domain under which the SNI names live, e.g. ch.example.com.
        #[arg(long)]
        domain: String,
        /// Namespace of objects without metadata.namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Output format: yaml, or json for big tables (read much faster on reload).
        #[arg(long, default_value = "yaml")]
        format: Format,
        /// YAML manifests (multi-document and `kind: List` accepted).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}
