//! Access paths: which keys a statement over one table reads, chosen from its WHERE
//! clause ([`choose`]): a point get when every primary key column is fixed, an index
//! lookup when every column of an index is, a range scan over the primary key when a
//! leading part of it is fixed or bounded, else a full scan. The WHERE clause is still
//! checked on every row read, so a path only has to read a superset of the rows.
//! [`Cursor`] reads the rows of a path a page at a time.

use shoal_storage::keys;

use crate::catalog::{Row, Table};
use crate::ctx::Ctx;
use crate::error::Result;
use crate::expr::{Op, Scalar};
use crate::types::{Datum, SqlType};

/// How a statement reads a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// The one row of a primary key.
    Point(Vec<u8>),
    /// The rows whose index entries start with `prefix`, through index `index`
    /// (a position in `Table::indexes`).
    Index { index: usize, prefix: Vec<u8> },
    /// The rows of `[start, end)` in primary key order (`fixed` leading columns
    /// fixed, `bounded`: a range on the next one).
    Span {
        start: Vec<u8>,
        end: Vec<u8>,
        fixed: usize,
        bounded: bool,
    },
    /// Every row.
    Full,
}

impl Access {
    /// What `EXPLAIN` says of it.
    pub fn describe(&self, table: &Table) -> String {
        match self {
            Access::Point(_) => format!("point get on {} (primary key)", table.name),
            Access::Index { index, .. } => {
                let ix = &table.indexes[*index];
                format!(
                    "index lookup on {} using {}{}",
                    table.name,
                    ix.name,
                    if ix.unique { " (unique)" } else { "" }
                )
            }
            Access::Span { fixed, bounded, .. } => format!(
                "range scan on {} (primary key: {} column{} fixed{})",
                table.name,
                fixed,
                if *fixed == 1 { "" } else { "s" },
                if *bounded { ", next bounded" } else { "" }
            ),
            Access::Full => format!("full scan on {}", table.name),
        }
    }
}

/// The conjuncts of a WHERE clause (`a AND b AND c`).
pub fn conjuncts<'a>(s: &'a Scalar, out: &mut Vec<&'a Scalar>) {
    match s {
        Scalar::Binary(Op::And, a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        other => out.push(other),
    }
}

/// `c` as a value of a column of `ty`, if it converts exactly (a key bound must not
/// be rounded: `a < 2.5` on an integer is not `a < 2`).
fn exact(c: &Scalar, ty: SqlType, params: &[Datum]) -> Option<Datum> {
    if !c.is_constant() {
        return None;
    }
    let v = c.eval(&[], params).ok()?;
    let same_kind = matches!(
        (&v, ty),
        (Datum::Int(_), SqlType::Int2 | SqlType::Int4 | SqlType::Int8)
            | (Datum::Float(_), SqlType::Float8)
            | (Datum::Text(_), SqlType::Text | SqlType::Varchar(_))
            | (Datum::Bool(_), SqlType::Bool)
            | (Datum::Bytes(_), SqlType::Bytea)
            | (Datum::Timestamp(_), SqlType::TimestampTz)
            | (Datum::Untyped(_), _)
    );
    if !same_kind {
        return None;
    }
    // Out of the column's range or bad text: no key matches; the filter says so.
    v.fit(ty).ok().filter(|d| !d.is_null())
}

/// Column `col` compared by `op` with a constant, from one conjunct (either side).
fn comparison(s: &Scalar) -> Option<(usize, Op, &Scalar)> {
    let Scalar::Binary(op, a, b) = s else {
        return None;
    };
    let flipped = |op| match op {
        Op::Lt => Op::Gt,
        Op::LtEq => Op::GtEq,
        Op::Gt => Op::Lt,
        Op::GtEq => Op::LtEq,
        o => o,
    };
    match (a.as_ref(), b.as_ref()) {
        (Scalar::Column(c), other) if other.is_constant() => Some((*c, *op, other)),
        (other, Scalar::Column(c)) if other.is_constant() => Some((*c, flipped(*op), other)),
        _ => None,
    }
}

