//! The catalog: a table's descriptor ([`Table`]: its columns, primary key and
//! indexes), stored in the key space (`keys::sql_catalog_key`) and changed in the
//! transaction of the statement that changes it; and how a table's rows and index
//! entries become keys and values.

use serde::{Deserialize, Serialize};
use shoal_storage::keys;

use crate::error::{state, Result, SqlError};
use crate::types::{Datum, SqlType};

/// Format version of a stored descriptor, first byte of its value.
const DESCRIPTOR_FORMAT: u8 = 1;
/// Format version of a stored row, first byte of its value.
const ROW_FORMAT: u8 = 1;

/// A column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub not_null: bool,
    /// A constant default (`None`: NULL).
    pub default: Option<Datum>,
    /// The default as it was written, for `SHOW CREATE TABLE`.
    pub default_sql: Option<String>,
}

/// A secondary index: its entries map its columns' values to rows' primary keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub id: u32,
    pub name: String,
    /// Positions of its columns in the table.
    pub columns: Vec<usize>,
    pub unique: bool,
}

/// A table's descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub id: u32,
    pub name: String,
    pub columns: Vec<Column>,
    /// Positions of the primary key's columns.
    pub primary_key: Vec<usize>,
    pub indexes: Vec<Index>,
    /// The next index id to hand out.
    pub next_index_id: u32,
}

/// A row: one value per column, in the table's column order.
pub type Row = Vec<Datum>;

impl Table {
    /// The position of column `name`.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| SqlError::undefined_column(name))
    }

    /// The key of the row whose primary key columns hold `pk`.
    pub fn row_key(&self, pk: &[Datum]) -> Result<Vec<u8>> {
        let mut key = keys::sql_index_prefix(self.id, keys::PRIMARY_INDEX);
        for d in pk {
            push_part(&mut key, d)?;
        }
        Ok(key)
    }

    /// The key of `row`.
    pub fn key_of(&self, row: &Row) -> Result<Vec<u8>> {
        let pk: Vec<Datum> = self.primary_key.iter().map(|&i| row[i].clone()).collect();
        self.row_key(&pk)
    }

    /// Bounds `[start, end)` of every row of the table.
    pub fn rows_span(&self) -> (Vec<u8>, Vec<u8>) {
        let p = keys::sql_index_prefix(self.id, keys::PRIMARY_INDEX);
        let end = keys::prefix_end(&p);
        (p, end)
    }

    /// The prefix of the keys of `index` for the leading values `vals`.
    pub fn index_prefix(&self, index: &Index, vals: &[Datum]) -> Result<Vec<u8>> {
        let mut key = keys::sql_index_prefix(self.id, index.id);
        for d in vals {
            push_part(&mut key, d)?;
        }
        Ok(key)
    }

    /// The key and value of `row`'s entry in `index`: a unique index maps its values
    /// to the row's key (unless one of them is NULL: NULLs are never equal, so such
    /// entries are kept apart by the primary key, as in a non-unique index); a
    /// non-unique one holds the primary key in its key too.
    pub fn index_entry(&self, index: &Index, row: &Row) -> Result<(Vec<u8>, Vec<u8>)> {
        let vals: Vec<Datum> = index.columns.iter().map(|&i| row[i].clone()).collect();
        let mut key = self.index_prefix(index, &vals)?;
        let row_key = self.key_of(row)?;
        let has_null = vals.iter().any(Datum::is_null);
        if !index.unique || has_null {
            key.extend_from_slice(&row_key);
        }
        Ok((key, row_key))
    }

    /// The stored form of the descriptor.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = vec![DESCRIPTOR_FORMAT];
        out.extend(postcard::to_stdvec(self).map_err(|e| SqlError::internal(e.to_string()))?);
        Ok(out)
    }

    pub fn decode(stored: &[u8]) -> Result<Table> {
        match stored.split_first() {
            Some((&DESCRIPTOR_FORMAT, rest)) => postcard::from_bytes(rest)
                .map_err(|e| SqlError::internal(format!("a corrupt table descriptor: {e}"))),
            _ => Err(SqlError::internal(
                "a table descriptor of an unknown format",
            )),
        }
    }

    /// The stored form of a row.
    pub fn encode_row(&self, row: &Row) -> Result<Vec<u8>> {
        let mut out = vec![ROW_FORMAT];
        out.extend(postcard::to_stdvec(row).map_err(|e| SqlError::internal(e.to_string()))?);
        Ok(out)
    }

    pub fn decode_row(&self, stored: &[u8]) -> Result<Row> {
        let row: Row = match stored.split_first() {
            Some((&ROW_FORMAT, rest)) => postcard::from_bytes(rest)
                .map_err(|e| SqlError::internal(format!("a corrupt row of {}: {e}", self.name)))?,
            _ => {
                return Err(SqlError::internal(format!(
                    "a row of {} of an unknown format",
                    self.name
                )))
            }
        };
        if row.len() != self.columns.len() {
            return Err(SqlError::internal(format!(
                "a row of {} with {} values for {} columns",
                self.name,
                row.len(),
                self.columns.len()
            )));
        }
        Ok(row)
    }

    /// `CREATE TABLE` text that makes this table again.
    pub fn create_sql(&self) -> String {
        let mut lines: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let mut l = format!("    {} {}", c.name, c.ty.name());
                if c.not_null {
                    l.push_str(" NOT NULL");
                }
                if let Some(d) = &c.default_sql {
                    l.push_str(&format!(" DEFAULT {d}"));
                }
                l
            })
            .collect();
        let pk: Vec<&str> = self
            .primary_key
            .iter()
            .map(|&i| self.columns[i].name.as_str())
            .collect();
        lines.push(format!("    PRIMARY KEY ({})", pk.join(", ")));
        let mut sql = format!("CREATE TABLE {} (\n{}\n);", self.name, lines.join(",\n"));
        for ix in &self.indexes {
            let cols: Vec<&str> = ix
                .columns
                .iter()
                .map(|&i| self.columns[i].name.as_str())
                .collect();
            let unique = if ix.unique { "UNIQUE " } else { "" };
            sql.push_str(&format!(
                "\nCREATE {unique}INDEX {} ON {} ({});",
                ix.name,
                self.name,
                cols.join(", ")
            ));
        }
        sql
    }
}

/// `d` as a memcomparable key part.
pub fn key_part(d: &Datum) -> Result<Vec<u8>> {
    let mut k = Vec::new();
    push_part(&mut k, d)?;
    Ok(k)
}

/// Appends `d` to a key as a memcomparable part.
fn push_part(key: &mut Vec<u8>, d: &Datum) -> Result<()> {
    match d {
        Datum::Null => keys::push_null_part(key),
        Datum::Bool(b) => keys::push_bool_part(key, *b),
        Datum::Int(i) | Datum::Timestamp(i) => keys::push_int_part(key, *i),
        Datum::Float(f) => keys::push_float_part(key, *f),
        Datum::Text(s) | Datum::Untyped(s) => keys::push_bytes_part(key, s.as_bytes()),
        Datum::Bytes(b) => keys::push_bytes_part(key, b),
        Datum::Json(_) => {
            return Err(SqlError::new(
                state::FEATURE_NOT_SUPPORTED,
                "a jsonb column cannot be part of a key or an index",
            ))
        }
    }
    Ok(())
}
