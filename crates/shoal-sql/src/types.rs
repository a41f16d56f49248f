//! Column types ([`SqlType`]) and values ([`Datum`]): how a value is read from text
//! (Postgres' input syntax), written as text (Postgres' output format), compared, and
//! made to fit a column.

use std::cmp::Ordering;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sqlparser::ast::{self, DataType};

use crate::error::{state, Result, SqlError};

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SqlType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float8,
    Text,
    /// `VARCHAR(n)`: text of at most `n` characters (`None`: no limit).
    Varchar(Option<u32>),
    Bytea,
    TimestampTz,
    Jsonb,
}

impl SqlType {
    /// Postgres' name of the type, as `SHOW CREATE TABLE` and error messages write it.
    pub fn name(self) -> String {
        match self {
            SqlType::Bool => "boolean".into(),
            SqlType::Int2 => "smallint".into(),
            SqlType::Int4 => "integer".into(),
            SqlType::Int8 => "bigint".into(),
            SqlType::Float8 => "double precision".into(),
            SqlType::Text => "text".into(),
            SqlType::Varchar(None) => "character varying".into(),
            SqlType::Varchar(Some(n)) => format!("character varying({n})"),
            SqlType::Bytea => "bytea".into(),
            SqlType::TimestampTz => "timestamp with time zone".into(),
            SqlType::Jsonb => "jsonb".into(),
        }
    }

    /// The short name Postgres' input errors use (`invalid input syntax for type ...`).
    pub fn input_name(self) -> &'static str {
        match self {
            SqlType::Bool => "boolean",
            SqlType::Int2 => "smallint",
            SqlType::Int4 => "integer",
            SqlType::Int8 => "bigint",
            SqlType::Float8 => "double precision",
            SqlType::Text | SqlType::Varchar(_) => "text",
            SqlType::Bytea => "bytea",
            SqlType::TimestampTz => "timestamp with time zone",
            SqlType::Jsonb => "json",
        }
    }

    fn is_int(self) -> bool {
        matches!(self, SqlType::Int2 | SqlType::Int4 | SqlType::Int8)
    }
}

/// The column type of a parsed data type.
pub fn sql_type(t: &DataType) -> Result<SqlType> {
    Ok(match t {
        DataType::Bool | DataType::Boolean => SqlType::Bool,
        DataType::Int2(_) | DataType::SmallInt(_) => SqlType::Int2,
        DataType::Int(_) | DataType::Int4(_) | DataType::Integer(_) => SqlType::Int4,
        DataType::Int8(_) | DataType::BigInt(_) => SqlType::Int8,
        DataType::Float8 | DataType::DoublePrecision | DataType::Double(_) | DataType::Float64 => {
            SqlType::Float8
        }
        DataType::Text => SqlType::Text,
        DataType::Varchar(len) | DataType::CharacterVarying(len) => SqlType::Varchar(match len {
            Some(ast::CharacterLength::IntegerLength { length, .. }) => Some(
                u32::try_from(*length)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        SqlError::new(
                            state::INVALID_PARAMETER_VALUE,
                            "length for type varchar must be at least 1",
                        )
                    })?,
            ),
            _ => None,
        }),
        DataType::Bytea => SqlType::Bytea,
        DataType::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => {
            SqlType::TimestampTz
        }
        DataType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("timestamptz") => {
            SqlType::TimestampTz
        }
        DataType::JSONB => SqlType::Jsonb,
        DataType::Custom(name, _) => {
            return Err(SqlError::new(
                state::UNDEFINED_OBJECT,
                format!(
                    "type \"{}\" does not exist",
                    name.to_string().to_lowercase()
                ),
            ))
        }
        other => return Err(SqlError::unsupported(format!("the type {other}"))),
    })
}

