//! The `maas-flow` command: parse flags, load and validate the configuration, start
//! the controller (or the demo), and stop gracefully on SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

// mimalloc: list parsing allocates per machine; it is ~10% faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};
use maas_flow::config::{self, Sources};

#[derive(Parser, Debug)]
#[command(name = "maas-flow", version, about = "Drives MAAS machines to deployed and provisioned.", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (the default).
    Run,
    /// Run against the built-in MAAS simulator with a sample rack, then exit.
    #[cfg(feature = "sim")]
    Demo {
        /// Extra New machines on top of the sample rack.
        #[arg(long, default_value_t = 0)]
        machines: usize,
        /// Give up after this long.
        #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Validate the configuration, print it (API key masked), and exit.
    CheckConfig {
        /// Print which deploy profile a machine would get: `HOSTNAME[,TAG...]`, where
        /// `zone=NAME` and `pool=NAME` items give its zone and pool (default `default`).
        /// Repeatable.
        #[arg(long, value_name = "HOSTNAME[,TAG...]")]
        explain: Vec<String>,
    },
    /// Ask a running maas-flow: the summary, or one machine's history, next step and
    /// last error.
    Status {
        /// A machine's hostname or system_id; omit for the summary.
        machine: Option<String>,
        /// The status listener's URL (default: from --listen, MAAS_FLOW_HTTP__LISTEN,
        /// the configuration file, or 127.0.0.1:9090).
        #[arg(long)]
        url: Option<String>,
        /// Only check that the process answers /healthz (exit 0) - the container
        /// health check.
        #[arg(long)]
        health: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `maas-flow man > maas-flow.1`.
    Man,
}

/// Flags override the file and the environment. The original tool's single-dash
/// spellings (`-maas`, `-apiKey`, `-apiVersion`, `-period`, `-filter`, `-preview`,
/// `-mappings`) are accepted too.
#[derive(Args, Debug, Default)]
struct Flags {
    /// TOML configuration file.
    #[arg(long, global = true, env = "MAAS_FLOW_CONFIG")]
    config: Option<PathBuf>,
    /// MAAS base URL, e.g. http://maas:5240/MAAS [maas.url].
    #[arg(long, global = true)]
    maas: Option<String>,
    /// API key consumer:token:secret [maas.api_key]; prefer a key file.
    #[arg(long, global = true, hide_env_values = true)]
    api_key: Option<String>,
    /// File holding the API key [maas.api_key_file].
    #[arg(long, global = true)]
    api_key_file: Option<String>,
    /// "2.0" or "1.0" [maas.api_version].
    #[arg(long, global = true)]
    api_version: Option<String>,
    /// Poll period, e.g. 15s [maas.period].
    #[arg(long, global = true)]
    period: Option<String>,
    /// Filter JSON or @file [filter.json].
    #[arg(long, global = true)]
    filter: Option<String>,
    /// MAC to hostname mappings JSON or @file [lifecycle.mappings].
    #[arg(long, global = true)]
    mappings: Option<String>,
    /// Rename in any state, not only New [lifecycle.always_rename].
    #[arg(long, global = true)]
    always_rename: bool,
    /// Log what would be done; send nothing that changes MAAS [preview].
    #[arg(long, global = true)]
    preview: bool,
    /// "deployed" or "ready" [lifecycle.target].
    #[arg(long, global = true)]
    target: Option<String>,
    /// Series to deploy, e.g. jammy [lifecycle.distro_series].
    #[arg(long, global = true)]
    distro_series: Option<String>,
    /// Post-deploy script [provision.script].
    #[arg(long, global = true)]
    provision_script: Option<String>,
    /// Post-deploy HTTP provisioner [provision.url].
    #[arg(long, global = true)]
    provision_url: Option<String>,
    /// Status listener address [http.listen].
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Log level or filter [log.level].
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// "text" or "json" [log.format].
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// etcd endpoint for leader election; repeatable; sets ha.backend = "etcd" [ha.etcd_endpoints].
    #[arg(long = "ha-etcd", value_name = "URL", global = true)]
    ha_etcd: Vec<String>,
    /// Election name, one per MAAS region [ha.election].
    #[arg(long, value_name = "NAME", global = true)]
    ha_election: Option<String>,
}

impl Flags {
    fn overrides(&self) -> Vec<(String, String)> {
        let mut o = Vec::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                o.push((k.to_string(), v.clone()));
            }
        };
        put("maas.url", &self.maas);
        put("maas.api_key", &self.api_key);
        put("maas.api_key_file", &self.api_key_file);
        put("maas.api_version", &self.api_version);
        put("maas.period", &self.period);
        put("filter.json", &self.filter);
        put("lifecycle.mappings", &self.mappings);
        put("lifecycle.target", &self.target);
        put("lifecycle.distro_series", &self.distro_series);
        put("provision.script", &self.provision_script);
        put("provision.url", &self.provision_url);
        put("http.listen", &self.listen);
        put("log.level", &self.log_level);
        put("log.format", &self.log_format);
        put("ha.election", &self.ha_election);
        if !self.ha_etcd.is_empty() {
            o.push(("ha.backend".into(), "etcd".into()));
            o.push(("ha.etcd_endpoints".into(), self.ha_etcd.join(",")));
        }
        if self.always_rename {
            o.push(("lifecycle.always_rename".into(), "true".into()));
        }
        if self.preview {
            o.push(("preview".into(), "true".into()));
        }
        o
    }
}

