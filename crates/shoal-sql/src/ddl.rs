//! Statements that change the catalog: `CREATE TABLE`, `DROP TABLE`, `CREATE INDEX`;
//! and the column types the parser's data types map to.

use sqlparser::ast::{self, ColumnOption, TableConstraint};

use crate::catalog::{Column, Index, Table};
use crate::ctx::{Ctx, Output};
use crate::error::{state, Result, SqlError};
use crate::expr::{self, check_name, ident, object_name, NoHook, Scope};
use crate::types::{sql_type, SqlType};

/// Most columns of a table.
const MAX_COLUMNS: usize = 256;

fn index_columns(table: &Table, cols: &[ast::IndexColumn]) -> Result<Vec<usize>> {
    cols.iter()
        .map(|c| match &c.column.expr {
            ast::Expr::Identifier(i) => table.column(&ident(i)),
            other => Err(SqlError::unsupported(format!(
                "an index on the expression {other}"
            ))),
        })
        .collect()
}

/// `CREATE TABLE`.
pub async fn create_table(ctx: &mut Ctx<'_>, ct: &ast::CreateTable) -> Result<Output> {
    let name = object_name(&ct.name)?;
    if ct.query.is_some() || ct.or_replace || ct.temporary {
        return Err(SqlError::unsupported("this form of CREATE TABLE"));
    }
    if ctx.find_table(&name).await?.is_some() {
        if ct.if_not_exists {
            return Ok(Output::command("CREATE TABLE"));
        }
        return Err(SqlError::new(
            state::DUPLICATE_TABLE,
            format!("relation \"{name}\" already exists"),
        ));
    }
    if ct.columns.is_empty() || ct.columns.len() > MAX_COLUMNS {
        return Err(SqlError::new(
            state::INVALID_TABLE_DEFINITION,
            format!("a table has 1 to {MAX_COLUMNS} columns"),
        ));
    }
    let mut table = Table {
        id: 0,
        name: name.clone(),
        columns: Vec::new(),
        primary_key: Vec::new(),
        indexes: Vec::new(),
        next_index_id: 2,
    };
    let mut uniques: Vec<Vec<usize>> = Vec::new();
    for c in &ct.columns {
        let cname = ident(&c.name);
        check_name(&cname)?;
        if table.columns.iter().any(|x| x.name == cname) {
            return Err(SqlError::new(
                state::DUPLICATE_COLUMN,
                format!("column \"{cname}\" specified more than once"),
            ));
        }
        let ty = sql_type(&c.data_type)?;
        let mut column = Column {
            name: cname,
            ty,
            not_null: false,
            default: None,
            default_sql: None,
        };
        let pos = table.columns.len();
        for opt in &c.options {
            match &opt.option {
                ColumnOption::Null => {}
                ColumnOption::NotNull => column.not_null = true,
                ColumnOption::Default(e) => {
                    let s = expr::bind(e, &Scope::default(), &mut NoHook)?;
                    if !s.is_constant() {
                        return Err(SqlError::unsupported("a default that is not a constant"));
                    }
                    column.default = Some(s.eval(&[], &[])?.fit(ty)?);
                    column.default_sql = Some(e.to_string());
                }
                ColumnOption::PrimaryKey(_) => {
                    if !table.primary_key.is_empty() {
                        return Err(multiple_keys(&name));
                    }
                    table.primary_key = vec![pos];
                }
                ColumnOption::Unique(_) => uniques.push(vec![pos]),
                other => return Err(SqlError::unsupported(format!("the column option {other}"))),
            }
        }
        table.columns.push(column);
    }
    for con in &ct.constraints {
        match con {
            TableConstraint::PrimaryKey(pk) => {
                if !table.primary_key.is_empty() {
                    return Err(multiple_keys(&name));
                }
                table.primary_key = index_columns(&table, &pk.columns)?;
            }
            TableConstraint::Unique(u) => uniques.push(index_columns(&table, &u.columns)?),
            other => return Err(SqlError::unsupported(format!("the constraint {other}"))),
        }
    }
    if table.primary_key.is_empty() {
        return Err(SqlError::unsupported(format!(
            "a table without a primary key (\"{name}\" has none)"
        )));
    }
    for &i in &table.primary_key {
        if table.columns[i].ty == SqlType::Jsonb {
            return Err(SqlError::unsupported("a jsonb column in a primary key"));
        }
        // A primary key's columns are NOT NULL, as in Postgres.
        table.columns[i].not_null = true;
    }
    for cols in uniques {
        let id = table.next_index_id;
        table.next_index_id += 1;
        let colnames: Vec<&str> = cols
            .iter()
            .map(|&i| table.columns[i].name.as_str())
            .collect();
        table.indexes.push(Index {
            id,
            name: format!("{}_{}_key", name, colnames.join("_")),
            columns: cols,
            unique: true,
        });
    }
    table.id = ctx.next_table_id().await?;
    ctx.put(shoal_storage::keys::sql_catalog_key(&name), table.encode()?)?;
    Ok(Output::command("CREATE TABLE"))
}