/// A value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Datum {
    Null,
    Bool(bool),
    /// Any integer type (the column's type bounds it).
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// Microseconds since 1970-01-01 00:00:00 UTC.
    Timestamp(i64),
    /// A JSON document in Postgres' `jsonb` output form.
    Json(String),
    /// A string literal or a parameter sent as text with no type: its type comes from
    /// where it is used (compared with an integer column, it is read as an integer).
    Untyped(String),
}

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// The value as Postgres writes it in text format; `None` for NULL.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Datum::Null => return None,
            Datum::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            Datum::Int(i) => i.to_string(),
            Datum::Float(f) => float_text(*f),
            Datum::Text(s) | Datum::Untyped(s) | Datum::Json(s) => s.clone(),
            Datum::Bytes(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for byte in b {
                    let _ = write!(s, "{byte:02x}");
                }
                s
            }
            Datum::Timestamp(us) => timestamp_text(*us),
        })
    }

    /// Reads `text` as a value of `ty` (Postgres' input syntax).
    pub fn parse(ty: SqlType, text: &str) -> Result<Datum> {
        let bad = || SqlError::bad_text(ty.input_name(), text);
        Ok(match ty {
            SqlType::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "yes" | "y" | "on" | "1" => Datum::Bool(true),
                "f" | "false" | "no" | "n" | "off" | "0" => Datum::Bool(false),
                _ => return Err(bad()),
            },
            SqlType::Int2 | SqlType::Int4 | SqlType::Int8 => {
                let t = text.trim();
                let v: i128 = t.parse().map_err(|_| bad())?;
                let v = i64::try_from(v).map_err(|_| {
                    SqlError::new(
                        state::NUMERIC_VALUE_OUT_OF_RANGE,
                        format!("value \"{t}\" is out of range for type {}", ty.input_name()),
                    )
                })?;
                return Datum::Int(v).fit(ty);
            }
            SqlType::Float8 => Datum::Float(parse_float(text.trim()).ok_or_else(bad)?),
            SqlType::Text => Datum::Text(text.to_string()),
            SqlType::Varchar(_) => return Datum::Text(text.to_string()).fit(ty),
            SqlType::Bytea => Datum::Bytes(parse_bytea(text).ok_or_else(bad)?),
            SqlType::TimestampTz => {
                Datum::Timestamp(parse_timestamp(text.trim()).ok_or_else(|| {
                    SqlError::new(
                        state::INVALID_DATETIME_FORMAT,
                        format!(
                            "invalid input syntax for type timestamp with time zone: \"{text}\""
                        ),
                    )
                })?)
            }
            SqlType::Jsonb => {
                let v: serde_json::Value = serde_json::from_str(text).map_err(|_| bad())?;
                Datum::Json(json_text(&v))
            }
        })
    }

    /// The value made to fit a column of `ty` (an assignment: a string literal is read
    /// as the type, an integer checked against its range, a float rounded into an
    /// integer, text checked against its length).
    pub fn fit(self, ty: SqlType) -> Result<Datum> {
        let out_of_range = || SqlError::out_of_range(ty.input_name());
        Ok(match (self, ty) {
            (Datum::Null, _) => Datum::Null,
            (Datum::Untyped(s), ty) => Datum::parse(ty, &s)?,
            (Datum::Int(i), SqlType::Int2) if i16::try_from(i).is_err() => {
                return Err(out_of_range())
            }
            (Datum::Int(i), SqlType::Int4) if i32::try_from(i).is_err() => {
                return Err(out_of_range())
            }
            (Datum::Int(i), t) if t.is_int() => Datum::Int(i),
            (Datum::Int(i), SqlType::Float8) => Datum::Float(i as f64),
            (Datum::Float(f), t) if t.is_int() => {
                let r = f.round_ties_even();
                if !r.is_finite() || r < i64::MIN as f64 || r >= i64::MAX as f64 {
                    return Err(out_of_range());
                }
                return Datum::Int(r as i64).fit(t);
            }
            (Datum::Float(f), SqlType::Float8) => Datum::Float(f),
            (Datum::Bool(b), SqlType::Bool) => Datum::Bool(b),
            (Datum::Text(s), SqlType::Varchar(Some(n))) => {
                let chars = s.chars().count();
                // Postgres cuts excess trailing spaces silently.
                if chars > n as usize && s.chars().skip(n as usize).all(|c| c == ' ') {
                    return Ok(Datum::Text(s.chars().take(n as usize).collect()));
                }
                if chars > n as usize {
                    return Err(SqlError::new(
                        state::STRING_DATA_RIGHT_TRUNCATION,
                        format!("value too long for type character varying({n})"),
                    ));
                }
                Datum::Text(s)
            }
            (Datum::Text(s), SqlType::Text | SqlType::Varchar(None)) => Datum::Text(s),
            // Postgres assigns any value to a text column through its text form.
            (
                d @ (Datum::Int(_) | Datum::Float(_) | Datum::Bool(_)),
                SqlType::Text | SqlType::Varchar(_),
            ) => Datum::Text(d.to_text().unwrap_or_default()).fit(ty)?,
            (Datum::Bytes(b), SqlType::Bytea) => Datum::Bytes(b),
            (Datum::Timestamp(t), SqlType::TimestampTz) => Datum::Timestamp(t),
            (Datum::Json(j), SqlType::Jsonb) => Datum::Json(j),
            (Datum::Text(s), SqlType::Jsonb) => Datum::parse(SqlType::Jsonb, &s)?,
            (d, ty) => {
                return Err(SqlError::mismatch(format!(
                    "a value of type {} cannot be assigned to a column of type {}",
                    d.type_name(),
                    ty.name()
                )))
            }
        })
    }

    /// The name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Datum::Null => "unknown",
            Datum::Bool(_) => "boolean",
            Datum::Int(_) => "bigint",
            Datum::Float(_) => "double precision",
            Datum::Text(_) => "text",
            Datum::Bytes(_) => "bytea",
            Datum::Timestamp(_) => "timestamp with time zone",
            Datum::Json(_) => "jsonb",
            Datum::Untyped(_) => "unknown",
        }
    }

    /// Compares two values of comparable types (NULLs are the caller's: they compare
    /// equal here); a string literal is read as the other side's type first.
    pub fn compare(&self, other: &Datum) -> Result<Ordering> {
        use Datum::*;
        Ok(match (self, other) {
            (Null, _) | (_, Null) => Ordering::Equal,
            (Untyped(a), Untyped(b)) => a.cmp(b),
            (Untyped(s), o) => Datum::parse(o.sql_type()?, s)?.compare(o)?,
            (o, Untyped(s)) => o.compare(&Datum::parse(o.sql_type()?, s)?)?,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Int(a), Float(b)) => float_cmp(*a as f64, *b),
            (Float(a), Int(b)) => float_cmp(*a, *b as f64),
            (Float(a), Float(b)) => float_cmp(*a, *b),
            (Text(a), Text(b)) => a.cmp(b),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Timestamp(a), Timestamp(b)) => a.cmp(b),
            (Json(a), Json(b)) => a.cmp(b),
            (a, b) => {
                return Err(SqlError::new(
                    state::UNDEFINED_FUNCTION,
                    format!(
                        "operator does not exist: {} = {}",
                        a.type_name(),
                        b.type_name()
                    ),
                ))
            }
        })
    }

    /// The type a value of this kind is read as when it meets a string literal.
    fn sql_type(&self) -> Result<SqlType> {
        Ok(match self {
            Datum::Bool(_) => SqlType::Bool,
            Datum::Int(_) => SqlType::Int8,
            Datum::Float(_) => SqlType::Float8,
            Datum::Text(_) | Datum::Untyped(_) => SqlType::Text,
            Datum::Bytes(_) => SqlType::Bytea,
            Datum::Timestamp(_) => SqlType::TimestampTz,
            Datum::Json(_) => SqlType::Jsonb,
            Datum::Null => SqlType::Text,
        })
    }

    /// Sort order of ORDER BY: NULL above every value (last ascending, as Postgres).
    pub fn sort_cmp(&self, other: &Datum) -> Ordering {
        match (self.is_null(), other.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.compare(other).unwrap_or(Ordering::Equal),
        }
    }
}

