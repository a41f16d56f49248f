//! Parsing of `shoal kv txn` compares and ops, and printing of its result.

use std::io::Write;

use anyhow::{anyhow, bail};
use shoal_client::{compare::Op, ops, Compare, TxnOp, TxnResponse};
use shoal_proto::v1::txn_op_result::Result as R;

/// `version(KEY) OP N`, `value(KEY) OP VALUE`, `exists(KEY)`, `!exists(KEY)`.
pub fn parse_compare(s: &str) -> anyhow::Result<Compare> {
    let s = s.trim();
    let (negated, body) = match s.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, s),
    };
    let open = body
        .find('(')
        .ok_or_else(|| anyhow!("compare {s:?}: expected FUNC(KEY) ..."))?;
    let close = body
        .rfind(')')
        .ok_or_else(|| anyhow!("compare {s:?}: missing ')'"))?;
    if close < open {
        bail!("compare {s:?}: misplaced ')'");
    }
    let func = body[..open].trim();
    let key = body[open + 1..close].trim();
    if key.is_empty() {
        bail!("compare {s:?}: empty key");
    }
    let rest = body[close + 1..].trim();
    if func == "exists" {
        if !rest.is_empty() {
            bail!("compare {s:?}: exists(KEY) takes no operator (use !exists(KEY))");
        }
        return Ok(ops::exists(key, !negated));
    }
    if negated {
        bail!("compare {s:?}: only exists() can be negated with '!'");
    }
    let (op, operand) =
        split_op(rest).ok_or_else(|| anyhow!("compare {s:?}: expected an operator (= != > <)"))?;
    match func {
        "version" => {
            let v: u64 = operand
                .parse()
                .map_err(|_| anyhow!("compare {s:?}: version must be a number"))?;
            Ok(ops::version_cmp(key, op, v))
        }
        "value" => Ok(ops::value_cmp(key, op, operand)),
        other => bail!("compare {s:?}: unknown function {other:?} (value, version, exists)"),
    }
}

fn split_op(s: &str) -> Option<(Op, &str)> {
    for (tok, op) in [
        ("!=", Op::NotEqual),
        ("==", Op::Equal),
        ("=", Op::Equal),
        (">", Op::Greater),
        ("<", Op::Less),
    ] {
        if let Some(rest) = s.strip_prefix(tok) {
            return Some((op, rest.trim()));
        }
    }
    None
}

/// `put KEY VALUE`, `del KEY`, `get KEY`.
pub fn parse_op(s: &str) -> anyhow::Result<TxnOp> {
    let s = s.trim();
    let (verb, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
    let rest = rest.trim_start();
    match verb {
        "put" => {
            let (key, value) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| anyhow!("op {s:?}: expected `put KEY VALUE`"))?;
            Ok(ops::put(key, value.trim_start()))
        }
        "del" | "delete" if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
            Ok(ops::delete(rest))
        }
        "get" if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(ops::get(rest)),
        _ => bail!("op {s:?}: expected `put KEY VALUE`, `del KEY` or `get KEY`"),
    }
}

pub fn print(format: crate::Format, r: &TxnResponse, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        crate::Format::Json => {
            let results: Vec<_> = r
                .results
                .iter()
                .map(|x| match &x.result {
                    Some(R::Put(v)) => serde_json::json!({"put": {"version": v}}),
                    Some(R::Deleted(n)) => serde_json::json!({"deleted": n}),
                    Some(R::Get(g)) => match &g.kv {
                        Some(kv) => {
                            serde_json::json!({"get": {"key": String::from_utf8_lossy(&kv.key),
                            "value": String::from_utf8_lossy(&kv.value), "version": kv.version}})
                        }
                        None => serde_json::json!({"get": null}),
                    },
                    None => serde_json::Value::Null,
                })
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::json!({"succeeded": r.succeeded, "version": r.version, "results": results})
            )?;
        }
        crate::Format::Plain => {
            writeln!(out, "{}", if r.succeeded { "SUCCESS" } else { "FAILURE" })?;
            for x in &r.results {
                match &x.result {
                    Some(R::Put(v)) => writeln!(out, "OK (version {v})")?,
                    Some(R::Deleted(n)) => writeln!(out, "deleted {n}")?,
                    Some(R::Get(g)) => match &g.kv {
                        Some(kv) => {
                            out.write_all(&kv.value)?;
                            out.write_all(b"\n")?;
                        }
                        None => writeln!(out, "(not found)")?,
                    },
                    None => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_client::compare::{Operand, Target};

    #[test]
    fn compares_parse() {
        let c = parse_compare("version(k) = 3").unwrap();
        assert_eq!(
            (c.key.as_slice(), c.target, c.op),
            (&b"k"[..], Target::Version as i32, Op::Equal as i32)
        );
        assert_eq!(c.operand, Some(Operand::Version(3)));
        let c = parse_compare("value(a b) != hello world").unwrap();
        assert_eq!(c.operand, Some(Operand::Value(b"hello world".to_vec())));
        assert_eq!(c.op, Op::NotEqual as i32);
        assert_eq!(
            parse_compare("!exists(k)").unwrap().operand,
            Some(Operand::Exists(false))
        );
        assert!(parse_compare("version(k) = x").is_err());
        assert!(parse_compare("size(k) = 1").is_err());
        assert!(parse_compare("exists(k) = 1").is_err());
    }

    #[test]
    fn ops_parse() {
        assert!(parse_op("put k some value").is_ok());
        assert!(parse_op("del k").is_ok());
        assert!(parse_op("get k").is_ok());
        assert!(parse_op("put k").is_err());
        assert!(parse_op("frob k").is_err());
    }
}
