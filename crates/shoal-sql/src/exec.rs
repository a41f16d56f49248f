//! A bound query ([`Bound`]: its tables, join, filter, grouping, projection, sort and
//! limit, and the access path chosen for it) and how it runs ([`run`]): rows read
//! through the access path a page at a time (a join: the right table read once into a
//! hash table on the join key, the left one streamed), filtered as they come, grouped
//! into one accumulator per group, projected, sorted if they must be, cut by `OFFSET`
//! and `LIMIT`, and pushed into a [`Sink`]: a vector, or a channel that a client
//! drains (`select::stream`). With no sort or grouping, each row goes out as it passes
//! and the read stops at the limit.

use std::collections::HashMap;

use crate::aggregate::{Acc, Agg};
use crate::catalog::{key_part, Row, Table};
use crate::ctx::Ctx;
use crate::error::{Result, SqlError};
use crate::expr::Scalar;
use crate::plan::{Access, Cursor};
use crate::types::{Datum, SqlType};

/// A table read by the query, with the name its columns are qualified by.
pub(crate) struct Source {
    pub table: Table,
    pub alias: String,
}

/// A sort key: an output column, or an expression over the input (or grouped) row.
pub(crate) enum SortBy {
    Out(usize),
    Expr(Scalar),
}

/// An inner join: its condition, and the two sides of one of its equalities (the
/// right one over the joined row, its left columns NULL), whose values meet in the
/// hash table.
pub(crate) struct Join {
    pub on: Scalar,
    pub left_key: Scalar,
    pub right_key: Scalar,
    /// The keys compare as floats (one side is a float).
    pub as_float: bool,
}

/// A join key as hash table key; `None` for NULL, which joins nothing.
fn join_key(d: Datum, as_float: bool) -> Result<Option<Vec<u8>>> {
    Ok(match d {
        Datum::Null => None,
        Datum::Int(i) if as_float => Some(key_part(&Datum::Float(i as f64))?),
        d => Some(key_part(&d)?),
    })
}

/// A bound query, ready to run.
pub(crate) struct Bound {
    pub sources: Vec<Source>,
    pub join: Option<Join>,
    pub filter: Option<Scalar>,
    pub grouping: Option<(Vec<Scalar>, Vec<Agg>)>,
    pub having: Option<Scalar>,
    pub columns: Vec<(String, SqlType)>,
    pub project: Vec<Scalar>,
    pub sort: Vec<(SortBy, bool, bool)>,
    pub offset: usize,
    pub limit: Option<usize>,
    pub access: Option<Access>,
    /// The ORDER BY is the primary key's order, which the access path reads in: no
    /// sort, and the read stops at `OFFSET + LIMIT`.
    pub in_key_order: bool,
    /// The types of the input row's columns.
    pub types: Vec<SqlType>,
    /// Parameters LIMIT and OFFSET take.
    pub count_params: Vec<usize>,
}

/// Where a query's rows go.
pub(crate) enum Sink<'a> {
    Collect(&'a mut Vec<Row>),
    Send {
        tx: &'a tokio::sync::mpsc::Sender<Result<Row>>,
        sent: &'a mut u64,
        /// A query making rows without reading (a join's matches) stops here too.
        cancel: &'a tokio_util::sync::CancellationToken,
    },
}

impl Sink<'_> {
    /// Takes a row; `false` when no more are wanted (the receiver went away).
    pub async fn push(&mut self, row: Row) -> Result<bool> {
        match self {
            Sink::Collect(rows) => {
                rows.push(row);
                Ok(true)
            }
            Sink::Send { tx, sent, cancel } => {
                **sent += 1;
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => Err(SqlError::canceled()),
                    r = tx.send(Ok(row)) => Ok(r.is_ok()),
                }
            }
        }
    }
}

/// The rows of a bound query that pass its WHERE clause, as they are read.
struct Input {
    cursor: Option<Cursor>,
    /// A join: the right table's rows by join value.
    right: Option<HashMap<Vec<u8>, Vec<Row>>>,
    pending: Vec<Row>,
    /// No table: one empty row, once.
    unit: bool,
}

impl Input {
    async fn next(&mut self, ctx: &mut Ctx<'_>, b: &Bound) -> Result<Option<Row>> {
        loop {
            if let Some(r) = self.pending.pop() {
                return Ok(Some(r));
            }
            let Some(cursor) = &mut self.cursor else {
                return Ok(std::mem::take(&mut self.unit).then(Vec::new));
            };
            let Some((_, row)) = cursor.next(ctx, &b.sources[0].table).await? else {
                return Ok(None);
            };
            match (&self.right, &b.join) {
                (Some(right), Some(j)) => {
                    let Some(key) = join_key(j.left_key.eval(&row, ctx.params)?, j.as_float)?
                    else {
                        continue;
                    };
                    if let Some(matches) = right.get(&key) {
                        for m in matches.iter().rev() {
                            let mut joined = row.clone();
                            joined.extend(m.iter().cloned());
                            if j.on.passes(&joined, ctx.params)? {
                                self.pending.push(joined);
                            }
                        }
                    }
                }
                _ => return Ok(Some(row)),
            }
        }
    }
}