/// Floats order as Postgres orders them: NaN above every number, and equal to itself.
fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn parse_float(t: &str) -> Option<f64> {
    match t.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "inf" | "+infinity" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        s if s.chars().any(|c| c.is_ascii_digit()) && !s.contains("inf") && !s.contains("nan") => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// A float as Postgres writes it: the shortest text that reads back the same, in
/// exponent form below 1e-4 and from 1e15 up (as `1e+15`, `1.5e-05`).
pub fn float_text(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e15).contains(&a) {
        let e = format!("{f:e}");
        let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    if f == 0.0 && f.is_sign_negative() {
        return "-0".into();
    }
    format!("{f}")
}

fn parse_bytea(t: &str) -> Option<Vec<u8>> {
    if let Some(hex) = t.strip_prefix("\\x") {
        let hex: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        return hex
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
    }
    // The escape format: backslash escapes octal bytes and itself.
    let mut out = Vec::with_capacity(t.len());
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = std::str::from_utf8(b.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(oct, 8).ok()?);
            i += 4;
        }
    }
    Some(out)
}

/// Reads a timestamp: ISO 8601 or Postgres' `YYYY-MM-DD HH:MM:SS[.frac][+TZ]`, a bare
/// date (midnight), and a missing zone is UTC (the session's time zone).
fn parse_timestamp(t: &str) -> Option<i64> {
    let with_zone = [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M%#z",
    ];
    let t_norm = t
        .strip_suffix('Z')
        .map(|s| format!("{s}+00"))
        .unwrap_or_else(|| t.to_string());
    let t_norm = t_norm.replace(" +", "+").replace(" -", "-");
    for f in with_zone {
        if let Ok(dt) = DateTime::parse_from_str(&t_norm, f) {
            return Some(dt.with_timezone(&Utc).timestamp_micros());
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, f) {
            return Some(Utc.from_utc_datetime(&dt).timestamp_micros());
        }
    }
    let d = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
    Some(
        Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?)
            .timestamp_micros(),
    )
}

