//! Builders of write ops, transaction ops and compares.

use pb::txn_op::Op as T;
use pb::write_op::Op as W;
use shoal_proto::v1 as pb;

fn put_op(key: &[u8], value: &[u8]) -> pb::PutOp {
    pb::PutOp {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn delete_op(key: &[u8]) -> pb::DeleteOp {
    pb::DeleteOp { key: key.to_vec() }
}

fn txn(op: T) -> pb::TxnOp {
    pb::TxnOp { op: Some(op) }
}

fn write(op: W) -> pb::WriteOp {
    pb::WriteOp { op: Some(op) }
}

pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> pb::TxnOp {
    txn(T::Put(put_op(key.as_ref(), value.as_ref())))
}

pub fn delete(key: impl AsRef<[u8]>) -> pb::TxnOp {
    txn(T::Delete(delete_op(key.as_ref())))
}

pub fn get(key: impl AsRef<[u8]>) -> pb::TxnOp {
    txn(T::Get(pb::GetOp {
        key: key.as_ref().to_vec(),
    }))
}

pub fn write_put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> pb::WriteOp {
    write(W::Put(put_op(key.as_ref(), value.as_ref())))
}

pub fn write_delete(key: impl AsRef<[u8]>) -> pb::WriteOp {
    write(W::Delete(delete_op(key.as_ref())))
}

pub fn write_delete_range(start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> pb::WriteOp {
    write(W::DeleteRange(pb::DeleteRangeOp {
        start: start.as_ref().to_vec(),
        end: end.as_ref().to_vec(),
    }))
}

fn compare(
    key: &[u8],
    op: pb::compare::Op,
    target: pb::compare::Target,
    operand: pb::compare::Operand,
) -> pb::Compare {
    pb::Compare {
        key: key.to_vec(),
        target: target as i32,
        op: op as i32,
        operand: Some(operand),
    }
}

/// The key's version is `version` (0: the key is absent).
pub fn version_is(key: impl AsRef<[u8]>, version: u64) -> pb::Compare {
    compare(
        key.as_ref(),
        pb::compare::Op::Equal,
        pb::compare::Target::Version,
        pb::compare::Operand::Version(version),
    )
}

pub fn version_cmp(key: impl AsRef<[u8]>, op: pb::compare::Op, version: u64) -> pb::Compare {
    compare(
        key.as_ref(),
        op,
        pb::compare::Target::Version,
        pb::compare::Operand::Version(version),
    )
}

pub fn value_cmp(
    key: impl AsRef<[u8]>,
    op: pb::compare::Op,
    value: impl AsRef<[u8]>,
) -> pb::Compare {
    compare(
        key.as_ref(),
        op,
        pb::compare::Target::Value,
        pb::compare::Operand::Value(value.as_ref().to_vec()),
    )
}

pub fn exists(key: impl AsRef<[u8]>, exists: bool) -> pb::Compare {
    compare(
        key.as_ref(),
        pb::compare::Op::Equal,
        pb::compare::Target::Exists,
        pb::compare::Operand::Exists(exists),
    )
}
