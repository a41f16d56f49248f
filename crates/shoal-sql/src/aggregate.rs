//! Aggregates: `count`, `sum`, `min`, `max`, `avg` (with `DISTINCT`), how a grouped
//! query binds (group expressions and aggregate calls stand for the columns of the
//! grouped row), and the running state of each aggregate of a group.

use sqlparser::ast::{self, Expr};

use crate::error::{state, Result, SqlError};
use crate::expr::{bind, function_args, is_aggregate, type_of, Hook, NoHook, Scalar, Scope};
use crate::types::{Datum, SqlType};

/// Whether an expression calls an aggregate.
pub fn has_aggregate(e: &Expr) -> bool {
    match e {
        Expr::Function(f) => {
            is_aggregate(f)
                || function_args(f).is_ok_and(|args| args.into_iter().flatten().any(has_aggregate))
        }
        Expr::BinaryOp { left, right, .. } => has_aggregate(left) || has_aggregate(right),
        Expr::UnaryOp { expr, .. }
        | Expr::Nested(expr)
        | Expr::Cast { expr, .. }
        | Expr::IsNull(expr)
        | Expr::IsNotNull(expr) => has_aggregate(expr),
        Expr::Between {
            expr, low, high, ..
        } => has_aggregate(expr) || has_aggregate(low) || has_aggregate(high),
        Expr::In {
            expr,
            target: ast::InTarget::List(list),
            ..
        } => has_aggregate(expr) || list.iter().any(has_aggregate),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agg {
    pub func: AggFunc,
    /// `None`: `count(*)`.
    pub arg: Option<Scalar>,
    pub distinct: bool,
}

/// Binding of a grouped query: group expressions and aggregates stand for the
/// columns of the grouped row (`groups..., aggregates...`).
pub struct Grouping<'s> {
    pub scope: &'s Scope,
    pub groups: Vec<Scalar>,
    pub aggs: Vec<Agg>,
}

impl Hook for Grouping<'_> {
    fn replace(&mut self, e: &Expr) -> Result<Option<Scalar>> {
        if let Expr::Function(f) = e {
            if is_aggregate(f) {
                let agg = bind_agg(f, self.scope)?;
                let i = match self.aggs.iter().position(|a| *a == agg) {
                    Some(i) => i,
                    None => {
                        self.aggs.push(agg);
                        self.aggs.len() - 1
                    }
                };
                return Ok(Some(Scalar::Column(self.groups.len() + i)));
            }
        }
        if let Ok(s) = bind(e, self.scope, &mut NoHook) {
            if let Some(k) = self.groups.iter().position(|g| *g == s) {
                return Ok(Some(Scalar::Column(k)));
            }
            if let Expr::Identifier(_) | Expr::CompoundIdentifier(_) = e {
                return Err(SqlError::new(
                    state::GROUPING_ERROR,
                    format!("column \"{e}\" must appear in the GROUP BY clause or be used in an aggregate function"),
                ));
            }
        } else if let Expr::Identifier(_) | Expr::CompoundIdentifier(_) = e {
            bind(e, self.scope, &mut NoHook)?;
        }
        Ok(None)
    }
}

fn bind_agg(f: &ast::Function, scope: &Scope) -> Result<Agg> {
    let name = f.name.to_string().to_lowercase();
    let func = match name.as_str() {
        "count" => AggFunc::Count,
        "sum" => AggFunc::Sum,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        _ => AggFunc::Avg,
    };
    let distinct = matches!(&f.args, ast::FunctionArguments::List(l) if l.duplicate_treatment == Some(ast::DuplicateTreatment::Distinct));
    let args = function_args(f)?;
    let arg = match args.as_slice() {
        [None] if func == AggFunc::Count => None,
        [Some(e)] => Some(bind(e, scope, &mut NoHook).map_err(|e| {
            if e.state == state::GROUPING_ERROR {
                SqlError::new(
                    state::GROUPING_ERROR,
                    "aggregate function calls cannot be nested",
                )
            } else {
                e
            }
        })?),
        _ => {
            return Err(SqlError::new(
                state::UNDEFINED_FUNCTION,
                format!("function {name} takes one argument"),
            ))
        }
    };
    Ok(Agg {
        func,
        arg,
        distinct,
    })
}

/// An aggregate's running state for one group.
#[derive(Debug, Clone)]
pub struct Acc {
    count: i64,
    int_sum: i128,
    float_sum: f64,
    saw_float: bool,
    best: Datum,
    seen: Option<std::collections::HashSet<Vec<u8>>>,
}

impl Acc {
    pub fn new(agg: &Agg) -> Acc {
        Acc {
            count: 0,
            int_sum: 0,
            float_sum: 0.0,
            saw_float: false,
            best: Datum::Null,
            seen: agg.distinct.then(Default::default),
        }
    }

    pub fn add(&mut self, agg: &Agg, row: &[Datum], params: &[Datum]) -> Result<()> {
        let v = match &agg.arg {
            None => {
                self.count += 1;
                return Ok(());
            }
            Some(a) => a.eval(row, params)?,
        };
        if v.is_null() {
            return Ok(());
        }
        if let Some(seen) = &mut self.seen {
            let k = postcard::to_stdvec(&v).map_err(|e| SqlError::internal(e.to_string()))?;
            if !seen.insert(k) {
                return Ok(());
            }
        }
        self.count += 1;
        match agg.func {
            AggFunc::Count => {}
            AggFunc::Sum | AggFunc::Avg => match v {
                Datum::Int(i) => {
                    self.int_sum += i as i128;
                    self.float_sum += i as f64;
                }
                Datum::Float(f) => {
                    self.saw_float = true;
                    self.float_sum += f;
                }
                other => {
                    return Err(SqlError::new(
                        state::UNDEFINED_FUNCTION,
                        format!("function sum({}) does not exist", other.type_name()),
                    ))
                }
            },
            AggFunc::Min | AggFunc::Max => {
                let better = self.best.is_null() || {
                    let o = v.compare(&self.best)?;
                    if agg.func == AggFunc::Min {
                        o.is_lt()
                    } else {
                        o.is_gt()
                    }
                };
                if better {
                    self.best = v;
                }
            }
        }
        Ok(())
    }

    pub fn result(&self, agg: &Agg) -> Result<Datum> {
        Ok(match agg.func {
            AggFunc::Count => Datum::Int(self.count),
            _ if self.count == 0 => Datum::Null,
            AggFunc::Sum if self.saw_float => Datum::Float(self.float_sum),
            AggFunc::Sum => Datum::Int(
                i64::try_from(self.int_sum).map_err(|_| SqlError::out_of_range("bigint"))?,
            ),
            AggFunc::Avg => Datum::Float(self.float_sum / self.count as f64),
            AggFunc::Min | AggFunc::Max => self.best.clone(),
        })
    }

    pub fn result_type(agg: &Agg, types: &[SqlType]) -> SqlType {
        match agg.func {
            AggFunc::Count => SqlType::Int8,
            AggFunc::Avg => SqlType::Float8,
            AggFunc::Sum => match agg.arg.as_ref().map(|a| type_of(a, types)) {
                Some(SqlType::Float8) => SqlType::Float8,
                _ => SqlType::Int8,
            },
            AggFunc::Min | AggFunc::Max => agg
                .arg
                .as_ref()
                .map_or(SqlType::Int8, |a| type_of(a, types)),
        }
    }
}
