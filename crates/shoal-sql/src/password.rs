//! A SQL client's login by password: SCRAM-SHA-256 (RFC 5802 and 7677), as
//! Postgres runs it and libpq and every driver speak it, checked against the
//! verifier the cluster keeps of the user's password
//! ([`shoal_proto::password::Verifier`]). The password never crosses the wire;
//! the exchange runs inside TLS, which a secure node's SQL port requires before a
//! startup. Channel binding (`SCRAM-SHA-256-PLUS`) is not offered: a client that
//! supports it says so (`y`) and goes on without it.

use std::sync::Arc;

use pgwire::api::auth::sasl::scram::{
    ScramSecret, ScramServerAuth, ScramServerAuthWaitingForClientFinal,
};
use pgwire::api::auth::sasl::SCRAM_SHA_256_METHOD;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use shoal_proto::password::Verifier;
use shoal_proto::role::Role;

/// The verifier of a user's password and the user's role, if the user has a password.
pub type PasswordOf = Arc<dyn Fn(&str) -> Option<(Arc<Verifier>, Role)> + Send + Sync>;

/// Where a connection's exchange is.
pub enum Scram {
    /// The mechanism was offered; the client's first message is awaited.
    Offered { verifier: Arc<Verifier>, role: Role },
    /// The server's first message was sent; the client's proof is awaited.
    Sent {
        waiting: Box<ScramServerAuthWaitingForClientFinal>,
        role: Role,
    },
}

/// What the server sends to start: the one mechanism it takes.
pub fn offer() -> Authentication {
    Authentication::SASL(vec![SCRAM_SHA_256_METHOD.to_string()])
}

/// What a step of the exchange leads to.
pub enum Step {
    /// Send this and wait for the client again.
    Continue(Authentication, Scram),
    /// The client proved the password: send this, and the user has `Role`.
    Done(Authentication, Role),
}

impl Scram {
    /// The next step with the client's `message`; an error ends the exchange
    /// (a wrong password: `InvalidPassword`, SQLSTATE 28P01).
    pub fn step(self, message: PasswordMessageFamily) -> PgWireResult<Step> {
        match self {
            Scram::Offered { verifier, role } => {
                let first = message.into_sasl_initial_response()?;
                if first.auth_method != SCRAM_SHA_256_METHOD {
                    return Err(PgWireError::UnsupportedSASLAuthMethod(first.auth_method));
                }
                let data = first.data.ok_or_else(|| {
                    PgWireError::InvalidScramMessage("an empty client-first message".into())
                })?;
                let secret = ScramSecret::Verifier {
                    salt: verifier.salt.clone(),
                    iterations: verifier.iterations as usize,
                    stored_key: verifier.stored_key.clone(),
                    server_key: verifier.server_key.clone(),
                };
                let (server_first, waiting) =
                    ScramServerAuth::new().on_client_first_message_with_secret(&data, secret)?;
                Ok(Step::Continue(
                    Authentication::SASLContinue(server_first.into()),
                    Scram::Sent {
                        waiting: Box::new(waiting),
                        role,
                    },
                ))
            }
            Scram::Sent { waiting, role } => {
                let last = message.into_sasl_response()?;
                let server_final = waiting.on_client_final_message(&last.data)?;
                Ok(Step::Done(
                    Authentication::SASLFinal(server_final.into()),
                    role,
                ))
            }
        }
    }
}
