//! `SELECT`: the rows of zero, one or two tables (an inner equi-join), filtered,
//! grouped and aggregated, projected, sorted, and cut by `LIMIT`/`OFFSET`.
//!
//! One table is read through the access path its WHERE clause allows (`plan.rs`), a
//! page at a time: rows are filtered as they come, and with no sort or grouping the
//! read stops once `OFFSET + LIMIT` rows passed. A grouped query keeps one accumulator
//! per group, not its rows. A join reads its right table once into a hash table on the
//! join column, then streams the left one.

use std::collections::HashMap;

use sqlparser::ast::{self, Expr, SelectItem, SetExpr, TableFactor};

use crate::aggregate::{has_aggregate, Acc, Agg, Grouping};
use crate::catalog::{key_part, Row, Table};
use crate::ctx::{Ctx, Output};
use crate::error::{state, Result, SqlError};
use crate::expr::{
    bind, ident, infer_params, object_name, type_of, Hook, NoHook, Op, Scalar, Scope,
};
use crate::plan::{self, Access, Cursor};
use crate::types::{Datum, SqlType};

/// A table read by the query, with the name its columns are qualified by.
struct Source {
    table: Table,
    alias: String,
}

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

/// A sort key: an output column, or an expression over the input (or grouped) row.
enum SortBy {
    Out(usize),
    Expr(Scalar),
}

/// An inner join: its condition, and the two sides of one of its equalities (the
/// right one over the joined row, its left columns NULL), whose values meet in the
/// hash table.
struct Join {
    on: Scalar,
    left_key: Scalar,
    right_key: Scalar,
    /// The keys compare as floats (one side is a float).
    as_float: bool,
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
struct Bound {
    sources: Vec<Source>,
    join: Option<Join>,
    filter: Option<Scalar>,
    grouping: Option<(Vec<Scalar>, Vec<Agg>)>,
    having: Option<Scalar>,
    columns: Vec<(String, SqlType)>,
    project: Vec<Scalar>,
    sort: Vec<(SortBy, bool, bool)>,
    offset: usize,
    limit: Option<usize>,
    access: Option<Access>,
    /// The types of the input row's columns.
    types: Vec<SqlType>,
    /// Parameters LIMIT and OFFSET take.
    count_params: Vec<usize>,
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

async fn bind_query(ctx: &mut Ctx<'_>, q: &ast::Query) -> Result<Bound> {
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
    let (columns, project, grouping, having, sort);
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
        types,
        count_params,
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
    let rows = run(ctx, &b).await?;
    Ok(Output::Rows {
        columns: b.columns,
        rows,
        command: "SELECT",
    })
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

/// `EXPLAIN`: the plan of a query, a line per step.
pub async fn explain(ctx: &mut Ctx<'_>, q: &ast::Query) -> Result<Output> {
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

async fn run(ctx: &mut Ctx<'_>, b: &Bound) -> Result<Vec<Vec<Datum>>> {
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
    let want = b.limit.map(|l| l.saturating_add(b.offset));
    let mut keyed: Vec<(Vec<Datum>, Vec<Datum>)> = Vec::new();
    let emit = |row: &[Datum], keyed: &mut Vec<(Vec<Datum>, Vec<Datum>)>| -> Result<()> {
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
        keyed.push((keys, out));
        Ok(())
    };
    match &b.grouping {
        None => {
            while let Some(row) = input.next(ctx, b).await? {
                if let Some(f) = &b.filter {
                    if !f.passes(&row, &params)? {
                        continue;
                    }
                }
                emit(&row, &mut keyed)?;
                if b.sort.is_empty() && want.is_some_and(|w| keyed.len() >= w) {
                    break;
                }
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
                emit(&row, &mut keyed)?;
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
    Ok(keyed
        .into_iter()
        .skip(b.offset)
        .take(b.limit.unwrap_or(usize::MAX))
        .map(|(_, r)| r)
        .collect())
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
