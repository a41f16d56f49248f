//! Certificates: the cluster CA, node certificates and client certificates, made
//! (rcgen, ECDSA P-256 keys) and read back (x509-parser). `shoal cert` is their
//! command line; the node reads what they wrote ([`crate::tls`]). The files of a
//! certificates directory and their names are [`shoal_proto::certs`]'.

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

pub use rcgen::CertificateParams;
use rcgen::{
    BasicConstraints, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use shoal_proto::certs::NODE_COMMON_NAME;

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Make(#[from] rcgen::Error),
}

fn invalid(s: impl Into<String>) -> CertError {
    CertError::Invalid(s.into())
}

/// A certificate and its new private key, in PEM.
pub struct Made {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a certificate tells: its subject's common name, the hosts (DNS names and IP
/// addresses) it is valid for, whether it is a CA, its expiry and its public key.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub der: Vec<u8>,
    pub common_name: String,
    pub hosts: Vec<String>,
    pub is_ca: bool,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    pub public_key_raw: Vec<u8>,
}

/// Validity from an hour ago (clocks of other machines may run behind) to `lifetime`
/// from now.
fn validity(p: &mut CertificateParams, lifetime: Duration) -> Result<(), CertError> {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = time::Duration::try_from(lifetime)
        .ok()
        .and_then(|d| now.checked_add(d))
        .ok_or_else(|| invalid("the lifetime is too long"))?;
    Ok(())
}

fn named(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "shoal");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A certificate for `cn`, to be signed by the CA.
fn leaf(cn: &str, lifetime: Duration) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = named(cn);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, lifetime)?;
    Ok(p)
}

/// A host of a node certificate: an IP address, or a DNS name (a leading `*.` for a
/// wildcard over one label).
pub fn san(host: &str) -> Result<SanType, CertError> {
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
        return Err(invalid(format!(
            "{host:?} is neither an IP address nor a DNS name (a leading *. for a wildcard)"
        )));
    }
    Ok(SanType::DnsName(host.to_ascii_lowercase().try_into()?))
}

