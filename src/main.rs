//! The `vipgate` command line: parses arguments and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a configuration that was refused (distinct from runtime failures).
const EXIT_BAD_CONFIG: u8 = 2;
/// `status`: a VIP no node owns (or two do), a pool without an available backend.
const EXIT_PROBLEMS: u8 = 1;
/// `status`: an admin listener could not be read.
const EXIT_UNREACHABLE: u8 = 3;

#[derive(Parser)]
#[command(
    name = "vipgate",
    version,
    about = "Own a virtual IP on the LAN and route the HTTP that arrives at it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Announce the VIPs and serve the listeners until SIGTERM or SIGINT.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration and print the effective routing table.
    Check {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Convert Istio Gateway, VirtualService and DestinationRule YAML (and the MetalLB
    /// LoadBalancer Service) into vipgate TOML on stdout; warnings on stderr name every field
    /// that is not carried over.
    ImportIstio {
        /// YAML files; each may hold several documents separated by `---`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The VIP to own (default: the LoadBalancer Service's IP).
        #[arg(long)]
        vip: Option<std::net::Ipv4Addr>,
        /// The LAN interface that answers ARP for the VIP.
        #[arg(long)]
        interface: Option<String>,
        /// Backend addresses of a Kubernetes service: NAME[.NAMESPACE][/SUBSET]=IP[:PORT],…
        /// (a port-less address takes the route's destination port). Repeatable.
        #[arg(long = "backend", value_name = "NAME=IP:PORT,...")]
        backends: Vec<vipgate::istio::BackendMap>,
        /// The cluster's DNS domain, for the service names written as backends
        /// (NAME.NAMESPACE.svc.DOMAIN:PORT).
        #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
        cluster_domain: String,
    },
    /// Show a running daemon's VIPs, listeners, routes, pools, certificates and reloads from
    /// its admin listener; exit 1 when a VIP is owned by no node it can see (or, with several
    /// --admin, by two) or a pool has no available backend, 3 when an admin listener cannot
    /// be read.
    Status {
        /// The admin listener ([admin] bind). Repeat it for every node of a VRRP group to
        /// check that exactly one owns each VIP.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
        admin: Vec<std::net::SocketAddr>,
        /// Print JSON: {"nodes": [{"admin", "status"}], "problems": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Remove what a crashed `run` left for the configuration's VIPs (their local routes).
    Release {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match vipgate::config::load(&config) {
            Ok(cfg) => {
                // Backend names are looked up as `run` would: one that does not resolve is a
                // warning, since the daemon starts without it and fills the pool later.
                let runtime = match runtime(None) {
                    Ok(r) => r,
                    Err(code) => return code,
                };
                let (text, warnings) = runtime.block_on(vipgate::daemon::check(&cfg));
                print!("{text}");
                for w in warnings {
                    eprintln!("{}: warning: {w}", config.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Run { config } => {
            let cfg = match vipgate::config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            vipgate::telemetry::init(&cfg.log.level);
            // Per core, the daemon's own thread is the first worker (`proxy::workers` starts
            // the others); shared, one multi-thread runtime runs everything.
            let threads = match cfg.proxy.runtime {
                vipgate::config::RuntimeKind::PerCore => None,
                vipgate::config::RuntimeKind::Shared => Some(cfg.proxy.worker_threads),
            };
            let runtime = match runtime(threads) {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match runtime.block_on(vipgate::daemon::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e.into()),
            }
        }
        Command::ImportIstio {
            files,
            vip,
            interface,
            backends,
            cluster_domain,
        } => {
            let mut sources = Vec::with_capacity(files.len());
            for f in &files {
                match std::fs::read_to_string(f) {
                    Ok(text) => sources.push(vipgate::istio::Source {
                        name: f.display().to_string(),
                        text,
                    }),
                    Err(e) => {
                        eprintln!("{}: error: cannot read the file: {e}", f.display());
                        return ExitCode::from(EXIT_BAD_CONFIG);
                    }
                }
            }
            let opts = vipgate::istio::Options {
                vip,
                interface,
                backends,
                cluster_domain: Some(cluster_domain),
            };
            match vipgate::istio::import(&sources, &opts) {
                Ok(out) => {
                    for w in &out.warnings {
                        eprintln!("warning: {w}");
                    }
                    print!("{}", out.toml);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
        Command::Status { admin, json } => {
            let mut nodes = Vec::with_capacity(admin.len());
            for addr in admin {
                match vipgate::daemon::status::fetch(addr) {
                    Ok(s) => nodes.push((addr.to_string(), s)),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_UNREACHABLE);
                    }
                }
            }
            let (text, problems) = vipgate::daemon::status::report(&nodes, json);
            print!("{text}");
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_PROBLEMS)
            }
        }
        Command::Release { config } => {
            let cfg = match vipgate::config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            let runtime = match runtime(None) {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match runtime.block_on(vipgate::daemon::release(&cfg)) {
                Ok(released) => {
                    for (vip, removed) in released {
                        if removed {
                            println!("{vip}: removed the local route a previous run left");
                        } else {
                            println!("{vip}: nothing to release");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e.into()),
            }
        }
    }
}

/// A multi-thread runtime with `workers` threads (`Some(0)`: one per CPU), or a
/// current-thread one (`None`: one-shot commands, and the first worker of a per-core daemon).
fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut b = match workers {
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 0 {
                b.worker_threads(n);
            }
            b
        }
        None => tokio::runtime::Builder::new_current_thread(),
    };
    b.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Print an error with its causes on one line.
fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!(
        "error: {}",
        e.chain()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ")
    );
    ExitCode::FAILURE
}
