//! Values on the Postgres wire: the wire type of each column type and back, and the
//! binary format of values (results a client asks in binary, parameters it sends so).

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;

use crate::error::{state, SqlError};
use crate::types::{Datum, SqlType};

/// The wire type of a column type.
pub fn wire_type(t: SqlType) -> Type {
    match t {
        SqlType::Bool => Type::BOOL,
        SqlType::Int2 => Type::INT2,
        SqlType::Int4 => Type::INT4,
        SqlType::Int8 => Type::INT8,
        SqlType::Float8 => Type::FLOAT8,
        SqlType::Text => Type::TEXT,
        SqlType::Varchar(_) => Type::VARCHAR,
        SqlType::Bytea => Type::BYTEA,
        SqlType::TimestampTz => Type::TIMESTAMPTZ,
        SqlType::Jsonb => Type::JSONB,
    }
}

/// The column type of a wire type a client named for a parameter (`None`: one it
/// leaves to the server).
pub fn sql_type_of(t: &Type) -> Option<SqlType> {
    Some(match *t {
        Type::BOOL => SqlType::Bool,
        Type::INT2 => SqlType::Int2,
        Type::INT4 => SqlType::Int4,
        Type::INT8 => SqlType::Int8,
        Type::FLOAT8 => SqlType::Float8,
        Type::TEXT => SqlType::Text,
        Type::VARCHAR => SqlType::Varchar(None),
        Type::BYTEA => SqlType::Bytea,
        Type::TIMESTAMPTZ => SqlType::TimestampTz,
        Type::JSONB | Type::JSON => SqlType::Jsonb,
        _ => return None,
    })
}

/// Microseconds from 1970-01-01 to 2000-01-01, Postgres' epoch of binary timestamps.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A value in binary format.
pub fn binary(d: &Datum, t: SqlType, out: &mut BytesMut) -> Result<(), SqlError> {
    let d = d.clone().fit(t)?;
    match (d, t) {
        (Datum::Bool(b), _) => out.put_u8(b as u8),
        (Datum::Int(i), SqlType::Int2) => out.put_i16(i as i16),
        (Datum::Int(i), SqlType::Int4) => out.put_i32(i as i32),
        (Datum::Int(i), _) => out.put_i64(i),
        (Datum::Float(f), _) => out.put_f64(f),
        (Datum::Timestamp(us), _) => out.put_i64(us - PG_EPOCH_US),
        (Datum::Bytes(b), _) => out.put_slice(&b),
        (Datum::Json(j), _) => {
            out.put_u8(1);
            out.put_slice(j.as_bytes());
        }
        (d, _) => out.put_slice(d.to_text().unwrap_or_default().as_bytes()),
    }
    Ok(())
}

/// A parameter sent in binary format, read as a value of `t`.
pub fn from_binary(b: &[u8], t: SqlType) -> Result<Datum, SqlError> {
    let bad = || {
        SqlError::new(
            state::PROTOCOL_VIOLATION,
            format!("a binary {} parameter of {} bytes", t.name(), b.len()),
        )
    };
    let arr = |n: usize| -> Result<&[u8], SqlError> {
        if b.len() == n {
            Ok(b)
        } else {
            Err(bad())
        }
    };
    Ok(match t {
        SqlType::Bool => Datum::Bool(arr(1)?[0] != 0),
        SqlType::Int2 => {
            Datum::Int(i16::from_be_bytes(arr(2)?.try_into().map_err(|_| bad())?) as i64)
        }
        SqlType::Int4 => {
            Datum::Int(i32::from_be_bytes(arr(4)?.try_into().map_err(|_| bad())?) as i64)
        }
        SqlType::Int8 => Datum::Int(i64::from_be_bytes(arr(8)?.try_into().map_err(|_| bad())?)),
        SqlType::Float8 => Datum::Float(f64::from_be_bytes(arr(8)?.try_into().map_err(|_| bad())?)),
        SqlType::TimestampTz => Datum::Timestamp(
            i64::from_be_bytes(arr(8)?.try_into().map_err(|_| bad())?) + PG_EPOCH_US,
        ),
        SqlType::Bytea => Datum::Bytes(b.to_vec()),
        SqlType::Jsonb => {
            let text = b.strip_prefix(&[1]).ok_or_else(bad)?;
            Datum::parse(
                SqlType::Jsonb,
                std::str::from_utf8(text).map_err(|_| bad())?,
            )?
        }
        SqlType::Text | SqlType::Varchar(_) => {
            Datum::Text(String::from_utf8(b.to_vec()).map_err(|_| bad())?)
        }
    })
}