/// Rewrite the original tool's Go-style flags (`-apiKey X`) to ours (`--api-key X`).
fn legacy_args(args: impl Iterator<Item = String>) -> Vec<String> {
    const MAP: &[(&str, &str)] = &[
        ("maas", "--maas"),
        ("apiKey", "--api-key"),
        ("apiVersion", "--api-version"),
        ("period", "--period"),
        ("filter", "--filter"),
        ("preview", "--preview"),
        ("mappings", "--mappings"),
        ("always-rename", "--always-rename"),
    ];
    args.map(|a| {
        if let Some(rest) = a.strip_prefix('-').filter(|r| !r.starts_with('-')) {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            };
            if let Some((_, long)) = MAP.iter().find(|(n, _)| *n == name) {
                return match value {
                    Some(v) => format!("{long}={v}"),
                    None => long.to_string(),
                };
            }
        }
        a
    })
    .collect()
}

fn init_logging(level: &str, format: &str) {
    let format = if format == "json" {
        maas_flow::logging::Format::Json
    } else {
        maas_flow::logging::Format::Text
    };
    maas_flow::logging::init(level, format);
}

/// Flags that only the controller honours. `demo` runs against its own simulator with
/// its own timings, so it refuses these rather than silently applying them (`--maas`
/// would send it away from its simulator) or silently ignoring them.
#[cfg(feature = "sim")]
const CONTROLLER_ONLY: &[&str] = &[
    "config",
    "maas",
    "api_key",
    "api_key_file",
    "api_version",
    "period",
    "filter",
    "mappings",
    "always_rename",
    "preview",
    "provision_script",
    "provision_url",
];

/// The first controller-only flag given on the command line, as the user would type it.
#[cfg(feature = "sim")]
fn controller_flag_given(m: &clap::ArgMatches) -> Option<String> {
    use clap::parser::ValueSource;
    let sub = m.subcommand().map(|(_, s)| s);
    CONTROLLER_ONLY.iter().find_map(|id| {
        let given = [Some(m), sub].into_iter().flatten().any(|mm| {
            mm.try_get_raw(id).ok().flatten().is_some()
                && mm.value_source(id) == Some(ValueSource::CommandLine)
        });
        given.then(|| format!("--{}", id.replace('_', "-")))
    })
}