/// Reads every row of the right table into a hash table on the join's right key.
async fn hash_table(
    ctx: &mut Ctx<'_>,
    left_len: usize,
    table: &Table,
    j: &Join,
) -> Result<HashMap<Vec<u8>, Vec<Row>>> {
    let mut cursor = Cursor::new(table, Access::Full);
    let mut out: HashMap<Vec<u8>, Vec<Row>> = HashMap::new();
    let mut padded = vec![Datum::Null; left_len];
    while let Some((_, row)) = cursor.next(ctx, table).await? {
        padded.truncate(left_len);
        padded.extend(row.iter().cloned());
        if let Some(key) = join_key(j.right_key.eval(&padded, ctx.params)?, j.as_float)? {
            out.entry(key).or_default().push(row);
        }
    }
    Ok(out)
}

/// Runs a bound query, its rows into `sink`.
pub(crate) async fn run(ctx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> Result<()> {
    let mut input = Input {
        cursor: None,
        right: None,
        pending: Vec::new(),
        unit: true,
    };
    match b.sources.as_slice() {
        [] => {}
        [one] => {
            input.cursor = Some(Cursor::new(
                &one.table,
                b.access.clone().unwrap_or(Access::Full),
            ))
        }
        [l, r] => {
            let j = b
                .join
                .as_ref()
                .ok_or_else(|| SqlError::internal("a join without its keys"))?;
            input.right = Some(hash_table(ctx, l.table.columns.len(), &r.table, j).await?);
            input.cursor = Some(Cursor::new(&l.table, Access::Full));
        }
        _ => unreachable!("bind_query allows two tables at most"),
    }
    let params = ctx.params.to_vec();
    let mut keyed: Vec<(Vec<Datum>, Vec<Datum>)> = Vec::new();
    // A row's output columns, and its sort keys before them.
    let keyed_row = |row: &[Datum]| -> Result<(Vec<Datum>, Vec<Datum>)> {
        let out: Vec<Datum> = b
            .project
            .iter()
            .map(|p| p.eval(row, &params))
            .collect::<Result<_>>()?;
        let keys = b
            .sort
            .iter()
            .map(|(s, _, _)| match s {
                SortBy::Out(i) => Ok(out[*i].clone()),
                SortBy::Expr(e) => e.eval(row, &params),
            })
            .collect::<Result<_>>()?;
        Ok((keys, out))
    };
    match &b.grouping {
        // Unsorted: each row goes out as it passes, and the read stops at the limit.
        None if b.sort.is_empty() => {
            let (mut skip, mut left) = (b.offset, b.limit.unwrap_or(usize::MAX));
            while left > 0 {
                let Some(row) = input.next(ctx, b).await? else {
                    break;
                };
                if let Some(f) = &b.filter {
                    if !f.passes(&row, &params)? {
                        continue;
                    }
                }
                let (_, out) = keyed_row(&row)?;
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if !sink.push(out).await? {
                    return Ok(());
                }
                left -= 1;
            }
            return Ok(());
        }
        None => {
            while let Some(row) = input.next(ctx, b).await? {
                if let Some(f) = &b.filter {
                    if !f.passes(&row, &params)? {
                        continue;
                    }
                }
                keyed.push(keyed_row(&row)?);
            }
        }
        Some((groups, aggs)) => {
            let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
            let mut states: Vec<(Vec<Datum>, Vec<Acc>)> = Vec::new();
            while let Some(row) = input.next(ctx, b).await? {
                if let Some(f) = &b.filter {
                    if !f.passes(&row, &params)? {
                        continue;
                    }
                }
                let g: Vec<Datum> = groups
                    .iter()
                    .map(|g| g.eval(&row, &params))
                    .collect::<Result<_>>()?;
                let k = postcard::to_stdvec(&g).map_err(|e| SqlError::internal(e.to_string()))?;
                let i = *index.entry(k).or_insert_with(|| {
                    states.push((g, aggs.iter().map(Acc::new).collect()));
                    states.len() - 1
                });
                for (acc, agg) in states[i].1.iter_mut().zip(aggs) {
                    acc.add(agg, &row, &params)?;
                }
            }
            // With no GROUP BY, an aggregate over no rows still answers one row.
            if states.is_empty() && groups.is_empty() {
                states.push((Vec::new(), aggs.iter().map(Acc::new).collect()));
            }
            for (g, accs) in states {
                let mut row = g;
                for (acc, agg) in accs.iter().zip(aggs) {
                    row.push(acc.result(agg)?);
                }
                if let Some(h) = &b.having {
                    if !h.passes(&row, &params)? {
                        continue;
                    }
                }
                keyed.push(keyed_row(&row)?);
            }
        }
    }
    if !b.sort.is_empty() {
        keyed.sort_by(|(a, _), (c, _)| {
            for ((x, y), (_, desc, nulls_first)) in a.iter().zip(c).zip(&b.sort) {
                let o = match (x.is_null(), y.is_null()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => {
                        if *nulls_first {
                            std::cmp::Ordering::Less
                        } else {
                            std::cmp::Ordering::Greater
                        }
                    }
                    (false, true) => {
                        if *nulls_first {
                            std::cmp::Ordering::Greater
                        } else {
                            std::cmp::Ordering::Less
                        }
                    }
                    _ => {
                        let o = x.sort_cmp(y);
                        if *desc {
                            o.reverse()
                        } else {
                            o
                        }
                    }
                };
                if o.is_ne() {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    for (_, row) in keyed
        .into_iter()
        .skip(b.offset)
        .take(b.limit.unwrap_or(usize::MAX))
    {
        if !sink.push(row).await? {
            break;
        }
    }
    Ok(())
}
