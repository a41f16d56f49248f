//! `shoal cert`: a cluster CA, node certificates and client certificates, made here
//! (rcgen, ECDSA P-256 keys) and listed back (x509-parser); the files and their names
//! are [`shoal_proto::certs`]'. The CA's key stays out of the certificates directory
//! (`--ca-key`): that directory is what pods mount.
//!
//! Nothing is overwritten unless `--overwrite` says so; a certificate and its key are
//! each written to a temporary file and renamed over the old one, so a node that
//! reloads its certificates never reads half a file. Keys are readable by their
//! owner alone (0600).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use shoal_proto::certs::{self, CA_CERT, NODE_CERT, NODE_COMMON_NAME, NODE_KEY};

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
        CertCommand::CreateCa { signing, lifetime } => create_ca(dir, &signing, lifetime),
        CertCommand::CreateNode {
            hosts,
            signing,
            lifetime,
        } => {
            let sans = hosts
                .iter()
                .map(|h| san(h))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut p = leaf(NODE_COMMON_NAME, lifetime)?;
            p.subject_alt_names = sans;
            // A node serves clients and peers, and is a client of its peers.
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            issue(dir, &signing, p, NODE_CERT, NODE_KEY)
        }
        CertCommand::CreateClient {
            user,
            signing,
            lifetime,
        } => {
            let mut p = leaf(&user, lifetime)?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            issue(
                dir,
                &signing,
                p,
                &certs::client_cert(&user),
                &certs::client_key(&user),
            )
        }
        CertCommand::Ls => ls(dir, args.format),
    }
}

/// Validity from an hour ago (clocks of other machines may run behind) to `lifetime`
/// from now.
fn validity(p: &mut CertificateParams, lifetime: Duration) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = time::Duration::try_from(lifetime)
        .ok()
        .and_then(|d| now.checked_add(d))
        .context("--lifetime is too long")?;
    Ok(())
}

fn named(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "shoal");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A certificate for `cn`, to be signed by the CA.
fn leaf(cn: &str, lifetime: Duration) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = named(cn);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, lifetime)?;
    Ok(p)
}

/// A host of a node certificate: an IP address, or a DNS name (a leading `*.` for a
/// wildcard over one label).
fn san(host: &str) -> anyhow::Result<SanType> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        bail!("{host:?} is neither an IP address nor a DNS name (a leading *. for a wildcard)");
    }
    Ok(SanType::DnsName(host.to_ascii_lowercase().try_into()?))
}

fn create_ca(dir: &Path, signing: &Signing, lifetime: Duration) -> anyhow::Result<()> {
    let cert_path = dir.join(CA_CERT);
    refuse_to_overwrite(&[&cert_path, &signing.ca_key], signing.overwrite)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = named("shoal CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, lifetime)?;
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    write_file(&signing.ca_key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    println!(
        "wrote {} (key: {})",
        cert_path.display(),
        signing.ca_key.display()
    );
    Ok(())
}

/// Signs `p` with the CA (its certificate in `dir`, its key at --ca-key) and writes
/// the certificate and a new key as `cert_name` and `key_name` in `dir`.
fn issue(
    dir: &Path,
    signing: &Signing,
    mut p: CertificateParams,
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
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .with_context(|| format!("{} is not a private key", signing.ca_key.display()))?;
    // The newest CA of ca.crt signs (while a CA rotates, the file holds both).
    let newest = newest_ca(&ca_pem)
        .with_context(|| format!("{} holds no CA certificate", ca_path.display()))?;
    if newest.public_key_raw != ca_key.public_key_raw() {
        bail!(
            "{} is not the key of the CA in {}",
            signing.ca_key.display(),
            ca_path.display()
        );
    }
    // Never valid past the CA that vouches for it.
    let ca_end = time::OffsetDateTime::from_unix_timestamp(newest.not_after)?;
    if p.not_after > ca_end {
        eprintln!(
            "note: valid until the CA's own expiry, {}",
            rfc3339(newest.not_after)
        );
        p.not_after = ca_end;
    }
    let issuer = Issuer::from_ca_cert_der(&newest.der.clone().into(), ca_key)?;
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
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

/// Writes `data` to `path` with `mode`: to a temporary file beside it, then renamed
/// over it, so a reader sees the old file or the new one, whole.
fn write_file(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.exists() {
        fs::create_dir_all(parent)
            .with_context(|| format!("making the directory {}", parent.display()))?;
        fs::set_permissions(parent, fs::Permissions::from_mode(0o700))?;
    }
    let name = path.file_name().context("no file name")?.to_string_lossy();
    let tmp = parent.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// What `ls` and the signing checks read of a certificate.
struct Parsed {
    der: Vec<u8>,
    common_name: String,
    hosts: Vec<String>,
    is_ca: bool,
    not_after: i64,
    public_key_raw: Vec<u8>,
}

/// Every certificate of a PEM file, in order.
fn parse_all(pem: &[u8]) -> anyhow::Result<Vec<Parsed>> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| anyhow::anyhow!("not PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let x = block
            .parse_x509()
            .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
        let common_name = x
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let mut hosts = Vec::new();
        if let Ok(Some(ext)) = x.subject_alternative_name() {
            for n in &ext.value.general_names {
                match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => hosts.push(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).map(IpAddr::from).ok(),
                            16 => <[u8; 16]>::try_from(*b).map(IpAddr::from).ok(),
                            _ => None,
                        };
                        hosts.extend(ip.map(|ip| ip.to_string()));
                    }
                    _ => {}
                }
            }
        }
        out.push(Parsed {
            der: block.contents.clone(),
            common_name,
            hosts,
            is_ca: x.is_ca(),
            not_after: x.validity().not_after.timestamp(),
            public_key_raw: x.public_key().subject_public_key.data.to_vec(),
        });
    }
    Ok(out)
}

/// The CA of `pem` that expires last.
fn newest_ca(pem: &str) -> Option<Parsed> {
    parse_all(pem.as_bytes())
        .ok()?
        .into_iter()
        .filter(|c| c.is_ca)
        .max_by_key(|c| c.not_after)
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
            .and_then(|pem| parse_all(&pem));
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
    fn hosts_are_names_or_addresses() {
        for ok in [
            "localhost",
            "127.0.0.1",
            "::1",
            "shoal-0.shoal.default.svc.cluster.local",
            "*.shoal.default.svc.cluster.local",
        ] {
            assert!(san(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "-x.y",
            "a_b",
            "*",
            "a.*.b",
            "x/y",
            &"a".repeat(64),
        ] {
            assert!(san(bad).is_err(), "{bad:?}");
        }
    }

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
