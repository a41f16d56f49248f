//! The certificates of simulated pods: what the manifests' Secret `shoal-certs` holds
//! (the cluster CA, the node certificate for the pods' names and for loopback, root's
//! client certificate), made with the real `shoal cert` as k8s/README.md says, owned
//! by the image's user as the kubelet's fsGroup makes them; and the harness's ways
//! to reach a pod over TLS (the SDK's, and curl for HTTPS).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use shoal_client::ClientTls;

/// The user and group of the image (docker/Dockerfile).
const SHOAL_UID: &str = "10001:10001";

/// A certificates directory for the pods of one test, removed with it.
pub struct PodCerts {
    _root: tempfile::TempDir,
    pub dir: PathBuf,
}

impl PodCerts {
    /// Certificates for pods of the namespace `ns`: a node certificate valid for the
    /// pods' FQDNs, the Services' names, and loopback (the harness reaches pods
    /// through ports published on 127.0.0.1; `kubectl exec` reaches its own pod).
    pub fn make(ns: &str) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("shoal-pod-certs-")
            .tempdir()?;
        let dir = root.path().join("certs");
        let ca_key = root.path().join("ca.key");
        let domain = format!("shoal.{ns}.svc.cluster.local");
        let wildcard = format!("*.{domain}");
        let steps: [Vec<&str>; 3] = [
            vec!["create-ca"],
            vec![
                "create-node",
                "localhost",
                "127.0.0.1",
                &wildcard,
                &domain,
                "shoal-public",
            ],
            vec!["create-client", "root"],
        ];
        for args in steps {
            let out = Command::new(crate::shoal_bin())
                .arg("cert")
                .args(&args)
                .arg("--certs-dir")
                .arg(&dir)
                .arg("--ca-key")
                .arg(&ca_key)
                .output()
                .context("running shoal cert")?;
            if !out.status.success() {
                bail!(
                    "shoal cert {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let out = Command::new("chown")
            .args(["-R", SHOAL_UID])
            .arg(&dir)
            .output()?;
        if !out.status.success() {
            bail!("chown: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self { _root: root, dir })
    }

    /// What the harness's clients connect with: the CA, and root's certificate.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls::from_dir(&self.dir, "root").expect("the pods' client certificates")
    }

    /// `GET https://ADDR/PATH`, the node's certificate checked against the CA (ADDR
    /// is a port published on 127.0.0.1): the status code and the body.
    pub fn https_get(&self, addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
        https_get(&self.dir.join("ca.crt"), addr, path)
    }
}

fn https_get(ca: &Path, addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .arg(format!("https://{addr}{path}"))
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!(
            "curl {addr}{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.trim().parse()?, body.to_string()))
}
