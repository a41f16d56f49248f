//! Passwords at the command line, never as flags (which other users of the machine
//! see in the process list): the password a command logs in with comes from
//! `SHOAL_PASSWORD`, or a prompt at a terminal, when the certificates directory holds
//! no certificate of the user; a new password (`shoal user create --password`,
//! `shoal user passwd`) from `SHOAL_NEW_PASSWORD`, or a prompt asked twice.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context};

/// The password `user` logs in with, if it needs one: a secure cluster (`certs_dir`)
/// and no client certificate of the user there.
pub fn login(certs_dir: Option<&Path>, user: &str) -> anyhow::Result<Option<String>> {
    let Some(dir) = certs_dir else {
        return Ok(None);
    };
    if dir.join(shoal_proto::certs::client_cert(user)).exists() {
        return Ok(None);
    }
    if let Ok(p) = std::env::var("SHOAL_PASSWORD") {
        return Ok(Some(p));
    }
    if !std::io::stdin().is_terminal() {
        // Without one the node says what it takes.
        return Ok(None);
    }
    let p = rpassword::prompt_password(format!("Password for {user}: "))
        .context("reading the password")?;
    Ok(Some(p))
}

/// A new password for `user`.
pub fn new_password(user: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("SHOAL_NEW_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("give the new password in SHOAL_NEW_PASSWORD, or run this at a terminal to be asked for it");
    }
    let p = rpassword::prompt_password(format!("New password for {user}: "))
        .context("reading the password")?;
    let again = rpassword::prompt_password("Again: ").context("reading the password")?;
    if p != again {
        bail!("the two passwords differ; nothing changed");
    }
    Ok(p)
}
