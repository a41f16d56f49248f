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
            Scalar::Call(func, args)
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

fn truth(d: &Datum) -> Result<Option<bool>> {
    match d {
        Datum::Null => Ok(None),
        Datum::Bool(b) => Ok(Some(*b)),
        Datum::Untyped(s) => match Datum::parse(SqlType::Bool, s)? {
            Datum::Bool(b) => Ok(Some(b)),
            _ => Ok(None),
        },
        other => Err(SqlError::mismatch(format!(
            "argument must be type boolean, not type {}",
            other.type_name()
        ))),
    }
}

/// `text` matched against a LIKE `pattern` (`%` any run, `_` one character, `\`
/// escapes).
pub fn like_match(text: &str, pattern: &str) -> bool {
    like(text, pattern)
}

fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    fn go(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|i| go(&t[i..], &p[1..])),
            Some('_') => !t.is_empty() && go(&t[1..], &p[1..]),
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&t[1..], &p[2..]),
            Some(c) => t.first() == Some(c) && go(&t[1..], &p[1..]),
        }
    }
    go(&t, &p)
}

fn numeric(d: Datum, other: &Datum) -> Result<Datum> {
    match d {
        Datum::Untyped(s) => match other {
            Datum::Float(_) => Datum::parse(SqlType::Float8, &s),
            _ if s.contains(['.', 'e', 'E']) => Datum::parse(SqlType::Float8, &s),
            _ => Datum::parse(SqlType::Int8, &s),
        },
        d => Ok(d),
    }
}

fn arith(op: Op, a: Datum, b: Datum) -> Result<Datum> {
    let (a, b) = (numeric(a.clone(), &b)?, numeric(b, &a)?);
    let overflow = || SqlError::out_of_range("bigint");
    let zero = || SqlError::new(state::DIVISION_BY_ZERO, "division by zero");
    Ok(match (a, b) {
        (Datum::Int(x), Datum::Int(y)) => Datum::Int(match op {
            Op::Add => x.checked_add(y).ok_or_else(overflow)?,
            Op::Sub => x.checked_sub(y).ok_or_else(overflow)?,
            Op::Mul => x.checked_mul(y).ok_or_else(overflow)?,
            Op::Div if y == 0 => return Err(zero()),
            Op::Div => x.checked_div(y).ok_or_else(overflow)?,
            Op::Mod if y == 0 => return Err(zero()),
            Op::Mod => x.checked_rem(y).unwrap_or(0),
            _ => unreachable!("arith is called with arithmetic operators"),
        }),
        (x @ (Datum::Int(_) | Datum::Float(_)), y @ (Datum::Int(_) | Datum::Float(_))) => {
            let f = |d: Datum| match d {
                Datum::Int(i) => i as f64,
                Datum::Float(f) => f,
                _ => 0.0,
            };
            let (x, y) = (f(x), f(y));
            Datum::Float(match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                Op::Mul => x * y,
                Op::Div if y == 0.0 => return Err(zero()),
                Op::Div => x / y,
                Op::Mod if y == 0.0 => return Err(zero()),
                Op::Mod => x % y,
                _ => unreachable!("arith is called with arithmetic operators"),
            })
        }
        (x, y) => {
            return Err(SqlError::new(
                state::UNDEFINED_FUNCTION,
                format!(
                    "operator does not exist: {} {} {}",
                    x.type_name(),
                    op_text(op),
                    y.type_name()
                ),
            ))
        }
    })
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Add => "+",
        Op::Sub => "-",
        Op::Mul => "*",
        Op::Div => "/",
        Op::Mod => "%",
        Op::Concat => "||",
        Op::Eq => "=",
        Op::NotEq => "<>",
        Op::Lt => "<",
        Op::LtEq => "<=",
        Op::Gt => ">",
        Op::GtEq => ">=",
        Op::And => "AND",
        Op::Or => "OR",
    }
}

