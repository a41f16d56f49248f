//! The node's limits on client requests, checked on the domain form of every op before
//! anything is routed or proposed, so a bad request changes nothing. Pure functions of
//! the op and the limits; [`crate::convert`] calls them as it turns each wire op into
//! its domain form (fuzzed through it by `tests/fuzz`).

use shoal_proto::error::ErrorCode;
use shoal_raft::{Compare, CompareTarget, TxnOp, WriteOp};
use shoal_storage::keys::{SQL_SPACE, SQL_SPACE_START};

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::request::RequestId;

/// The size limits requests are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Keys and values of one request, together.
    pub max_request_bytes: usize,
}

impl Limits {
    pub fn of(cfg: &NodeConfig) -> Self {
        Self {
            max_key_bytes: cfg.max_key_bytes,
            max_value_bytes: cfg.max_value_bytes,
            max_request_bytes: cfg.max_request_bytes,
        }
    }

    pub fn check_key(&self, what: &str, key: &[u8], allow_empty: bool) -> Result<()> {
        if key.is_empty() && !allow_empty {
            return Err(Error::invalid(
                ErrorCode::EmptyKey,
                format!("{what} is empty"),
            ));
        }
        let max = self.max_key_bytes;
        if key.len() > max {
            return Err(Error::invalid(
                ErrorCode::KeyTooLarge,
                format!("{what} is {} bytes; the limit is {max}", key.len()),
            ));
        }
        Ok(())
    }

    /// A key the KV API may write: not empty, not too long, and not one of the SQL
    /// tables' keys (those that start with byte `0xFF`).
    pub fn check_writable(&self, what: &str, key: &[u8]) -> Result<()> {
        self.check_key(what, key, false)?;
        in_kv_space(what, key)
    }

    /// A key the KV API may read: any key it takes (a node reads the SQL tables' keys
    /// of other nodes' ranges through it, for its SQL sessions' transactions).
    pub fn check_readable(&self, what: &str, key: &[u8]) -> Result<()> {
        self.check_key(what, key, false)
    }

    pub fn check_value(&self, value: &[u8]) -> Result<()> {
        let max = self.max_value_bytes;
        if value.len() > max {
            return Err(Error::invalid(
                ErrorCode::ValueTooLarge,
                format!("value is {} bytes; the limit is {max}", value.len()),
            ));
        }
        Ok(())
    }

    pub fn check_span(&self, start: &[u8], end: &[u8]) -> Result<()> {
        self.check_key("start key", start, true)?;
        self.check_key("end key", end, true)?;
        if !end.is_empty() && start > end {
            return Err(Error::invalid(
                ErrorCode::InvalidArgument,
                "start key is after end key",
            ));
        }
        Ok(())
    }

    pub fn check_request_size(&self, bytes: usize) -> Result<()> {
        let max = self.max_request_bytes;
        if bytes > max {
            return Err(Error::invalid(
                ErrorCode::RequestTooLarge,
                format!("request holds {bytes} bytes of keys and values; the limit is {max}"),
            ));
        }
        Ok(())
    }

    /// Checks a write op; returns the bytes of its keys and values.
    pub fn write_op(&self, op: &WriteOp) -> Result<usize> {
        match op {
            WriteOp::Put { key, value } => {
                self.check_writable("key", key)?;
                self.check_value(value)?;
                Ok(key.len() + value.len())
            }
            WriteOp::Delete { key } => {
                self.check_writable("key", key)?;
                Ok(key.len())
            }
            WriteOp::DeleteRange { start, end } => {
                self.check_span(start, end)?;
                Ok(start.len() + end.len())
            }
        }
    }

    /// Checks a transaction op; returns the bytes of its keys and values.
    pub fn txn_op(&self, op: &TxnOp) -> Result<usize> {
        match op {
            TxnOp::Write(w) => self.write_op(w),
            TxnOp::Get { key } => {
                self.check_readable("key", key)?;
                Ok(key.len())
            }
        }
    }

    /// Checks a compare; returns the bytes of its key and operand.
    pub fn compare(&self, c: &Compare) -> Result<usize> {
        self.check_readable("compare key", &c.key)?;
        Ok(c.key.len()
            + match &c.target {
                CompareTarget::Value(v) => {
                    self.check_value(v)?;
                    v.len()
                }
                _ => 8,
            })
    }

