//! Scalar expressions: [`bind`] turns a parsed expression into a [`Scalar`] whose
//! column references are positions in the row it will see (resolved against a
//! [`Scope`]), and [`Scalar::eval`] computes it for one row, with SQL's three-valued
//! logic and Postgres' errors (overflow, division by zero, bad text).

use sqlparser::ast::{self, BinaryOperator, Expr, UnaryOperator, Value};

use crate::error::{state, Result, SqlError};
use crate::types::{Datum, SqlType};

/// The columns an expression may name: `(table or alias, column, type)` in row order.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub columns: Vec<(String, String, Option<SqlType>)>,
}

impl Scope {
    /// The position of column `name`, of `table` if given.
    pub fn resolve(&self, table: Option<&str>, name: &str) -> Result<usize> {
        let mut found = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, (t, c, _))| c == name && table.is_none_or(|want| want == t));
        let Some((i, _)) = found.next() else {
            if let Some(t) = table {
                if !self.columns.iter().any(|(have, _, _)| have == t) {
                    return Err(SqlError::new(
                        state::UNDEFINED_TABLE,
                        format!("missing FROM-clause entry for table \"{t}\""),
                    ));
                }
            }
            let full = table.map_or(name.to_string(), |t| format!("{t}.{name}"));
            return Err(SqlError::undefined_column(&full));
        };
        if found.next().is_some() {
            return Err(SqlError::new(
                state::AMBIGUOUS_COLUMN,
                format!("column reference \"{name}\" is ambiguous"),
            ));
        }
        Ok(i)
    }
}

/// An identifier as Postgres reads it: folded to lower case unless quoted.
pub fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// Longest table, column or index name (Postgres' `NAMEDATALEN - 1`).
const MAX_NAME: usize = 63;

/// A name of one part (no schema), as Postgres folds it; `public.t` is `t`.
pub fn object_name(n: &ast::ObjectName) -> Result<String> {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| match p {
                ast::ObjectNamePart::Identifier(i) => Ok(ident(i)),
                other => Err(SqlError::unsupported(format!("the name {other}"))),
            })
            .collect::<Result<_>>()?;
    let name = match parts.as_slice() {
        [name] => name.clone(),
        [schema, name] if schema == "public" => name.clone(),
        _ => {
            return Err(SqlError::new(
                state::UNDEFINED_OBJECT,
                format!("schema of \"{n}\" does not exist"),
            ))
        }
    };
    check_name(&name)?;
    Ok(name)
}

pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(SqlError::new(
            state::PROGRAM_LIMIT_EXCEEDED,
            format!("a name must be 1 to {MAX_NAME} bytes long"),
        ));
    }
    Ok(())
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Concat,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
}

/// A scalar function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Lower,
    Upper,
    Length,
    Abs,
    Coalesce,
    Now,
}

/// A bound expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Column(usize),
    Literal(Datum),
    /// `$n`, 0-based.
    Param(usize),
    Binary(Op, Box<Scalar>, Box<Scalar>),
    Not(Box<Scalar>),
    Neg(Box<Scalar>),
    IsNull(Box<Scalar>, bool),
    InList(Box<Scalar>, Vec<Scalar>, bool),
    Between(Box<Scalar>, Box<Scalar>, Box<Scalar>, bool),
    /// `LIKE` (`true`: `NOT LIKE`), case-insensitive for `ILIKE`.
    Like(Box<Scalar>, Box<Scalar>, bool, bool),
    Cast(Box<Scalar>, SqlType),
    Call(Func, Vec<Scalar>),
}

/// What binding does with an aggregate call or a grouped expression it meets (the
/// query's grouping); plain binding refuses aggregates.
pub trait Hook {
    /// `Some(scalar)` to stand for `e` (already computed), `None` to bind it as usual.
    fn replace(&mut self, e: &Expr) -> Result<Option<Scalar>>;
}

