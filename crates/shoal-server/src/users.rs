//! Users and their roles (`shoal user`): who may call a secure node, by the name
//! their client certificate carries. A user's record sits under
//! [`keys::user_key`] among the SQL layer's keys, which no KV call can write, and
//! changes by transaction; every node keeps the records in memory ([`Users`]), read
//! again every [`REFRESH_EVERY`], and checks each call against them
//! ([`crate::authn`]). `root` is always a user, an admin, and cannot be dropped.
//!
//! A user may have a password too (`shoal user passwd`): the record keeps its
//! SCRAM-SHA-256 verifier ([`Verifier`]), from which the SQL port runs SCRAM and the
//! gRPC and HTTP ports check a password sent over TLS ([`Users::login`]). Checking
//! one is slow by design (PBKDF2), so a node remembers, per user, a keyed hash of
//! the last password that passed against the verifier it has now: a client that
//! sends its password with every call pays the slow check once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ring::hmac;
use ring::rand::SystemRandom;
use shoal_proto::error::ErrorCode;
use shoal_proto::password::{check_password, Verifier};
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
    /// The password's verifier (its text form), if the user has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

/// A user as a node knows it.
#[derive(Debug, Clone)]
struct Known {
    role: Role,
    password: Option<Arc<Verifier>>,
}

/// A user name: what a certificate's common name and a Postgres user name can
/// both carry.
fn check_name(name: &str) -> Result<()> {
    shoal_proto::certs::check_user_name(name)
        .map_err(|m| Error::invalid(ErrorCode::InvalidArgument, m))
}

/// The cluster's users as this node last read them.
pub struct Users {
    known: RwLock<BTreeMap<String, Known>>,
    /// Per user: the verifier a password passed against, and that password's hash
    /// under [`Users::key`].
    passed: Mutex<HashMap<String, (Arc<Verifier>, hmac::Tag)>>,
    /// This node's own random key of the hashes in `passed` (never stored).
    key: hmac::Key,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

impl Default for Users {
    fn default() -> Self {
        Users {
            known: RwLock::default(),
            passed: Mutex::default(),
            key: hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
                .expect("the system's random source"),
        }
    }
}

impl Users {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn known(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Known>> {
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The role of `user`, if the cluster has it.
    pub fn role_of(&self, user: &str) -> Option<Role> {
        if user == ROOT {
            return Some(Role::Admin);
        }
        self.known().get(user).map(|k| k.role)
    }

    /// The password verifier of `user` and its role, if it has a password.
    pub fn password_of(&self, user: &str) -> Option<(Arc<Verifier>, Role)> {
        let known = self.known();
        let k = known.get(user)?;
        let role = if user == ROOT { Role::Admin } else { k.role };
        Some((k.password.clone()?, role))
    }

    /// Whether `password` is `user`'s, answered from what passed before when it can
    /// (`None`: it takes the slow check, [`Users::login`]). A refusal says why, no
    /// more than that the password did not pass (no such user, none, a wrong one).
    pub fn login_cached(&self, user: &str, password: &str) -> Option<Result<Role, String>> {
        let Some((verifier, role)) = self.password_of(user) else {
            return Some(Err(refused(user)));
        };
        let passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
        let (v, tag) = passed.get(user)?;
        let passes =
            **v == *verifier && hmac::verify(&self.key, password.as_bytes(), tag.as_ref()).is_ok();
        passes.then_some(Ok(role))
    }

    /// Checks `user`'s `password` against its verifier: the slow check, run off the
    /// async workers; what passes is remembered for [`Users::login_cached`].
    pub async fn login(self: &Arc<Self>, user: &str, password: &str) -> Result<Role, String> {
        if let Some(answer) = self.login_cached(user, password) {
            return answer;
        }
        let Some((verifier, role)) = self.password_of(user) else {
            return Err(refused(user));
        };
        let check = verifier.clone();
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || check.verify(&pw))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(refused(user));
        }
        let tag = hmac::sign(&self.key, password.as_bytes());
        self.passed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_string(), (verifier, tag));
        Ok(role)
    }

