//! `shoal kv ...`, `shoal node ...` and `shoal range ...`: one type per subcommand,
//! shared by the CLI and the shell ([`crate::scan`] has the scan); tables through
//! [`crate::table`].

use std::io::{Read, Write};

use anyhow::{bail, Context};
use clap::Subcommand;
use shoal_client::{Client, Consistency};

use crate::scan::ScanArgs;
use crate::table;
use crate::{ClientArgs, Format};

/// A key that does not exist: `kv get` and `kv del` exit with
/// [`crate::EXIT_NOT_FOUND`] on it, not with a failure's 1.
#[derive(Debug)]
pub struct NotFound(pub String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key {:?} not found", self.0)
    }
}

impl std::error::Error for NotFound {}

#[derive(Debug, Clone, Subcommand)]
pub enum KvCommand {
    /// Print the value of KEY (alone, so scripts can use it). Exit 3 if it is missing.
    Get {
        /// The key to read.
        key: String,
        /// Serve from the contacted replica's state, which may lag (no quorum check).
        #[arg(long, conflicts_with = "at")]
        stale: bool,
        /// Read KEY as it was at timestamp TS (a version, or `shoal kv now`), within
        /// the retention window (`--gc-ttl` of the nodes).
        #[arg(long, value_name = "TS")]
        at: Option<u64>,
    },
    /// Write VALUE under KEY and print its version.
    Put {
        /// The key to write.
        key: String,
        /// The value ("-" reads it from stdin).
        value: String,
    },
    /// Delete KEY. Exit 3 if it did not exist.
    Del {
        /// The key to delete.
        key: String,
    },
    /// List the keys of [START, END) (END omitted: to the end) or under --prefix: a
    /// table of KEY and VALUE, or one JSON object per line.
    Scan(ScanArgs),
    /// Print a timestamp of the cluster's clock: above the version of every write
    /// acknowledged before (a point to read at later with --at).
    Now,
    /// Delete every key in [START, END) and print how many were deleted.
    DelRange {
        /// First key of the span (inclusive).
        start: String,
        /// End of the span (exclusive; omitted: to the end of the key space).
        end: Option<String>,
    },
    /// etcd-style transaction: if every --if holds, run the --then ops, else the --else ops.
    ///
    /// Compares: `version(KEY) OP N`, `value(KEY) OP VALUE`, `exists(KEY)`, `!exists(KEY)`,
    /// with OP one of = != > <. Ops: `put KEY VALUE`, `del KEY`, `get KEY`.
    Txn {
        /// A condition (repeatable; all must hold): `version(KEY) OP N`,
        /// `value(KEY) OP VALUE`, `exists(KEY)` or `!exists(KEY)`, OP one of = != > <.
        #[arg(long = "if", value_name = "COMPARE")]
        compares: Vec<String>,
        /// An op run when every --if holds (repeatable, in order): `put KEY VALUE`,
        /// `del KEY` or `get KEY`.
        #[arg(long = "then", value_name = "OP")]
        success: Vec<String>,
        /// An op run when some --if does not hold (repeatable, in order): `put KEY
        /// VALUE`, `del KEY` or `get KEY`.
        #[arg(long = "else", value_name = "OP")]
        failure: Vec<String>,
    },
}

pub async fn run(args: &ClientArgs, cmd: KvCommand) -> anyhow::Result<()> {
    let client = args.client()?;
    let mut out = std::io::stdout().lock();
    exec(&client, args.format, cmd, &mut out).await
}

