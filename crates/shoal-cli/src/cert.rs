//! `shoal cert`: a cluster CA, node certificates and client certificates
//! ([`shoal_server::certs`] makes and reads them), and their listing; the files and
//! their names are [`shoal_proto::certs`]'. The CA's key stays out of the certificates directory
//! (`--ca-key`): that directory is what pods mount.
//!
//! Nothing is overwritten unless `--overwrite` says so; a certificate and its key are
//! each written to a temporary file and renamed over the old one, so a node that
//! reloads its certificates never reads half a file. Keys are readable by their
//! owner alone (0600).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use shoal_proto::certs::{self, CA_CERT, NODE_CERT, NODE_KEY};
use shoal_server::certs::{self as make, parse_all, write_file};

use crate::{table, Format};

#[derive(Debug, Args)]
pub struct CertArgs {
    /// The certificates directory: the CA's certificate, the node's and the clients'
    /// certificates and keys.
    #[arg(long, env = "SHOAL_CERTS_DIR", global = true, default_value = "certs")]
    pub certs_dir: PathBuf,
    /// Output format.
    #[arg(
        long,
        env = "SHOAL_FORMAT",
        value_enum,
        default_value = "plain",
        global = true
    )]
    pub format: Format,
    #[command(subcommand)]
    pub op: CertCommand,
}

/// Where the CA's key is, and whether to replace what exists.
#[derive(Debug, Args)]
pub struct Signing {
    /// The CA's private key: written by create-ca, read to sign every other
    /// certificate. Keep it out of the certificates directory, which pods mount.
    #[arg(long, env = "SHOAL_CA_KEY")]
    pub ca_key: PathBuf,
    /// Replace the files if they exist.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Make the cluster CA: ca.crt in the certificates directory, its key at --ca-key.
    CreateCa {
        #[command(flatten)]
        signing: Signing,
        /// Rotate: a new CA signs from now on (its key replaces the one at --ca-key),
        /// and ca.crt keeps the old CAs that have not expired after it, so what they
        /// signed stays trusted until it is issued again.
        #[arg(long, conflicts_with = "overwrite")]
        rotate: bool,
        /// How long the CA is valid (`3650d`, `10y`).
        #[arg(long, default_value = "10y", value_parser = parse_lifetime)]
        lifetime: Duration,
    },
    /// Make the node certificate (node.crt, node.key), valid for every HOST: the
    /// names and addresses clients and peers reach the node at (pod FQDNs, the
    /// headless Service's wildcard `*.shoal.NS.svc.cluster.local`, the public
    /// Service's names, localhost, 127.0.0.1).
    CreateNode {
        /// A DNS name (a leading `*.` for a wildcard) or an IP address.
        #[arg(required = true)]
        hosts: Vec<String>,
        #[command(flatten)]
        signing: Signing,
        /// How long the certificate is valid (never past the CA).
        #[arg(long, default_value = "5y", value_parser = parse_lifetime)]
        lifetime: Duration,
    },
    /// Make a client certificate for USER (client.USER.crt, client.USER.key): whoever
    /// presents it is USER.
    CreateClient {
        /// The user it authenticates.
        #[arg(value_parser = parse_user)]
        user: String,
        #[command(flatten)]
        signing: Signing,
        /// How long the certificate is valid (never past the CA).
        #[arg(long, default_value = "5y", value_parser = parse_lifetime)]
        lifetime: Duration,
    },
    /// List the certificates of the directory: what each is for, its subject, the
    /// names it is valid for, and when it expires.
    Ls,
}

fn parse_lifetime(s: &str) -> Result<Duration, String> {
    match shoal_server::config::parse_duration(s)? {
        d if d < Duration::from_secs(60) => Err("must be a minute or more".into()),
        d => Ok(d),
    }
}

fn parse_user(s: &str) -> Result<String, String> {
    certs::check_user_name(s).map(|()| s.to_string())
}

pub fn run(args: CertArgs) -> anyhow::Result<()> {
    let dir = &args.certs_dir;
    match args.op {
        CertCommand::CreateCa {
            signing,
            rotate,
            lifetime,
        } => {
            let cert_path = dir.join(CA_CERT);
            let ca = make::make_ca(lifetime)?;
            let file = if rotate {
                let old = fs::read_to_string(&cert_path)
                    .with_context(|| format!("reading {} to rotate its CA", cert_path.display()))?;
                let now = chrono::Utc::now().timestamp();
                make::rotated_ca_file(&old, &ca.cert_pem, now)
                    .with_context(|| format!("rotating {}", cert_path.display()))?
            } else {
                refuse_to_overwrite(&[&cert_path, &signing.ca_key], signing.overwrite)?;
                ca.cert_pem.clone()
            };
            write_file(&signing.ca_key, ca.key_pem.as_bytes(), 0o600)
                .with_context(|| format!("writing {}", signing.ca_key.display()))?;
            write_file(&cert_path, file.as_bytes(), 0o644)
                .with_context(|| format!("writing {}", cert_path.display()))?;
            println!(
                "wrote {} (key: {})",
                cert_path.display(),
                signing.ca_key.display()
            );
            Ok(())
        }
        CertCommand::CreateNode {
            hosts,
            signing,
            lifetime,
        } => {
            let p = make::node_params(&hosts, lifetime)?;
            issue(dir, &signing, p, NODE_CERT, NODE_KEY)
        }
        CertCommand::CreateClient {
            user,
            signing,
            lifetime,
        } => {
            let p = make::client_params(&user, lifetime)?;
            let (cert, key) = (certs::client_cert(&user), certs::client_key(&user));
            issue(dir, &signing, p, &cert, &key)
        }
        CertCommand::Ls => ls(dir, args.format),
    }
}