    /// Users known without reading them (tests of the checks).
    #[cfg(test)]
    pub fn of(roles: &[(&str, Role)]) -> Self {
        let users = Users::default();
        *users.known.write().unwrap() = roles
            .iter()
            .map(|(n, r)| {
                let k = Known {
                    role: *r,
                    password: None,
                };
                (n.to_string(), k)
            })
            .collect();
        users
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

    /// Every user, its role and whether it has a password, `root` among them.
    pub fn list(&self) -> Vec<(String, Role, bool)> {
        let mut all: BTreeMap<String, (Role, bool)> = self
            .known()
            .iter()
            .map(|(n, k)| (n.clone(), (k.role, k.password.is_some())))
            .collect();
        let root_password = all.get(ROOT).is_some_and(|(_, p)| *p);
        all.insert(ROOT.into(), (Role::Admin, root_password));
        all.into_iter().map(|(n, (r, p))| (n, r, p)).collect()
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
            // A record is known whole or not at all: a role and, if it has one, a
            // verifier this version reads.
            let read = serde_json::from_slice::<Record>(&r.value)
                .ok()
                .and_then(|rec| {
                    let password = match rec.password.as_deref() {
                        Some(p) => Some(Arc::new(Verifier::parse(p)?)),
                        None => None,
                    };
                    let role = Role::parse(&rec.role)?;
                    Some(Known { role, password })
                });
            match read {
                Some(k) => {
                    known.insert(name.to_string(), k);
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

    /// Creates user `name` with `role` (and `password`, unless empty);
    /// `USER_EXISTS` if there is one.
    pub async fn create(
        &self,
        ranges: Arc<dyn Ranges>,
        name: &str,
        role: &str,
        password: &str,
    ) -> Result<()> {
        check_name(name)?;
        let password = (!password.is_empty())
            .then(|| new_verifier(password))
            .transpose()?;
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
            password,
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        txn.put(key, record)?;
        txn.commit(ranges.clone()).await?;
        self.refresh(ranges.as_ref()).await
    }

    /// Sets `name`'s password (an empty one removes it); `USER_NOT_FOUND` if there
    /// is no such user. `root`'s record is written on its first password.
    pub async fn set_password(
        &self,
        ranges: Arc<dyn Ranges>,
        name: &str,
        password: &str,
    ) -> Result<()> {
        let password = (!password.is_empty())
            .then(|| new_verifier(password))
            .transpose()?;
        let key = keys::user_key(name);
        let mut txn = Transaction::new(ranges.now().await?, Options::default(), ONE_RECORD);
        let record = match txn.get(ranges.as_ref(), &key).await? {
            Some(v) => {
                let mut rec: Record = serde_json::from_slice(&v.value).map_err(|e| {
                    Error::Internal(format!(
                        "user {name:?}: a record this version cannot read: {e}"
                    ))
                })?;
                rec.password = password;
                rec
            }
            None if name == ROOT => Record {
                role: Role::Admin.name().into(),
                password,
            },
            None => {
                return Err(Error::invalid(
                    ErrorCode::UserNotFound,
                    format!("there is no user {name:?}"),
                ))
            }
        };
        let record = serde_json::to_vec(&record).map_err(|e| Error::Internal(e.to_string()))?;
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

/// The verifier of a new password, in its stored form.
fn new_verifier(password: &str) -> Result<String> {
    check_password(password).map_err(|m| Error::invalid(ErrorCode::InvalidArgument, m))?;
    Ok(Verifier::new(password).to_string())
}

fn refused(user: &str) -> String {
    format!("password authentication failed for user {user:?}")
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
        assert_eq!(users.list(), vec![(ROOT.to_string(), Role::Admin, false)]);
        assert!(check_name("app-1.prod_x").is_ok());
        for bad in ["", "node", "a b", "x/y", "App", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_password_logs_in_once_slowly_then_from_what_passed() {
        let users = Arc::new(Users::default());
        let v = Arc::new(Verifier::new("s3cret"));
        users.known.write().unwrap().insert(
            "app".into(),
            Known {
                role: Role::ReadWrite,
                password: Some(v),
            },
        );
        let refusal = |u: &str| Err(refused(u));
        assert_eq!(users.login("ghost", "s3cret").await, refusal("ghost"));
        assert_eq!(users.login("app", "wrong").await, refusal("app"));
        assert_eq!(users.login_cached("app", "s3cret"), None);
        assert_eq!(users.login("app", "s3cret").await, Ok(Role::ReadWrite));
        assert_eq!(
            users.login_cached("app", "s3cret"),
            Some(Ok(Role::ReadWrite))
        );
        assert_eq!(users.login_cached("app", "s3cret!"), None);
        // A new password: what passed before passes no more.
        let set_password = |p: Option<&str>| {
            let mut known = users.known.write().unwrap();
            known.get_mut("app").unwrap().password = p.map(|p| Arc::new(Verifier::new(p)));
        };
        set_password(Some("other"));
        assert_eq!(users.login_cached("app", "s3cret"), None);
        assert_eq!(users.login("app", "s3cret").await, refusal("app"));
        // A user without a password has no password login.
        set_password(None);
        assert_eq!(users.login_cached("app", "other"), Some(refusal("app")));
    }
}
