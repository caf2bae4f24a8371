//! Command line (the contract in DESIGN.md).

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::model::config::Format;

/// The crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit built (`build.rs`: `CH_EDGE_PROXY_COMMIT`, else git, else `unknown`).
pub const COMMIT: &str = env!("CH_EDGE_PROXY_COMMIT");
/// Optional features compiled in: `k8s` (Kubernetes discovery) or `none`.
pub const FEATURES: &str = env!("CH_EDGE_PROXY_FEATURES");

/// Where `run` and `check` read the configuration unless told otherwise.
pub const CONFIG_ENV: &str = "CH_EDGE_PROXY_CONFIG";

/// What `run --help` says about signals (the README's "Signals" says the same).
const SIGNALS: &str = "\
Signals:
  SIGHUP           reload the configuration (also reloaded on file changes)
  SIGTERM, SIGINT  drain: stop accepting, wait for open connections (timeouts.drain), exit 0
  second TERM/INT  exit at once without waiting for the drain (exit 1)
  SIGUSR1, SIGUSR2 ignored (logged at most once a minute); they never stop the proxy
  SIGPIPE          ignored (a peer that went away is an error on that connection only)";

#[derive(Debug, Parser)]
#[command(
    name = "ch-edge-proxy",
    version = env!("CH_EDGE_PROXY_LONG_VERSION"),
    about = "L4 edge proxy for ClickHouse: PROXY protocol in, SNI routing, per-route allowlists, PROXY protocol out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    #[command(after_help = SIGNALS)]
    Run {
        /// The configuration file.
        #[arg(long, env = CONFIG_ENV, default_value = "config/ch-edge-proxy.yaml")]
        config: PathBuf,
    },
    /// Validate the config and every route file; print a summary; exit 1 on error.
    Check {
        /// The configuration file.
        #[arg(long, env = CONFIG_ENV, default_value = "config/ch-edge-proxy.yaml")]
        config: PathBuf,
    },
    /// Generate route files.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Print a shell completion script to stdout, e.g.
    /// `ch-edge-proxy completions bash > /etc/bash_completion.d/ch-edge-proxy`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
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
        /// YAML manifests (multi-document and `kind: List` accepted); `-` is standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// The completion script for `shell` (made in memory: clap_complete panics on a failed write,
/// and `completions bash | head` closes the pipe early).
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ch-edge-proxy", &mut script);
    script
}

/// Writes a command's output to stdout. A reader that stopped early (`| head`) ends the
/// command quietly, as it does for other Unix tools; another write error is reported.
pub fn write_stdout(bytes: &[u8]) -> std::process::ExitCode {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_names_commit_and_features() {
        let version = Cli::command().render_version();
        assert_eq!(
            version.trim(),
            format!("ch-edge-proxy {VERSION} (commit {COMMIT}, features: {FEATURES})")
        );
        assert_eq!(FEATURES, if cfg!(feature = "k8s") { "k8s" } else { "none" });
    }
}
