//! The rows of dropped tables, deleted after the drop. `DROP TABLE` removes a table's
//! descriptor and leaves a mark of its id in the same transaction, so a table of any
//! size drops in one small transaction; [`clean`] then deletes the rows and index
//! entries under each mark, a page per transaction, and the mark with the last page.
//! Table ids are never used again, so no statement sees those rows meanwhile, and a
//! cleaner stopped midway (a node killed) leaves the mark for the next one.

use std::sync::Arc;

use shoal_storage::keys;
use shoal_txn::{Options, Ranges, Transaction};

use crate::error::Result;
use crate::session::Engine;

/// Keys deleted per transaction: well inside a transaction's limits.
const BATCH: usize = 1_000;

/// Deletes what dropped tables left: the number of keys deleted. Cleaners running at
/// once conflict on a page, and the one refused tries again at its next round.
pub async fn clean(engine: &Engine) -> Result<u64> {
    let ranges: &Arc<dyn Ranges> = &engine.ranges;
    let (start, end) = keys::sql_dropped_span();
    let at = ranges.now().await?;
    let marks = ranges.scan(&start, &end, at, 0).await?;
    let mut deleted = 0;
    for mark in marks {
        let Some(table_id) = keys::sql_dropped_table(&mark.key) else {
            continue;
        };
        let (from, to) = keys::sql_table_span(table_id);
        loop {
            let mut txn = Transaction::new(ranges.now().await?, Options::default(), engine.limits);
            let page = txn.scan(ranges.as_ref(), &from, &to, BATCH).await?;
            let last = page.len() < BATCH;
            for r in &page {
                txn.delete(r.key.clone())?;
            }
            if last {
                txn.delete(mark.key.clone())?;
            }
            txn.commit(ranges.clone()).await?;
            deleted += page.len() as u64;
            if last {
                break;
            }
        }
    }
    Ok(deleted)
}