/// Signs `p` with the CA (its certificate in `dir`, its key at --ca-key) and writes
/// the certificate and its new key as `cert_name` and `key_name` in `dir`.
fn issue(
    dir: &Path,
    signing: &Signing,
    p: make::CertificateParams,
    cert_name: &str,
    key_name: &str,
) -> anyhow::Result<()> {
    let (cert_path, key_path) = (dir.join(cert_name), dir.join(key_name));
    refuse_to_overwrite(&[&cert_path, &key_path], signing.overwrite)?;
    let ca_path = dir.join(CA_CERT);
    let ca_pem = fs::read_to_string(&ca_path).with_context(|| {
        format!(
            "reading the CA's certificate {} (shoal cert create-ca makes it)",
            ca_path.display()
        )
    })?;
    let ca_key_pem = fs::read_to_string(&signing.ca_key)
        .with_context(|| format!("reading the CA's key {}", signing.ca_key.display()))?;
    let (made, cut) = make::issue(&ca_pem, &ca_key_pem, p).with_context(|| {
        format!(
            "signing with the CA of {} and the key {}",
            ca_path.display(),
            signing.ca_key.display()
        )
    })?;
    if let Some(end) = cut {
        eprintln!("note: valid until the CA's own expiry, {}", rfc3339(end));
    }
    write_file(&key_path, made.key_pem.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", key_path.display()))?;
    write_file(&cert_path, made.cert_pem.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", cert_path.display()))?;
    println!("wrote {} and {}", cert_path.display(), key_path.display());
    Ok(())
}

fn refuse_to_overwrite(paths: &[&Path], overwrite: bool) -> anyhow::Result<()> {
    if overwrite {
        return Ok(());
    }
    let there: Vec<String> = paths
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !there.is_empty() {
        bail!(
            "{} already exist(s); --overwrite replaces",
            there.join(" and ")
        );
    }
    Ok(())
}

fn rfc3339(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ts.to_string())
}

/// What a certificate file is for, by its name.
fn usage_of(file: &str) -> &'static str {
    if file == CA_CERT {
        "ca"
    } else if file == NODE_CERT {
        "node"
    } else if file.starts_with("client.") {
        "client"
    } else {
        "other"
    }
}

fn ls(dir: &Path, format: Format) -> anyhow::Result<()> {
    let mut files: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("reading the certificates directory {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".crt"))
        .collect();
    files.sort_by_key(|f| (usage_of(f) != "ca", usage_of(f) != "node", f.clone()));
    let now = chrono::Utc::now().timestamp();
    let mut t = table::new(["USAGE", "FILE", "NAME", "HOSTS", "EXPIRES"]);
    let mut bad = Vec::new();
    for f in &files {
        let parsed = fs::read(dir.join(f))
            .map_err(anyhow::Error::from)
            .and_then(|pem| parse_all(&pem).map_err(anyhow::Error::from));
        let certs = match parsed {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                bad.push(format!("{f}: no certificate"));
                continue;
            }
            Err(e) => {
                bad.push(format!("{f}: {e:#}"));
                continue;
            }
        };
        for c in certs {
            let expires = if c.not_after <= now {
                format!("{} (expired)", rfc3339(c.not_after))
            } else {
                rfc3339(c.not_after)
            };
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "usage": usage_of(f),
                        "file": f,
                        "name": c.common_name,
                        "hosts": c.hosts,
                        "expires": rfc3339(c.not_after),
                        "expired": c.not_after <= now,
                    })
                ),
                Format::Plain => {
                    t.add_row([
                        usage_of(f).to_string(),
                        f.clone(),
                        c.common_name,
                        c.hosts.join(","),
                        expires,
                    ]);
                }
            }
        }
    }
    if format == Format::Plain {
        table::write(&t, &mut std::io::stdout().lock())?;
    }
    if !bad.is_empty() {
        bail!("unreadable: {}", bad.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        // A year is 365.25 days.
        assert_eq!(
            parse_lifetime("10y").unwrap(),
            Duration::from_secs(36_525 * 86_400 / 10)
        );
        assert!(parse_lifetime("30s").is_err());
        assert!(parse_lifetime("nonsense").is_err());
    }
}
