//! The HTTP SQL API, shaped like rqlite's: `POST /db/execute` and `POST /db/query`
//! take a JSON array of statements, each a string or `[sql, param, ...]` (`$1`... in
//! the text, JSON values as parameters), and answer
//! `{"results": [...], "time": seconds}` with, per statement, its rows (`columns`,
//! `types`, `values`) or `rows_affected`, or its `error` and `sqlstate`.
//!
//! `?transaction` runs the array in one transaction: all or nothing (after the first
//! error the rest is not run). Without it each statement commits alone, and an error
//! stops none of the others. `?level=strong` (the default) reads at a fresh
//! timestamp, linearizable; `weak` and `none` are taken and answered the same, as
//! every read of the SQL layer is linearizable.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use shoal_proto::role::Role;

use crate::ctx::Output;
use crate::error::{state, SqlError};
use crate::session::{parse, Engine, Session};
use crate::types::{Datum, SqlType};

/// An HTTP answer: status code and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

fn bad_request(message: impl Into<String>) -> Answer {
    Answer {
        status: 400,
        body: json!({"error": message.into()}).to_string() + "\n",
    }
}

/// A JSON parameter as a value.
fn datum(v: &Value) -> Result<Datum, String> {
    Ok(match v {
        Value::Null => Datum::Null,
        Value::Bool(b) => Datum::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Datum::Int(i),
            None => Datum::Float(n.as_f64().ok_or("a number out of range")?),
        },
        Value::String(s) => Datum::Untyped(s.clone()),
        other => {
            return Err(format!(
                "a parameter must be a string, number, boolean or null, not {other}"
            ))
        }
    })
}

/// A value as JSON: numbers and booleans as themselves, JSONB as a document, the rest
/// as Postgres writes it.
fn json_of(d: &Datum) -> Value {
    match d {
        Datum::Null => Value::Null,
        Datum::Bool(b) => Value::Bool(*b),
        Datum::Int(i) => json!(i),
        Datum::Float(f) if f.is_finite() => json!(f),
        Datum::Json(j) => serde_json::from_str(j).unwrap_or(Value::String(j.clone())),
        other => Value::String(other.to_text().unwrap_or_default()),
    }
}

fn type_name(t: SqlType) -> String {
    t.name()
}

fn result_of(r: Result<Output, SqlError>) -> Value {
    match r {
        Ok(Output::Rows { columns, rows, .. }) => json!({
            "columns": columns.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
            "types": columns.iter().map(|c| type_name(c.1)).collect::<Vec<_>>(),
            "values": rows.iter().map(|r| r.iter().map(json_of).collect::<Vec<_>>()).collect::<Vec<_>>(),
        }),
        Ok(Output::Command { rows, .. }) => json!({"rows_affected": rows.unwrap_or(0)}),
        // `Session::run` reads a query whole; only `run_streamed` streams.
        Ok(Output::Stream { .. }) => {
            json!({"error": "a query's rows were not read", "sqlstate": state::INTERNAL_ERROR})
        }
        Err(e) => json!({"error": e.message, "sqlstate": e.state}),
    }
}

/// Answers one request of the API; `None` if `path` is not one of its.
pub async fn handle(
    engine: Arc<Engine>,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    (user, role): (&str, Role),
) -> Option<Answer> {
    if path != "/db/execute" && path != "/db/query" {
        return None;
    }
    let started = Instant::now();
    let mut in_txn = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "transaction" => in_txn = v.is_empty() || v == "true",
            "level" if matches!(v, "strong" | "weak" | "none") => {}
            "level" => {
                return Some(bad_request(format!(
                    "level must be strong, weak or none, not {v:?}"
                )))
            }
            "timings" | "pretty" | "associative" => {}
            other => return Some(bad_request(format!("unknown parameter {other:?}"))),
        }
    }
    let stmts: Vec<Value> = match serde_json::from_slice(body) {
        Ok(Value::Array(a)) => a,
        Ok(_) => return Some(bad_request("the body must be a JSON array of statements")),
        Err(e) => return Some(bad_request(format!("the body is not JSON: {e}"))),
    };
    // Every statement is read before any runs: a malformed one runs none.
    let mut batch = Vec::with_capacity(stmts.len());
    for s in &stmts {
        let (sql, params) = match s {
            Value::String(sql) => (sql.as_str(), Vec::new()),
            Value::Array(parts) => match parts.split_first() {
                Some((Value::String(sql), params)) => {
                    match params.iter().map(datum).collect::<Result<Vec<_>, _>>() {
                        Ok(p) => (sql.as_str(), p),
                        Err(e) => return Some(bad_request(e)),
                    }
                }
                _ => {
                    return Some(bad_request(
                        "a statement array must start with its SQL text",
                    ))
                }
            },
            _ => return Some(bad_request("a statement is a string or [sql, params...]")),
        };
        batch.push((sql, params));
    }
    let max = engine.max_statement_bytes;
    let mut session = Session::of(engine, user, role);
    let mut results = Vec::with_capacity(batch.len());
    let mut failed = false;
    if in_txn {
        if let Err(e) = session.run_text("BEGIN", &[]).await {
            results.push(result_of(Err(e)));
            failed = true;
        }
    }
    for (sql, params) in batch {
        if failed && in_txn {
            results.push(result_of(Err(SqlError::new(
                state::IN_FAILED_TRANSACTION,
                "not run: an earlier statement of the transaction failed",
            ))));
            continue;
        }
        let r = match parse(sql, max) {
            Ok(list) if list.len() == 1 => session.run(&list[0], &params).await,
            Ok(list) if list.is_empty() => Err(SqlError::syntax("an empty statement")),
            Ok(_) => Err(SqlError::syntax(
                "one statement per entry: split them into the array",
            )),
            Err(e) => Err(e),
        };
        failed |= r.is_err();
        results.push(result_of(r));
    }
    if in_txn {
        let end = if failed { "ROLLBACK" } else { "COMMIT" };
        if let Err(e) = session.run_text(end, &[]).await {
            // The commit failed: nothing of the transaction took effect.
            for r in results.iter_mut() {
                if r.get("error").is_none() {
                    *r = json!({"error": format!("not committed: {}", e.message), "sqlstate": e.state});
                }
            }
        }
    }
    Some(Answer {
        status: 200,
        body: json!({"results": results, "time": started.elapsed().as_secs_f64()}).to_string()
            + "\n",
    })
}
