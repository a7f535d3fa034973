//! The `wardwatch` command.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wardwatch_adapters::launch::serve_main_up;
use wardwatch_runtime::{Backend, Config, Metrics, Secret};

#[derive(Parser)]
#[command(
    name = "wardwatch",
    version,
    about = "Admissions, lab results and the alerts they demand"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Serve {
    /// Address to listen on [default: 127.0.0.1:8080, or LISTEN / PORT from the environment]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Redis URL (redis://host:6379): keep state in Redis, in Dapr's layout [env: REDIS_URL]
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// RabbitMQ URL (amqp://user:pass@host:5672/%2f): queues instead of the in-process bus [env: AMQP_URL]
    #[arg(long, value_name = "URL")]
    amqp: Option<String>,
    /// Also take HL7 v2 over MLLP/TCP on this address (e.g. 0.0.0.0:2575): ADT to admit, ORU^R01
    /// to the lab feed, each answered with its ACK [env: MLLP_LISTEN]
    #[arg(long, value_name = "ADDR")]
    mllp: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every function and the ward board in one process (embedded unless given URLs).
    Up(Serve),
    /// `up`, plus a synthetic hospital (made-up patients, admissions, transfers, discharges and
    /// laboratory results, some critical) sent through the same HTTP paths as real traffic.
    Demo {
        #[command(flatten)]
        serve: Serve,
        /// The synthetic hospital's seed: the same seed, the same day
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Milliseconds between two events of the synthetic hospital
        #[arg(long, default_value_t = 2000, value_name = "MS")]
        every: u64,
    },
    /// Put deliveries refused for good (kept in the state store, listed at GET /api/rejected)
    /// back on their lane, once what refused them is fixed. Needs the shared state and bus
    /// (REDIS_URL and AMQP_URL, or Dapr); an embedded `up` replays with
    /// POST /api/rejected/<handle>/replay.
    ReplayRejected {
        /// The handle of one rejected delivery
        #[arg(long, value_name = "HANDLE", conflicts_with = "all", required_unless_present = "all")]
        id: Option<String>,
        /// Every kept rejected delivery, oldest first
        #[arg(long)]
        all: bool,
        /// Redis URL [env: REDIS_URL]
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
        /// RabbitMQ URL [env: AMQP_URL]
        #[arg(long, value_name = "URL")]
        amqp: Option<String>,
    },
}

/// The command line's service URLs over the environment's.
fn with_urls(c: &mut Config, redis: Option<String>, amqp: Option<String>) {
    if let Some(url) = redis {
        c.redis_url = Some(Secret::new(url));
        c.state = Backend::Direct;
    }
    if let Some(url) = amqp {
        c.amqp_url = Some(Secret::new(url));
        c.bus = Backend::Direct;
    }
}

/// `wardwatch replay-rejected`: reports what it replayed on stdout, one handle per line.
#[allow(clippy::print_stdout)] // the command's output, for its user and for scripts
fn replay(id: Option<String>, all: bool, redis: Option<String>, amqp: Option<String>) -> ExitCode {
    let config = Config::from_env().and_then(|mut c| {
        with_urls(&mut c, redis, amqp);
        c.validate_urls()?;
        Ok(c)
    });
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wardwatch replay-rejected: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(config.state, Backend::Memory) || matches!(config.bus, Backend::Memory) {
        eprintln!(
            "wardwatch replay-rejected: the rejected deliveries of an embedded `wardwatch up` live in its own memory. \
             Give --redis and --amqp (or REDIS_URL and AMQP_URL, or run beside Dapr), or POST /api/rejected/<handle>/replay \
             to the running process"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wardwatch replay-rejected: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(wardwatch_host::replay_rejected(config, id.as_deref())) {
        Ok(handles) => {
            for h in &handles {
                println!("replayed {h}");
            }
            if handles.is_empty() && all {
                println!("nothing to replay");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wardwatch replay-rejected: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let metrics = Metrics::new();
    let (
        Serve {
            listen,
            redis,
            amqp,
            mllp,
        },
        demo,
    ) = match Cli::parse().command {
        Command::ReplayRejected { id, all, redis, amqp } => return replay(id, all, redis, amqp),
        Command::Up(serve) => (serve, None),
        Command::Demo { serve, seed, every } => (serve, Some((seed, every.max(50)))),
    };
    // The environment first, then the command line over it.
    let config = Config::from_env().and_then(|mut c| {
        if let Some(l) = listen {
            c.listen = l;
        } else if !c.listen_from_env {
            c.listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        }
        with_urls(&mut c, redis, amqp);
        if mllp.is_some() {
            c.mllp_listen = mllp;
        }
        c.validate_urls()?;
        c.check()?;
        // The demo laboratory's HL7 v2 identifiers belong to the demo hospital's MRN system.
        if demo.is_some()
            && !c
                .identity
                .v2
                .iter()
                .any(|m| m.authority == wardwatch_host::demo::V2_AUTHORITY)
        {
            c.identity.v2.push(wardwatch_domain::identity::V2Mapping {
                authority: wardwatch_host::demo::V2_AUTHORITY.into(),
                type_code: None,
                system: wardwatch_host::demo::MRN_SYSTEM.into(),
            });
        }
        Ok(c)
    });
    // Beside the server: the demo's synthetic hospital (`up` runs the escalation ticker and the
    // MLLP listener).
    serve_main_up(
        "wardwatch",
        config,
        metrics,
        move |_, addr| async move {
            if let Some((seed, every)) = demo {
                wardwatch_host::demo::run(addr, seed, Duration::from_millis(every)).await;
            }
        },
        |wiring, listener, shutdown| Box::pin(wardwatch_host::up(wiring, listener, shutdown)),
    )
}
