use std::process::ExitCode;

use clap::Parser;

use ch_edge_proxy::cli::{Cli, Command, RoutesCommand};
use ch_edge_proxy::{chi, config, resolve, route, server, telemetry};

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
                    files,
                },
        } => routes_from_chi(&domain, &namespace, &files),
    }
}

fn routes_from_chi(domain: &str, namespace: &str, files: &[std::path::PathBuf]) -> ExitCode {
    let mut routes = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(error) => {
                eprintln!("error: cannot read {}: {error}", file.display());
                return ExitCode::FAILURE;
            }
        };
        match chi::routes_from_manifests(&text, namespace, domain) {
            Ok(r) => routes.extend(r),
            Err(error) => {
                eprintln!("error: {}: {error:#}", file.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let out = chi::render_routes_yaml(&routes);
    // Read back as `include` would: catches SNI clashes between CHIs (and files).
    if let Err(error) = config::parse_routes_file(&out, "generated routes") {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    print!("{out}");
    ExitCode::SUCCESS
}

fn check(path: &std::path::Path) -> ExitCode {
    let result = config::load(path).and_then(|cfg| {
        // Build the table too: it is what `run` would do with this config.
        route::RouteTable::build(&cfg.routes, &cfg.defaults, &resolve::Resolver::default())?;
        Ok(cfg)
    });
    match result {
        Ok(cfg) => {
            print!("{}", config::summary(&cfg));
            println!("config OK");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}: {error:#}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    telemetry::init_logging();
    telemetry::metrics_handle();
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(error) => {
            tracing::error!(config = %path.display(), error = format!("{error:#}"), "invalid configuration");
            eprintln!("error: {}: {error:#}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let server = match server::Server::bind(cfg).await {
            Ok(s) => s,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot start");
                eprintln!("error: {error:#}");
                return ExitCode::FAILURE;
            }
        };
        match hangup {
            Ok(mut hangup) => {
                let shared = server.shared();
                tokio::spawn(async move {
                    while hangup.recv().await.is_some() {
                        tracing::info!(signal = "SIGHUP", "reload requested");
                        shared.request_reload();
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "cannot handle SIGHUP; reloading on file changes only")
            }
        }
        let (first_signal, mut more_signals) = signals();
        let run = server.run(first_signal);
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "proxy failed");
                    ExitCode::FAILURE
                }
            },
            _ = more_signals.recv() => {
                tracing::warn!("second signal: exiting without waiting for the drain");
                ExitCode::FAILURE
            }
        }
    })
}

/// The first SIGTERM/SIGINT starts the drain; a second one arrives on the
/// channel and ends the process at once.
fn signals() -> (
    impl std::future::Future<Output = ()>,
    tokio::sync::mpsc::Receiver<()>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let (more_tx, more_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        let mut first = Some(first_tx);
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            match first.take() {
                Some(tx) => {
                    tracing::info!(signal = name, "shutting down: draining connections");
                    let _ = tx.send(());
                }
                None => {
                    let _ = more_tx.try_send(());
                }
            }
        }
    });
    (
        async move {
            let _ = first_rx.await;
        },
        more_rx,
    )
}
