//! Key encodings: user keys, log keys and versioned values round-trip, stay in their
//! own key space, and keep their order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_storage::keys;

fuzz_target!(|input: (Vec<u8>, Vec<u8>, u64, u64)| {
    let (a, b, range, index) = input;
    let (ka, kb) = (keys::user_key(&a), keys::user_key(&b));
    assert_eq!(keys::parse_user_key(&ka), Some(a.as_slice()));
    assert_eq!(a.cmp(&b), ka.cmp(&kb), "user key order is kept");
    let (lo, hi) = keys::user_span(b"", b"");
    assert!(lo <= ka && ka < hi, "user keys stay in the user space");
    assert_eq!(keys::parse_user_key(&keys::system_key(&a)), None);
    let lk = keys::log_key(range, index);
    assert_eq!(keys::parse_log_key(range, &lk), Some(index));
    let v = keys::encode_value(index, &b);
    assert_eq!(keys::decode_value(&v), Some((index, b.as_slice())));
    let _ = keys::parse_user_key(&a);
    let _ = keys::parse_log_key(range, &a);
});
