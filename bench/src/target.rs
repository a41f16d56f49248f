//! The targets behind one interface: shoal through its SDK, etcd through its v3 gRPC
//! API, and shoal through its SQL endpoint (a table of the same keys and values, read
//! by primary key and written by an upsert of one row, prepared once per connection).

use std::sync::Arc;

use anyhow::{bail, Context};

use crate::TargetKind;

#[derive(Clone)]
pub enum Target {
    Shoal(shoal_client::Client),
    Etcd(Box<etcd_client::KvClient>),
    Sql(Arc<Sql>),
}

/// A Postgres connection to a shoal node, and its prepared statements.
pub struct Sql {
    client: tokio_postgres::Client,
    read: tokio_postgres::Statement,
    write: tokio_postgres::Statement,
}

/// The SQL target's table.
const SQL_TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_kv (k BYTEA PRIMARY KEY, v BYTEA)";

impl Sql {
    async fn connect(endpoint: &str) -> anyhow::Result<Sql> {
        let dsn = format!("postgresql://root@{endpoint}/defaultdb?connect_timeout=10");
        let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        tokio::spawn(conn);
        client.batch_execute(SQL_TABLE).await?;
        let read = client
            .prepare("SELECT v FROM bench_kv WHERE k = $1")
            .await?;
        let write = client
            .prepare(
                "INSERT INTO bench_kv VALUES ($1, $2) \
                 ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            )
            .await?;
        Ok(Sql {
            client,
            read,
            write,
        })
    }
}

impl Target {
    /// The `n`th connection: the SQL target spreads its connections over the nodes.
    /// `tls`: a secure shoal cluster's client certificates.
    pub async fn connect(
        kind: TargetKind,
        endpoints: &[String],
        n: usize,
        tls: Option<&shoal_client::ClientTls>,
    ) -> anyhow::Result<Self> {
        Ok(match kind {
            TargetKind::Sql => Target::Sql(Arc::new(
                Sql::connect(&endpoints[n % endpoints.len()]).await?,
            )),
            TargetKind::Shoal => {
                let opts = shoal_client::ClientOptions {
                    tls: tls.cloned(),
                    ..Default::default()
                };
                Target::Shoal(shoal_client::Client::with_options(
                    endpoints.iter().cloned(),
                    opts,
                )?)
            }
            TargetKind::Etcd => {
                let eps: Vec<String> = endpoints
                    .iter()
                    .map(|e| {
                        if e.contains("://") {
                            e.clone()
                        } else {
                            format!("http://{e}")
                        }
                    })
                    .collect();
                let c = etcd_client::Client::connect(eps, None)
                    .await
                    .context("connecting to etcd")?;
                Target::Etcd(Box::new(c.kv_client()))
            }
        })
    }

    pub async fn read(&self, key: &[u8], stale: bool) -> anyhow::Result<()> {
        match self {
            Target::Shoal(c) => {
                let cons = if stale {
                    shoal_client::Consistency::Stale
                } else {
                    shoal_client::Consistency::Linearizable
                };
                c.get_with(key, cons).await?;
            }
            Target::Etcd(c) => {
                let opts = stale.then(|| etcd_client::GetOptions::new().with_serializable());
                c.as_ref().clone().get(key, opts).await?;
            }
            Target::Sql(s) => {
                if stale {
                    bail!("the SQL target reads linearizably only");
                }
                s.client.query_opt(&s.read, &[&key]).await?;
            }
        }
        Ok(())
    }

    pub async fn write(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        match self {
            Target::Shoal(c) => {
                c.put(key, value).await?;
            }
            Target::Etcd(c) => {
                c.as_ref().clone().put(key, value, None).await?;
            }
            Target::Sql(s) => {
                s.client.execute(&s.write, &[&key, &value]).await?;
            }
        }
        Ok(())
    }

    /// Reads `count` keys from `start` on.
    pub async fn scan(&self, start: &[u8], count: u32) -> anyhow::Result<()> {
        match self {
            Target::Shoal(c) => {
                c.scan_page(start, b"", count, shoal_client::Consistency::Linearizable)
                    .await?;
            }
            Target::Etcd(c) => {
                let opts = etcd_client::GetOptions::new()
                    .with_from_key()
                    .with_limit(count as i64);
                c.as_ref().clone().get(start, Some(opts)).await?;
            }
            Target::Sql(_) => bail!("the SQL target runs reads and writes of one key"),
        }
        Ok(())
    }