fn multiple_keys(table: &str) -> SqlError {
    SqlError::new(
        state::INVALID_TABLE_DEFINITION,
        format!("multiple primary keys for table \"{table}\" are not allowed"),
    )
}

/// `DROP TABLE`: the descriptor goes in the statement's transaction, and a mark of
/// the table's id takes its place; the rows and index entries are deleted after the
/// commit, a page per transaction (`dropped.rs`), so a table of any size drops. A table
/// id is never handed out again: no statement sees those rows meanwhile.
pub async fn drop_tables(
    ctx: &mut Ctx<'_>,
    names: &[ast::ObjectName],
    if_exists: bool,
) -> Result<Output> {
    for n in names {
        let name = object_name(n)?;
        let Some(table) = ctx.find_table(&name).await? else {
            if if_exists {
                continue;
            }
            return Err(SqlError::undefined_table(&name));
        };
        // The descriptor goes, and a mark of the table's id stays: its rows are
        // deleted after the commit, a page per transaction (`dropped.rs`).
        ctx.delete(shoal_storage::keys::sql_catalog_key(&name))?;
        ctx.put(shoal_storage::keys::sql_dropped_key(table.id), Vec::new())?;
    }
    Ok(Output::command("DROP TABLE"))
}

/// `CREATE [UNIQUE] INDEX`: the descriptor gains the index, and an entry is written for
/// every row already there (a duplicate makes a unique index fail, `23505`).
pub async fn create_index(ctx: &mut Ctx<'_>, ci: &ast::CreateIndex) -> Result<Output> {
    let tname = object_name(&ci.table_name)?;
    let mut table = ctx.table(&tname).await?;
    let columns = index_columns(&table, &ci.columns)?;
    if columns
        .iter()
        .any(|&i| table.columns[i].ty == SqlType::Jsonb)
    {
        return Err(SqlError::unsupported("an index on a jsonb column"));
    }
    let colnames: Vec<&str> = columns
        .iter()
        .map(|&i| table.columns[i].name.as_str())
        .collect();
    let name = match &ci.name {
        Some(n) => object_name(n)?,
        None => format!("{tname}_{}_idx", colnames.join("_")),
    };
    if table.indexes.iter().any(|i| i.name == name) {
        if ci.if_not_exists {
            return Ok(Output::command("CREATE INDEX"));
        }
        return Err(SqlError::new(
            state::DUPLICATE_TABLE,
            format!("relation \"{name}\" already exists"),
        ));
    }
    if ci.predicate.is_some() || !ci.include.is_empty() {
        return Err(SqlError::unsupported("a partial or covering index"));
    }
    let index = Index {
        id: table.next_index_id,
        name,
        columns,
        unique: ci.unique,
    };
    table.next_index_id += 1;
    let (mut start, end) = table.rows_span();
    loop {
        let (pairs, next) = ctx.page(&start, &end).await?;
        for (_, v) in pairs {
            let row = table.decode_row(&v)?;
            crate::rows::put_index_entry(ctx, &table, &index, &row).await?;
        }
        match next {
            Some(n) => start = n,
            None => break,
        }
    }
    table.indexes.push(index);
    ctx.put(
        shoal_storage::keys::sql_catalog_key(&tname),
        table.encode()?,
    )?;
    Ok(Output::command("CREATE INDEX"))
}