/// Whether a call is an aggregate.
pub fn is_aggregate(f: &ast::Function) -> bool {
    matches!(
        f.name.to_string().to_lowercase().as_str(),
        "count" | "sum" | "min" | "max" | "avg"
    )
}

/// Binding with no grouping: an aggregate here is an error.
pub struct NoHook;

impl Hook for NoHook {
    fn replace(&mut self, e: &Expr) -> Result<Option<Scalar>> {
        if let Expr::Function(f) = e {
            if is_aggregate(f) {
                return Err(SqlError::new(
                    state::GROUPING_ERROR,
                    "aggregate functions are not allowed here",
                ));
            }
        }
        Ok(None)
    }
}

/// Binds `e` against `scope`.
pub fn bind(e: &Expr, scope: &Scope, hook: &mut dyn Hook) -> Result<Scalar> {
    if let Some(s) = hook.replace(e)? {
        return Ok(s);
    }
    let mut b = |e: &Expr| bind(e, scope, hook);
    Ok(match e {
        Expr::Identifier(i) => Scalar::Column(scope.resolve(None, &ident(i))?),
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
            Scalar::Column(scope.resolve(Some(&ident(&parts[0])), &ident(&parts[1]))?)
        }
        Expr::Value(v) => literal(&v.value)?,
        Expr::Nested(inner) => b(inner)?,
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Plus => Op::Add,
                BinaryOperator::Minus => Op::Sub,
                BinaryOperator::Multiply => Op::Mul,
                BinaryOperator::Divide => Op::Div,
                BinaryOperator::Modulo => Op::Mod,
                BinaryOperator::StringConcat => Op::Concat,
                BinaryOperator::Eq => Op::Eq,
                BinaryOperator::NotEq => Op::NotEq,
                BinaryOperator::Lt => Op::Lt,
                BinaryOperator::LtEq => Op::LtEq,
                BinaryOperator::Gt => Op::Gt,
                BinaryOperator::GtEq => Op::GtEq,
                BinaryOperator::And => Op::And,
                BinaryOperator::Or => Op::Or,
                other => return Err(SqlError::unsupported(format!("the operator {other}"))),
            };
            let bound = Scalar::Binary(op, Box::new(b(left)?), Box::new(b(right)?));
            // Arithmetic of two smaller integers stays in their type, as in
            // Postgres: `int4 * int4` overflows past 2^31.
            let types: Vec<SqlType> = scope
                .columns
                .iter()
                .map(|c| c.2.unwrap_or(SqlType::Text))
                .collect();
            match (op, type_of(&bound, &types)) {
                (
                    Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod,
                    t @ (SqlType::Int4 | SqlType::Int2),
                ) => Scalar::Cast(Box::new(bound), t),
                _ => bound,
            }
        }
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Not => Scalar::Not(Box::new(b(expr)?)),
            UnaryOperator::Minus => match b(expr)? {
                Scalar::Literal(Datum::Int(i)) => Scalar::Literal(Datum::Int(-i)),
                Scalar::Literal(Datum::Float(f)) => Scalar::Literal(Datum::Float(-f)),
                s => Scalar::Neg(Box::new(s)),
            },
            UnaryOperator::Plus => b(expr)?,
            other => return Err(SqlError::unsupported(format!("the operator {other}"))),
        },
        Expr::IsNull(x) => Scalar::IsNull(Box::new(b(x)?), false),
        Expr::IsNotNull(x) => Scalar::IsNull(Box::new(b(x)?), true),
        Expr::In {
            expr,
            target: ast::InTarget::List(list),
            negated,
            ..
        } => Scalar::InList(
            Box::new(b(expr)?),
            list.iter().map(&mut b).collect::<Result<_>>()?,
            *negated,
        ),
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => Scalar::Between(
            Box::new(b(expr)?),
            Box::new(b(low)?),
            Box::new(b(high)?),
            *negated,
        ),
        Expr::Like {
            negated,
            expr,
            pattern,
            escape_char: None,
            any: false,
        } => Scalar::Like(Box::new(b(expr)?), Box::new(b(pattern)?), *negated, false),
        Expr::ILike {
            negated,
            expr,
            pattern,
            escape_char: None,
            any: false,
        } => Scalar::Like(Box::new(b(expr)?), Box::new(b(pattern)?), *negated, true),
        Expr::Cast {
            expr, data_type, ..
        } => Scalar::Cast(Box::new(b(expr)?), crate::types::sql_type(data_type)?),
        Expr::TypedString(ts) => Scalar::Cast(
            Box::new(literal(&ts.value.value)?),
            crate::types::sql_type(&ts.data_type)?,
        ),
        Expr::Function(f) => {
            let name = f.name.to_string().to_lowercase();
            let func = match name.as_str() {
                "lower" => Func::Lower,
                "upper" => Func::Upper,
                "length" | "char_length" => Func::Length,
                "abs" => Func::Abs,
                "coalesce" => Func::Coalesce,
                "now" | "current_timestamp" => Func::Now,
                _ => {
                    return Err(SqlError::new(
                        state::UNDEFINED_FUNCTION,
                        format!("function {name} does not exist"),
                    ))
                }
            };
            let args = function_args(f)?
                .into_iter()
                .map(|a| a.ok_or_else(|| SqlError::syntax(format!("{name}(*) is not a call"))))
                .map(|a| a.and_then(&mut b))
                .collect::<Result<Vec<_>>>()?;
            let call = Scalar::Call(func, args);
            // abs() of a smaller integer stays in its type (and overflows there).
            let types: Vec<SqlType> = scope
                .columns
                .iter()
                .map(|c| c.2.unwrap_or(SqlType::Text))
                .collect();
            match (func, type_of(&call, &types)) {
                (Func::Abs, t @ (SqlType::Int4 | SqlType::Int2)) => Scalar::Cast(Box::new(call), t),
                _ => call,
            }
        }
        other => return Err(SqlError::unsupported(format!("the expression {other}"))),
    })
}

