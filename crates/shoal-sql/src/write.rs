//! Statements that write rows: `INSERT` (with `ON CONFLICT` and `RETURNING`),
//! `UPDATE` and `DELETE`. A row and its index entries are written in the statement's
//! transaction, so they are seen together or not at all; constraints (primary key and
//! unique indexes, NOT NULL, column types) are checked before anything is buffered.

use sqlparser::ast::{self, Expr, SelectItem};

use crate::catalog::{Row, Table};
use crate::ctx::{Ctx, Output};
use crate::error::{state, Result, SqlError};
use crate::expr::{bind, ident, object_name, NoHook, Scalar, Scope};
use crate::expr::{infer_params, type_of};
use crate::rows::{delete_row, duplicate, fit_row, put_row, replace_row, unique_conflict};
use crate::select::{matching, table_scope};
use crate::types::{Datum, SqlType};

/// A `RETURNING` list: its columns, and their expressions over the written row.
type Returning = (Vec<(String, SqlType)>, Vec<Scalar>);

/// `RETURNING`: its columns, bound over the table's.
fn returning(items: &Option<Vec<SelectItem>>, table: &Table) -> Result<Option<Returning>> {
    let Some(items) = items else { return Ok(None) };
    let scope = table_scope(table, &table.name);
    let types: Vec<SqlType> = table.columns.iter().map(|c| c.ty).collect();
    let mut cols = Vec::new();
    let mut exprs = Vec::new();
    for item in items {
        match item {
            SelectItem::Wildcard(_) => {
                for (i, c) in table.columns.iter().enumerate() {
                    cols.push((c.name.clone(), c.ty));
                    exprs.push(Scalar::Column(i));
                }
            }
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let s = bind(e, &scope, &mut NoHook)?;
                let name = match item {
                    SelectItem::ExprWithAlias { alias, .. } => ident(alias),
                    _ => match e {
                        Expr::Identifier(i) => ident(i),
                        _ => "?column?".into(),
                    },
                };
                cols.push((name, type_of(&s, &types)));
                exprs.push(s);
            }
            other => return Err(SqlError::unsupported(format!("RETURNING {other}"))),
        }
    }
    Ok(Some((cols, exprs)))
}

/// Appends `row`'s RETURNING values, if the statement returns any.
fn push_returned(
    ret: &Option<Returning>,
    row: &Row,
    params: &[Datum],
    out: &mut Vec<Vec<Datum>>,
) -> Result<()> {
    if let Some((_, exprs)) = ret {
        out.push(
            exprs
                .iter()
                .map(|e| e.eval(row, params))
                .collect::<Result<_>>()?,
        );
    }
    Ok(())
}

fn answer(command: &'static str, n: u64, ret: Option<Returning>, rows: Vec<Vec<Datum>>) -> Output {
    match ret {
        Some((columns, _)) => Output::Rows {
            columns,
            rows,
            command,
        },
        None => Output::count(command, n),
    }
}

pub(crate) fn table_name(t: &ast::TableObject) -> Result<String> {
    match t {
        ast::TableObject::TableName(n) => object_name(n),
        other => Err(SqlError::unsupported(format!("INSERT INTO {other}"))),
    }
}

/// `SET col = expr, ...` bound over `scope`: `(column position, value)`.
fn assignments(
    table: &Table,
    list: &[ast::Assignment],
    scope: &Scope,
) -> Result<Vec<(usize, Scalar)>> {
    list.iter()
        .map(|a| {
            let col = match &a.target {
                ast::AssignmentTarget::ColumnName(n) => match n.0.last() {
                    Some(ast::ObjectNamePart::Identifier(i)) => table.column(&ident(i))?,
                    _ => return Err(SqlError::syntax(format!("bad column {n}"))),
                },
                other => return Err(SqlError::unsupported(format!("SET {other}"))),
            };
            Ok((col, bind(&a.value, scope, &mut NoHook)?))
        })
        .collect()
}

