//! [`Ctx`]: what a statement runs with: its transaction, the cluster's ranges, and
//! the statement's parameters; and [`Output`], what it answers.

use shoal_storage::keys;
use shoal_txn::{Ranges, Transaction};
use tokio_util::sync::CancellationToken;

use crate::catalog::Table;
use crate::error::{state, Result, SqlError};
use crate::types::{Datum, SqlType};

/// How many pairs one page of a scan reads.
pub const PAGE: usize = 256;

/// What a statement answers.
#[derive(Debug)]
pub enum Output {
    /// Rows, with their columns' names and types, and the command that made them
    /// (`SELECT`, or `INSERT`/`UPDATE`/`DELETE` with `RETURNING`).
    Rows {
        columns: Vec<(String, SqlType)>,
        rows: Vec<Vec<Datum>>,
        command: &'static str,
    },
    /// A query's rows as they are read: each a row or the error that ended them.
    /// Dropping the receiver stops the read.
    Stream {
        columns: Vec<(String, SqlType)>,
        rows: tokio::sync::mpsc::Receiver<Result<Vec<Datum>>>,
    },
    /// A command's tag (`INSERT 0 2`, `CREATE TABLE`) and how many rows it touched.
    Command { tag: String, rows: Option<u64> },
}

impl Output {
    pub fn command(tag: &str) -> Output {
        Output::Command {
            tag: tag.to_string(),
            rows: None,
        }
    }

    pub fn count(tag: &str, rows: u64) -> Output {
        Output::Command {
            tag: tag.to_string(),
            rows: Some(rows),
        }
    }
}

/// `read`, unless `cancel` fires first (`57014`).
async fn unless_cancelled<T>(
    cancel: &CancellationToken,
    read: impl std::future::Future<Output = shoal_txn::Result<T>>,
) -> Result<T> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(SqlError::canceled()),
        r = read => Ok(r?),
    }
}

/// A statement's transaction, the ranges it reads and writes through, its parameters,
/// and the token its client cancels it by.
pub struct Ctx<'a> {
    pub txn: &'a mut Transaction,
    pub ranges: &'a dyn Ranges,
    pub params: &'a [Datum],
    /// Cancelled: the statement's next read fails with `57014`, and one waiting (on a
    /// lock, on a range) gives up. Reads change nothing, so a read given up leaves
    /// nothing behind; a commit is never cut short.
    pub cancel: CancellationToken,
}

impl Ctx<'_> {
    /// The value of `key` in the transaction's view.
    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let read = unless_cancelled(&self.cancel, self.txn.get(self.ranges, key)).await?;
        Ok(read.map(|r| r.value))
    }

    /// One page of `[start, end)`: its pairs, and where the next page starts (`None`:
    /// the span is done).
    pub async fn page(
        &mut self,
        start: &[u8],
        end: &[u8],
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>)> {
        let reads =
            unless_cancelled(&self.cancel, self.txn.scan(self.ranges, start, end, PAGE)).await?;
        let next = (reads.len() >= PAGE).then(|| {
            let mut k = reads[reads.len() - 1].key.clone();
            k.push(0);
            k
        });
        Ok((reads.into_iter().map(|r| (r.key, r.value)).collect(), next))
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        Ok(self.txn.put(key, value)?)
    }

    pub fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        Ok(self.txn.delete(key)?)
    }

    /// The descriptor of table `name`, if there is one.
    pub async fn find_table(&mut self, name: &str) -> Result<Option<Table>> {
        match self.get(&keys::sql_catalog_key(name)).await? {
            Some(stored) => Ok(Some(Table::decode(&stored)?)),
            None => Ok(None),
        }
    }

    /// The descriptor of table `name`: `42P01` if there is none.
    pub async fn table(&mut self, name: &str) -> Result<Table> {
        self.find_table(name)
            .await?
            .ok_or_else(|| SqlError::undefined_table(name))
    }

    /// Every table, by name.
    pub async fn tables(&mut self) -> Result<Vec<Table>> {
        let (mut start, end) = keys::sql_catalog_span();
        let mut out = Vec::new();
        loop {
            let (pairs, next) = self.page(&start, &end).await?;
            for (_, v) in pairs {
                out.push(Table::decode(&v)?);
            }
            match next {
                Some(n) => start = n,
                None => return Ok(out),
            }
        }
    }

    /// A new table id.
    pub async fn next_table_id(&mut self) -> Result<u32> {
        let key = keys::sql_next_table_id_key();
        let id = match self.get(&key).await? {
            Some(v) => keys::decode_u64(&v)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| SqlError::internal("a corrupt table id counter"))?,
            // Ids below 100 are kept for the system's own tables.
            None => 100,
        };
        let next = id
            .checked_add(1)
            .ok_or_else(|| SqlError::new(state::PROGRAM_LIMIT_EXCEEDED, "no table ids are left"))?;
        self.put(key, keys::encode_u64(next as u64).to_vec())?;
        Ok(id)
    }
}