    /// The first of `count` consecutive timestamps of the cluster's oracle. etcd has
    /// none.
    pub async fn timestamps(&self, count: u64) -> anyhow::Result<u64> {
        match self {
            Target::Shoal(c) => Ok(c.timestamps(count).await?),
            Target::Etcd(_) => bail!("etcd has no timestamp oracle"),
            Target::Sql(_) => bail!("the SQL target has no timestamp oracle call"),
        }
    }

    /// Writes every key of `keys` in one transaction.
    pub async fn write_all(&self, keys: &[Vec<u8>], value: &[u8]) -> anyhow::Result<()> {
        match self {
            Target::Shoal(c) => {
                let ops = keys
                    .iter()
                    .map(|k| shoal_client::ops::write_put(k, value))
                    .collect();
                c.batch(ops).await?;
            }
            Target::Etcd(c) => {
                use etcd_client::{Txn, TxnOp};
                let ops: Vec<TxnOp> = keys
                    .iter()
                    .map(|k| TxnOp::put(k.clone(), value, None))
                    .collect();
                c.as_ref().clone().txn(Txn::new().and_then(ops)).await?;
            }
            Target::Sql(_) => bail!("the SQL target runs reads and writes of one key"),
        }
        Ok(())
    }

    /// Reads every key of `keys`, then writes them all, in one transaction: run again
    /// until no other write came between.
    pub async fn read_modify_write_all(
        &self,
        keys: &[Vec<u8>],
        value: &[u8],
    ) -> anyhow::Result<()> {
        match self {
            Target::Shoal(c) => {
                let keys = keys.to_vec();
                c.transaction(|t| {
                    let keys = keys.clone();
                    async move {
                        for k in &keys {
                            t.get(k).await?;
                        }
                        for k in &keys {
                            t.put(k, value).await?;
                        }
                        Ok(())
                    }
                })
                .await?;
            }
            Target::Etcd(c) => {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
                let mut c = c.as_ref().clone();
                loop {
                    let gets: Vec<TxnOp> =
                        keys.iter().map(|k| TxnOp::get(k.clone(), None)).collect();
                    let r = c.txn(Txn::new().and_then(gets)).await?;
                    let revs: Vec<i64> = r
                        .op_responses()
                        .into_iter()
                        .map(|o| match o {
                            TxnOpResponse::Get(g) => {
                                g.kvs().first().map_or(0, |kv| kv.mod_revision())
                            }
                            _ => 0,
                        })
                        .collect();
                    let guards: Vec<Compare> = keys
                        .iter()
                        .zip(&revs)
                        .map(|(k, rev)| Compare::mod_revision(k.clone(), CompareOp::Equal, *rev))
                        .collect();
                    let puts: Vec<TxnOp> = keys
                        .iter()
                        .map(|k| TxnOp::put(k.clone(), value, None))
                        .collect();
                    if c.txn(Txn::new().when(guards).and_then(puts))
                        .await?
                        .succeeded()
                    {
                        return Ok(());
                    }
                }
            }
            Target::Sql(_) => bail!("the SQL target runs reads and writes of one key"),
        }
        Ok(())
    }

    /// Reads the key, then writes it only if it did not change meanwhile.
    pub async fn read_modify_write(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        match self {
            Target::Shoal(c) => {
                let version = c.get(key).await?.map_or(0, |kv| kv.version);
                c.compare_and_put(key, version, value).await?;
            }
            Target::Etcd(c) => {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                let mut c = c.as_ref().clone();
                let r = c.get(key, None).await?;
                let rev = r.kvs().first().map_or(0, |kv| kv.mod_revision());
                let txn = Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                    .and_then([TxnOp::put(key, value, None)]);
                if let Err(e) = c.txn(txn).await {
                    bail!("etcd txn: {e}");
                }
            }
            Target::Sql(_) => bail!("the SQL target runs reads and writes of one key"),
        }
        Ok(())
    }
}