/// The positions of an INSERT's target columns (all, in order, when it names none).
fn target_columns(table: &Table, ins: &ast::Insert) -> Result<Vec<usize>> {
    if ins.columns.is_empty() {
        return Ok((0..table.columns.len()).collect());
    }
    ins.columns
        .iter()
        .map(|n| match n.0.last() {
            Some(ast::ObjectNamePart::Identifier(i)) => table.column(&ident(i)),
            _ => Err(SqlError::syntax(format!("bad column {n}"))),
        })
        .collect()
}

/// `INSERT`.
pub async fn insert(ctx: &mut Ctx<'_>, ins: &ast::Insert) -> Result<Output> {
    let table = ctx.table(&table_name(&ins.table)?).await?;
    let targets = target_columns(&table, ins)?;
    let source = ins
        .source
        .as_ref()
        .ok_or_else(|| SqlError::unsupported("INSERT without VALUES"))?;
    // The rows to insert, as values of the target columns.
    let values: Vec<Vec<Datum>> = match source.body.as_ref() {
        ast::SetExpr::Values(v) => {
            let mut out = Vec::with_capacity(v.rows.len());
            for r in &v.rows {
                let exprs: &Vec<Expr> = &r.content;
                if exprs.len() > targets.len() {
                    return Err(SqlError::syntax(
                        "INSERT has more expressions than target columns",
                    ));
                }
                let mut vals = Vec::with_capacity(exprs.len());
                for (e, &col) in exprs.iter().zip(&targets) {
                    let is_default = matches!(e, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"));
                    if is_default {
                        vals.push(table.columns[col].default.clone().unwrap_or(Datum::Null));
                    } else {
                        vals.push(bind(e, &Scope::default(), &mut NoHook)?.eval(&[], ctx.params)?);
                    }
                }
                out.push(vals);
            }
            out
        }
        _ => crate::select::rows(ctx, source).await?,
    };
    let ret = returning(&ins.returning, &table)?;
    let on_conflict = match &ins.on {
        None => None,
        Some(ast::OnInsert::OnConflict(oc)) => {
            check_conflict_target(&table, oc)?;
            Some(&oc.action)
        }
        Some(other) => return Err(SqlError::unsupported(format!("{other}"))),
    };
    // ON CONFLICT DO UPDATE: over the row there (the table's name) and `excluded`.
    let mut upd_scope = table_scope(&table, &table.name);
    upd_scope
        .columns
        .extend(table_scope(&table, "excluded").columns);
    let upd = match on_conflict {
        Some(ast::OnConflictAction::DoUpdate(du)) => Some((
            assignments(&table, &du.assignments, &upd_scope)?,
            du.selection
                .as_ref()
                .map(|s| bind(s, &upd_scope, &mut NoHook))
                .transpose()?,
        )),
        _ => None,
    };
    let mut count = 0u64;
    let mut out_rows = Vec::new();
    // The rows this statement wrote: DO UPDATE may not change one twice.
    let mut touched = std::collections::HashSet::new();
    for vals in values {
        if vals.len() > targets.len() {
            return Err(SqlError::syntax(
                "INSERT has more expressions than target columns",
            ));
        }
        let mut row: Row = table
            .columns
            .iter()
            .map(|c| c.default.clone().unwrap_or(Datum::Null))
            .collect();
        for (v, &col) in vals.into_iter().zip(&targets) {
            row[col] = v;
        }
        let row = fit_row(&table, row)?;
        let key = table.key_of(&row)?;
        let first_touch = touched.insert(key.clone());
        let written = match ctx.get(&key).await? {
            None => match unique_conflict(ctx, &table, &row).await? {
                None => {
                    put_row(ctx, &table, key, &row).await?;
                    Some(row)
                }
                Some(_) if matches!(on_conflict, Some(ast::OnConflictAction::DoNothing)) => None,
                Some(name) => return Err(duplicate(&name)),
            },
            Some(existing) => match (&on_conflict, &upd) {
                (Some(ast::OnConflictAction::DoNothing), _) => None,
                (Some(ast::OnConflictAction::DoUpdate(_)), Some((sets, cond))) => {
                    if !first_touch {
                        return Err(SqlError::new(
                            state::CARDINALITY_VIOLATION,
                            "ON CONFLICT DO UPDATE command cannot affect row a second time",
                        ));
                    }
                    let old = table.decode_row(&existing)?;
                    let mut both = old.clone();
                    both.extend(row.iter().cloned());
                    if cond
                        .as_ref()
                        .map(|c| c.passes(&both, ctx.params))
                        .transpose()?
                        == Some(false)
                    {
                        None
                    } else {
                        let mut new = old.clone();
                        for (col, e) in sets {
                            new[*col] = e.eval(&both, ctx.params)?;
                        }
                        let new = fit_row(&table, new)?;
                        replace_row(ctx, &table, key, &old, new.clone()).await?;
                        Some(new)
                    }
                }
                _ => return Err(duplicate(&format!("{}_pkey", table.name))),
            },
        };
        if let Some(r) = written {
            count += 1;
            push_returned(&ret, &r, ctx.params, &mut out_rows)?;
        }
    }
    Ok(answer("INSERT", count, ret, out_rows))
}

/// An ON CONFLICT target names the primary key or a unique index (DO UPDATE must
/// name one).
pub(crate) fn check_conflict_target(table: &Table, oc: &ast::OnConflict) -> Result<()> {
    let cols = match &oc.conflict_target {
        None if matches!(oc.action, ast::OnConflictAction::DoUpdate(_)) => {
            return Err(SqlError::syntax(
                "ON CONFLICT DO UPDATE requires inference specification or constraint name",
            ))
        }
        None => return Ok(()),
        Some(ast::ConflictTarget::Columns {
            columns: cols,
            predicate: None,
        }) => cols
            .iter()
            .map(|c| table.column(&ident(c)))
            .collect::<Result<Vec<usize>>>()?,
        Some(other) => return Err(SqlError::unsupported(format!("ON CONFLICT {other}"))),
    };
    let same = |want: &[usize]| {
        let mut a = want.to_vec();
        let mut b = cols.clone();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    };
    if same(&table.primary_key) || table.indexes.iter().any(|i| i.unique && same(&i.columns)) {
        return Ok(());
    }
    Err(SqlError::new(
        state::INVALID_COLUMN_REFERENCE,
        "there is no unique or exclusion constraint matching the ON CONFLICT specification",
    ))
}

pub(crate) fn single_table(t: &ast::TableWithJoins) -> Result<(String, String)> {
    if !t.joins.is_empty() {
        return Err(SqlError::unsupported("a join in UPDATE or DELETE"));
    }
    match &t.relation {
        ast::TableFactor::Table { name, alias, .. } => {
            let n = object_name(name)?;
            let a = alias.as_ref().map_or(n.clone(), |a| ident(&a.name));
            Ok((n, a))
        }
        other => Err(SqlError::unsupported(format!(
            "UPDATE or DELETE of {other}"
        ))),
    }
}

/// `UPDATE`.
pub async fn update(ctx: &mut Ctx<'_>, up: &ast::Update) -> Result<Output> {
    if up.from.is_some() || up.limit.is_some() {
        return Err(SqlError::unsupported("UPDATE ... FROM or LIMIT"));
    }
    let (name, alias) = single_table(&up.table)?;
    let table = ctx.table(&name).await?;
    let scope = table_scope(&table, &alias);
    let sets = assignments(&table, &up.assignments, &scope)?;
    let filter = up
        .selection
        .as_ref()
        .map(|w| bind(w, &scope, &mut NoHook))
        .transpose()?;
    let ret = returning(&up.returning, &table)?;
    let rows = matching(ctx, &table, filter.as_ref()).await?;
    let mut out_rows = Vec::new();
    let n = rows.len() as u64;
    for (key, old) in rows {
        let mut new = old.clone();
        for (col, e) in &sets {
            new[*col] = e.eval(&old, ctx.params)?;
        }
        let new = fit_row(&table, new)?;
        replace_row(ctx, &table, key, &old, new.clone()).await?;
        push_returned(&ret, &new, ctx.params, &mut out_rows)?;
    }
    Ok(answer("UPDATE", n, ret, out_rows))
}

/// `DELETE`.
pub async fn delete(ctx: &mut Ctx<'_>, del: &ast::Delete) -> Result<Output> {
    let from = match &del.from {
        ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
    };
    if from.len() != 1 || del.using.is_some() || del.limit.is_some() {
        return Err(SqlError::unsupported(
            "DELETE of more than one table, USING or LIMIT",
        ));
    }
    let (name, alias) = single_table(&from[0])?;
    let table = ctx.table(&name).await?;
    let scope = table_scope(&table, &alias);
    let filter = del
        .selection
        .as_ref()
        .map(|w| bind(w, &scope, &mut NoHook))
        .transpose()?;
    let ret = returning(&del.returning, &table)?;
    let rows = matching(ctx, &table, filter.as_ref()).await?;
    let mut out_rows = Vec::new();
    let n = rows.len() as u64;
    for (key, row) in rows {
        push_returned(&ret, &row, ctx.params, &mut out_rows)?;
        delete_row(ctx, &table, key, &row).await?;
    }
    Ok(answer("DELETE", n, ret, out_rows))
}

/// Result columns and parameter types of a write, without running it.
pub type Description = (Vec<(String, SqlType)>, Vec<Option<SqlType>>);

/// Describes an `INSERT`: a parameter takes its target column's type.
pub async fn describe_insert(ctx: &mut Ctx<'_>, ins: &ast::Insert) -> Result<Description> {
    let table = ctx.table(&table_name(&ins.table)?).await?;
    let types: Vec<SqlType> = table.columns.iter().map(|c| c.ty).collect();
    let targets = target_columns(&table, ins)?;
    let mut params = Vec::new();
    if let Some(ast::SetExpr::Values(v)) = ins.source.as_ref().map(|s| s.body.as_ref()) {
        for r in &v.rows {
            for (e, &col) in r.content.iter().zip(&targets) {
                if let Expr::Identifier(_) = e {
                    continue;
                }
                let s = bind(e, &Scope::default(), &mut NoHook)?;
                if let Scalar::Param(n) = s {
                    if params.len() <= n {
                        params.resize(n + 1, None);
                    }
                    params[n].get_or_insert(types[col]);
                }
                infer_params(&s, &[], &mut params);
            }
        }
    }
    if let Some(ast::OnInsert::OnConflict(oc)) = &ins.on {
        if let ast::OnConflictAction::DoUpdate(du) = &oc.action {
            let mut scope = table_scope(&table, &table.name);
            scope
                .columns
                .extend(table_scope(&table, "excluded").columns);
            let both: Vec<SqlType> = types.iter().chain(&types).copied().collect();
            for (col, s) in assignments(&table, &du.assignments, &scope)? {
                set_param(&s, types[col], &mut params);
                infer_params(&s, &both, &mut params);
            }
        }
    }
    let cols = returning(&ins.returning, &table)?
        .map(|r| r.0)
        .unwrap_or_default();
    Ok((cols, params))
}

fn set_param(s: &Scalar, ty: SqlType, params: &mut Vec<Option<SqlType>>) {
    if let Scalar::Param(n) = s {
        if params.len() <= *n {
            params.resize(n + 1, None);
        }
        params[*n].get_or_insert(ty);
    }
}

/// Describes an `UPDATE` or a `DELETE` (`sets`: the UPDATE's assignments).
pub async fn describe_change(
    ctx: &mut Ctx<'_>,
    table: &ast::TableWithJoins,
    sets: &[ast::Assignment],
    selection: &Option<Expr>,
    ret: &Option<Vec<SelectItem>>,
) -> Result<Description> {
    let (name, alias) = single_table(table)?;
    let table = ctx.table(&name).await?;
    let types: Vec<SqlType> = table.columns.iter().map(|c| c.ty).collect();
    let scope = table_scope(&table, &alias);
    let mut params = Vec::new();
    for (col, s) in assignments(&table, sets, &scope)? {
        set_param(&s, types[col], &mut params);
        infer_params(&s, &types, &mut params);
    }
    if let Some(w) = selection {
        infer_params(&bind(w, &scope, &mut NoHook)?, &types, &mut params);
    }
    let cols = returning(ret, &table)?.map(|r| r.0).unwrap_or_default();
    Ok((cols, params))
}
