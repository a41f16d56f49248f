//! `EXPLAIN`: the plan of a query or a write, a line per step, outermost first, each
//! indented under the one before: what reads the rows (point get, index lookup, range
//! scan, full scan: `plan.rs`), then what is done with them. A write is planned, not
//! run: `EXPLAIN UPDATE` changes nothing.

use sqlparser::ast::{self, Statement};

use crate::ctx::{Ctx, Output};
use crate::error::{Result, SqlError};
use crate::expr::{bind, statement_words, NoHook};
use crate::plan;
use crate::select::{bind_query, table_scope};
use crate::types::{Datum, SqlType};
use crate::write::{check_conflict_target, single_table, table_name};

/// `EXPLAIN statement` (without ANALYZE).
pub async fn explain(ctx: &mut Ctx<'_>, statement: &Statement) -> Result<Output> {
    let lines = match statement {
        Statement::Query(q) => query_lines(ctx, q).await?,
        Statement::Update(up) => {
            let (name, alias) = single_table(&up.table)?;
            let mut lines = vec![format!("update {name}")];
            lines.extend(filtered(ctx, &name, &alias, up.selection.as_ref()).await?);
            lines
        }
        Statement::Delete(del) => {
            let from = match &del.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            let [t] = from.as_slice() else {
                return Err(SqlError::unsupported("DELETE of more than one table"));
            };
            let (name, alias) = single_table(t)?;
            let mut lines = vec![format!("delete from {name}")];
            lines.extend(filtered(ctx, &name, &alias, del.selection.as_ref()).await?);
            lines
        }
        Statement::Insert(ins) => {
            let table = ctx.table(&table_name(&ins.table)?).await?;
            let source = ins
                .source
                .as_ref()
                .ok_or_else(|| SqlError::unsupported("INSERT without VALUES"))?;
            let mut lines = match source.body.as_ref() {
                ast::SetExpr::Values(v) => {
                    let n = v.rows.len();
                    let s = if n == 1 { "" } else { "s" };
                    vec![format!("insert into {} ({n} row{s})", table.name)]
                }
                _ => vec![format!("insert into {}", table.name)],
            };
            match &ins.on {
                Some(ast::OnInsert::OnConflict(oc)) => {
                    check_conflict_target(&table, oc)?;
                    lines.push(match oc.action {
                        ast::OnConflictAction::DoNothing => "on conflict do nothing".into(),
                        ast::OnConflictAction::DoUpdate(_) => "on conflict do update".into(),
                    })
                }
                Some(other) => return Err(SqlError::unsupported(format!("{other}"))),
                None => {}
            }
            if !matches!(source.body.as_ref(), ast::SetExpr::Values(_)) {
                lines.extend(query_lines(ctx, source).await?);
            }
            lines
        }
        other => {
            return Err(SqlError::unsupported(format!(
                "EXPLAIN of {}",
                statement_words(other)
            )))
        }
    };
    let rows = lines
        .iter()
        .enumerate()
        .map(|(i, l)| vec![Datum::Text(format!("{}{l}", "  ".repeat(i.min(4))))])
        .collect();
    Ok(Output::Rows {
        columns: vec![("QUERY PLAN".into(), SqlType::Text)],
        rows,
        command: "EXPLAIN",
    })
}

/// The rows an UPDATE or DELETE of table `name` changes: its WHERE clause, and the
/// access path that clause allows.
async fn filtered(
    ctx: &mut Ctx<'_>,
    name: &str,
    alias: &str,
    selection: Option<&ast::Expr>,
) -> Result<Vec<String>> {
    let table = ctx.table(name).await?;
    let scope = table_scope(&table, alias);
    let filter = selection
        .map(|w| bind(w, &scope, &mut NoHook))
        .transpose()?;
    let mut lines = Vec::new();
    if filter.is_some() {
        lines.push("filter".to_string());
    }
    lines.push(plan::choose(&table, filter.as_ref(), ctx.params)?.describe(&table));
    Ok(lines)
}

/// The plan of a query, a line per step, outermost first.
async fn query_lines(ctx: &mut Ctx<'_>, q: &ast::Query) -> Result<Vec<String>> {
    let b = bind_query(ctx, q).await?;
    let mut lines = Vec::new();
    if let Some(l) = b.limit {
        lines.push(format!(
            "limit {l}{}",
            if b.offset > 0 {
                format!(" offset {}", b.offset)
            } else {
                String::new()
            }
        ));
    } else if b.offset > 0 {
        lines.push(format!("offset {}", b.offset));
    }
    if !b.sort.is_empty() {
        lines.push("sort".to_string());
    } else if b.in_key_order {
        lines.push("ordered by the primary key (no sort)".to_string());
    }
    if let Some((g, a)) = &b.grouping {
        lines.push(format!(
            "aggregate ({} group expression{}, {} aggregate{})",
            g.len(),
            if g.len() == 1 { "" } else { "s" },
            a.len(),
            if a.len() == 1 { "" } else { "s" }
        ));
    }
    if b.filter.is_some() {
        lines.push("filter".to_string());
    }
    match (&b.access, b.sources.as_slice()) {
        (Some(a), [s]) => lines.push(a.describe(&s.table)),
        (_, [l, r]) => {
            lines.push(format!("hash join on {} and {}", l.alias, r.alias));
            lines.push(format!("  full scan on {}", l.table.name));
            lines.push(format!(
                "  full scan on {} (into the hash table)",
                r.table.name
            ));
        }
        _ => lines.push("one row, no table".to_string()),
    }
    Ok(lines)
}
