//! `SELECT`: the rows of zero, one or two tables (an inner equi-join), filtered,
//! grouped and aggregated, projected, sorted, and cut by `LIMIT`/`OFFSET`.
//!
//! Here a query is bound against the catalog (`bind_query`: names to row positions,
//! the access path its WHERE clause allows, `plan.rs`) and `exec.rs` runs it. Its rows
//! are read whole ([`query`]) or sent down a channel as they pass ([`stream`]), so a
//! client reads a table of any size through a page of memory. An ORDER BY of the
//! primary key's leading columns, ascending, is the order a full or range scan reads
//! in: it is not sorted, and the read stops at `OFFSET + LIMIT` as an unsorted one does.

use sqlparser::ast::{self, Expr, SelectItem, SetExpr, TableFactor};

use crate::aggregate::{has_aggregate, Acc, Grouping};
use crate::catalog::{Row, Table};
use crate::ctx::{Ctx, Output};
use crate::error::{state, Result, SqlError};
use crate::exec::{run, Bound, Join, Sink, SortBy, Source};
use crate::expr::{
    bind, ident, infer_params, object_name, type_of, Hook, NoHook, Op, Scalar, Scope,
};
use crate::plan::{self, Access, Cursor};
use crate::types::{Datum, SqlType};

fn source(f: &TableFactor) -> Result<(String, String)> {
    match f {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let n = object_name(name)?;
            let a = alias.as_ref().map_or(n.clone(), |a| ident(&a.name));
            Ok((n, a))
        }
        other => Err(SqlError::unsupported(format!("reading from {other}"))),
    }
}

fn constant_count(
    e: &Expr,
    what: &str,
    params: &[Datum],
    count_params: &mut Vec<usize>,
) -> Result<usize> {
    let s = bind(e, &Scope::default(), &mut NoHook)?;
    if let Scalar::Param(n) = s {
        count_params.push(n);
        if params.is_empty() {
            // Described, not run: the value comes later.
            return Ok(usize::MAX);
        }
    }
    match s.eval(&[], params)?.fit(SqlType::Int8)? {
        Datum::Int(n) if n >= 0 => Ok(n as usize),
        Datum::Null => Ok(usize::MAX),
        _ => Err(SqlError::new(
            "2201W",
            format!("{what} must not be negative"),
        )),
    }
}

fn output_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => ident(i),
        Expr::CompoundIdentifier(p) => p.last().map(ident).unwrap_or_default(),
        Expr::Function(f) => f.name.to_string().to_lowercase(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => output_name(expr),
        _ => "?column?".into(),
    }
}

