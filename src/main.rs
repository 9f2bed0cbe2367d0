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
        /// Also list the machines once (a read-only GET) and print how many each filter
        /// pattern matches.
        #[arg(long)]
        list: bool,
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

/// Flags override the file and the environment. The original tool's Go flags
/// (`-maas`, `-apikey`/`-apiKey`, `-apiVersion`, `-period`, `-filter`, `-preview`,
/// `-mappings`, `-always-rename`, `-verbose`) are accepted too.
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

/// Rewrite the original tool's Go-style flags (`-apikey X`) to ours (`--api-key X`).
///
/// As Go's `flag` package parses them (opencord/maas `automation/maas-flow.go` before
/// envconfig): one or two dashes, `-name value` or `-name=value`, and boolean flags take
/// `=value` in `strconv.ParseBool`'s spellings (`-always-rename=false`). The Go tool's
/// key flag was `-apikey`; its README wrote `-apiKey`: both work. `-verbose` is debug
/// logging.
fn legacy_args(args: impl Iterator<Item = String>) -> Vec<String> {
    const VALUED: &[(&str, &str)] = &[
        ("maas", "--maas"),
        ("apikey", "--api-key"),
        ("apiKey", "--api-key"),
        ("apiVersion", "--api-version"),
        ("period", "--period"),
        ("filter", "--filter"),
        ("mappings", "--mappings"),
    ];
    const BOOLS: &[(&str, &[&str])] = &[
        ("preview", &["--preview"]),
        ("always-rename", &["--always-rename"]),
        ("verbose", &["--log-level", "debug"]),
    ];
    let mut out = Vec::new();
    for a in args {
        let rest = a
            .strip_prefix("--")
            .or_else(|| a.strip_prefix('-'))
            .filter(|r| !r.is_empty() && !r.starts_with('-'));
        let Some(rest) = rest else {
            out.push(a);
            continue;
        };
        let (name, value) = match rest.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (rest, None),
        };
        if let Some((_, long)) = VALUED.iter().find(|(n, _)| *n == name) {
            out.push(match value {
                Some(v) => format!("{long}={v}"),
                None => long.to_string(),
            });
        } else if let Some((_, ours)) = BOOLS.iter().find(|(n, _)| *n == name) {
            match value.map(maas_flow::legacy_env::parse_go_bool) {
                None | Some(Some(true)) => out.extend(ours.iter().map(|s| s.to_string())),
                Some(Some(false)) => {}
                // Not a Go boolean: leave it for clap to refuse, naming the flag.
                Some(None) => out.push(a),
            }
        } else {
            out.push(a);
        }
    }
    out
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
            let sources = Sources::from_process(cli.flags.config.clone(), overrides);
            let cfg = match config::load(&sources) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("maas-flow: {e}");
                    return ExitCode::from(2);
                }
            };
            // The key now lives in `cfg.api_key`; drop every copy from the environment so
            // no child (provisioning script, power helper) can inherit it.
            for var in maas_flow::legacy_env::KEY_VARS {
                std::env::remove_var(var);
            }
            if let Command::CheckConfig { list, explain } = &cmd {
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
                println!(
                    "# filter: each pattern is searched for in the name (^...$ for a whole name); zone= sent to MAAS: {}",
                    match cfg.filter.server_side_zones() {
                        Some(z) if cfg.api_version == maas_flow::maas::ApiVersion::V2 => z.join(", "),
                        _ => "none (filtered here)".into(),
                    }
                );
                if !list {
                    return ExitCode::SUCCESS;
                }
                return actix_rt::System::new().block_on(check_filter(cfg));
            }
            init_logging(&cfg.settings.log.level, &cfg.settings.log.format);
            actix_rt::System::new().block_on(serve(cfg, sources))
        }
    }
}

/// `check-config --list`: one read-only machine list, and what each pattern matches.
async fn check_filter(cfg: config::Config) -> ExitCode {
    let metrics = std::sync::Arc::new(maas_flow::metrics::Metrics::new());
    let client = maas_flow::run::client_for(&cfg, metrics);
    let req = client.api().list(&[]);
    let parsed = match client.call(&req, "list").await {
        Ok(body) => maas_flow::maas::parse_machine_list(&body, cfg.api_version),
        Err(e) => {
            eprintln!("maas-flow: cannot list the machines: {e}");
            return ExitCode::from(1);
        }
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("maas-flow: cannot list the machines: {e}");
            return ExitCode::from(1);
        }
    };
    let report = cfg.filter.report(
        parsed
            .machines
            .iter()
            .map(|m| (m.hostname.as_str(), m.zone_name())),
    );
    println!(
        "# filter selects {} of the {} machines MAAS lists now",
        report.selected, report.listed
    );
    for p in &report.patterns {
        println!("#   {} {:?}: {} machines", p.list, p.pattern, p.machines);
    }
    for p in report.unmatched() {
        eprintln!(
            "warning: filter pattern {:?} in {} matches none of the {} machines MAAS lists",
            p.pattern, p.list, report.listed
        );
    }
    ExitCode::SUCCESS
}

/// Run the controller until SIGTERM/SIGINT; SIGHUP reloads the configuration.
async fn serve(cfg: config::Config, sources: Sources) -> ExitCode {
    // Registered first: from here on a SIGHUP reloads instead of killing the process.
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; configuration reload disabled");
            None
        }
    };
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
    let cfg = cfg.clone();
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
    let mut running = cfg;
    let sig = loop {
        let hup = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            sig = maas_flow::shutdown::signal() => break sig,
            _ = hup => reload(&ctrl, &mut running, &sources),
        }
    };
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

/// SIGHUP: read the configuration again (file, environment, flags, and the `@file`s
/// they name). A valid one has its filter and concurrency limits applied at once;
/// sections that need a restart are named in the log. An invalid one is rejected and the running
/// configuration stays.
fn reload(ctrl: &maas_flow::run::Controller, running: &mut config::Config, sources: &Sources) {
    match config::load(sources) {
        Ok(new) => {
            let skipped = ctrl.reload(running, &new);
            tracing::info!(
                filter = %serde_json::to_string(new.filter.spec()).unwrap_or_default(),
                max_ops_in_flight = new.settings.limits.max_ops_in_flight,
                provision_max_concurrent = new.settings.provision.max_concurrent,
                "SIGHUP: configuration reloaded; filter and limits applied"
            );
            if !skipped.is_empty() {
                tracing::warn!(
                    sections = ?skipped,
                    "SIGHUP: these sections changed but need a restart; still running with their previous values"
                );
            }
            running.settings.limits.max_ops_in_flight = new.settings.limits.max_ops_in_flight;
            running.settings.provision.max_concurrent = new.settings.provision.max_concurrent;
            running.filter = new.filter;
            running.settings.filter = new.settings.filter;
        }
        Err(e) => tracing::error!(
            "SIGHUP: configuration rejected, still running with the previous one: {e}"
        ),
    }
}
