//! Users and their roles (`shoal user`): who may call a secure node, by the name
//! their client certificate carries. A user's record sits under
//! [`keys::user_key`] among the SQL layer's keys, which no KV call can write, and
//! changes by transaction; every node keeps the records in memory ([`Users`]), read
//! again every [`REFRESH_EVERY`], and checks each call against them
//! ([`crate::authn`]). `root` is always a user, an admin, and cannot be dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use shoal_proto::error::ErrorCode;
pub use shoal_proto::role::Role;
use shoal_storage::keys;
use shoal_txn::coordinator::Limits;
use shoal_txn::ranges::Ranges;
use shoal_txn::{Options, Transaction};

use crate::error::{Error, Result};

/// How often a node reads the users again: a change made on another node takes
/// effect here within this.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// What a transaction on one user's record may hold.
const ONE_RECORD: Limits = Limits {
    max_keys: 2,
    max_bytes: 1 << 12,
};

/// The user every cluster has: an admin, the one `shoal cert create-client root`
/// makes a certificate for.
pub const ROOT: &str = "root";

/// A user's record as stored.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    role: String,
}

/// A user name: what a certificate's common name and a Postgres user name can
/// both carry.
fn check_name(name: &str) -> Result<()> {
    shoal_proto::certs::check_user_name(name)
        .map_err(|m| Error::invalid(ErrorCode::InvalidArgument, m))
}

/// The cluster's users as this node last read them.
#[derive(Debug, Default)]
pub struct Users {
    known: RwLock<BTreeMap<String, Role>>,
}

impl Users {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The role of `user`, if the cluster has it.
    pub fn role_of(&self, user: &str) -> Option<Role> {
        if user == ROOT {
            return Some(Role::Admin);
        }
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .copied()
    }

    /// Users known without reading them (tests of the checks).
    #[cfg(test)]
    pub fn of(roles: &[(&str, Role)]) -> Self {
        let known = roles.iter().map(|(n, r)| (n.to_string(), *r)).collect();
        Users {
            known: RwLock::new(known),
        }
    }

    /// Who a SQL client's certificate is (its DER): the user it names, with its
    /// role; a node's certificate, or a user the cluster does not have, is refused.
    pub fn who_is(self: &Arc<Self>) -> shoal_sql::pg::WhoIs {
        let users = self.clone();
        Arc::new(move |der| {
            let cert = crate::certs::parse_der(der).map_err(|e| e.to_string())?;
            let user = cert.common_name;
            if user == shoal_proto::certs::NODE_COMMON_NAME {
                return Err("a node's certificate is no SQL user's".into());
            }
            match users.role_of(&user) {
                Some(role) => Ok((user, role)),
                None => Err(format!(
                    "the cluster has no user \"{user}\" (shoal user create {user} --role ROLE)"
                )),
            }
        })
    }

    /// Every user and role, `root` among them.
    pub fn list(&self) -> Vec<(String, Role)> {
        let mut all = self.known.read().unwrap_or_else(|e| e.into_inner()).clone();
        all.insert(ROOT.into(), Role::Admin);
        all.into_iter().collect()
    }

    /// Reads the users anew, as of now.
    pub async fn refresh(&self, ranges: &dyn Ranges) -> Result<()> {
        let (start, end) = keys::users_span();
        let at = ranges.now().await.map_err(Error::from)?;
        let records = ranges
            .scan(&start, &end, at, 0)
            .await
            .map_err(Error::from)?;
        let mut known = BTreeMap::new();
        for r in records {
            let Some(name) = keys::user_of(&r.key) else {
                continue;
            };
            match serde_json::from_slice::<Record>(&r.value)
                .ok()
                .and_then(|rec| Role::parse(&rec.role))
            {
                Some(role) => {
                    known.insert(name.to_string(), role);
                }
                None => tracing::warn!(
                    user = name,
                    "a user record this version cannot read; the user is refused"
                ),
            }
        }
        *self.known.write().unwrap_or_else(|e| e.into_inner()) = known;
        Ok(())
    }

    /// Creates user `name` with `role`; `USER_EXISTS` if there is one.
    pub async fn create(&self, ranges: Arc<dyn Ranges>, name: &str, role: &str) -> Result<()> {
        check_name(name)?;
        let role = Role::parse(role).ok_or_else(|| {
            Error::invalid(
                ErrorCode::InvalidArgument,
                format!("role {role:?}: one of admin, readwrite, readonly"),
            )
        })?;
        if name == ROOT {
            return Err(exists(name));
        }
        let key = keys::user_key(name);
        let mut txn = Transaction::new(ranges.now().await?, Options::default(), ONE_RECORD);
        if txn.get(ranges.as_ref(), &key).await?.is_some() {
            return Err(exists(name));
        }
        let record = serde_json::to_vec(&Record {
            role: role.name().into(),
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        txn.put(key, record)?;
        txn.commit(ranges.clone()).await?;
        self.refresh(ranges.as_ref()).await
    }

    /// Drops user `name`; `USER_NOT_FOUND` if there is none.
    pub async fn drop_user(&self, ranges: Arc<dyn Ranges>, name: &str) -> Result<()> {
        if name == ROOT {
            return Err(Error::invalid(
                ErrorCode::InvalidArgument,
                "root cannot be dropped: it is how an admin gets back in",
            ));
        }
        let key = keys::user_key(name);
        let mut txn = Transaction::new(ranges.now().await?, Options::default(), ONE_RECORD);
        if txn.get(ranges.as_ref(), &key).await?.is_none() {
            return Err(Error::invalid(
                ErrorCode::UserNotFound,
                format!("there is no user {name:?}"),
            ));
        }
        txn.delete(key)?;
        txn.commit(ranges.clone()).await?;
        self.refresh(ranges.as_ref()).await
    }
}

fn exists(name: &str) -> Error {
    Error::invalid(ErrorCode::UserExists, format!("user {name:?} exists"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_always_an_admin_and_names_are_checked() {
        let users = Users::default();
        assert_eq!(users.role_of(ROOT), Some(Role::Admin));
        assert_eq!(users.role_of("app"), None);
        assert_eq!(users.list(), vec![(ROOT.to_string(), Role::Admin)]);
        assert!(check_name("app-1.prod_x").is_ok());
        for bad in ["", "node", "a b", "x/y", "App", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
