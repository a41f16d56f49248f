//! The files of a certificates directory (`--certs-dir`), as `shoal cert` writes them
//! and nodes and clients find them: the cluster CA's certificate, one node
//! certificate (a node presents it to clients and to its peers alike), and one
//! certificate per client user. The CA's key is never among them: it signs new
//! certificates and stays wherever the operator keeps it (`--ca-key`).
//!
//! ```text
//! ca.crt               the cluster CA; while it rotates, the new CA first (it signs), then the old
//! node.crt, node.key   this node: CN `node`, its host names and addresses as SANs
//! client.USER.crt      a client user: CN USER
//! client.USER.key
//! ```

/// The cluster CA's certificate(s).
pub const CA_CERT: &str = "ca.crt";
/// A node's certificate.
pub const NODE_CERT: &str = "node.crt";
/// A node's private key.
pub const NODE_KEY: &str = "node.key";
/// The common name of every node certificate: a certificate that says it tells a node
/// from a client user (no user may be named so).
pub const NODE_COMMON_NAME: &str = "node";

/// A client user's certificate.
pub fn client_cert(user: &str) -> String {
    format!("client.{user}.crt")
}

/// A client user's private key.
pub fn client_key(user: &str) -> String {
    format!("client.{user}.key")
}

/// Whether `name` may name a user: 1 to 63 characters, lower-case ASCII letters,
/// digits, `_`, `-` and `.`, starting with a letter or `_` (as Postgres' unquoted
/// names, so the same user logs in to the SQL port); never `node`.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    if !(first_ok && rest_ok && name.len() <= 63) {
        return Err(format!(
            "{name:?} is not a user name: 1 to 63 of a-z, 0-9, _, - and ., starting with a letter or _"
        ));
    }
    if name == NODE_COMMON_NAME {
        return Err(format!(
            "{name:?} names the nodes' certificates, not a user"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for ok in ["root", "app_1", "_svc", "a.b-c", &"u".repeat(63)] {
            assert!(check_user_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Root",
            "1st",
            "-x",
            "a/b",
            "a b",
            "../x",
            "node",
            &"u".repeat(64),
        ] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_files_carry_the_user() {
        assert_eq!(client_cert("root"), "client.root.crt");
        assert_eq!(client_key("root"), "client.root.key");
    }
}
