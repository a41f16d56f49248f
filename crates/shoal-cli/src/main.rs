//! `shoal`: the one binary.
//!
//! - `start`: run a node ([`shoal_server::run`]).
//! - `init`: found the cluster through one node.
//! - `kv`: get / put / del / scan / del-range / txn through the SDK ([`kv`]; the
//!   transaction syntax of `kv txn` and the shell is parsed in [`txn`]).
//! - `node ls|status|drain|decommission|remove`, `range ls|lookup|split`: here.
//! - `demo`: a real local 3-node cluster ([`demo`]) and a shell on it ([`shell`]).
//! - `shell`: the shell on a running cluster (what `kubectl exec` opens).
//! - `sql`: a SQL shell over the Postgres protocol ([`sql`]).
//!
//! Exit codes: 0 on success, 1 when the operation failed (a missing key included,
//! with a message on stderr), 2 on a usage error.

mod demo;
mod kv;
mod shell;
mod sql;
mod txn;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use shoal_client::{Client, ClientOptions};

/// shoal: a replicated key-value database that runs natively in Kubernetes pods.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node.
    Start(Box<shoal_server::NodeConfig>),
    /// Found the cluster through one node: it and the peers of its --join list.
    Init(ClientArgs),
    /// Read and write keys.
    Kv {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        op: kv::KvCommand,
    },
    /// Cluster nodes.
    Node {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        op: NodeCommand,
    },
    /// The cluster's ranges.
    Range {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        op: RangeCommand,
    },
    /// Start a local 3-node cluster (real processes, real disks, real TCP) and open a
    /// shell on it.
    Demo(demo::DemoArgs),
    /// Open a shell on a running cluster (in a pod: `kubectl exec -it shoal-0 -- shoal
    /// shell`). Reads commands from stdin when it is not a terminal.
    Shell(ClientArgs),
    /// A SQL shell on a node's SQL server (in a pod: `kubectl exec -it shoal-0 -- shoal
    /// sql`); `-e` or statements on stdin run and exit.
    Sql(sql::SqlArgs),
}

#[derive(Debug, Subcommand)]
enum RangeCommand {
    /// List the ranges: id, span, epoch, replicas, leader, approximate size.
    Ls,
    /// The range holding KEY.
    Lookup { key: String },
    /// Split the range holding KEY at KEY (KEY starts the new right half).
    Split { key: String },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// List the cluster's nodes.
    Ls,
    /// Remove a node from the cluster (e.g. one whose disk was lost and that came back
    /// as a new node).
    Remove { node_id: u64 },
    /// Take a live node out of the cluster before removing its pod (scale-down): its
    /// replicas leave the range's membership (its leadership first moves away).
    Decommission { node_id: u64 },
    /// Status of the node at --host: identity, readiness, and its ranges.
    Status,
    /// Prepare the node at --host to stop: unready, new requests refused, leaderships
    /// moved to other nodes. It keeps running (SIGTERM does the same, then exits).
    Drain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Plain,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Node(s) to talk to (`host:port`, comma-separated).
    #[arg(
        long,
        env = "SHOAL_HOST",
        default_value = "127.0.0.1:7070",
        global = true,
        value_delimiter = ','
    )]
    pub host: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "plain", global = true)]
    pub format: Format,
    /// Give up after this many seconds (retries included).
    #[arg(long, default_value_t = 10.0, global = true)]
    pub timeout: f64,
}

impl ClientArgs {
    pub fn client(&self) -> anyhow::Result<Client> {
        if !(self.timeout > 0.0 && self.timeout.is_finite()) {
            anyhow::bail!("--timeout must be a positive number of seconds");
        }
        let t = Duration::from_secs_f64(self.timeout);
        let opts = ClientOptions {
            retry_deadline: t,
            request_timeout: t.min(Duration::from_secs(5)),
            ..Default::default()
        };
        Ok(Client::with_options(self.host.clone(), opts)?)
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let res = match cli.command {
        Command::Start(cfg) => {
            init_tracing("info");
            rt.block_on(shoal_server::run(*cfg))
                .map_err(anyhow::Error::from)
        }
        Command::Init(c) => {
            init_tracing("warn");
            rt.block_on(init(&c))
        }
        Command::Kv { client, op } => {
            init_tracing("warn");
            rt.block_on(kv::run(&client, op))
        }
        Command::Node { client, op } => {
            init_tracing("warn");
            match op {
                NodeCommand::Ls => rt.block_on(kv::node_ls(&client)),
                NodeCommand::Remove { node_id } => rt.block_on(kv::node_remove(&client, node_id)),
                NodeCommand::Decommission { node_id } => {
                    rt.block_on(kv::node_decommission(&client, node_id))
                }
                NodeCommand::Drain => rt.block_on(kv::node_drain(&client)),
                NodeCommand::Status => rt.block_on(kv::node_status(&client)),
            }
        }
        Command::Range { client, op } => {
            init_tracing("warn");
            match op {
                RangeCommand::Ls => rt.block_on(kv::range_ls(&client)),
                RangeCommand::Lookup { key } => rt.block_on(kv::range_lookup(&client, &key)),
                RangeCommand::Split { key } => rt.block_on(kv::range_split(&client, &key)),
            }
        }
        Command::Shell(c) => {
            init_tracing("warn");
            c.client().and_then(|client| shell::run(&rt, &client))
        }
        Command::Sql(args) => {
            init_tracing("warn");
            sql::run(&rt, args)
        }
        Command::Demo(args) => {
            init_tracing("warn");
            demo::run(&rt, args)
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn init(c: &ClientArgs) -> anyhow::Result<()> {
    let client = c.client()?;
    let addr = c.host.first().cloned().unwrap_or_default();
    // A node just started may not listen yet: wait (within --timeout) until it
    // answers a status request, which is safe to repeat; init itself is sent once.
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(c.timeout.max(1.0));
    while let Err(e) = client.status_of(&addr).await {
        if std::time::Instant::now() > deadline {
            return Err(e).context(format!("{addr} does not answer"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = client.init(&addr).await?;
    match c.format {
        Format::Json => {
            let nodes: Vec<_> = r
                .nodes
                .iter()
                .map(|n| serde_json::json!({"node_id": n.node_id, "addr": n.addr}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"cluster_id": r.cluster_id, "nodes": nodes})
            );
        }
        Format::Plain => {
            println!(
                "initialised cluster {} with {} node(s)",
                r.cluster_id,
                r.nodes.len()
            );
            for n in &r.nodes {
                println!("  node {}\t{}", n.node_id, n.addr);
            }
        }
    }
    Ok(())
}
