//! `shoal demo`: a real local cluster (one `shoal start` process per node, each with
//! its own RocksDB directory and loopback ports), initialised, with a shell on it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_client::{Client, ClientOptions};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the nodes' data directories when the demo ends.
    #[arg(long)]
    keep: bool,
    /// Do not open a shell: run the cluster, print its addresses, stop on Ctrl-C.
    #[arg(long)]
    no_shell: bool,
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=7))]
    nodes: u16,
    /// Directory for the nodes' data (default: a new temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

struct DemoNode {
    grpc: String,
    http: String,
    sql: String,
    dir: PathBuf,
    child: Child,
}

/// Stops the nodes (SIGTERM, then SIGKILL) and removes the data unless kept.
struct Cluster {
    nodes: Vec<DemoNode>,
    root: PathBuf,
    remove_root: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = kill(Pid::from_raw(n.child.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for n in &mut self.nodes {
            loop {
                match n.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = n.child.kill();
                        let _ = n.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        if self.remove_root {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            eprintln!("data kept in {}", self.root.display());
        }
    }
}

/// A free loopback port below the kernel's ephemeral range, so no outgoing
/// connection takes it between this check and the node's bind.
fn free_port(taken: &[u16]) -> anyhow::Result<u16> {
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    (0..10_000u16)
        .map(|i| start + i)
        .find(|p| !taken.contains(p) && TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| anyhow::anyhow!("no free port on 127.0.0.1"))
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Runs the demo; returns the exit code (the shell's, see [`crate::shell::run`]).
pub fn run(rt: &tokio::runtime::Runtime, args: DemoArgs) -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("locating the shoal binary")?;
    let (root, remove_root) = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (d.clone(), false)
        }
        None => (
            tempfile::Builder::new()
                .prefix("shoal-demo-")
                .tempdir()?
                .keep(),
            !args.keep,
        ),
    };
    let mut cluster = Cluster {
        nodes: Vec::new(),
        root: root.clone(),
        remove_root,
    };
    let mut ports = Vec::new();
    for _ in 0..args.nodes * 4 {
        ports.push(free_port(&ports)?);
    }
    let addrs: Vec<(String, String, String, String)> = ports
        .chunks(4)
        .map(|p| {
            let at = |port| format!("127.0.0.1:{port}");
            (at(p[0]), at(p[1]), at(p[2]), at(p[3]))
        })
        .collect();
    for (i, (grpc, http, sql, peer)) in addrs.iter().enumerate() {
        let dir = root.join(format!("node-{}", i + 1));
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("node.log"))?;
        let join: Vec<&str> = addrs
            .iter()
            .filter(|(g, ..)| g != grpc)
            .map(|(g, ..)| g.as_str())
            .collect();
        let mut cmd = Command::new(&exe);
        cmd.arg("start")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--listen-addr",
                grpc,
                "--advertise-addr",
                grpc,
                "--http-addr",
                http,
                "--sql-addr",
                sql,
                "--peer-addr",
                peer,
                // A local playground, said so when it starts: no TLS, no passwords.
                "--insecure",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if !join.is_empty() {
            cmd.arg("--join").arg(join.join(","));
        }
        let child = cmd.spawn().context("starting a node")?;
        cluster.nodes.push(DemoNode {
            grpc: grpc.clone(),
            http: http.clone(),
            sql: sql.clone(),
            dir,
            child,
        });
    }

    let seeds: Vec<String> = cluster.nodes.iter().map(|n| n.grpc.clone()).collect();
    let client = Client::with_options(seeds.clone(), ClientOptions::default())?;
    rt.block_on(async {
        // Node 1 founds the cluster once its peers answer.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for n in &mut cluster.nodes {
                if let Ok(Some(st)) = n.child.try_wait() {
                    bail!("node at {} exited ({st}):\n{}", n.grpc, log_tail(&n.dir));
                }
            }
            match client.init(&seeds[0]).await {
                Ok(_) => break,
                Err(e) if e.code() == Some("ALREADY_INITIALIZED") => break,
                Err(e) if Instant::now() >= deadline => bail!("initialising the cluster: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        loop {
            if let Ok(r) = client.nodes().await {
                if r.nodes.iter().any(|n| n.is_leader) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!("the cluster elected no leader within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })?;

    println!(
        "shoal demo: {} nodes on loopback, INSECURE (no TLS, no passwords: a local playground), data in {}",
        cluster.nodes.len(),
        root.display()
    );
    for (i, n) in cluster.nodes.iter().enumerate() {
        println!(
            "  node {}  grpc {}  http http://{}  sql postgresql://root@{}/defaultdb  log {}",
            i + 1,
            n.grpc,
            n.http,
            n.sql,
            n.dir.join("node.log").display()
        );
    }
    println!("connect with: shoal kv get KEY --host {}", seeds.join(","));
    let code = if args.no_shell {
        println!("running; Ctrl-C to stop");
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        });
        0
    } else {
        crate::shell::run(rt, &client, crate::Format::Plain)?
    };
    println!("stopping the cluster");
    drop(cluster);
    Ok(code)
}
