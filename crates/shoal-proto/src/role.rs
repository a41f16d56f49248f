//! [`Role`]: what a user may do, on every port of a secure node (gRPC calls, SQL
//! statements, the HTTP SQL API).

/// What a user may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads, and the cluster's state (status, nodes, ranges).
    ReadOnly,
    /// Reads and writes of data.
    ReadWrite,
    /// Everything: nodes, ranges, users, SQL schema changes.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::ReadOnly, Role::ReadWrite, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::ReadOnly => "readonly",
            Role::ReadWrite => "readwrite",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::ReadOnly < Role::ReadWrite && Role::ReadWrite < Role::Admin);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Some(r));
        }
        assert_eq!(Role::parse("superuser"), None);
    }
}