/// The access path for `filter` over `table`, whose columns are the row's first ones.
pub fn choose(table: &Table, filter: Option<&Scalar>, params: &[Datum]) -> Result<Access> {
    let mut parts = Vec::new();
    if let Some(f) = filter {
        conjuncts(f, &mut parts);
    }
    let ty = |c: usize| table.columns[c].ty;
    let eq = |col: usize| {
        parts.iter().find_map(|p| match comparison(p) {
            Some((c, Op::Eq, v)) if c == col => exact(v, ty(col), params),
            _ => None,
        })
    };
    // Fixed leading columns of the primary key.
    let mut fixed = Vec::new();
    for &c in &table.primary_key {
        match eq(c) {
            Some(v) => fixed.push(v),
            None => break,
        }
    }
    if fixed.len() == table.primary_key.len() {
        return Ok(Access::Point(table.row_key(&fixed)?));
    }
    for (i, ix) in table.indexes.iter().enumerate() {
        let vals: Option<Vec<Datum>> = ix.columns.iter().map(|&c| eq(c)).collect();
        if let Some(vals) = vals {
            return Ok(Access::Index {
                index: i,
                prefix: table.index_prefix(ix, &vals)?,
            });
        }
    }
    let prefix = table.row_key(&fixed)?;
    let (mut start, mut end) = (prefix.clone(), keys::prefix_end(&prefix));
    let mut bounded = false;
    let next = table.primary_key[fixed.len()];
    for p in &parts {
        let (c, op, v) = match (comparison(p), p) {
            (Some(x), _) => x,
            _ => continue,
        };
        if c != next {
            continue;
        }
        let Some(v) = exact(v, ty(c), params) else {
            continue;
        };
        let mut at = prefix.clone();
        at.extend_from_slice(&crate::catalog::key_part(&v)?);
        match op {
            Op::Gt => start = start.max(keys::prefix_end(&at)),
            Op::GtEq => start = start.max(at),
            Op::Lt => end = end.min(at),
            Op::LtEq => end = end.min(keys::prefix_end(&at)),
            _ => continue,
        }
        bounded = true;
    }
    if fixed.is_empty() && !bounded {
        return Ok(Access::Full);
    }
    Ok(Access::Span {
        start,
        end,
        fixed: fixed.len(),
        bounded,
    })
}

/// The rows of an access path, a page at a time, with their keys.
pub struct Cursor {
    access: Access,
    /// Where the next page starts; `None` when done.
    next: Option<Vec<u8>>,
    end: Vec<u8>,
    buffer: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
}

impl Cursor {
    pub fn new(table: &Table, access: Access) -> Cursor {
        let (start, end) = match &access {
            Access::Point(k) => (k.clone(), Vec::new()),
            Access::Index { prefix, .. } => (prefix.clone(), keys::prefix_end(prefix)),
            Access::Span { start, end, .. } => (start.clone(), end.clone()),
            Access::Full => table.rows_span(),
        };
        Cursor {
            access,
            next: Some(start),
            end,
            buffer: Vec::new().into_iter(),
        }
    }

    /// The next row and its key; `None` when the path is read.
    pub async fn next(
        &mut self,
        ctx: &mut Ctx<'_>,
        table: &Table,
    ) -> Result<Option<(Vec<u8>, Row)>> {
        loop {
            if let Some((k, v)) = self.buffer.next() {
                if let Access::Index { .. } = self.access {
                    // An index entry's value is its row's key.
                    match ctx.get(&v).await? {
                        Some(row) => return Ok(Some((v, table.decode_row(&row)?))),
                        None => continue,
                    }
                }
                return Ok(Some((k, table.decode_row(&v)?)));
            }
            let Some(start) = self.next.take() else {
                return Ok(None);
            };
            if let Access::Point(key) = &self.access {
                let key = key.clone();
                return match ctx.get(&key).await? {
                    Some(v) => Ok(Some((key, table.decode_row(&v)?))),
                    None => Ok(None),
                };
            }
            if start >= self.end {
                return Ok(None);
            }
            let (pairs, next) = ctx.page(&start, &self.end).await?;
            self.next = next;
            self.buffer = pairs.into_iter();
        }
    }
}