    /// Checks a request id: a request cannot have been answered before it was sent.
    pub fn request_id(&self, id: &RequestId) -> Result<()> {
        if id.client_id != 0 && id.seq < id.acked_below {
            return Err(Error::invalid(
                ErrorCode::InvalidArgument,
                format!(
                    "request_id.seq {} is below its own acked_below {}: a request cannot be acknowledged before it is sent",
                    id.seq, id.acked_below
                ),
            ));
        }
        Ok(())
    }
}

/// Refuses a key of the SQL tables' space to a KV write.
fn in_kv_space(what: &str, key: &[u8]) -> Result<()> {
    if key.first() == Some(&SQL_SPACE) {
        return Err(Error::invalid(
            ErrorCode::InvalidArgument,
            format!(
                "{what} starts with byte 0xFF: keys that hold SQL tables and users, which only SQL and `shoal user` write"
            ),
        ));
    }
    Ok(())
}

/// The end of a KV scan: an open end stops where the SQL tables' keys begin (or at
/// the start, for a scan that starts among them), so a scan of "everything" is
/// everything the KV API wrote. (An explicit end among them is served: it is how a
/// node reads other nodes' ranges of SQL tables.)
pub fn kv_end(start: &[u8], end: Vec<u8>) -> Vec<u8> {
    if !end.is_empty() {
        end
    } else if start >= SQL_SPACE_START {
        start.to_vec()
    } else {
        SQL_SPACE_START.to_vec()
    }
}

/// The end of a KV delete of `[start, end)`: below the SQL tables' keys. An open end
/// stops there (an SDK deleting "everything" range by range sends the last range's
/// part with an open end, whatever it starts at); a span starting among them is
/// refused.
pub fn kv_delete_end(start: &[u8], end: Vec<u8>) -> Result<Vec<u8>> {
    if end.is_empty() {
        return Ok(kv_end(start, end));
    }
    in_kv_space("start key", start)?;
    Ok(end.min(SQL_SPACE_START.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_key_bytes: 16,
        max_value_bytes: 64,
        max_request_bytes: 256,
    };

    fn code(r: Result<usize>) -> ErrorCode {
        r.unwrap_err().code()
    }

    #[test]
    fn each_limit_has_its_code() {
        let put = |k: usize, v: usize| WriteOp::Put {
            key: vec![b'k'; k],
            value: vec![b'v'; v],
        };
        assert_eq!(LIMITS.write_op(&put(3, 5)).unwrap(), 8);
        assert_eq!(code(LIMITS.write_op(&put(0, 5))), ErrorCode::EmptyKey);
        assert_eq!(code(LIMITS.write_op(&put(17, 5))), ErrorCode::KeyTooLarge);
        assert_eq!(code(LIMITS.write_op(&put(3, 65))), ErrorCode::ValueTooLarge);
        let reversed = WriteOp::DeleteRange {
            start: b"z".to_vec(),
            end: b"a".to_vec(),
        };
        assert_eq!(code(LIMITS.write_op(&reversed)), ErrorCode::InvalidArgument);
        assert_eq!(
            LIMITS.check_request_size(257).unwrap_err().code(),
            ErrorCode::RequestTooLarge
        );
        let unbounded = WriteOp::DeleteRange {
            start: Vec::new(),
            end: Vec::new(),
        };
        assert_eq!(LIMITS.write_op(&unbounded).unwrap(), 0);
    }

    #[test]
    fn a_request_id_below_its_own_acknowledged_mark_is_invalid() {
        let id = |seq, acked_below| RequestId {
            client_id: 78,
            seq,
            acked_below,
        };
        assert!(LIMITS.request_id(&id(9, 9)).is_ok());
        assert_eq!(
            LIMITS.request_id(&id(3, 9)).unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
        // Client id 0 asks for no deduplication: its other fields mean nothing.
        assert!(LIMITS
            .request_id(&RequestId {
                client_id: 0,
                seq: 3,
                acked_below: 9
            })
            .is_ok());
    }

    #[test]
    fn an_open_kv_scan_stops_below_the_sql_space() {
        let sql = |rest: &[u8]| [&[SQL_SPACE][..], rest].concat();
        assert_eq!(kv_end(b"a", vec![]), SQL_SPACE_START.to_vec());
        assert_eq!(kv_end(b"a", b"b".to_vec()), b"b".to_vec());
        assert_eq!(kv_end(&sql(b"u"), vec![]), sql(b"u"));
        // A node's read of another node's range of a table names its end.
        assert_eq!(kv_end(&sql(b"t"), sql(b"u")), sql(b"u"));
    }
}
