//! The Kubernetes manifests: every overlay renders (kubectl kustomize), every object
//! validates strictly against the official schemas, and what the manifests tell the
//! binary (subcommands, flags, env vars, probe paths and ports) is what it accepts.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use shoal_tests::{http_get, shoal, TestCluster};

/// Kubernetes version the objects are validated against.
const KUBERNETES: &str = "1.31.0";
const OVERLAYS: &[&str] = &["statefulset", "daemonset"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> String {
    std::env::var("SHOAL_PYTHON").expect(
        "SHOAL_PYTHON is not set: run the suite with ./scripts/test.sh, which installs the schema validator",
    )
}

fn render(overlay: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join("k8s").join(overlay))
        .output()
        .expect("kubectl is needed to render the manifests");
    assert!(
        out.status.success(),
        "kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Validates YAML documents strictly; returns (success, report).
fn validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("objects.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = Command::new(python())
        .args(["-m", "kubernetes_validate", "--strict", "-k", KUBERNETES])
        .arg(&f)
        .output()
        .expect("running kubernetes-validate");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

fn objects(yaml: &str) -> Vec<Value> {
    let out = shoal_tests::run_with_input(
        Command::new(python()).args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ]),
        yaml.as_bytes(),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_overlay_renders_and_validates_strictly() {
    for o in OVERLAYS {
        let (ok, report) = validate(&render(o));
        assert!(ok, "{o}: {report}");
        assert!(
            report.contains("passed"),
            "{o}: nothing validated: {report}"
        );
    }
    // The validator is strict: an unknown field is an error.
    let (ok, report) =
        validate("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  bogus: 1\n");
    assert!(!ok, "an unknown field passed: {report}");
}

fn containers(obj: &Value) -> Vec<Value> {
    let spec = &obj["spec"];
    let pod = if obj["kind"] == "Job" || spec["template"].is_object() {
        &spec["template"]["spec"]
    } else {
        spec
    };
    pod["containers"].as_array().cloned().unwrap_or_default()
}

#[test]
fn manifests_use_only_what_the_binary_accepts() {
    let start_help = String::from_utf8(shoal(&["start", "--help"]).stdout).unwrap();
    for o in OVERLAYS {
        for obj in objects(&render(o)) {
            for c in containers(&obj) {
                let args: Vec<String> = c["args"]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default();
                let sub = args.first().cloned().unwrap_or_else(|| "start".into());
                let help = shoal(&[sub.as_str(), "--help"]);
                assert!(
                    help.status.success(),
                    "{o}: `shoal {sub}` is not a subcommand"
                );
                let help = String::from_utf8(help.stdout).unwrap();
                for a in args.iter().filter(|a| a.starts_with("--")) {
                    assert!(
                        help.contains(a.as_str()),
                        "{o}: `shoal {sub}` has no flag {a}"
                    );
                }
                for e in c["env"].as_array().cloned().unwrap_or_default() {
                    let name = e["name"].as_str().unwrap();
                    if name.starts_with("SHOAL_") {
                        assert!(
                            start_help.contains(&format!("[env: {name}=")),
                            "{o}: `shoal start` reads no {name}"
                        );
                    }
                }
                // Probes name the HTTP port, which is where SHOAL_HTTP_ADDR listens.
                let http_port = c["ports"]
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["name"] == "http"))
                    .map(|p| p["containerPort"].as_u64().unwrap());
                for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                    if c[probe].is_null() {
                        continue;
                    }
                    assert_eq!(c[probe]["httpGet"]["port"], "http", "{o}: {probe} port");
                    let env_http = c["env"]
                        .as_array()
                        .and_then(|es| es.iter().find(|e| e["name"] == "SHOAL_HTTP_ADDR"))
                        .and_then(|e| e["value"].as_str())
                        .and_then(|v| v.rsplit_once(':'))
                        .map(|(_, p)| p.parse::<u64>().unwrap());
                    assert_eq!(
                        env_http, http_port,
                        "{o}: HTTP port and SHOAL_HTTP_ADDR disagree"
                    );
                }
                // A node's SQL port is named, and is where SHOAL_SQL_ADDR listens.
                if http_port.is_none() {
                    continue;
                }
                let sql_port = c["ports"]
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["name"] == "sql"))
                    .map(|p| p["containerPort"].as_u64().unwrap());
                let env_sql = c["env"]
                    .as_array()
                    .and_then(|es| es.iter().find(|e| e["name"] == "SHOAL_SQL_ADDR"))
                    .and_then(|e| e["value"].as_str())
                    .and_then(|v| v.rsplit_once(':'))
                    .map(|(_, p)| p.parse::<u64>().unwrap());
                assert!(sql_port.is_some(), "{o}: no port named sql");
                assert_eq!(
                    env_sql, sql_port,
                    "{o}: SQL port and SHOAL_SQL_ADDR disagree"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_paths_of_the_manifests_are_served() {
    let c = TestCluster::start_initialized(1, shoal_tests::FAST_ELECTIONS)
        .await
        .unwrap();
    for o in OVERLAYS {
        for obj in objects(&render(o)) {
            for ct in containers(&obj) {
                for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                    let Some(path) = ct[probe]["httpGet"]["path"].as_str() else {
                        continue;
                    };
                    let (code, _) = http_get(&c.nodes[0].http, path).unwrap();
                    assert_eq!(code, 200, "{o}: {probe} {path} answered {code}");
                }
            }
        }
    }
}
