use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use telecmi_bridge::config::{Settings, Sources};
use telecmi_bridge::publish::spool::tools::SpoolCommand;
use telecmi_bridge::replay::{BadLine, ReplayError, ReplayOptions};
use telecmi_bridge::{Application, shutdown, telemetry};

/// jemalloc rather than glibc's malloc: allocation was a fifth of the bridge's CPU under load,
/// and jemalloc cut CPU per event by 15-20% at the same peak RSS (mimalloc: similar CPU, 30-40%
/// more RSS). Figures in docs/performance.md.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// TeleCMI call webhooks in, versioned envelopes out on Kafka topics by status.
#[derive(Parser)]
#[command(
    version,
    after_help = "Configuration: built-in defaults < config/default.toml < config/<profile>.toml < \
                  --config FILE < environment variables TELECMI_BRIDGE_<SECTION>__<KEY> (e.g. \
                  TELECMI_BRIDGE_SERVER__LISTEN=0.0.0.0:8081, \
                  TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS=broker:9092, \
                  TELECMI_BRIDGE_AUTH__TOKENS=<token>). `check-config` prints the result. Every \
                  key: docs/configuration.md."
)]
struct Cli {
    /// A TOML file layered over config/default.toml and the profile's file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Directory holding default.toml and <profile>.toml.
    #[arg(
        long,
        global = true,
        env = "TELECMI_BRIDGE_CONFIG_DIR",
        default_value = "config"
    )]
    config_dir: PathBuf,
    /// Profile whose file is layered over default.toml (e.g. `production`).
    #[arg(long, global = true, env = "TELECMI_BRIDGE_PROFILE")]
    profile: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// Receive webhooks and publish them (the default).
    Serve,
    /// Print the effective configuration, secrets redacted; fail on invalid configuration.
    CheckConfig,
    /// Compare TeleCMI's call records with the CDRs in Kafka and report the missing ones.
    Reconcile(telecmi_bridge::reconcile::ReconcileArgs),
    /// Publish webhook payloads from a JSON-lines file (one payload, or one envelope the bridge
    /// published, per line) through the webhook's pipeline to Kafka, in file order.
    Replay {
        /// The JSON-lines file.
        file: PathBuf,
        /// Publish the good lines and report the bad ones (default: publish nothing if any line
        /// is bad).
        #[arg(long)]
        skip_bad_lines: bool,
        /// Check every line and report; publish nothing.
        #[arg(long)]
        dry_run: bool,
        /// The first line to publish (1-based), to resume a replay that stopped.
        #[arg(long, default_value_t = 1)]
        from_line: usize,
    },
    /// Inspect, export or drain a stopped instance's spool file.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = Sources {
        config_dir: cli.config_dir,
        profile: cli.profile,
        file: cli.config,
    };
    let settings = match Settings::load(&sources) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("telecmi-bridge: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            for warning in settings.warnings() {
                eprintln!("telecmi-bridge: warning: {warning}");
            }
            print!("{}", settings.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Command::Serve => serve(settings),
        Command::Reconcile(args) => telecmi_bridge::reconcile::cli::main(settings, &args),
        Command::Replay {
            file,
            skip_bad_lines,
            dry_run,
            from_line,
        } => replay(
            &settings,
            &ReplayOptions {
                file,
                skip_bad_lines,
                dry_run,
                from_line,
            },
        ),
        Command::Spool { command } => {
            telecmi_bridge::publish::spool::tools::run(&settings, command)
        }
    }
}

fn replay(settings: &Settings, options: &ReplayOptions) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let report_bad = |bad: &[BadLine]| {
        for line in bad {
            eprintln!("{}:{}: {}", options.file.display(), line.line, line.reason);
        }
    };
    match runtime.block_on(telecmi_bridge::replay::replay(settings, options)) {
        Ok(summary) => {
            report_bad(&summary.bad_lines);
            let verb = if options.dry_run {
                "would publish"
            } else {
                "published"
            };
            let count = if options.dry_run {
                summary.events - summary.bad_lines.len()
            } else {
                summary.published
            };
            println!(
                "{verb} {count} of {} events; {} bad line(s) skipped",
                summary.events,
                summary.bad_lines.len()
            );
            for (topic, events) in &summary.by_topic {
                println!("  {topic}: {events}");
            }
            ExitCode::SUCCESS
        }
        Err(ReplayError::BadLines(bad)) => {
            report_bad(&bad);
            eprintln!("telecmi-bridge: {}", ReplayError::BadLines(bad));
            ExitCode::from(3)
        }
        Err(error) => {
            eprintln!("telecmi-bridge: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime. Unless `TOKIO_WORKER_THREADS` says otherwise, it leaves one core to
/// librdkafka's own threads (one per broker sends and reads every produce request, another
/// serves delivery reports), which otherwise contend with the workers for every event: on two
/// cores, one worker instead of two cut CPU per event by a fifth at 256 connections
/// (docs/performance.md).
fn runtime() -> Option<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    builder
        .build()
        .inspect_err(|error| eprintln!("telecmi-bridge: cannot start the async runtime: {error}"))
        .ok()
}

fn serve(settings: Settings) -> ExitCode {
    telemetry::init(&settings.logging);
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let outcome = runtime.block_on(async {
        Application::build(settings)
            .await?
            .run_until_stopped(shutdown::signal())
            .await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "telecmi-bridge stopped");
            eprintln!("telecmi-bridge: {error}");
            ExitCode::FAILURE
        }
    }
}