pub(crate) async fn bind_query(ctx: &mut Ctx<'_>, q: &ast::Query) -> Result<Bound> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(SqlError::unsupported(format!("the query {}", q.body)));
    };
    if q.with.is_some() {
        return Err(SqlError::unsupported("WITH"));
    }
    if sel.distinct.is_some() {
        return Err(SqlError::unsupported("SELECT DISTINCT"));
    }
    // Sources and the join.
    let mut sources = Vec::new();
    let mut join_on: Option<Expr> = None;
    for twj in &sel.from {
        let (n, a) = source(&twj.relation)?;
        sources.push((n, a));
        for j in &twj.joins {
            let (n, a) = source(&j.relation)?;
            sources.push((n, a));
            match &j.join_operator {
                ast::JoinOperator::Join(ast::JoinConstraint::On(e))
                | ast::JoinOperator::Inner(ast::JoinConstraint::On(e)) => join_on = Some(e.clone()),
                other => {
                    return Err(SqlError::unsupported(
                        format!("the join {other:?}")
                            .chars()
                            .take(60)
                            .collect::<String>(),
                    ))
                }
            }
        }
    }
    if sources.len() > 2 {
        return Err(SqlError::unsupported("a join of more than two tables"));
    }
    let mut bound_sources = Vec::new();
    let mut scope = Scope::default();
    for (n, a) in sources {
        let table = ctx.table(&n).await?;
        for c in &table.columns {
            scope.columns.push((a.clone(), c.name.clone(), Some(c.ty)));
        }
        bound_sources.push(Source { table, alias: a });
    }
    let types: Vec<SqlType> = scope
        .columns
        .iter()
        .map(|c| c.2.unwrap_or(SqlType::Text))
        .collect();
    let mut filter = sel
        .selection
        .as_ref()
        .map(|w| bind(w, &scope, &mut NoHook))
        .transpose()?;
    // A join: its condition, or (FROM a, b) the WHERE clause, must hold `l = r`.
    let mut join = None;
    if bound_sources.len() == 2 {
        let left_len = bound_sources[0].table.columns.len();
        let on = match &join_on {
            Some(e) => bind(e, &scope, &mut NoHook)?,
            None => filter.take().ok_or_else(|| {
                SqlError::unsupported("a join without an equality of two columns")
            })?,
        };
        let mut parts = Vec::new();
        plan::conjuncts(&on, &mut parts);
        let side = |s: &Scalar| {
            let mut cols = Vec::new();
            s.columns(&mut cols);
            if cols.is_empty() {
                None
            } else if cols.iter().all(|&c| c < left_len) {
                Some(true)
            } else if cols.iter().all(|&c| c >= left_len) {
                Some(false)
            } else {
                None
            }
        };
        let eq = parts.iter().find_map(|p| match p {
            Scalar::Binary(Op::Eq, a, b) => match (side(a), side(b)) {
                (Some(true), Some(false)) => Some((a.as_ref().clone(), b.as_ref().clone())),
                (Some(false), Some(true)) => Some((b.as_ref().clone(), a.as_ref().clone())),
                _ => None,
            },
            _ => None,
        });
        let (left_key, right_key) = eq.ok_or_else(|| {
            SqlError::unsupported("a join without an equality between the two tables")
        })?;
        let as_float = type_of(&left_key, &types) == SqlType::Float8
            || type_of(&right_key, &types) == SqlType::Float8;
        join = Some(Join {
            on,
            left_key,
            right_key,
            as_float,
        });
    }
    // Grouping.
    let group_exprs: Vec<Expr> = match &sel.group_by {
        ast::GroupByExpr::Expressions(e, m) if m.is_empty() => e.clone(),
        ast::GroupByExpr::Expressions(..) | ast::GroupByExpr::All(_) => {
            return Err(SqlError::unsupported("this GROUP BY"))
        }
    };
    let has_agg = sel.projection.iter().any(|p| match p {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => has_aggregate(e),
        _ => false,
    }) || sel.having.is_some();
    let (columns, project, grouping, having, mut sort);
    let items = expand(&sel.projection, &scope)?;
    if !group_exprs.is_empty() || has_agg {
        let groups = group_exprs
            .iter()
            .map(|g| match g {
                Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => {
                        let k: usize = n
                            .parse()
                            .map_err(|_| SqlError::syntax("bad GROUP BY position"))?;
                        let item = items.get(k.wrapping_sub(1)).ok_or_else(|| {
                            SqlError::new(
                                state::UNDEFINED_COLUMN,
                                format!("GROUP BY position {k} is not in select list"),
                            )
                        })?;
                        bind(&item.1, &scope, &mut NoHook)
                    }
                    _ => bind(g, &scope, &mut NoHook),
                },
                _ => bind(g, &scope, &mut NoHook),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut hook = Grouping {
            scope: &scope,
            groups,
            aggs: Vec::new(),
        };
        let project_: Vec<Scalar> = items
            .iter()
            .map(|(_, e)| bind(e, &scope, &mut hook))
            .collect::<Result<_>>()?;
        having = sel
            .having
            .as_ref()
            .map(|h| bind(h, &scope, &mut hook))
            .transpose()?;
        sort = bind_sort(q, &items, &scope, &mut hook)?;
        let mut gtypes: Vec<SqlType> = hook.groups.iter().map(|g| type_of(g, &types)).collect();
        gtypes.extend(hook.aggs.iter().map(|a| Acc::result_type(a, &types)));
        columns = items
            .iter()
            .zip(&project_)
            .map(|((n, _), p)| (n.clone(), type_of(p, &gtypes)))
            .collect();
        project = project_;
        grouping = Some((hook.groups, hook.aggs));
    } else {
        project = items
            .iter()
            .map(|(_, e)| bind(e, &scope, &mut NoHook))
            .collect::<Result<_>>()?;
        columns = items
            .iter()
            .zip(&project)
            .map(|((n, _), p)| (n.clone(), type_of(p, &types)))
            .collect();
        sort = bind_sort(q, &items, &scope, &mut NoHook)?;
        grouping = None;
        having = None;
    }
    let (mut offset, mut limit) = (0, None);
    let mut count_params = Vec::new();
    match &q.limit_clause {
        None => {}
        Some(ast::LimitClause::LimitOffset {
            limit: l,
            offset: o,
            limit_by,
        }) if limit_by.is_empty() => {
            if let Some(l) = l {
                limit = Some(constant_count(l, "LIMIT", ctx.params, &mut count_params)?);
            }
            if let Some(o) = o {
                offset = constant_count(&o.value, "OFFSET", ctx.params, &mut count_params)?;
            }
        }
        Some(other) => return Err(SqlError::unsupported(format!("{other}"))),
    }
    let access = match bound_sources.as_slice() {
        [one] => Some(plan::choose(&one.table, filter.as_ref(), ctx.params)?),
        _ => None,
    };
    let in_key_order = match (&access, bound_sources.as_slice()) {
        (Some(a), [one]) if grouping.is_none() && !sort.is_empty() => {
            key_ordered(&one.table, a, &sort, &project)
        }
        _ => false,
    };
    if in_key_order {
        sort.clear();
    }
    Ok(Bound {
        sources: bound_sources,
        join,
        filter,
        grouping,
        having,
        columns,
        project,
        sort,
        offset,
        limit,
        access,
        in_key_order,
        types,
        count_params,
    })
}