/// Runs one kv command, writing its output to `out`.
pub async fn exec(
    client: &Client,
    format: Format,
    cmd: KvCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        KvCommand::Get { key, stale, at } => {
            let c = if stale {
                Consistency::Stale
            } else {
                Consistency::Linearizable
            };
            let found = match at {
                Some(ts) => client.get_at(&key, ts).await?,
                None => client.get_with(&key, c).await?,
            };
            match found {
                Some(kv) => match format {
                    Format::Plain => {
                        out.write_all(&kv.value)?;
                        out.write_all(b"\n")?;
                    }
                    Format::Json => writeln!(out, "{}", crate::scan::kv_json(&kv))?,
                },
                None => return Err(NotFound(key).into()),
            }
        }
        KvCommand::Put { key, value } => {
            let value = if value == "-" {
                let mut v = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut v)
                    .context("reading the value from stdin")?;
                v
            } else {
                value.into_bytes()
            };
            let version = client.put(&key, &value).await?;
            match format {
                Format::Plain => writeln!(out, "OK (version {version})")?,
                Format::Json => writeln!(out, "{}", serde_json::json!({"version": version}))?,
            }
        }
        KvCommand::Del { key } => {
            let existed = client.delete(&key).await?;
            if format == Format::Json {
                writeln!(out, "{}", serde_json::json!({"deleted": existed}))?;
            }
            if !existed {
                return Err(NotFound(key).into());
            }
            if format == Format::Plain {
                writeln!(out, "deleted")?;
            }
        }
        KvCommand::Now => {
            let ts = client.timestamp().await?;
            match format {
                Format::Plain => writeln!(out, "{ts}")?,
                Format::Json => writeln!(out, "{}", serde_json::json!({"timestamp": ts}))?,
            }
        }
        KvCommand::Scan(args) => crate::scan::run(client, &args, format, out).await?,
        KvCommand::DelRange { start, end } => {
            let n = client.delete_range(&start, end.unwrap_or_default()).await?;
            match format {
                Format::Plain => writeln!(out, "deleted {n}")?,
                Format::Json => writeln!(out, "{}", serde_json::json!({"deleted": n}))?,
            }
        }
        KvCommand::Txn {
            compares,
            success,
            failure,
        } => {
            let cmp = compares
                .iter()
                .map(|c| crate::txn::parse_compare(c))
                .collect::<Result<Vec<_>, _>>()?;
            let ok = success
                .iter()
                .map(|c| crate::txn::parse_op(c))
                .collect::<Result<Vec<_>, _>>()?;
            let ko = failure
                .iter()
                .map(|c| crate::txn::parse_op(c))
                .collect::<Result<Vec<_>, _>>()?;
            let r = client.txn(cmp, ok, ko).await?;
            crate::txn::print(format, &r, out)?;
        }
    }
    Ok(())
}

pub async fn node_ls(args: &ClientArgs) -> anyhow::Result<()> {
    let client = args.client()?;
    let mut out = std::io::stdout().lock();
    print_nodes(&client, args.format, &mut out).await
}

pub async fn node_remove(args: &ClientArgs, node_id: u64) -> anyhow::Result<()> {
    args.client()?.remove_node(node_id).await?;
    if args.format == Format::Json {
        println!("{}", serde_json::json!({"removed": node_id}));
    } else {
        println!("removed node {node_id}");
    }
    Ok(())
}