impl Scalar {
    /// The value of the expression for `row`, with `params` for `$n`.
    pub fn eval(&self, row: &[Datum], params: &[Datum]) -> Result<Datum> {
        let ev = |s: &Scalar| s.eval(row, params);
        Ok(match self {
            Scalar::Column(i) => row
                .get(*i)
                .cloned()
                .ok_or_else(|| SqlError::internal(format!("no column {i} in the row")))?,
            Scalar::Literal(d) => d.clone(),
            Scalar::Param(n) => params.get(*n).cloned().ok_or_else(|| {
                SqlError::new(
                    state::UNDEFINED_PARAMETER,
                    format!("there is no parameter ${}", n + 1),
                )
            })?,
            Scalar::Binary(Op::And, a, b) => match (truth(&ev(a)?)?, truth(&ev(b)?)?) {
                (Some(false), _) | (_, Some(false)) => Datum::Bool(false),
                (Some(true), Some(true)) => Datum::Bool(true),
                _ => Datum::Null,
            },
            Scalar::Binary(Op::Or, a, b) => match (truth(&ev(a)?)?, truth(&ev(b)?)?) {
                (Some(true), _) | (_, Some(true)) => Datum::Bool(true),
                (Some(false), Some(false)) => Datum::Bool(false),
                _ => Datum::Null,
            },
            Scalar::Binary(op, a, b) => {
                let (a, b) = (ev(a)?, ev(b)?);
                if a.is_null() || b.is_null() {
                    return Ok(Datum::Null);
                }
                match op {
                    Op::Concat => Datum::Text(format!(
                        "{}{}",
                        a.to_text().unwrap_or_default(),
                        b.to_text().unwrap_or_default()
                    )),
                    Op::Eq | Op::NotEq | Op::Lt | Op::LtEq | Op::Gt | Op::GtEq => {
                        let o = a.compare(&b)?;
                        Datum::Bool(match op {
                            Op::Eq => o.is_eq(),
                            Op::NotEq => o.is_ne(),
                            Op::Lt => o.is_lt(),
                            Op::LtEq => o.is_le(),
                            Op::Gt => o.is_gt(),
                            _ => o.is_ge(),
                        })
                    }
                    _ => arith(*op, a, b)?,
                }
            }
            Scalar::Not(a) => match truth(&ev(a)?)? {
                Some(b) => Datum::Bool(!b),
                None => Datum::Null,
            },
            Scalar::Neg(a) => match ev(a)? {
                Datum::Null => Datum::Null,
                d => arith(Op::Sub, Datum::Int(0), d)?,
            },
            Scalar::IsNull(a, negated) => Datum::Bool(ev(a)?.is_null() != *negated),
            Scalar::InList(a, list, negated) => {
                let v = ev(a)?;
                if v.is_null() {
                    return Ok(Datum::Null);
                }
                let mut saw_null = false;
                for item in list {
                    let i = ev(item)?;
                    if i.is_null() {
                        saw_null = true;
                    } else if v.compare(&i)?.is_eq() {
                        return Ok(Datum::Bool(!negated));
                    }
                }
                if saw_null {
                    Datum::Null
                } else {
                    Datum::Bool(*negated)
                }
            }
            Scalar::Between(a, lo, hi, negated) => {
                let (v, lo, hi) = (ev(a)?, ev(lo)?, ev(hi)?);
                if v.is_null() || lo.is_null() || hi.is_null() {
                    return Ok(Datum::Null);
                }
                let inside = v.compare(&lo)?.is_ge() && v.compare(&hi)?.is_le();
                Datum::Bool(inside != *negated)
            }
            Scalar::Like(a, p, negated, insensitive) => {
                let (v, p) = (ev(a)?, ev(p)?);
                let (Some(v), Some(p)) = (v.to_text(), p.to_text()) else {
                    return Ok(Datum::Null);
                };
                let m = if *insensitive {
                    like(&v.to_lowercase(), &p.to_lowercase())
                } else {
                    like(&v, &p)
                };
                Datum::Bool(m != *negated)
            }
            Scalar::Cast(a, ty) => cast(ev(a)?, *ty)?,
            Scalar::Call(f, args) => {
                let vals = args.iter().map(ev).collect::<Result<Vec<_>>>()?;
                call(*f, vals)?
            }
        })
    }

    /// Whether the expression holds no column (its value is the same for every row).
    pub fn is_constant(&self) -> bool {
        match self {
            Scalar::Column(_) => false,
            Scalar::Literal(_) | Scalar::Param(_) => true,
            Scalar::Binary(_, a, b) => a.is_constant() && b.is_constant(),
            Scalar::Not(a) | Scalar::Neg(a) | Scalar::IsNull(a, _) | Scalar::Cast(a, _) => {
                a.is_constant()
            }
            Scalar::InList(a, l, _) => a.is_constant() && l.iter().all(Scalar::is_constant),
            Scalar::Between(a, b, c, _) => a.is_constant() && b.is_constant() && c.is_constant(),
            Scalar::Like(a, b, _, _) => a.is_constant() && b.is_constant(),
            Scalar::Call(Func::Now, _) => false,
            Scalar::Call(_, args) => args.iter().all(Scalar::is_constant),
        }
    }