/// Whether `sort` asks for the order `access` reads `table`'s rows in: ascending on a
/// leading part of the primary key, whose key parts sort as the values do (not floats,
/// whose NaN and zeros Postgres orders its own way, nor JSON).
fn key_ordered(
    table: &Table,
    access: &Access,
    sort: &[(SortBy, bool, bool)],
    project: &[Scalar],
) -> bool {
    if !matches!(
        access,
        Access::Full | Access::Span { .. } | Access::Point(_)
    ) {
        return false;
    }
    sort.len() <= table.primary_key.len()
        && sort
            .iter()
            .zip(&table.primary_key)
            .all(|((by, desc, _), &pk)| {
                let column = match by {
                    SortBy::Out(i) => project.get(*i),
                    SortBy::Expr(e) => Some(e),
                };
                !desc
                    && matches!(column, Some(Scalar::Column(c)) if *c == pk)
                    && !matches!(table.columns[pk].ty, SqlType::Float8 | SqlType::Jsonb)
            })
}

/// The select list with `*` expanded: `(output name, expression)`.
fn expand(items: &[SelectItem], scope: &Scope) -> Result<Vec<(String, Expr)>> {
    let mut out = Vec::new();
    for item in items {
        match item {
            SelectItem::UnnamedExpr(e) => out.push((output_name(e), e.clone())),
            SelectItem::ExprWithAlias { expr, alias } => out.push((ident(alias), expr.clone())),
            SelectItem::Wildcard(_) => {
                if scope.columns.is_empty() {
                    return Err(SqlError::syntax(
                        "SELECT * with no tables specified is not valid",
                    ));
                }
                for (t, c, _) in &scope.columns {
                    out.push((
                        c.clone(),
                        Expr::CompoundIdentifier(vec![
                            ast::Ident::with_quote('"', t),
                            ast::Ident::with_quote('"', c),
                        ]),
                    ));
                }
            }
            other => return Err(SqlError::unsupported(format!("the select item {other}"))),
        }
    }
    Ok(out)
}

fn bind_sort(
    q: &ast::Query,
    items: &[(String, Expr)],
    scope: &Scope,
    hook: &mut dyn Hook,
) -> Result<Vec<(SortBy, bool, bool)>> {
    let Some(ob) = &q.order_by else {
        return Ok(Vec::new());
    };
    let ast::OrderByKind::Expressions(exprs) = &ob.kind else {
        return Err(SqlError::unsupported("ORDER BY ALL"));
    };
    exprs
        .iter()
        .map(|o| {
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            let nulls_first = o.options.nulls_first.unwrap_or(desc);
            let by = match &o.expr {
                Expr::Value(v) if matches!(v.value, ast::Value::Number(..)) => {
                    let ast::Value::Number(n, _) = &v.value else {
                        unreachable!()
                    };
                    let k: usize = n
                        .parse()
                        .map_err(|_| SqlError::syntax("bad ORDER BY position"))?;
                    if k == 0 || k > items.len() {
                        return Err(SqlError::new(
                            state::UNDEFINED_COLUMN,
                            format!("ORDER BY position {k} is not in select list"),
                        ));
                    }
                    SortBy::Out(k - 1)
                }
                // A bare name is an output column's first (as in Postgres), and
                // ambiguous when two different output columns bear it.
                Expr::Identifier(i) if items.iter().any(|(n, _)| *n == ident(i)) => {
                    let name = ident(i);
                    let named: Vec<usize> =
                        (0..items.len()).filter(|&k| items[k].0 == name).collect();
                    if named.iter().any(|&k| items[k].1 != items[named[0]].1) {
                        return Err(SqlError::new(
                            state::AMBIGUOUS_COLUMN,
                            format!("ORDER BY \"{name}\" is ambiguous"),
                        ));
                    }
                    SortBy::Out(named[0])
                }
                e => SortBy::Expr(bind(e, scope, hook)?),
            };
            Ok((by, desc, nulls_first))
        })
        .collect()
}