pub async fn node_decommission(args: &ClientArgs, node_id: u64) -> anyhow::Result<()> {
    let client = args.client()?;
    eprintln!("decommissioning node {node_id}: its replicas move to other nodes");
    // Progress as the routing table shows it; patience runs from the last progress, so
    // a long drain of many replicas is fine while one that is stuck fails.
    let patience = args.timeout.max(std::time::Duration::from_secs(60));
    let mut last = u64::MAX;
    let mut since = std::time::Instant::now();
    loop {
        let left = client.decommission(node_id).await?;
        if left == 0 {
            break;
        }
        if left != last {
            eprintln!("node {node_id}: {left} replicas left");
            last = left;
            since = std::time::Instant::now();
        }
        if since.elapsed() > patience {
            bail!(
                "node {node_id} still holds {left} replicas and none moved for {:.0} s: \
                 are enough other live nodes there to take them?{}",
                patience.as_secs_f64(),
                held_ranges(&client, node_id).await
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // It holds no replica of any range but the meta range: out of the cluster.
    client.remove_node(node_id).await?;
    let deadline = std::time::Instant::now() + patience;
    loop {
        let nodes = client.nodes().await?;
        if nodes.nodes.iter().all(|n| n.node_id != node_id) {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("node {node_id} is still listed after the removal");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    if args.format == Format::Json {
        println!("{}", serde_json::json!({"decommissioned": node_id}));
    } else {
        println!("node {node_id} decommissioned: it holds no replica; its pod can be removed");
    }
    Ok(())
}

pub async fn node_status(args: &ClientArgs) -> anyhow::Result<()> {
    let addr = args.host.first().cloned().unwrap_or_default();
    let st = args.client()?.status_of(&addr).await?;
    let ranges: Vec<_> = st
        .ranges
        .iter()
        .map(|r| {
            serde_json::json!({"range_id": r.range_id, "role": r.role, "term": r.term, "leader_id": r.leader_id,
                "commit_index": r.commit_index, "applied_index": r.applied_index})
        })
        .collect();
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"node_id": st.node_id, "name": st.node_name, "cluster_id": st.cluster_id, "advertise_addr": st.advertise_addr,
                "ready": st.ready, "not_ready": st.not_ready, "ranges": ranges, "version": st.version})
        ),
        Format::Plain => {
            println!(
                "node {} ({}) of cluster {} at {}",
                st.node_id, st.node_name, st.cluster_id, st.advertise_addr
            );
            println!(
                "ready: {}",
                if st.ready {
                    "yes".to_string()
                } else {
                    format!("no ({})", st.not_ready.join("; "))
                }
            );
            let mut t = table::new(["RANGE", "ROLE", "TERM", "LEADER", "COMMITTED", "APPLIED"]);
            for r in &st.ranges {
                t.add_row([
                    r.range_id.to_string(),
                    r.role.clone(),
                    r.term.to_string(),
                    r.leader_id.to_string(),
                    r.commit_index.to_string(),
                    r.applied_index.to_string(),
                ]);
            }
            table::write(&t, &mut std::io::stdout().lock())?;
        }
    }
    Ok(())
}

pub async fn node_drain(args: &ClientArgs) -> anyhow::Result<()> {
    let addr = args.host.first().cloned().unwrap_or_default();
    let still = args.client()?.drain(&addr).await?;
    if args.format == Format::Json {
        println!(
            "{}",
            serde_json::json!({"drained": addr, "still_leading": still})
        );
    } else if still.is_empty() {
        println!("drained {addr}: unready, leads no range");
    } else {
        println!("drained {addr}: unready, still leads ranges {still:?}");
    }
    if !still.is_empty() {
        bail!("leadership of ranges {still:?} could not be moved");
    }
    Ok(())
}

pub async fn print_nodes(
    client: &Client,
    format: Format,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let r = client.nodes().await?;
    match format {
        Format::Json => {
            let nodes: Vec<_> = r
                .nodes
                .iter()
                .map(|n| {
                    serde_json::json!({"node_id": n.node_id, "name": n.name, "addr": n.addr, "role": n.role,
                        "leader": n.is_leader, "live": n.live, "liveness": n.liveness, "replicas": n.replicas,
                        "leaders": n.leaders, "decommissioning": n.decommissioning,
                        "capacity_bytes": n.capacity_bytes, "available_bytes": n.available_bytes,
                        "applied_index": n.applied_index})
                })
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::json!({"cluster_id": r.cluster_id, "nodes": nodes})
            )?;
        }
        Format::Plain => {
            let mut t = table::new([
                "ID",
                "NAME",
                "ADDRESS",
                "ROLE",
                "LEADER",
                "LIVENESS",
                "REPLICAS",
                "LEADERS",
                "DISK FREE",
                "APPLIED",
            ]);
            for n in &r.nodes {
                t.add_row([
                    n.node_id.to_string(),
                    n.name.clone(),
                    n.addr.clone(),
                    n.role.clone(),
                    if n.is_leader { "*" } else { "" }.to_string(),
                    if n.decommissioning {
                        format!("{} (decommissioning)", n.liveness)
                    } else {
                        n.liveness.clone()
                    },
                    n.replicas.to_string(),
                    n.leaders.to_string(),
                    disk_free(n.available_bytes, n.capacity_bytes),
                    n.applied_index.to_string(),
                ]);
            }
            table::write(&t, out)?;
        }
    }
    Ok(())
}

