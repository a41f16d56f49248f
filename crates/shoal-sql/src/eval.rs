//! Evaluating a bound expression ([`Scalar::eval`]) for one row: SQL's three-valued
//! logic, Postgres' arithmetic (overflow and division by zero are errors), LIKE,
//! casts through text, and the scalar functions.

use crate::error::{state, Result, SqlError};
use crate::expr::{Func, Op, Scalar};
use crate::types::{Datum, SqlType};

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

    /// The row positions the expression reads, appended to `out`.
    pub fn columns(&self, out: &mut Vec<usize>) {
        match self {
            Scalar::Column(i) => out.push(*i),
            Scalar::Literal(_) | Scalar::Param(_) => {}
            Scalar::Binary(_, a, b) | Scalar::Like(a, b, ..) => {
                a.columns(out);
                b.columns(out);
            }
            Scalar::Not(a) | Scalar::Neg(a) | Scalar::IsNull(a, _) | Scalar::Cast(a, _) => {
                a.columns(out)
            }
            Scalar::InList(a, l, _) => {
                a.columns(out);
                l.iter().for_each(|x| x.columns(out));
            }
            Scalar::Between(a, b, c, _) => [a, b, c].iter().for_each(|x| x.columns(out)),
            Scalar::Call(_, args) => args.iter().for_each(|x| x.columns(out)),
        }
    }

    /// Whether a row passes it (a WHERE clause): true, not NULL or false.
    pub fn passes(&self, row: &[Datum], params: &[Datum]) -> Result<bool> {
        Ok(truth(&self.eval(row, params)?)? == Some(true))
    }
}

/// `CAST(d AS ty)`: through text, as Postgres' casts from and to text are.
pub fn cast(d: Datum, ty: SqlType) -> Result<Datum> {
    match (&d, ty) {
        (Datum::Null, _) => Ok(Datum::Null),
        // An explicit cast to a shorter VARCHAR cuts, where an assignment fails.
        (Datum::Text(s) | Datum::Untyped(s), SqlType::Varchar(Some(n))) => {
            Ok(Datum::Text(s.chars().take(n as usize).collect()))
        }
        (Datum::Bool(b), SqlType::Text | SqlType::Varchar(_)) => {
            Datum::Text(if *b { "true" } else { "false" }.into()).fit(ty)
        }
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
                match (f, &d) {
                    (Func::Lower, _) => Datum::Text(s.to_lowercase()),
                    (Func::Upper, _) => Datum::Text(s.to_uppercase()),
                    // A byte string's length is in bytes.
                    (_, Datum::Bytes(b)) => Datum::Int(b.len() as i64),
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