/// The arguments of a call (`None` for `*`).
pub fn function_args(f: &ast::Function) -> Result<Vec<Option<&Expr>>> {
    match &f.args {
        ast::FunctionArguments::None => Ok(Vec::new()),
        ast::FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(Some(e)),
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => Ok(None),
                other => Err(SqlError::unsupported(format!("the argument {other}"))),
            })
            .collect(),
        ast::FunctionArguments::Subquery(_) => Err(SqlError::unsupported("a subquery")),
    }
}

/// A literal's value.
pub fn literal(v: &Value) -> Result<Scalar> {
    Ok(Scalar::Literal(match v {
        Value::Null => Datum::Null,
        Value::Boolean(b) => Datum::Bool(*b),
        Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                Datum::Int(i)
            } else {
                Datum::Float(
                    n.parse::<f64>()
                        .map_err(|_| SqlError::bad_text("numeric", n))?,
                )
            }
        }
        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Datum::Untyped(s.clone()),
        Value::Placeholder(p) => {
            let n: usize = p
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| SqlError::syntax(format!("bad parameter {p}")))?;
            return Ok(Scalar::Param(n - 1));
        }
        other => return Err(SqlError::unsupported(format!("the literal {other}"))),
    }))
}

/// The type a bound expression's values have, over rows of `types`.
pub fn type_of(s: &Scalar, types: &[SqlType]) -> SqlType {
    match s {
        Scalar::Column(i) => types.get(*i).copied().unwrap_or(SqlType::Text),
        Scalar::Literal(d) => match d {
            Datum::Bool(_) => SqlType::Bool,
            Datum::Int(i) if i32::try_from(*i).is_ok() => SqlType::Int4,
            Datum::Int(_) => SqlType::Int8,
            Datum::Float(_) => SqlType::Float8,
            Datum::Bytes(_) => SqlType::Bytea,
            Datum::Timestamp(_) => SqlType::TimestampTz,
            Datum::Json(_) => SqlType::Jsonb,
            _ => SqlType::Text,
        },
        Scalar::Param(_) => SqlType::Text,
        Scalar::Binary(op, a, b) => match op {
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod => {
                match (type_of(a, types), type_of(b, types)) {
                    (SqlType::Float8, _) | (_, SqlType::Float8) => SqlType::Float8,
                    (SqlType::Int4 | SqlType::Int2, SqlType::Int4 | SqlType::Int2) => SqlType::Int4,
                    _ => SqlType::Int8,
                }
            }
            Op::Concat => SqlType::Text,
            _ => SqlType::Bool,
        },
        Scalar::Neg(a) => type_of(a, types),
        Scalar::Not(_)
        | Scalar::IsNull(..)
        | Scalar::InList(..)
        | Scalar::Between(..)
        | Scalar::Like(..) => SqlType::Bool,
        Scalar::Cast(_, t) => *t,
        Scalar::Call(f, args) => match f {
            Func::Lower | Func::Upper => SqlType::Text,
            Func::Length => SqlType::Int4,
            Func::Now => SqlType::TimestampTz,
            Func::Abs | Func::Coalesce => args.first().map_or(SqlType::Text, |a| type_of(a, types)),
        },
    }
}

