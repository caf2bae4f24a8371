use std::process::ExitCode;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;

use ch_edge_proxy::model::config;
use ch_edge_proxy::runtime::control::server::AdminSocket;
use ch_edge_proxy::runtime::control::server::Server;
use ch_edge_proxy::runtime::observe::Observer as _;
use ch_edge_proxy::runtime::table::RouteTable;
use ch_edge_proxy::runtime::upstream::resolve::Resolver;
use ch_edge_proxy::runtime::workers;
use ch_edge_proxy::surface::access_log::{self, AccessLog};
use ch_edge_proxy::surface::cli::{self, Cli, Command, RoutesCommand};
use ch_edge_proxy::surface::{admin, from_chi, log_sink, log_text, metrics, signals};
use ch_edge_wire::proxy_in::ProxyInMode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config } => run(&config),
        Command::Routes {
            command:
                RoutesCommand::FromChi {
                    domain,
                    namespace,
                    format,
                    files,
                },
        } => routes_from_chi(&domain, &namespace, format, &files),
        Command::Completions { shell } => cli::write_stdout(&cli::completions(shell)),
    }
}

fn routes_from_chi(
    domain: &str,
    namespace: &str,
    format: config::Format,
    files: &[std::path::PathBuf],
) -> ExitCode {
    match from_chi::generate(files, namespace, domain, format) {
        Ok(out) => {
            for note in out.notes {
                eprintln!("note: {note}");
            }
            cli::write_stdout(out.text.as_bytes())
        }
        Err(failed) => {
            for note in failed.notes {
                eprintln!("note: {note}");
            }
            eprintln!("error: {}", failed.error);
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let result = config::load(path).and_then(|cfg| {
        // Build the table too: it is what `run` would do with this config.
        RouteTable::build(&cfg.routes, &cfg.defaults, &Resolver::default())
            .map_err(|e| config::ConfigError::route_table(&path.display().to_string(), &e))?;
        Ok(cfg)
    });
    match result {
        Ok(cfg) => cli::write_stdout(format!("{}config OK\n", config::summary(&cfg)).as_bytes()),
        Err(error) => {
            print_problems(&error);
            ExitCode::FAILURE
        }
    }
}

/// Each problem names its own file: one line each, then the count.
fn print_problems(error: &config::ConfigError) {
    for problem in error.problems() {
        eprintln!("error: {problem}");
    }
    if let [_, _, ..] = error.problems() {
        eprintln!("{} configuration errors", error.problems().len());
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    signals::ignore_user_signals();
    access_log::init_logging();
    metrics::metrics_handle();
    let code = serve(path);
    // Every line logged up to here is written before the process ends.
    log_sink::flush();
    code
}

fn serve(path: &std::path::Path) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(error) => {
            if let Some(format) = log_format_hint(path) {
                log_text::set_format(format);
            }
            tracing::error!(config = %path.display(), error = %error, "invalid configuration");
            print_problems(&error);
            return ExitCode::FAILURE;
        }
    };
    // Connections run on the worker threads, one single-threaded runtime each; this thread's
    // runtime is the control plane's (reloads, discovery, admin, parking).
    let started = workers::wanted().and_then(|n| workers::start(n).map_err(|e| e.to_string()));
    if let Err(error) = started {
        eprintln!("error: cannot start the worker threads: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Installed before binding: from here on SIGHUP no longer kills us.
        let hangup = signals::Hangup::install();
        signals::log_user_signals();
        let access_log = Arc::new(AccessLog::default());
        // The configured log format from the first line on (the reload applies it again).
        access_log.configured(&cfg.log);
        let starting = Startup::of(path, &cfg);
        let mut server = match Server::bind(cfg, access_log.clone()).await {
            Ok(s) => s,
            Err(error) => {
                tracing::error!(error = %error, "cannot start");
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(metrics::upkeep());
        let ticking = access_log.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                every.tick().await;
                ticking.tick();
            }
        });
        let admin = server.take_admin();
        starting.log(&server.listener_addrs(), &admin);
        // Serves while the proxy drains, so `/readyz` can report it; ends with the process.
        for socket in admin {
            tokio::spawn(admin::serve(socket, server.handle()));
        }
        hangup.reload(server.handle());
        let (first_signal, mut more_signals) = signals::termination();
        let run = server.run(first_signal);
        tokio::pin!(run);
        let code = tokio::select! {
            () = &mut run => ExitCode::SUCCESS,
            _ = more_signals.recv() => {
                tracing::warn!("second signal: exiting without waiting for the drain");
                ExitCode::FAILURE
            }
        };
        access_log.finish();
        code
    })
}

/// `log.format` of a configuration that failed to load, if it can still be read: the error line
/// is then written in the format the operator asked for.
fn log_format_hint(path: &std::path::Path) -> Option<config::LogFormat> {
    #[derive(serde::Deserialize)]
    struct Peek {
        log: Option<PeekLog>,
    }
    #[derive(serde::Deserialize)]
    struct PeekLog {
        format: Option<String>,
    }
    let text = std::fs::read_to_string(path).ok()?;
    let peek: Peek = serde_saphyr::from_str(&text).ok()?;
    peek.log?.format?.parse().ok()
}

/// What the startup line says about the configuration (taken before `Server::bind` consumes it).
struct Startup {
    config: String,
    config_path: String,
    /// Per listener: name and PROXY-in mode, in config order.
    listeners: Vec<(String, ProxyInMode)>,
    routes: usize,
}

impl Startup {
    fn of(path: &std::path::Path, cfg: &config::Config) -> Startup {
        Startup {
            config: path.display().to_string(),
            config_path: std::path::absolute(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
                .to_string(),
            listeners: cfg
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.proxy_protocol.mode))
                .collect(),
            routes: cfg.routes.len(),
        }
    }

    /// One line with the version, the config, the bound listeners and admin addresses and the
    /// route count: what an operator checks first when something does not answer.
    fn log(self, bound: &[(String, SocketAddr)], admin: &[AdminSocket]) {
        let listeners = self
            .listeners
            .iter()
            .map(|(name, proxy)| {
                let address = bound
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or_else(|| "?".to_owned(), |(_, a)| a.to_string());
                format!("{name}={address} (tls, PROXY {proxy})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let admin = admin
            .iter()
            .map(|a| {
                let address = a
                    .listener
                    .local_addr()
                    .map_or_else(|_| "?".to_owned(), |a| a.to_string());
                let serve: Vec<_> = a.serve.iter().map(|e| e.keyword()).collect();
                format!("{address} ({})", serve.join(","))
            })
            .collect::<Vec<_>>()
            .join(", ");
        tracing::info!(
            version = cli::VERSION,
            commit = cli::COMMIT,
            features = cli::FEATURES,
            config = self.config,
            config_path = self.config_path,
            listeners,
            routes = self.routes,
            admin = if admin.is_empty() { "none" } else { &admin },
            "ch-edge-proxy starting"
        );
    }
}
