//! [`run`]: a node's life, from its flags to its exit. It opens the [`Node`], wires
//! its drivers (the range keeper, the placement driver, the bootstrap, quiescence),
//! starts their loops under one [`Tasks`] guard, serves gRPC to clients (Kv, Txn,
//! Admin) and to peers (Peer, Raft) on ports of their own, SQL and HTTP, and on
//! SIGTERM or SIGINT drains, stops serving within the drain deadline, stops the loops
//! and the replicas, and flushes the store.

use std::sync::Arc;
use std::time::Duration;

use shoal_proto::v1::{
    admin_server::AdminServer, kv_server::KvServer, peer_server::PeerServer,
    raft_server::RaftServer, txn_server::TxnServer,
};
use shoal_raft::{QuiesceOptions, Quiescer, RaftService, StatusOf};

use crate::admin::AdminService;
use crate::authn::{AuthLayer, Port};
use crate::bootstrap::Bootstrap;
use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::error::Error;
use crate::keeper::RangeKeeper;
use crate::kv::KvService;
use crate::lifecycle;
use crate::listen;
use crate::logins::Logins;
use crate::node::Node;
use crate::peer::PeerService;
use crate::peer_call::LegacyPathsLayer;
use crate::placement::driver::{PlacementDriver, HEARTBEAT_INTERVAL};
use crate::steps::NodeRanges;
use crate::sweep;
use crate::tasks::Tasks;
use crate::txn::TxnService;
use crate::users::{self, Users};

/// How often the certificates directory is looked at for rotated files.
const CERTS_RELOAD_EVERY: Duration = Duration::from_secs(2);
/// How often the node's own upkeep runs (fatal replicas, snapshots, ranges it leads).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often removed replicas are looked for: each look reads the whole routing table
/// from this node's store when it holds a replica it does not lead.
const GARBAGE_INTERVAL: Duration = Duration::from_secs(5);

/// A gRPC server running until the node stops.
type Serving = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>,
>;

/// Why a node stopped other than on a signal, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("binding the {what} address {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Open(#[from] Error),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// The node's own client of the cluster could not be made (its address).
    #[error("the node's client of the cluster: {0}")]
    Client(String),
    /// A replica stopped for good (a storage error): the node exits to be restarted.
    #[error("{0}")]
    Fatal(String),
}