/// The listener address `status` asks: `--listen`, else the environment and file as the
/// controller would read them (without needing the API key), else the default.
fn status_listen(flags: &Flags, overrides: Vec<(String, String)>) -> String {
    if let Some(l) = &flags.listen {
        return l.clone();
    }
    config::load_settings(&Sources::from_process(flags.config.clone(), overrides))
        .map(|s| s.http.listen)
        .ok()
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "127.0.0.1:9090".into())
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches_from(legacy_args(std::env::args()));
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let overrides = cli.flags.overrides();
    match cli.command.unwrap_or(Command::Run) {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "maas-flow",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("maas-flow: cannot write the manual page: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status {
            machine,
            url,
            health,
        } => {
            let listen = status_listen(&cli.flags, overrides);
            let req = maas_flow::status_cli::StatusRequest {
                base: maas_flow::status_cli::base_url(url.as_deref(), &listen),
                machine,
                health,
            };
            match actix_rt::System::new().block_on(maas_flow::status_cli::run(&req)) {
                Ok(text) => {
                    if !health {
                        print!("{text}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("maas-flow status: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "sim")]
        Command::Demo { machines, timeout } => {
            if let Some(flag) = controller_flag_given(&matches) {
                eprintln!("maas-flow demo: {flag} is a controller flag; the demo runs against its own simulator and does not honour it (drop it, or use `maas-flow run`)");
                return ExitCode::from(2);
            }
            let level = cli.flags.log_level.clone().unwrap_or_else(|| "warn".into());
            let level = match config::log_filter(&level) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("maas-flow: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&level, cli.flags.log_format.as_deref().unwrap_or("text"));
            let code = actix_rt::System::new().block_on(maas_flow::demo::run(
                maas_flow::demo::DemoOptions {
                    extra_machines: machines,
                    timeout,
                    overrides: overrides
                        .into_iter()
                        .filter(|(k, _)| !k.starts_with("log."))
                        .collect(),
                },
            ));
            ExitCode::from(code as u8)
        }
        cmd => {
            let cfg =
                match config::load(&Sources::from_process(cli.flags.config.clone(), overrides)) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("maas-flow: {e}");
                        return ExitCode::from(2);
                    }
                };
            if let Command::CheckConfig { explain } = &cmd {
                for w in &cfg.warnings {
                    eprintln!("warning: {w}");
                }
                if !explain.is_empty() {
                    for e in explain {
                        let ex = maas_flow::profile::Example::parse(e);
                        print!("{}", cfg.profiles.explain(&ex));
                    }
                    return ExitCode::SUCCESS;
                }
                print!("{}", cfg.render());
                println!("# configuration is valid");
                return ExitCode::SUCCESS;
            }
            init_logging(&cfg.settings.log.level, &cfg.settings.log.format);
            actix_rt::System::new().block_on(serve(cfg))
        }
    }
}

async fn serve(cfg: config::Config) -> ExitCode {
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let s = &cfg.settings;
    tracing::info!(
        maas = %cfg.maas_base, api_version = %cfg.api_version, api_key = %cfg.api_key,
        period = ?s.maas.period, lifecycle_target = ?cfg.target, preview = s.preview,
        filter = %serde_json::to_string(cfg.filter.spec()).unwrap_or_default(),
        provisioner = %cfg.provisioner, max_ops_in_flight = s.limits.max_ops_in_flight,
        "maas-flow starting"
    );
    if let Some(ha) = &cfg.ha {
        return match maas_flow::ha::replica::serve(&cfg, ha).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(1)
            }
        };
    }
    let grace = s.shutdown_grace;
    let ctrl = tokio::select! {
        c = maas_flow::run::start(&cfg) => match c {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(1);
            }
        },
        sig = maas_flow::shutdown::signal() => {
            tracing::info!(signal = sig, "stopping before start-up finished");
            return ExitCode::SUCCESS;
        }
    };
    let progress_board = ctrl.board.clone();
    let period = s.maas.period.max(Duration::from_secs(10));
    actix_rt::spawn(async move {
        let mut last = String::new();
        loop {
            actix_rt::time::sleep(period * 2).await;
            let line = progress_board.progress_line();
            if line != last {
                tracing::info!("progress: {line}");
                last = line;
            }
        }
    });
    let sig = maas_flow::shutdown::signal().await;
    tracing::info!(signal = sig, grace = ?grace, "stopping: no new polls, waiting for operations in flight");
    let left = maas_flow::shutdown::drain(&ctrl, grace).await;
    if left > 0 {
        tracing::warn!(
            in_flight = left,
            "grace period over; abandoning operations in flight"
        );
    }
    ctrl.stop_http().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
