use std::process::ExitCode;

use clap::Parser;

use std::sync::Arc;

use ch_edge_proxy::model::config;
use ch_edge_proxy::runtime::resolve::{Resolver, RouteTable};
use ch_edge_proxy::runtime::server::Server;
use ch_edge_proxy::surface::access_log::{self, AccessLog};
use ch_edge_proxy::surface::cli::{Cli, Command, RoutesCommand};
use ch_edge_proxy::surface::{admin, from_chi, log_sink, metrics};

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
            print!("{}", out.text);
            ExitCode::SUCCESS
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
        Ok(cfg) => {
            print!("{}", config::summary(&cfg));
            println!("config OK");
            ExitCode::SUCCESS
        }
        Err(error) => {
            // Each problem names its own file: one line each, then the count.
            for problem in error.problems() {
                eprintln!("error: {problem}");
            }
            if let [_, _, ..] = error.problems() {
                eprintln!("{} configuration errors", error.problems().len());
            }
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
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
            tracing::error!(config = %path.display(), error = %error, "invalid configuration");
            eprintln!("error: {}: {error}", path.display());
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
        let access_log = Arc::new(AccessLog::default());
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
        // Serves while the proxy drains, so `/readyz` can report it; ends with the process.
        for socket in server.take_admin() {
            tokio::spawn(admin::serve(socket, server.handle()));
        }
        match hangup {
            Ok(mut hangup) => {
                let proxy = server.handle();
                tokio::spawn(async move {
                    while hangup.recv().await.is_some() {
                        tracing::info!(signal = "SIGHUP", "reload requested");
                        proxy.request_reload();
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