/// Runs a node until SIGTERM or SIGINT (or its shutdown token is cancelled).
/// How often the node looks for dropped tables whose rows are still to be deleted.
const DROPPED_TABLES_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn run(mut cfg: NodeConfig) -> Result<(), RunError> {
    shoal_raft::failpoints::setup();
    // Bad flags are told as such, before a busy port could hide them.
    cfg.validate().map_err(|m| {
        RunError::Open(Error::invalid(
            shoal_proto::error::ErrorCode::InvalidArgument,
            m,
        ))
    })?;
    let listen = cfg.listen_addr;
    let http_addr = cfg.http_addr;
    let bind = |what, addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { what, addr, source })
    };
    let grpc_listener = bind("gRPC", listen).await?;
    let peer_listener = bind("peer", cfg.peer_addr).await?;
    // Port 0 took a free port: the node advertises the one it has.
    if let Ok(bound) = peer_listener.local_addr() {
        cfg.peer_addr = bound;
    }
    let http_listener = bind("HTTP", http_addr).await?;
    let sql_addr = cfg.sql_addr;
    let sql_listener = bind("SQL", sql_addr).await?;
    let (node, events) = Node::open(cfg).await?;
    match &node.tls {
        Some(tls) => {
            let expires = tls.current().node_expires;
            node.metrics.set_cert_expiry(expires);
            tracing::info!(grpc = %listen, peer = %node.advertise_peer, http = %http_addr, sql = %sql_addr, advertise = %node.advertise, certificate_expires = expires, "serving over TLS");
        }
        None => {
            tracing::warn!(grpc = %listen, peer = %node.advertise_peer, http = %http_addr, sql = %sql_addr, advertise = %node.advertise, "serving INSECURE (--insecure): no TLS, no authentication");
        }
    }

    // The drivers, each with the state it owns.
    let keeper = Arc::new(RangeKeeper::new(node.clone()));
    let driver = Arc::new(PlacementDriver::new(node.clone(), keeper.clone()));
    let bootstrap = Arc::new(Bootstrap::new(node.clone()));
    let clock = Clock::spawn(&node);
    clock.move_safe_point();
    let mut quiescer = Quiescer::new(
        node.router.clone(),
        node.pool.clone(),
        QuiesceOptions::from_raft(&node.cfg.raft_options()),
    );
    let beats = quiescer.beats();

    // Their loops, stopped together with the node.
    let mut tasks = Tasks::new(&node.shutdown);
    if let Some(tls) = node.tls.clone() {
        let node = node.clone();
        tasks.every("certificates", CERTS_RELOAD_EVERY, move || {
            match tls.reload() {
                Ok(false) => {}
                Ok(true) => {
                    let expires = tls.current().node_expires;
                    node.metrics.set_cert_expiry(expires);
                    tracing::info!(expires, "certificates changed on disk: new connections use them");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "certificates changed on disk but cannot be used; keeping those before")
                }
            }
            std::future::ready(())
        });
    }
    if node.ident().is_none() {
        tasks.spawn("discovery", bootstrap.clone().discover());
    }
    tasks.spawn("splits", keeper.clone().follow_splits(events));
    {
        let (node, keeper, driver) = (node.clone(), keeper.clone(), driver.clone());
        let clock = clock.clone();
        tasks.every("upkeep", UPKEEP_INTERVAL, move || {
            let (node, keeper, driver) = (node.clone(), keeper.clone(), driver.clone());
            let clock = clock.clone();
            async move {
                lifecycle::check_fatal(&node);
                clock.move_safe_point();
                for r in node.router.all().iter() {
                    r.snapshot_if_due().await;
                }
                driver.maintain_meta_voters().await;
                keeper.maintain().await;
            }
        });
    }
    // Heartbeats to the placement driver and the driver itself (on the meta range's
    // leader): apart from the upkeep, so a slow round of range upkeep never delays a
    // heartbeat.
    {
        let driver = driver.clone();
        tasks.every("placement", HEARTBEAT_INTERVAL, move || {
            let driver = driver.clone();
            async move {
                driver.send_heartbeat().await;
                driver.round().await;
            }
        });
    }
    // The collection of removed replicas: apart from placement, whose round on the meta
    // range's leader waits for the replica moves it makes (each up to seconds).
    {
        let keeper = keeper.clone();
        tasks.every("garbage", GARBAGE_INTERVAL, move || {
            let keeper = keeper.clone();
            async move { keeper.collect_garbage().await }
        });
    }
    // Idle ranges stop their Raft timers; one beat per peer node stands in for their
    // heartbeats (see shoal_raft::quiesce).
    if !node.cfg.disable_quiescence {
        let every = quiescer.options().beat_interval;
        tasks.every("quiescence", every, move || {
            quiescer.round();
            std::future::ready(())
        });
    }
    // SIGTERM: unready at once, leaderships moved away, then the servers stop taking
    // requests and finish those in flight, all within the drain deadline.
    let drain_timeout = Duration::from_secs(node.cfg.drain_timeout_secs);
    {
        let node = node.clone();
        tasks.spawn("signals", async move {
            wait_for_signal().await;
            let still = lifecycle::drain(&node, drain_timeout / 2).await;
            if !still.is_empty() {
                tracing::warn!(ranges = ?still, "still leading after the drain's half-time; stopping anyway");
            }
            node.shutdown.cancel();
        });
    }

    // The servers.
    let max_msg = node.cfg.max_request_bytes * 2 + (1 << 20);
    let ranges = NodeRanges::new(
        &node.advertise,
        clock.clone(),
        node.tls.as_ref().map(|t| t.client()),
    )
    .map_err(|e| RunError::Client(e.to_string()))?;
    // Old locks nobody met, resolved before garbage collection could drop what
    // decides them.
    {
        let sweeper = Arc::new(sweep::LockSweeper::new(node.clone(), ranges.clone()));
        tasks.every(
            "lock sweep",
            sweep::sweep_every(node.cfg.gc_ttl),
            move || {
                let sweeper = sweeper.clone();
                async move {
                    sweeper.round().await;
                }
            },
        );
    }
    // The cluster's users, read again and again on a secure node (an insecure one
    // checks no one).
    let users = Users::new();
    let as_ranges: Arc<dyn shoal_txn::ranges::Ranges> = Arc::new(ranges.clone());
    if node.tls.is_some() {
        let (users, ranges) = (users.clone(), as_ranges.clone());
        let node = node.clone();
        tasks.every("users", users::REFRESH_EVERY, move || {
            let (users, ranges, node) = (users.clone(), ranges.clone(), node.clone());
            async move {
                if node.ident().is_none() {
                    return;
                }
                if let Err(e) = users.refresh(ranges.as_ref()).await {
                    tracing::debug!(error = %e, "reading the users: again next round");
                }
            }
        });
    }
    // SQL: every connection a session whose statements run as transactions through
    // this node's ranges.
    let engine = Arc::new(shoal_sql::Engine {
        ranges: Arc::new(ranges.clone()),
        limits: crate::txn::txn_limits(&node.cfg),
        max_statement_bytes: node.cfg.max_request_bytes,
    });
    // Failed logins, on every port, counted and slowed down per source.
    let logins = Arc::new(Logins::new(node.metrics.clone()));
    let sql_secure = node.tls.clone().map(|t| shoal_sql::pg::Secure {
        tls: Arc::new(move || t.current().sql.clone()),
        who_is: users.who_is(),
        password_of: {
            let users = users.clone();
            Arc::new(move |user| users.password_of(user))
        },
        failed: {
            let logins = logins.clone();
            Arc::new(move |from| logins.failed(Some(from), "sql"))
        },
    });
    tasks.spawn(
        "sql",
        shoal_sql::pg::serve(
            sql_listener,
            engine.clone(),
            sql_secure,
            node.shutdown.clone(),
        ),
    );
    // The rows of dropped tables, deleted by the node that leads the range of their
    // marks (any node could; one at a time spares the conflicts).
    {
        let (engine, node) = (engine.clone(), node.clone());
        tasks.every("dropped tables", DROPPED_TABLES_EVERY, move || {
            let (engine, node) = (engine.clone(), node.clone());
            async move {
                let (start, end) = shoal_storage::keys::sql_dropped_span();
                let Some(r) = node.router.lookup(&start).filter(|r| r.is_leader()) else {
                    return;
                };
                // No mark, the usual case, is seen on the leader's own replica: no
                // Raft round, no timestamp (the range may be quiesced). A page of
                // the span cut at the range's edge says nothing of the rest.
                let idle = r.view().ok().and_then(|v| {
                    let page = v.scan(&start, &end, shoal_storage::keys::LATEST, 1, false).ok()?;
                    Some(page.kvs.is_empty() && !page.more)
                });
                if idle == Some(true) {
                    return;
                }
                match shoal_sql::dropped::clean(&engine).await {
                    Ok(0) => {}
                    Ok(n) => {
                        node.metrics.count_dropped_keys(n);
                        tracing::info!(keys = n, "deleted the rows of dropped tables");
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "deleting dropped tables' rows: again next round")
                    }
                }
            }
        });
    }
    let kv_service = Arc::new(KvService::new(node.clone(), clock.clone(), ranges.clone()));
    let here: std::sync::Weak<KvService> = Arc::downgrade(&kv_service);
    ranges.serve_here_with(here);
    let kv = KvServer::from_arc(kv_service)
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(usize::MAX);
    let admin = AdminServer::new(AdminService::new(
        node.clone(),
        keeper.clone(),
        driver.clone(),
        bootstrap,
        users.clone(),
        as_ranges,
    ));
    let peer = PeerServer::new(PeerService::new(
        node.clone(),
        keeper,
        driver,
        clock.clone(),
    ))
    .max_decoding_message_size(usize::MAX)
    .max_encoding_message_size(usize::MAX);
    let txn = TxnServer::new(TxnService::new(node.clone(), clock.clone(), ranges))
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(usize::MAX);
    let status_of: StatusOf = Arc::new(|e| Error::from(e).into());
    let raft = RaftServer::new(RaftService::new(node.router.clone(), beats, status_of))
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    // Clients' port: of the internal services only `Peer.Hello` (where the peer port
    // is) is answered there. Peers' port: the internal services alone.
    let checked = node.tls.is_some().then_some(users.clone());
    let server = |port| {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            // Nodes of the version before call the `Peer` methods at their old paths.
            .layer(LegacyPathsLayer)
            // After the paths are made current: who may call what on this port.
            .layer(AuthLayer {
                port,
                users: checked.clone(),
                logins: logins.clone(),
            })
    };
    let clients = server(Port::Client)
        .add_service(kv)
        .add_service(admin)
        .add_service(txn)
        .add_service(peer.clone());
    let peers = server(Port::Peer).add_service(peer).add_service(raft);
    let serve = |router: tonic::transport::server::Router<_>, listener, which| -> Serving {
        let stopped = node.shutdown.clone().cancelled_owned();
        match &node.tls {
            Some(tls) => Box::pin(router.serve_with_incoming_shutdown(
                listen::incoming(
                    listener,
                    tls.clone(),
                    which,
                    node.metrics.clone(),
                    node.shutdown.clone(),
                ),
                stopped,
            )),
            None => Box::pin(router.serve_with_incoming_shutdown(
                // TCP_NODELAY on every accepted connection: without it, small
                // responses wait for the peer's delayed ACK (tens of milliseconds).
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                stopped,
            )),
        }
    };
    let grpc = serve(clients, grpc_listener, listen::Listener::Grpc);
    let peer_grpc = serve(peers, peer_listener, listen::Listener::Peer);
    let http = crate::http::serve(
        node.clone(),
        http_listener,
        engine,
        (users.clone(), logins.clone()),
    );
    let servers = async {
        let (g, p, h) = tokio::join!(grpc, peer_grpc, http);
        (g.and(p), h)
    };
    let deadline = async {
        node.shutdown.cancelled().await;
        tokio::time::sleep(drain_timeout / 2).await;
    };
    let (g, h) = tokio::select! {
        r = servers => r,
        _ = deadline => {
            tracing::warn!("in-flight requests did not finish within the drain deadline; exiting");
            (Ok(()), Ok(()))
        }
    };
    tasks.stop().await;
    node.stop().await;
    g?;
    h.map_err(RunError::Http)?;
    if let Some(why) = node.fatal() {
        return Err(RunError::Fatal(why.to_string()));
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