    /// Whether a row passes it (a WHERE clause): true, not NULL or false.
    pub fn passes(&self, row: &[Datum], params: &[Datum]) -> Result<bool> {
        Ok(truth(&self.eval(row, params)?)? == Some(true))
    }
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

/// `CAST(d AS ty)`: through text, as Postgres' casts from and to text are.
pub fn cast(d: Datum, ty: SqlType) -> Result<Datum> {
    match (&d, ty) {
        (Datum::Null, _) => Ok(Datum::Null),
        (Datum::Float(_) | Datum::Int(_), t)
            if t != SqlType::Text && !matches!(t, SqlType::Varchar(_)) =>
        {
            d.fit(t)
        }
        (Datum::Text(s), t) | (Datum::Untyped(s), t) => Datum::parse(t, s),
        (_, SqlType::Text | SqlType::Varchar(_)) => {
            Datum::Text(d.to_text().unwrap_or_default()).fit(ty)
        }
        _ => d.fit(ty),
    }
}

fn call(f: Func, args: Vec<Datum>) -> Result<Datum> {
    let one = |args: &[Datum]| -> Result<Datum> {
        if args.len() != 1 {
            return Err(SqlError::new(
                state::UNDEFINED_FUNCTION,
                format!("{f:?} takes one argument"),
            ));
        }
        Ok(args[0].clone())
    };
    Ok(match f {
        Func::Coalesce => args
            .into_iter()
            .find(|d| !d.is_null())
            .unwrap_or(Datum::Null),
        Func::Now => Datum::Timestamp(chrono::Utc::now().timestamp_micros()),
        Func::Lower | Func::Upper | Func::Length => match one(&args)? {
            Datum::Null => Datum::Null,
            d => {
                let s = d.to_text().unwrap_or_default();
                match f {
                    Func::Lower => Datum::Text(s.to_lowercase()),
                    Func::Upper => Datum::Text(s.to_uppercase()),
                    _ => Datum::Int(s.chars().count() as i64),
                }
            }
        },
        Func::Abs => match one(&args)? {
            Datum::Int(i) => Datum::Int(
                i.checked_abs()
                    .ok_or_else(|| SqlError::out_of_range("bigint"))?,
            ),
            Datum::Float(x) => Datum::Float(x.abs()),
            Datum::Null => Datum::Null,
            d => {
                return Err(SqlError::new(
                    state::UNDEFINED_FUNCTION,
                    format!("function abs({}) does not exist", d.type_name()),
                ))
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_as_sql_does() {
        assert!(like("hello", "he%"));
        assert!(like("hello", "h_llo"));
        assert!(!like("hello", "h_lo"));
        assert!(like("100%", "100\\%"));
        assert!(like("", "%"));
    }

    #[test]
    fn three_valued_logic_and_errors() {
        let t = |d| Box::new(Scalar::Literal(d));
        let and = Scalar::Binary(Op::And, t(Datum::Null), t(Datum::Bool(false)));
        assert_eq!(and.eval(&[], &[]).unwrap(), Datum::Bool(false));
        let or = Scalar::Binary(Op::Or, t(Datum::Null), t(Datum::Bool(false)));
        assert_eq!(or.eval(&[], &[]).unwrap(), Datum::Null);
        let div = Scalar::Binary(Op::Div, t(Datum::Int(1)), t(Datum::Int(0)));
        assert_eq!(
            div.eval(&[], &[]).unwrap_err().state,
            state::DIVISION_BY_ZERO
        );
        let over = Scalar::Binary(Op::Add, t(Datum::Int(i64::MAX)), t(Datum::Int(1)));
        assert_eq!(
            over.eval(&[], &[]).unwrap_err().state,
            state::NUMERIC_VALUE_OUT_OF_RANGE
        );
        let cmp = Scalar::Binary(Op::Eq, t(Datum::Int(1)), t(Datum::Untyped("x".into())));
        assert_eq!(
            cmp.eval(&[], &[]).unwrap_err().state,
            state::INVALID_TEXT_REPRESENTATION
        );
    }
}
