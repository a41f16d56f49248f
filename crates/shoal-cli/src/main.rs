//! `shoal`: the one binary.
//!
//! - `start`: run a node ([`shoal_server::run`]).
//! - `init`: found the cluster through one node.
//! - `kv`: get / put / del / scan / del-range / txn through the SDK ([`kv`]; `scan`
//!   in [`scan`]; the transaction syntax of `kv txn` and the shell is parsed in
//!   [`txn`]). Plain output prints aligned tables ([`table`]).
//! - `node ls|status|drain|decommission|remove`, `range ls|lookup|split`: here.
//! - `demo`: a real local 3-node cluster ([`demo`]) and a shell on it ([`shell`]).
//! - `shell`: the shell on a running cluster (what `kubectl exec` opens).
//! - `sql`: a SQL shell over the Postgres protocol ([`sql`]; TLS on a secure cluster:
//!   [`pgtls`]).
//! - `cert`: the cluster CA, node and client certificates ([`cert`]).
//! - `user create|passwd|drop|ls`: the cluster's users, their roles and passwords
//!   ([`user`]; a password is read from the environment or a prompt: [`password`]).
//!
//! Exit codes: 0 on success, 1 when the operation failed, 2 on a usage error, 3 when
//! `kv get` or `kv del` found no such key (with a message on stderr): a script tells
//! "not there" from "could not ask".
//!
//! Every flag shared by the commands is also read from an env var (`SHOAL_HOST`,
//! `SHOAL_FORMAT`, `SHOAL_TIMEOUT`, `SHOAL_CERTS_DIR`, `SHOAL_USER`); every duration flag takes one syntax (`1500ms`,
//! `20s`, `5m`; a bare number is seconds), [`shoal_server::config::parse_duration`].

mod cert;
mod demo;
mod kv;
mod password;
mod pgtls;
mod scan;
mod shell;
mod sql;
mod table;
mod txn;
mod user;

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
    /// Certificates: the cluster CA, node and client certificates, and a listing.
    Cert(cert::CertArgs),
    /// The cluster's users and their roles (admin, readwrite, readonly).
    User {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        op: user::UserCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RangeCommand {
    /// List the ranges: id, span, epoch, replicas, leader, approximate size.
    Ls,
    /// The range holding KEY.
    Lookup {
        /// A key of the range.
        key: String,
    },
    /// Split the range holding KEY at KEY (KEY starts the new right half).
    Split {
        /// Where to split: the first key of the new right half.
        key: String,
    },
    /// Merge the range holding KEY with the range right after it (the two must have
    /// the same replicas): the left range takes over the right one's keys.
    Merge {
        /// A key of the left range.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// List the cluster's nodes.
    Ls,
    /// Remove a node from the cluster (e.g. one whose disk was lost and that came back
    /// as a new node).
    Remove {
        /// The node's id (the ID column of `shoal node ls`).
        node_id: u64,
    },
    /// Take a live node out of the cluster before removing its pod (scale-down): its
    /// replicas leave the range's membership (its leadership first moves away).
    Decommission {
        /// The node's id (the ID column of `shoal node ls`).
        node_id: u64,
    },
    /// Status of the node at --host: identity, readiness, and its ranges.
    Status,
    /// Prepare the node at --host to stop: unready, new requests refused, leaderships
    /// moved to other nodes. It keeps running (SIGTERM does the same, then exits).
    Drain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned tables and plain lines, for people (`kv get` prints the value alone).
    Plain,
    /// One JSON object per line, for programs.
    Json,
}

/// The exit code of `kv get` and `kv del` when the key does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;

/// The exit code of a failed command: [`EXIT_NOT_FOUND`] for a missing key, 1 for any
/// other failure.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<kv::NotFound>().is_some() {
        EXIT_NOT_FOUND
    } else {
        1
    }
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
    #[arg(
        long,
        env = "SHOAL_FORMAT",
        value_enum,
        default_value = "plain",
        global = true
    )]
    pub format: Format,
    /// Give up after this long, retries included (`1500ms`, `20s`, `5m`; a bare number
    /// is seconds).
    #[arg(
        long,
        env = "SHOAL_TIMEOUT",
        default_value = "10s",
        global = true,
        value_parser = parse_timeout
    )]
    pub timeout: Duration,
    /// Certificates directory of a secure cluster (`shoal cert`): its CA
    /// (`ca.crt`), and the user's `client.USER.crt` and `client.USER.key` when it
    /// holds them. Without it the cluster is reached in plaintext (an insecure one).
    #[arg(long, env = "SHOAL_CERTS_DIR", global = true)]
    pub certs_dir: Option<std::path::PathBuf>,
    /// The user to connect as: by its certificate in --certs-dir
    /// (`client.USER.crt`), or else by its password (`SHOAL_PASSWORD`, or asked
    /// at a terminal).
    #[arg(long, env = "SHOAL_USER", default_value = "root", global = true)]
    pub user: String,
}

/// `--timeout`: a duration above zero.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match shoal_server::config::parse_duration(s)? {
        d if d.is_zero() => Err("must be above zero".into()),
        d => Ok(d),
    }
}

impl ClientArgs {
    pub fn client(&self) -> anyhow::Result<Client> {
        let t = self.timeout;
        let tls = match &self.certs_dir {
            Some(dir) => Some(shoal_client::ClientTls::from_dir(dir, &self.user)?),
            None => None,
        };
        let credentials = password::login(self.certs_dir.as_deref(), &self.user)?
            .map(|p| shoal_client::Credentials::new(&self.user, p));
        let opts = ClientOptions {
            retry_deadline: t,
            request_timeout: t.min(Duration::from_secs(5)),
            tls,
            credentials,
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
    // As many workers as the container's CPU quota pays for, not the host's cores.
    let host = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = shoal_server::cgroup::Resources::detect().workers(host);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
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
                RangeCommand::Merge { key } => rt.block_on(kv::range_merge(&client, &key)),
            }
        }
        Command::Shell(c) => {
            init_tracing("warn");
            match c
                .client()
                .and_then(|client| shell::run(&rt, &client, c.format))
            {
                Ok(code) => return ExitCode::from(code),
                Err(e) => Err(e),
            }
        }
        Command::Sql(args) => {
            init_tracing("warn");
            sql::run(&rt, args)
        }
        Command::Cert(args) => cert::run(args),
        Command::User { client, op } => {
            init_tracing("warn");
            rt.block_on(user::run(&client, op))
        }
        Command::Demo(args) => {
            init_tracing("warn");
            match demo::run(&rt, args) {
                Ok(code) => return ExitCode::from(code),
                Err(e) => Err(e),
            }
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn init(c: &ClientArgs) -> anyhow::Result<()> {
    let client = c.client()?;
    let addr = c.host.first().cloned().unwrap_or_default();
    // A node just started may not listen yet: wait (within --timeout) until it
    // answers a status request, which is safe to repeat; init itself is sent once.
    let deadline = std::time::Instant::now() + c.timeout.max(Duration::from_secs(1));
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
            let mut t = table::new(["ID", "ADDRESS"]);
            for n in &r.nodes {
                t.add_row([n.node_id.to_string(), n.addr.clone()]);
            }
            table::write(&t, &mut std::io::stdout().lock())?;
        }
    }
    Ok(())
}
