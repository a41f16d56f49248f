//! Passwords as the cluster keeps them: a SCRAM-SHA-256 verifier (RFC 5802 and
//! 7677), the form Postgres stores, written as Postgres writes it:
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64). From it a
//! node checks a password given in the clear over TLS (gRPC, HTTP) and runs the
//! SCRAM exchange of the SQL port, which never sends the password at all; it cannot
//! recover the password, nor log in as the user with what it holds.

use std::fmt;
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// The mechanism, as SCRAM names it and Postgres prefixes its verifiers.
pub const SCHEME: &str = "SCRAM-SHA-256";

/// Iterations of PBKDF2 for a new verifier: above Postgres' 4096, as NIST's advice
/// (10,000 at least) asks, and still a few milliseconds of a client's time.
pub const ITERATIONS: u32 = 10_000;

/// The longest password taken (bytes).
pub const MAX_PASSWORD_BYTES: usize = 1024;

const SALT_BYTES: usize = 16;

/// What a node keeps of a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub salt: Vec<u8>,
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`
    pub server_key: Vec<u8>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Whether `password` may be a password; else why not.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("a password cannot be empty".into());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "a password is at most {MAX_PASSWORD_BYTES} bytes; this one is {}",
            password.len()
        ));
    }
    Ok(())
}

/// `Hi(Normalize(password), salt, i)`: SASLprep as libpq applies it (a password it
/// cannot normalise is taken as it is, as Postgres does).
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let normalized = stringprep::saslprep(password).unwrap_or(password.into());
    let mut out = [0u8; 32];
    let iterations = NonZeroU32::new(iterations.max(1)).expect("at least one");
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        normalized.as_bytes(),
        &mut out,
    );
    out
}

fn hmac_of(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

/// Equal, in a time that depends on the lengths alone.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Verifier {
    /// The verifier of `password` with a fresh random salt.
    pub fn new(password: &str) -> Verifier {
        let mut salt = vec![0u8; SALT_BYTES];
        SystemRandom::new()
            .fill(&mut salt)
            .expect("the system's random source");
        Self::with_salt(password, salt, ITERATIONS)
    }

    fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Verifier {
        let salted = salted_password(password, &salt, iterations);
        let client_key = hmac_of(&salted, b"Client Key");
        Verifier {
            stored_key: digest::digest(&digest::SHA256, &client_key)
                .as_ref()
                .to_vec(),
            server_key: hmac_of(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// Whether `password` is the one this verifier was made of (slow: PBKDF2).
    pub fn verify(&self, password: &str) -> bool {
        let v = Self::with_salt(password, self.salt.clone(), self.iterations);
        same(&v.stored_key, &self.stored_key) && same(&v.server_key, &self.server_key)
    }

    /// From its text form; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix(SCHEME)?.strip_prefix('$')?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let v = Verifier {
            salt: STANDARD.decode(salt).ok()?,
            iterations: iterations.parse().ok().filter(|i| *i > 0)?,
            stored_key: STANDARD.decode(stored).ok()?,
            server_key: STANDARD.decode(server).ok()?,
        };
        (v.stored_key.len() == 32 && v.server_key.len() == 32 && !v.salt.is_empty()).then_some(v)
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_checks_its_password_and_round_trips_as_text() {
        let v = Verifier::new("correct horse");
        assert!(v.verify("correct horse"));
        assert!(!v.verify("correct horse "));
        assert!(!v.verify(""));
        let text = v.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$10000:"), "{text}");
        assert_eq!(Verifier::parse(&text), Some(v.clone()));
        // Two verifiers of one password differ by their salts.
        assert_ne!(Verifier::new("correct horse").to_string(), text);
        for bad in ["", "SCRAM-SHA-256$", "MD5$1:a$b:c", &text[..text.len() - 4]] {
            assert_eq!(Verifier::parse(bad), None, "{bad:?}");
        }
        assert!(!format!("{v:?}").contains(&STANDARD.encode(&v.stored_key)));
    }

    #[test]
    fn the_verifier_is_the_one_postgres_computes() {
        // RFC 7677's example: user "user", password "pencil", 4096 iterations.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::with_salt("pencil", salt, 4096);
        let salted = salted_password("pencil", &v.salt, 4096);
        let client_key = hmac_of(&salted, b"Client Key");
        // The client's proof for the RFC's exchange verifies against the stored key.
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac_of(&v.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            STANDARD.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_signature = hmac_of(&v.server_key, auth_message.as_bytes());
        assert_eq!(
            STANDARD.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn passwords_are_bounded() {
        assert!(check_password("x").is_ok());
        assert!(check_password("").is_err());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }
}