/// A timestamp as Postgres writes it in UTC: `2024-01-02 03:04:05.5+00`.
pub fn timestamp_text(us: i64) -> String {
    let Some(dt) = DateTime::<Utc>::from_timestamp_micros(us) else {
        return us.to_string();
    };
    let mut s = dt.format("%Y-%m-%d %H:%M:%S").to_string();
    let frac = us.rem_euclid(1_000_000);
    if frac != 0 {
        let f = format!(".{frac:06}");
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str("+00");
    s
}

/// A JSON document as Postgres' `jsonb` writes it: object keys ordered by length, then
/// bytes (and the last of a repeated key kept), `", "` and `": "` between items.
pub fn json_text(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write_json(&mut out, v);
    out
}

fn write_json(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push_str(": ");
                write_json(out, &m[*k]);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(out, item);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_postgres_writes_them() {
        assert_eq!(float_text(1.5), "1.5");
        assert_eq!(float_text(100.0), "100");
        assert_eq!(float_text(1e15), "1e+15");
        assert_eq!(float_text(1.5e-5), "1.5e-05");
        assert_eq!(float_text(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float_text(f64::NAN), "NaN");
    }

    #[test]
    fn integers_are_checked_against_their_column() {
        assert!(Datum::parse(SqlType::Int2, "40000").is_err());
        assert_eq!(Datum::parse(SqlType::Int4, " 42 ").unwrap(), Datum::Int(42));
        let e = Datum::parse(SqlType::Int8, "abc").unwrap_err();
        assert_eq!(e.state, state::INVALID_TEXT_REPRESENTATION);
        assert_eq!(Datum::Float(2.5).fit(SqlType::Int8).unwrap(), Datum::Int(2));
    }

    #[test]
    fn timestamps_and_json_read_and_write_as_postgres() {
        let t = Datum::parse(SqlType::TimestampTz, "2024-01-02 03:04:05+00").unwrap();
        assert_eq!(t.to_text().unwrap(), "2024-01-02 03:04:05+00");
        let t = Datum::parse(SqlType::TimestampTz, "2024-01-02T05:04:05.25+02:00").unwrap();
        assert_eq!(t.to_text().unwrap(), "2024-01-02 03:04:05.25+00");
        let j = Datum::parse(SqlType::Jsonb, r#"{"bb":1,"a":[1,2]}"#).unwrap();
        assert_eq!(j.to_text().unwrap(), r#"{"a": [1, 2], "bb": 1}"#);
        let b = Datum::parse(SqlType::Bytea, "\\x01ff").unwrap();
        assert_eq!(b.to_text().unwrap(), "\\x01ff");
    }
}
