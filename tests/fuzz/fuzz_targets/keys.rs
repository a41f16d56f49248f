//! Key encodings: user keys' versions, log keys and version records round-trip, stay
//! in their own key space, and keep their order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_storage::keys;

fuzz_target!(|input: (Vec<u8>, Vec<u8>, u64, u64)| {
    let (a, b, range, ts) = input;
    let (ka, kb) = (keys::mvcc_key(&a, ts), keys::mvcc_key(&b, ts));
    assert_eq!(keys::parse_mvcc_key(&ka), Some((a.clone(), ts)));
    assert_eq!(a.cmp(&b), ka.cmp(&kb), "user key order is kept");
    let (lo, hi) = keys::user_span(b"", b"");
    assert!(lo <= ka && ka < hi, "user keys stay in the user space");
    if !b.is_empty() {
        let (slo, shi) = keys::user_span(&a, &b);
        assert!(!(slo <= kb && kb < shi), "a span's end key is outside it");
    }
    assert_eq!(keys::parse_mvcc_key(&keys::system_key(&a)), None);
    let lk = keys::log_key(range, ts);
    assert_eq!(keys::parse_log_key(range, &lk), Some(ts));
    let v = keys::encode_version(keys::VersionKind::Put, ts, &b);
    assert_eq!(
        keys::decode_version(&v),
        Some((keys::VersionKind::Put, ts, b.as_slice()))
    );
    let _ = keys::parse_mvcc_key(&a);
    let _ = keys::parse_log_key(range, &a);
    let _ = keys::decode_version(&a);
});