/// Runs a query: its rows.
pub async fn query(ctx: &mut Ctx<'_>, q: &ast::Query) -> Result<Output> {
    let b = bind_query(ctx, q).await?;
    let mut rows = Vec::new();
    run(ctx, &b, &mut Sink::Collect(&mut rows)).await?;
    Ok(Output::Rows {
        columns: b.columns,
        rows,
        command: "SELECT",
    })
}

/// A query's rows, read whole (`INSERT ... SELECT`).
pub async fn rows(ctx: &mut Ctx<'_>, q: &ast::Query) -> Result<Vec<Row>> {
    let b = bind_query(ctx, q).await?;
    let mut rows = Vec::new();
    run(ctx, &b, &mut Sink::Collect(&mut rows)).await?;
    Ok(rows)
}

/// A query bound to the catalog of a snapshot, ready to run: its result columns.
pub struct Prepared(Bound);

impl Prepared {
    pub fn columns(&self) -> &[(String, SqlType)] {
        &self.0.columns
    }

    /// Whether it reads one row at most (a point get of one table): nothing to stream.
    pub fn reads_one_row(&self) -> bool {
        self.0.join.is_none() && matches!(self.0.access, Some(Access::Point(_)))
    }
}

/// Runs a prepared query, its rows read whole.
pub async fn collect(ctx: &mut Ctx<'_>, q: &Prepared) -> Result<Output> {
    let mut rows = Vec::new();
    run(ctx, &q.0, &mut Sink::Collect(&mut rows)).await?;
    Ok(Output::Rows {
        columns: q.0.columns.clone(),
        rows,
        command: "SELECT",
    })
}

/// Binds a query, to [`stream`] its rows later.
pub async fn prepare(ctx: &mut Ctx<'_>, q: &ast::Query) -> Result<Prepared> {
    Ok(Prepared(bind_query(ctx, q).await?))
}

/// Runs a prepared query, sending its rows to `out` as they are made: at most a page
/// of the scan and the channel's rows are held (a sort or a hash join holds what it
/// must). Stops early, without an error, when `out` is closed. Answers how many rows
/// it sent, and how it ended.
pub async fn stream(
    ctx: &mut Ctx<'_>,
    q: &Prepared,
    out: &tokio::sync::mpsc::Sender<Result<Row>>,
) -> (u64, Result<()>) {
    let mut sent = 0;
    let cancel = ctx.cancel.clone();
    let mut sink = Sink::Send {
        tx: out,
        sent: &mut sent,
        cancel: &cancel,
    };
    let r = run(ctx, &q.0, &mut sink).await;
    (sent, r)
}

/// A query's result columns and the types of its parameters, without running it.
pub async fn describe(
    ctx: &mut Ctx<'_>,
    q: &ast::Query,
) -> Result<(Vec<(String, SqlType)>, Vec<Option<SqlType>>)> {
    let b = bind_query(ctx, q).await?;
    let mut params = Vec::new();
    for n in &b.count_params {
        if params.len() <= *n {
            params.resize(n + 1, None);
        }
        params[*n] = Some(SqlType::Int8);
    }
    let mut scalars: Vec<&Scalar> = b
        .filter
        .iter()
        .chain(b.join.iter().map(|j| &j.on))
        .collect();
    if b.grouping.is_none() {
        scalars.extend(b.project.iter());
    }
    for s in scalars {
        infer_params(s, &b.types, &mut params);
    }
    Ok((b.columns, params))
}

/// The rows of `table` that pass `filter` (bound over the table's columns), with their
/// keys: what `UPDATE` and `DELETE` change.
pub async fn matching(
    ctx: &mut Ctx<'_>,
    table: &Table,
    filter: Option<&Scalar>,
) -> Result<Vec<(Vec<u8>, Row)>> {
    let access = plan::choose(table, filter, ctx.params)?;
    let mut cursor = Cursor::new(table, access);
    let mut out = Vec::new();
    while let Some((k, row)) = cursor.next(ctx, table).await? {
        if let Some(f) = filter {
            if !f.passes(&row, ctx.params)? {
                continue;
            }
        }
        out.push((k, row));
    }
    Ok(out)
}

/// The scope of one table's columns.
pub fn table_scope(table: &Table, alias: &str) -> Scope {
    Scope {
        columns: table
            .columns
            .iter()
            .map(|c| (alias.to_string(), c.name.clone(), Some(c.ty)))
            .collect(),
    }
}
