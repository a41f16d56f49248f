//! The cluster operations: node status, the nodes and ranges, range lookups and
//! splits, removal, decommission, drain, founding the cluster (`init`), and users. They send
//! no deadline to the node: an operation the client stops waiting for (a removal
//! waiting for a membership change under way) still completes there.

use std::time::Duration;

use shoal_proto::v1 as pb;

use crate::client::{Client, Retry, Route};
use crate::error::Error;
use crate::Result;

impl Client {
    /// The status of the node at `addr` (no redirect).
    pub async fn status_of(&self, addr: &str) -> Result<pb::StatusResponse> {
        let mut admin = Self::admin(self.channel(addr)?);
        Self::direct(
            addr,
            self.inner.opts.request_timeout,
            admin.status(pb::StatusRequest {}),
        )
        .await
    }

    /// The nodes of the cluster.
    pub async fn nodes(&self) -> Result<pb::NodesResponse> {
        self.run(Route::Any, Retry::Always, |ch, _| {
            let req = tonic::Request::new(pb::NodesRequest {});
            async move { Ok(Self::admin(ch).nodes(req).await?.into_inner()) }
        })
        .await
    }

    /// Every range: descriptor, leader, approximate size.
    pub async fn ranges(&self) -> Result<pb::RangesResponse> {
        self.run(Route::Any, Retry::Always, |ch, _| {
            let req = tonic::Request::new(pb::RangesRequest {});
            async move { Ok(Self::admin(ch).ranges(req).await?.into_inner()) }
        })
        .await
    }

    /// The range holding `key`, and its leader.
    pub async fn range_lookup(&self, key: impl AsRef<[u8]>) -> Result<pb::RangeLookupResponse> {
        let req = pb::RangeLookupRequest {
            key: key.as_ref().to_vec(),
            before: false,
        };
        self.run(Route::Any, Retry::Always, |ch, _| {
            let req = tonic::Request::new(req.clone());
            async move { Ok(Self::admin(ch).range_lookup(req).await?.into_inner()) }
        })
        .await
    }