/// Free space of a disk, as `12.3 of 100.0 GiB` (`-` when unknown).
fn disk_free(available: u64, capacity: u64) -> String {
    if capacity == 0 {
        return "-".into();
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    format!("{:.1} of {:.1} GiB", gib(available), gib(capacity))
}

/// `[start, end)` of a range, with the unbounded ends shown as such.
fn span_text(start: &[u8], end: &[u8]) -> String {
    let s = if start.is_empty() {
        "-inf".to_string()
    } else {
        format!("{:?}", String::from_utf8_lossy(start))
    };
    let e = if end.is_empty() {
        "+inf".to_string()
    } else {
        format!("{:?}", String::from_utf8_lossy(end))
    };
    format!("[{s}, {e})")
}

fn descriptor_json(d: &shoal_proto::v1::RangeDescriptor) -> serde_json::Value {
    let epoch = d.epoch.unwrap_or_default();
    let replicas: Vec<_> = d
        .replicas
        .iter()
        .map(|r| serde_json::json!({"node_id": r.node_id, "role": r.role, "addr": r.addr}))
        .collect();
    serde_json::json!({"range_id": d.range_id, "start": String::from_utf8_lossy(&d.start),
        "end": String::from_utf8_lossy(&d.end),
        "epoch": {"version": epoch.version, "conf_ver": epoch.conf_ver}, "replicas": replicas})
}

/// The data ranges with a replica on `node_id`, one line each (id, replicas, leader), for
/// an error: empty if the table cannot be read.
async fn held_ranges(client: &Client, node_id: u64) -> String {
    let Ok(r) = client.ranges().await else {
        return String::new();
    };
    let mut text = String::new();
    for i in &r.ranges {
        let Some(d) = &i.descriptor else { continue };
        // The meta range (id 1) is on every node until it leaves: not counted.
        if d.range_id != 1 && d.replicas.iter().any(|r| r.node_id == node_id) {
            let replicas: Vec<String> = d
                .replicas
                .iter()
                .map(|r| format!("{}:{}", r.node_id, r.role))
                .collect();
            let epoch = d.epoch.unwrap_or_default();
            text.push_str(&format!(
                "\n  range {} (epoch {}.{}): replicas {}, leader {}",
                d.range_id,
                epoch.version,
                epoch.conf_ver,
                replicas.join(","),
                i.leader_id
            ));
        }
    }
    text
}

pub async fn range_ls(args: &ClientArgs) -> anyhow::Result<()> {
    let client = args.client()?;
    let mut out = std::io::stdout().lock();
    print_ranges(&client, args.format, &mut out).await
}

pub async fn print_ranges(
    client: &Client,
    format: Format,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let r = client.ranges().await?;
    match format {
        Format::Json => {
            let ranges: Vec<_> = r
                .ranges
                .iter()
                .map(|i| {
                    let mut v = i
                        .descriptor
                        .as_ref()
                        .map(descriptor_json)
                        .unwrap_or_default();
                    v["leader_id"] = i.leader_id.into();
                    v["approximate_bytes"] = i.approximate_bytes.into();
                    v
                })
                .collect();
            writeln!(out, "{}", serde_json::json!({ "ranges": ranges }))?;
        }
        Format::Plain => {
            let mut t = table::new(["ID", "SPAN", "EPOCH", "REPLICAS", "LEADER", "SIZE"]);
            for i in &r.ranges {
                let Some(d) = &i.descriptor else { continue };
                let epoch = d.epoch.unwrap_or_default();
                let replicas: Vec<String> = d
                    .replicas
                    .iter()
                    .map(|r| {
                        if r.role == "voter" {
                            r.node_id.to_string()
                        } else {
                            format!("{}(learner)", r.node_id)
                        }
                    })
                    .collect();
                t.add_row([
                    d.range_id.to_string(),
                    span_text(&d.start, &d.end),
                    format!("{}.{}", epoch.version, epoch.conf_ver),
                    replicas.join(","),
                    if i.leader_id == 0 {
                        "-".to_string()
                    } else {
                        i.leader_id.to_string()
                    },
                    human_bytes(i.approximate_bytes),
                ]);
            }
            table::write(&t, out)?;
        }
    }
    Ok(())
}

pub async fn range_lookup(args: &ClientArgs, key: &str) -> anyhow::Result<()> {
    let r = args.client()?.range_lookup(key).await?;
    let d = r.descriptor.unwrap_or_default();
    match args.format {
        Format::Json => {
            let mut v = descriptor_json(&d);
            v["leader_id"] = r.leader_id.into();
            v["leader_addr"] = r.leader_addr.into();
            println!("{v}");
        }
        Format::Plain => println!(
            "range {} {} leader {} at {}",
            d.range_id,
            span_text(&d.start, &d.end),
            r.leader_id,
            r.leader_addr
        ),
    }
    Ok(())
}

pub async fn range_split(args: &ClientArgs, key: &str) -> anyhow::Result<()> {
    let (left, right) = args.client()?.split_range(key).await?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"left": descriptor_json(&left), "right": descriptor_json(&right)})
        ),
        Format::Plain => println!(
            "split range {} {} -> range {} {}",
            left.range_id,
            span_text(&left.start, &left.end),
            right.range_id,
            span_text(&right.start, &right.end)
        ),
    }
    Ok(())
}

pub async fn range_merge(args: &ClientArgs, key: &str) -> anyhow::Result<()> {
    let merged = args.client()?.merge_range(key).await?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"merged": descriptor_json(&merged)})
        ),
        Format::Plain => println!(
            "merged into range {} {}",
            merged.range_id,
            span_text(&merged.start, &merged.end)
        ),
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