/// A new CA, valid for `lifetime`, that may sign leaf certificates only.
pub fn make_ca(lifetime: Duration) -> Result<Made, CertError> {
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
    Ok(Made {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The parameters of a node certificate valid for every one of `hosts`, for serving
/// clients and peers and for calling peers.
pub fn node_params(hosts: &[String], lifetime: Duration) -> Result<CertificateParams, CertError> {
    if hosts.is_empty() {
        return Err(invalid("a node certificate needs at least one host"));
    }
    let mut p = leaf(NODE_COMMON_NAME, lifetime)?;
    p.subject_alt_names = hosts.iter().map(|h| san(h)).collect::<Result<_, _>>()?;
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(p)
}

/// The parameters of a client certificate for `user`.
pub fn client_params(user: &str, lifetime: Duration) -> Result<CertificateParams, CertError> {
    shoal_proto::certs::check_user_name(user).map_err(CertError::Invalid)?;
    let mut p = leaf(user, lifetime)?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(p)
}

/// What [`issue`] did besides signing: `Some(expiry)` when the certificate was cut to
/// end with its CA.
pub type CutToCa = Option<i64>;

/// Signs `p` with a new key by the signing CA of `ca_pem` (its first), whose key is `ca_key_pem`;
/// never valid past that CA.
pub fn issue(
    ca_pem: &str,
    ca_key_pem: &str,
    mut p: CertificateParams,
) -> Result<(Made, CutToCa), CertError> {
    let ca_key =
        KeyPair::from_pem(ca_key_pem).map_err(|e| invalid(format!("not a private key: {e}")))?;
    let signer = signing_ca(ca_pem).ok_or_else(|| invalid("no CA certificate"))?;
    if signer.public_key_raw != ca_key.public_key_raw() {
        return Err(invalid("the key is not the CA's"));
    }
    let ca_end = time::OffsetDateTime::from_unix_timestamp(signer.not_after)
        .map_err(|e| invalid(format!("the CA's expiry: {e}")))?;
    let mut cut = None;
    if p.not_after > ca_end {
        p.not_after = ca_end;
        cut = Some(signer.not_after);
    }
    let issuer = Issuer::from_ca_cert_der(&signer.der.clone().into(), ca_key)?;
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok((
        Made {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
        cut,
    ))
}

/// Every certificate of a PEM file, in order.
pub fn parse_all(pem: &[u8]) -> Result<Vec<Parsed>, CertError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| invalid(format!("not PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        out.push(parse_der(&block.contents)?);
    }
    Ok(out)
}

/// What a DER certificate tells.
pub fn parse_der(der: &[u8]) -> Result<Parsed, CertError> {
    let (_, x) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| invalid(format!("not an X.509 certificate: {e}")))?;
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
    Ok(Parsed {
        der: der.to_vec(),
        common_name,
        hosts,
        is_ca: x.is_ca(),
        not_after: x.validity().not_after.timestamp(),
        public_key_raw: x.public_key().subject_public_key.data.to_vec(),
    })
}

/// The CA of `pem` that signs: the first one (a rotation puts the new CA first).
pub fn signing_ca(pem: &str) -> Option<Parsed> {
    parse_all(pem.as_bytes())
        .ok()?
        .into_iter()
        .find(|c| c.is_ca)
}

/// The CA file after a rotation: `new_ca_pem` first (it signs from now on), then every
/// CA of `old_pem` that has not expired by `now` (seconds since the Unix epoch), each
/// block as it was, so the certificates they signed stay trusted until they are
/// issued again.
pub fn rotated_ca_file(old_pem: &str, new_ca_pem: &str, now: i64) -> Result<String, CertError> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = new_ca_pem.trim_end().to_string();
    out.push('\n');
    let mut kept = 0;
    let mut rest = old_pem;
    while let Some(at) = rest.find(END) {
        let block = rest[..at + END.len()].trim_start();
        rest = &rest[at + END.len()..];
        let certs = parse_all(block.as_bytes())?;
        if certs.iter().any(|c| c.is_ca && c.not_after > now) {
            out.push_str(block);
            out.push('\n');
            kept += 1;
        }
    }
    if kept == 0 {
        return Err(invalid(
            "holds no CA that is still valid, nothing to rotate from",
        ));
    }
    Ok(out)
}

/// Writes `data` to `path` with `mode`: to a temporary file beside it, then renamed
/// over it, so a reader (a node reloading its certificates) sees the old file or the
/// new one, whole. A missing directory is made, readable by its owner alone.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.exists() {
        fs::create_dir_all(parent)?;
        fs::set_permissions(parent, fs::Permissions::from_mode(0o700))?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?
        .to_string_lossy();
    let tmp = parent.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
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
    fn a_leaf_is_cut_to_its_ca_and_names_what_it_was_given() {
        let ca = make_ca(Duration::from_secs(2 * 86_400)).unwrap();
        let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let p = node_params(&hosts, Duration::from_secs(365 * 86_400)).unwrap();
        let (node, cut) = issue(&ca.cert_pem, &ca.key_pem, p).unwrap();
        let ca_end = signing_ca(&ca.cert_pem).unwrap().not_after;
        assert_eq!(cut, Some(ca_end));
        let parsed = &parse_all(node.cert_pem.as_bytes()).unwrap()[0];
        assert_eq!(parsed.not_after, ca_end);
        assert_eq!(parsed.hosts, hosts);
        assert_eq!(parsed.common_name, NODE_COMMON_NAME);
        assert!(!parsed.is_ca);
        // Another CA's key signs nothing for this one.
        let other = make_ca(Duration::from_secs(86_400)).unwrap();
        let p = client_params("app", Duration::from_secs(3600)).unwrap();
        assert!(issue(&ca.cert_pem, &other.key_pem, p).is_err());
        assert!(client_params("node", Duration::from_secs(3600)).is_err());
    }

    #[test]
    fn a_rotated_ca_file_trusts_the_old_ca_until_it_expires() {
        let old = make_ca(Duration::from_secs(86_400)).unwrap();
        let new = make_ca(Duration::from_secs(2 * 86_400)).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let file = rotated_ca_file(&old.cert_pem, &new.cert_pem, now).unwrap();
        let cas = parse_all(file.as_bytes()).unwrap();
        assert_eq!(cas.len(), 2);
        // The new one signs: it is first.
        assert_eq!(
            signing_ca(&file).unwrap().public_key_raw,
            cas[0].public_key_raw
        );
        // Rotated again once the oldest has expired: it is dropped.
        let newer = make_ca(Duration::from_secs(3 * 86_400)).unwrap();
        let later = now + 86_400 + 60;
        let again = rotated_ca_file(&file, &newer.cert_pem, later).unwrap();
        let kept = parse_all(again.as_bytes()).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1].public_key_raw, cas[0].public_key_raw);
        // Nothing valid to rotate from.
        assert!(rotated_ca_file("", &new.cert_pem, now).is_err());
        assert!(rotated_ca_file(&old.cert_pem, &new.cert_pem, later).is_err());
    }
}