    /// Splits the range holding `key` at `key`; returns both halves.
    pub async fn split_range(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<(pb::RangeDescriptor, pb::RangeDescriptor)> {
        let key = key.as_ref().to_vec();
        let r = self
            .run(Route::key(&key), Retry::Always, |ch, _| {
                let req = tonic::Request::new(pb::SplitRangeRequest { key: key.clone() });
                async move { Ok(Self::admin(ch).split_range(req).await?.into_inner()) }
            })
            .await?;
        for d in [&r.left, &r.right].into_iter().flatten() {
            self.inner.cache.insert(d.clone(), None);
        }
        match (r.left, r.right) {
            (Some(l), Some(r)) => Ok((l, r)),
            _ => Err(Error::Unavailable(
                "split answered without descriptors".into(),
            )),
        }
    }

    /// Merges the range holding `key` with the range right after it (the two must have
    /// the same replicas); returns the merged range. Not retried once it may have been
    /// applied: a second merge would take in the next range too.
    pub async fn merge_range(&self, key: impl AsRef<[u8]>) -> Result<pb::RangeDescriptor> {
        let key = key.as_ref().to_vec();
        let r = self
            .run(Route::key(&key), Retry::IfNotApplied, |ch, _| {
                let req = tonic::Request::new(pb::MergeRangeRequest { key: key.clone() });
                async move { Ok(Self::admin(ch).merge_range(req).await?.into_inner()) }
            })
            .await?;
        let merged = r
            .merged
            .ok_or_else(|| Error::Unavailable("merge answered without a descriptor".into()))?;
        self.inner.cache.insert(merged.clone(), None);
        Ok(merged)
    }

    /// Removes a node from the cluster's membership.
    pub async fn remove_node(&self, node_id: u64) -> Result<()> {
        self.run(Route::Any, Retry::IfNotApplied, |ch, _| {
            let req = tonic::Request::new(pb::RemoveNodeRequest { node_id });
            async move {
                Self::admin(ch).remove_node(req).await?;
                Ok(())
            }
        })
        .await
    }

    /// Marks a node decommissioning: its replicas move to other live nodes. Idempotent;
    /// answers how many replicas (the meta range's aside) it still holds, so calling
    /// it again reports progress.
    pub async fn decommission(&self, node_id: u64) -> Result<u64> {
        self.run(Route::Any, Retry::Always, |ch, _| {
            let req = tonic::Request::new(pb::DecommissionRequest { node_id });
            async move {
                Ok(Self::admin(ch)
                    .decommission(req)
                    .await?
                    .into_inner()
                    .replicas)
            }
        })
        .await
    }

    /// Drains the node at `addr` (no redirect): it turns unready, refuses new requests
    /// and hands its leaderships to other nodes. Returns the ranges it still leads.
    pub async fn drain(&self, addr: &str) -> Result<Vec<u64>> {
        let mut admin = Self::admin(self.channel(addr)?);
        let r = Self::direct(
            addr,
            Duration::from_secs(60),
            admin.drain(pb::DrainRequest {}),
        )
        .await?;
        Ok(r.still_leading)
    }

    /// Creates user `name` with `role` (`admin`, `readwrite`, `readonly`); an admin's
    /// call. `USER_EXISTS` if the name is taken (also when an earlier attempt whose
    /// answer was lost created it).
    ///
    /// With a `password`, the user may also log in by name and password (the
    /// password goes over TLS only: `PASSWORD_NEEDS_TLS` otherwise).
    pub async fn create_user(&self, name: &str, role: &str, password: Option<&str>) -> Result<()> {
        if let Some(p) = password {
            self.password_needs_tls(p)?;
        }
        let req = pb::CreateUserRequest {
            name: name.into(),
            role: role.into(),
            password: password.unwrap_or_default().into(),
        };
        self.run(Route::Any, Retry::IfNotApplied, |ch, _| {
            let req = tonic::Request::new(req.clone());
            async move {
                Self::admin(ch).create_user(req).await?;
                Ok(())
            }
        })
        .await
    }

    /// Sets user `name`'s password (`None`: removes it, leaving certificates as the
    /// user's one way in); an admin's call. `USER_NOT_FOUND` if there is no such
    /// user; `root`'s password may be set too.
    pub async fn set_password(&self, name: &str, password: Option<&str>) -> Result<()> {
        if let Some(p) = password {
            self.password_needs_tls(p)?;
        }
        let req = pb::SetPasswordRequest {
            name: name.into(),
            password: password.unwrap_or_default().into(),
        };
        self.run(Route::Any, Retry::Always, |ch, _| {
            let req = tonic::Request::new(req.clone());
            async move {
                Self::admin(ch).set_password(req).await?;
                Ok(())
            }
        })
        .await
    }

    /// A password is sent over TLS only, and is not empty (an empty one in the
    /// request means none).
    fn password_needs_tls(&self, password: &str) -> Result<()> {
        if password.is_empty() {
            return Err(Error::InvalidArgument {
                code: "INVALID_ARGUMENT".into(),
                message: "a password cannot be empty".into(),
            });
        }
        if self.inner.opts.tls.is_none() {
            return Err(crate::password::needs_tls());
        }
        Ok(())
    }

    /// Drops user `name`; an admin's call. `USER_NOT_FOUND` if there is none.
    pub async fn drop_user(&self, name: &str) -> Result<()> {
        let req = pb::DropUserRequest { name: name.into() };
        self.run(Route::Any, Retry::IfNotApplied, |ch, _| {
            let req = tonic::Request::new(req.clone());
            async move {
                Self::admin(ch).drop_user(req).await?;
                Ok(())
            }
        })
        .await
    }

    /// Every user and its role, `root` among them; an admin's call.
    pub async fn users(&self) -> Result<Vec<pb::User>> {
        self.run(Route::Any, Retry::Always, |ch, _| {
            let req = tonic::Request::new(pb::ListUsersRequest {});
            async move { Ok(Self::admin(ch).list_users(req).await?.into_inner().users) }
        })
        .await
    }

    /// Founds the cluster through the node at `addr`, from it and the peers of its
    /// `--join` list. Refused once the cluster exists.
    pub async fn init(&self, addr: &str) -> Result<pb::InitResponse> {
        let mut c = Self::admin(self.channel(addr)?);
        // Bootstrapping waits for every peer to answer: allow it time.
        let mut req = tonic::Request::new(pb::InitRequest {});
        req.set_timeout(Duration::from_secs(60));
        Self::direct(addr, Duration::from_secs(65), c.init(req)).await
    }
}