/// The types of the parameters `s` holds, as their places tell (`$1` compared with an
/// integer column is an integer); those it leaves open stay `None`.
pub fn infer_params(s: &Scalar, types: &[SqlType], out: &mut Vec<Option<SqlType>>) {
    let set = |n: usize, t: SqlType, out: &mut Vec<Option<SqlType>>| {
        if out.len() <= n {
            out.resize(n + 1, None);
        }
        out[n].get_or_insert(t);
    };
    let against = |x: &Scalar, other: &Scalar, out: &mut Vec<Option<SqlType>>| {
        if let (Scalar::Param(n), false) = (x, matches!(other, Scalar::Param(_))) {
            set(*n, type_of(other, types), out);
        }
    };
    match s {
        Scalar::Binary(op, a, b) => {
            if *op == Op::Concat {
                for x in [a, b] {
                    if let Scalar::Param(n) = x.as_ref() {
                        set(*n, SqlType::Text, out);
                    }
                }
            } else if matches!(op, Op::And | Op::Or) {
                for x in [a, b] {
                    if let Scalar::Param(n) = x.as_ref() {
                        set(*n, SqlType::Bool, out);
                    }
                }
            } else {
                against(a, b, out);
                against(b, a, out);
            }
            infer_params(a, types, out);
            infer_params(b, types, out);
        }
        Scalar::InList(x, list, _) => {
            for item in list {
                against(item, x, out);
                against(x, item, out);
                infer_params(item, types, out);
            }
            infer_params(x, types, out);
        }
        Scalar::Between(x, lo, hi, _) => {
            for b in [lo, hi] {
                against(b, x, out);
                against(x, b, out);
                infer_params(b, types, out);
            }
            infer_params(x, types, out);
        }
        Scalar::Like(a, b, ..) => {
            for x in [a, b] {
                if let Scalar::Param(n) = x.as_ref() {
                    set(*n, SqlType::Text, out);
                }
                infer_params(x, types, out);
            }
        }
        Scalar::Cast(a, t) => {
            if let Scalar::Param(n) = a.as_ref() {
                set(*n, *t, out);
            }
            infer_params(a, types, out);
        }
        Scalar::Not(a) | Scalar::Neg(a) | Scalar::IsNull(a, _) => infer_params(a, types, out),
        Scalar::Call(_, args) => {
            for a in args {
                infer_params(a, types, out);
            }
        }
        Scalar::Column(_) | Scalar::Literal(_) | Scalar::Param(_) => {}
    }
}

/// A statement named by its first two words (`the statement ALTER TABLE`), for
/// messages that refuse it.
pub fn statement_words(s: &sqlparser::ast::Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    format!("the statement {}", words.join(" "))
}
