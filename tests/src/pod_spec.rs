//! What the manifests say of a pod, as the simulated pods ([`crate::pods`]) need it:
//! the rendered pod templates, the `docker run` flags of a container's security
//! context, and the mounts of its Secret volumes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The pod templates of a rendered overlay, with the kind of object each is from.
pub fn pod_templates(overlay: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let yaml = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join("k8s").join(overlay))
        .output()
        .context("kubectl kustomize")?;
    if !yaml.status.success() {
        bail!("kustomize: {}", String::from_utf8_lossy(&yaml.stderr));
    }
    let python = std::env::var("SHOAL_PYTHON").context("SHOAL_PYTHON (set by scripts/test.sh)")?;
    let mut child = Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(&yaml.stdout)?;
    let out = child.wait_with_output()?;
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    Ok(docs
        .into_iter()
        .filter(|d| d["spec"]["template"]["spec"].is_object())
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["spec"]["template"]["spec"].clone(),
            )
        })
        .collect())
}

/// The pod template of the workload (StatefulSet or DaemonSet), and of the Job if any.
pub(crate) fn workload_and_job(overlay: &str) -> anyhow::Result<(Value, Option<Value>)> {
    let mut workload = None;
    let mut job = None;
    for (kind, pod) in pod_templates(overlay)? {
        match kind.as_str() {
            "StatefulSet" | "DaemonSet" => workload = Some(pod),
            "Job" => job = Some(pod),
            _ => {}
        }
    }
    Ok((workload.context("no workload in the overlay")?, job))
}

/// The shoal container of the workload (StatefulSet or DaemonSet) of a rendered overlay,
/// as JSON; and the Job's container, if any.
pub fn rendered(overlay: &str) -> anyhow::Result<(Value, Option<Value>)> {
    let (workload, job) = workload_and_job(overlay)?;
    Ok((
        workload["containers"][0].clone(),
        job.map(|j| j["containers"][0].clone()),
    ))
}

/// The `docker run` flags that give container `c` of `pod` what its security context
/// asks (the pod's, field by field overridden by the container's): its user and group,
/// a read-only root filesystem, the capabilities dropped and added, no privilege
/// escalation. Seccomp `RuntimeDefault` is Docker's default profile. A container told
/// to run as root that must not is refused, as the kubelet refuses it.
pub fn hardening(pod: &Value, c: &Value) -> anyhow::Result<Vec<String>> {
    let (p, s) = (&pod["securityContext"], &c["securityContext"]);
    let get = |k: &str| if s[k].is_null() { &p[k] } else { &s[k] };
    let mut f: Vec<String> = Vec::new();
    if let Some(u) = get("runAsUser").as_u64() {
        if u == 0 && get("runAsNonRoot") == true {
            bail!("container {} runs as root with runAsNonRoot", c["name"]);
        }
        f.push("--user".into());
        f.push(match get("runAsGroup").as_u64() {
            Some(g) => format!("{u}:{g}"),
            None => u.to_string(),
        });
    }
    if s["readOnlyRootFilesystem"] == true {
        f.push("--read-only".into());
    }
    if s["allowPrivilegeEscalation"] == false {
        f.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    for (key, flag) in [("drop", "--cap-drop"), ("add", "--cap-add")] {
        for cap in s["capabilities"][key].as_array().into_iter().flatten() {
            f.extend([flag.into(), cap.as_str().unwrap_or_default().into()]);
        }
    }
    Ok(f)
}

/// Bytes of a Kubernetes memory quantity (`2Gi`, `512Mi`, `1G`, `1000`).
fn bytes_of(q: &str) -> Option<u64> {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("K", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, n) in units {
        if let Some(v) = q.strip_suffix(suffix) {
            return v.parse::<u64>().ok().map(|v| v * n);
        }
    }
    q.parse().ok()
}

/// CPUs of a Kubernetes CPU quantity (`500m`, `2`).
fn cpus_of(q: &str) -> Option<f64> {
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
        None => q.parse().ok(),
    }
}

/// `docker run` flags giving a container the CPU quota and memory limit of
/// container `c`'s `resources.limits` (as the kubelet sets its cgroup), or of
/// `over` (CPUs, bytes) where given; no swap beyond the memory limit.
pub fn resource_limits(c: &Value, over: Option<(f64, u64)>) -> Vec<String> {
    let limits = &c["resources"]["limits"];
    let cpus = over
        .map(|o| o.0)
        .or_else(|| limits["cpu"].as_str().and_then(cpus_of));
    let memory = over
        .map(|o| o.1)
        .or_else(|| limits["memory"].as_str().and_then(bytes_of));
    let mut f = Vec::new();
    if let Some(cpus) = cpus {
        f.extend(["--cpus".into(), format!("{cpus}")]);
    }
    if let Some(m) = memory {
        f.extend([
            "--memory".into(),
            m.to_string(),
            "--memory-swap".into(),
            m.to_string(),
        ]);
    }
    f
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// `docker run` flags mounting, read-only, `dir` where container `c` of `pod` mounts
/// a Secret volume (the certificates of the manifests' `shoal-certs`).
pub fn secret_mounts(pod: &Value, c: &Value, dir: &Path) -> Vec<String> {
    let secrets: Vec<&str> = (pod["volumes"].as_array().into_iter().flatten())
        .filter(|v| v["secret"].is_object())
        .filter_map(|v| v["name"].as_str())
        .collect();
    (c["volumeMounts"].as_array().into_iter().flatten())
        .filter(|m| m["name"].as_str().is_some_and(|n| secrets.contains(&n)))
        .filter_map(|m| m["mountPath"].as_str())
        .flat_map(|path| ["-v".to_string(), format!("{}:{path}:ro", dir.display())])
        .collect()
}
