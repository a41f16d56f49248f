//! A user's name and password ([`Credentials`]), which a client of a secure cluster
//! without a certificate sends with every call as gRPC metadata
//! (`authorization: Basic base64(user:password)`). Over TLS only: a client with
//! credentials and no TLS is refused when it is made (`PASSWORD_NEEDS_TLS`).

use std::fmt;

use base64::Engine;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

/// A user and its password.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// The refusal of a password without TLS, before anything is sent.
pub(crate) fn needs_tls() -> crate::Error {
    crate::Error::InvalidArgument {
        code: "PASSWORD_NEEDS_TLS".into(),
        message: "a password goes over TLS only: give the cluster's CA (--certs-dir)".into(),
    }
}

/// Adds a client's credentials, if it has any, to each call.
#[derive(Clone, Default)]
pub struct Authorize(Option<MetadataValue<Ascii>>);

impl Authorize {
    pub(crate) fn of(credentials: Option<&Credentials>) -> Authorize {
        Authorize(credentials.and_then(|c| {
            let pair = format!("{}:{}", c.user, c.password);
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            let mut v = MetadataValue::try_from(format!("Basic {encoded}")).ok()?;
            v.set_sensitive(true);
            Some(v)
        }))
    }
}

impl Interceptor for Authorize {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A connection to a node, with the client's credentials on each call.
pub type Conn = InterceptedService<Channel, Authorize>;
