//! A table's rows as a statement writes them: each value made to fit its column, the
//! row and its index entries written (or deleted) together in the statement's
//! transaction, the primary key and unique indexes checked first (`23505`).

use crate::catalog::{Index, Row, Table};
use crate::ctx::Ctx;
use crate::error::{state, Result, SqlError};

/// Checks `row` against the table's columns: each value made to fit its column's
/// type, and NOT NULL kept.
pub fn fit_row(table: &Table, row: Row) -> Result<Row> {
    row.into_iter()
        .zip(&table.columns)
        .map(|(d, c)| {
            let d = d.fit(c.ty)?;
            if d.is_null() && c.not_null {
                return Err(SqlError::new(
                    state::NOT_NULL_VIOLATION,
                    format!(
                        "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                        c.name, table.name
                    ),
                ));
            }
            Ok(d)
        })
        .collect()
}

pub fn duplicate(constraint: &str) -> SqlError {
    SqlError::new(
        state::UNIQUE_VIOLATION,
        format!("duplicate key value violates unique constraint \"{constraint}\""),
    )
}

/// Writes `row`'s entry in `index`; a unique index refuses an entry of another row.
pub async fn put_index_entry(
    ctx: &mut Ctx<'_>,
    table: &Table,
    index: &Index,
    row: &Row,
) -> Result<()> {
    let (key, row_key) = table.index_entry(index, row)?;
    if index.unique {
        if let Some(other) = ctx.get(&key).await? {
            if other != row_key {
                return Err(duplicate(&index.name));
            }
        }
    }
    ctx.put(key, row_key)
}

/// A conflict with a unique index that `row` would meet (the index's name).
pub async fn unique_conflict(
    ctx: &mut Ctx<'_>,
    table: &Table,
    row: &Row,
) -> Result<Option<String>> {
    for ix in table.indexes.iter().filter(|i| i.unique) {
        let (key, row_key) = table.index_entry(ix, row)?;
        if let Some(other) = ctx.get(&key).await? {
            if other != row_key {
                return Ok(Some(ix.name.clone()));
            }
        }
    }
    Ok(None)
}

/// Writes a new row and its index entries.
pub async fn put_row(ctx: &mut Ctx<'_>, table: &Table, key: Vec<u8>, row: &Row) -> Result<()> {
    for ix in &table.indexes {
        put_index_entry(ctx, table, ix, row).await?;
    }
    ctx.put(key, table.encode_row(row)?)
}

/// Deletes a row and its index entries.
pub async fn delete_row(ctx: &mut Ctx<'_>, table: &Table, key: Vec<u8>, row: &Row) -> Result<()> {
    for ix in &table.indexes {
        let (k, _) = table.index_entry(ix, row)?;
        ctx.delete(k)?;
    }
    ctx.delete(key)
}

/// Replaces row `old` (at `old_key`) by `new`: its index entries follow.
pub async fn replace_row(
    ctx: &mut Ctx<'_>,
    table: &Table,
    old_key: Vec<u8>,
    old: &Row,
    new: Row,
) -> Result<()> {
    let new_key = table.key_of(&new)?;
    if new_key != old_key && ctx.get(&new_key).await?.is_some() {
        return Err(duplicate(&format!("{}_pkey", table.name)));
    }
    for ix in &table.indexes {
        let (k, _) = table.index_entry(ix, old)?;
        ctx.delete(k)?;
    }
    if new_key != old_key {
        ctx.delete(old_key)?;
    }
    put_row(ctx, table, new_key, &new).await
}
