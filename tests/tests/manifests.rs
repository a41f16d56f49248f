//! The Kubernetes manifests: every overlay renders (kubectl kustomize), every object
//! validates strictly against the official schemas, what the manifests tell the binary
//! (subcommands, flags, env vars, probe paths and ports) is what it accepts, every pod
//! meets Pod Security "restricted" (the DaemonSet's breaks only what its design needs),
//! and every image's tag comes from kustomize `images:`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
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
                // A node's SQL and peer ports are named, and are where SHOAL_SQL_ADDR
                // and SHOAL_PEER_ADDR listen.
                if http_port.is_none() {
                    continue;
                }
                for (port_name, var) in [("sql", "SHOAL_SQL_ADDR"), ("peer", "SHOAL_PEER_ADDR")] {
                    let port = c["ports"]
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["name"] == port_name))
                        .map(|p| p["containerPort"].as_u64().unwrap());
                    let env = c["env"]
                        .as_array()
                        .and_then(|es| es.iter().find(|e| e["name"] == var))
                        .and_then(|e| e["value"].as_str())
                        .and_then(|v| v.rsplit_once(':'))
                        .map(|(_, p)| p.parse::<u64>().unwrap());
                    assert!(port.is_some(), "{o}: no port named {port_name}");
                    assert_eq!(env, port, "{o}: {port_name} port and {var} disagree");
                }
            }
        }
    }
}

/// The peer port is for shoal's pods alone: the headless Service names it (peers'
/// DNS), the public Service does not, and the NetworkPolicy lets only node pods
/// reach it while clients reach the others.
#[test]
fn only_shoal_pods_reach_the_peer_port() {
    let ports = |svc: &Value| -> Vec<String> {
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    for o in OVERLAYS {
        let objs = objects(&render(o));
        let named = |kind: &str, name: &str| {
            objs.iter()
                .find(|x| x["kind"] == kind && x["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{o}: no {kind} {name}"))
                .clone()
        };
        assert!(ports(&named("Service", "shoal")).contains(&"peer".to_string()));
        let public = ports(&named("Service", "shoal-public"));
        assert!(!public.contains(&"peer".to_string()), "{o}: {public:?}");
        let policy = named("NetworkPolicy", "shoal");
        let node_labels =
            json!({"app.kubernetes.io/name": "shoal", "app.kubernetes.io/component": "node"});
        assert_eq!(policy["spec"]["podSelector"]["matchLabels"], node_labels);
        let rules = policy["spec"]["ingress"].as_array().unwrap();
        for rule in rules {
            let rule_ports: Vec<&str> = rule["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["port"].as_str().unwrap())
                .collect();
            let from = rule["from"].as_array();
            if rule_ports.contains(&"peer") {
                // Only from node pods.
                let from = from.unwrap_or_else(|| panic!("{o}: the peer port open to all"));
                assert!(!from.is_empty());
                for f in from {
                    assert_eq!(f["podSelector"]["matchLabels"], node_labels, "{o}");
                    assert!(f.get("namespaceSelector").is_none() && f.get("ipBlock").is_none());
                }
            }
        }
        // The client ports stay open to clients.
        for p in public {
            assert!(
                rules.iter().any(|r| r["from"].is_null()
                    && r["ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["port"] == p.as_str())),
                "{o}: port {p} is closed to clients"
            );
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

/// The pod template (`metadata` and `spec`) of an object that makes pods, if it does.
fn pod_template(obj: &Value) -> Option<Value> {
    let t = match obj["kind"].as_str()? {
        "Pod" => obj.clone(),
        "CronJob" => obj["spec"]["jobTemplate"]["spec"]["template"].clone(),
        _ => obj["spec"]["template"].clone(),
    };
    t["spec"]["containers"].is_array().then_some(t)
}

/// Every container of a pod spec: containers, init containers, ephemeral containers.
fn all_containers(spec: &Value) -> Vec<&Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

/// Volume types "restricted" allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];
/// Sysctls "baseline" allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
/// SELinux types "baseline" allows (besides none).
const SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Every rule of the Pod Security Standard "restricted" (which includes "baseline"),
/// as https://kubernetes.io/docs/concepts/security/pod-security-standards/ gives them
/// for Kubernetes 1.31, that the pod template `t` breaks, each as "rule: where". For
/// Linux pods (`spec.os.name: windows` would lift some rules; shoal has none).
fn restricted_violations(t: &Value) -> Vec<String> {
    let (pod, psc) = (&t["spec"], &t["spec"]["securityContext"]);
    let mut v = Vec::new();
    let runtime_or_localhost =
        |p: &Value| matches!(p["type"].as_str(), Some("RuntimeDefault" | "Localhost"));
    let selinux = |o: &Value, at: &str, v: &mut Vec<String>| {
        let ty = o["type"].as_str().unwrap_or_default();
        if !(ty.is_empty() || SELINUX_TYPES.contains(&ty))
            || !o["user"].is_null()
            || !o["role"].is_null()
        {
            v.push(format!("seLinuxOptions: {at}"));
        }
    };
    // Baseline, pod level.
    for ns in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[ns] == true {
            v.push(format!("host namespaces: {ns}"));
        }
    }
    if psc["windowsOptions"]["hostProcess"] == true {
        v.push("hostProcess: pod".into());
    }
    for s in psc["sysctls"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default();
        if !SAFE_SYSCTLS.contains(&name) {
            v.push(format!("sysctls: {name}"));
        }
    }
    selinux(&psc["seLinuxOptions"], "pod", &mut v);
    if psc["appArmorProfile"].is_object() && !runtime_or_localhost(&psc["appArmorProfile"]) {
        v.push("appArmor: pod".into());
    }
    for (key, value) in t["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let profile = value.as_str().unwrap_or_default();
        if key.starts_with("container.apparmor.security.beta.kubernetes.io/")
            && profile != "runtime/default"
            && !profile.starts_with("localhost/")
        {
            v.push(format!("appArmor: {key}"));
        }
    }
    // Restricted, pod level.
    for vol in pod["volumes"].as_array().into_iter().flatten() {
        let name = vol["name"].as_str().unwrap_or_default();
        for kind in vol
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
        {
            if kind != "name" && !RESTRICTED_VOLUMES.contains(&kind) {
                v.push(format!("volume types: {name} is {kind}"));
            }
        }
    }
    if psc["runAsNonRoot"] == false {
        v.push("runAsNonRoot: pod false".into());
    }
    if psc["runAsUser"] == 0 {
        v.push("runAsUser: pod is 0".into());
    }
    if psc["seccompProfile"].is_object() && !runtime_or_localhost(&psc["seccompProfile"]) {
        v.push("seccompProfile: pod".into());
    }
    for c in all_containers(pod) {
        let (name, sc) = (
            c["name"].as_str().unwrap_or_default(),
            &c["securityContext"],
        );
        // Baseline.
        if sc["windowsOptions"]["hostProcess"] == true {
            v.push(format!("hostProcess: {name}"));
        }
        if sc["privileged"] == true {
            v.push(format!("privileged: {name}"));
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if p["hostPort"].as_u64().unwrap_or(0) != 0 {
                v.push(format!("host ports: {name} {}", p["hostPort"]));
            }
        }
        selinux(&sc["seLinuxOptions"], name, &mut v);
        if sc["appArmorProfile"].is_object() && !runtime_or_localhost(&sc["appArmorProfile"]) {
            v.push(format!("appArmor: {name}"));
        }
        if !sc["procMount"].is_null() && sc["procMount"] != "Default" {
            v.push(format!("procMount: {name}"));
        }
        // Restricted.
        if sc["allowPrivilegeEscalation"] != false {
            v.push(format!("allowPrivilegeEscalation: {name}"));
        }
        match (&sc["runAsNonRoot"], psc["runAsNonRoot"] == true) {
            (Value::Bool(false), _) => v.push(format!("runAsNonRoot: {name} false")),
            (Value::Null, false) => v.push(format!("runAsNonRoot: {name} unset")),
            _ => {}
        }
        if sc["runAsUser"] == 0 {
            v.push(format!("runAsUser: {name} is 0"));
        }
        let own = &sc["seccompProfile"];
        if (own.is_object() && !runtime_or_localhost(own))
            || (own.is_null() && !runtime_or_localhost(&psc["seccompProfile"]))
        {
            v.push(format!("seccompProfile: {name}"));
        }
        let caps = &sc["capabilities"];
        if !caps["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|c| c == "ALL"))
        {
            v.push(format!("capabilities: {name} drops not ALL"));
        }
        for cap in caps["add"].as_array().into_iter().flatten() {
            if cap != "NET_BIND_SERVICE" {
                v.push(format!(
                    "capabilities: {name} adds {}",
                    cap.as_str().unwrap_or_default()
                ));
            }
        }
    }
    v
}

/// shoal's own rules on top of "restricted": no Kubernetes API token in any pod (no
/// shoal process calls the API), and a read-only root filesystem in every container
/// (a node writes only to its data directory).
fn hardening_violations(t: &Value) -> Vec<String> {
    let mut v = Vec::new();
    if t["spec"]["automountServiceAccountToken"] != false {
        v.push("automountServiceAccountToken: pod".into());
    }
    for c in all_containers(&t["spec"]) {
        if c["securityContext"]["readOnlyRootFilesystem"] != true {
            v.push(format!(
                "readOnlyRootFilesystem: {}",
                c["name"].as_str().unwrap_or_default()
            ));
        }
    }
    v
}

/// What the DaemonSet's pod breaks of "restricted" on purpose (k8s/README.md says why
/// and what was weighed): the host's network and ports, which make the host's IP the
/// node's address; the host's disk; and the init container that, as root with CHOWN
/// alone, gives the host directory the kubelet made root's to the node's user.
const DAEMONSET_EXCEPTIONS: &[&str] = &[
    "host namespaces: hostNetwork",
    "host ports: shoal 7070",
    "host ports: shoal 7071",
    "host ports: shoal 7080",
    "host ports: shoal 5432",
    "volume types: data is hostPath",
    "runAsNonRoot: data-dir-owner false",
    "runAsUser: data-dir-owner is 0",
    "capabilities: data-dir-owner adds CHOWN",
];

#[test]
fn every_pod_meets_pod_security_restricted() {
    let mut pods = 0;
    for o in OVERLAYS {
        for obj in objects(&render(o)) {
            let Some(t) = pod_template(&obj) else {
                continue;
            };
            pods += 1;
            let what = format!(
                "{o}: {} {}",
                obj["kind"].as_str().unwrap_or_default(),
                obj["metadata"]["name"].as_str().unwrap_or_default()
            );
            let mut broken = restricted_violations(&t);
            broken.sort();
            if *o == "daemonset" && obj["kind"] == "DaemonSet" {
                let mut expected: Vec<String> =
                    DAEMONSET_EXCEPTIONS.iter().map(|s| s.to_string()).collect();
                expected.sort();
                assert_eq!(broken, expected, "{what}: not what its design needs");
                eprintln!(
                    "{what} breaks \"restricted\" by design: {}",
                    broken.join("; ")
                );
            } else {
                assert!(
                    broken.is_empty(),
                    "{what} is not \"restricted\": {broken:?}"
                );
            }
            let hardening = hardening_violations(&t);
            assert!(hardening.is_empty(), "{what}: {hardening:?}");
        }
    }
    assert_eq!(pods, 3, "the StatefulSet, the init Job and the DaemonSet");
}

/// Sets the value at a JSON pointer (`~1` is `/`), making the objects on the way.
fn set(v: &mut Value, pointer: &str, to: Value) {
    let mut at = v;
    for key in pointer.split('/').skip(1) {
        let key = key.replace("~1", "/");
        at = match key.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[key.as_str()],
        };
    }
    *at = to;
}

/// Each rule catches what it is for: the StatefulSet's pod, which passes, broken one
/// way at a time.
#[test]
fn each_pod_security_rule_catches_its_violation() {
    let base = objects(&render("statefulset"))
        .iter()
        .find(|o| o["kind"] == "StatefulSet")
        .and_then(pod_template)
        .unwrap();
    assert!(restricted_violations(&base).is_empty() && hardening_violations(&base).is_empty());
    let c = "/spec/containers/0/securityContext";
    let p = "/spec/securityContext";
    let cases: &[(String, Value, &str)] = &[
        (
            "/spec/hostNetwork".into(),
            true.into(),
            "host namespaces: hostNetwork",
        ),
        (
            "/spec/hostPID".into(),
            true.into(),
            "host namespaces: hostPID",
        ),
        (
            "/spec/hostIPC".into(),
            true.into(),
            "host namespaces: hostIPC",
        ),
        (
            format!("{p}/windowsOptions/hostProcess"),
            true.into(),
            "hostProcess: pod",
        ),
        (
            format!("{c}/windowsOptions/hostProcess"),
            true.into(),
            "hostProcess: shoal",
        ),
        (format!("{c}/privileged"), true.into(), "privileged: shoal"),
        (
            "/spec/containers/0/ports/0/hostPort".into(),
            7070.into(),
            "host ports: shoal 7070",
        ),
        (
            format!("{p}/sysctls"),
            json!([{"name": "kernel.msgmax", "value": "1"}]),
            "sysctls: kernel.msgmax",
        ),
        (
            format!("{p}/seLinuxOptions/type"),
            "spc_t".into(),
            "seLinuxOptions: pod",
        ),
        (
            format!("{c}/seLinuxOptions/user"),
            "root".into(),
            "seLinuxOptions: shoal",
        ),
        (
            format!("{p}/appArmorProfile/type"),
            "Unconfined".into(),
            "appArmor: pod",
        ),
        (
            format!("{c}/appArmorProfile/type"),
            "Unconfined".into(),
            "appArmor: shoal",
        ),
        (
            "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1shoal".into(),
            "unconfined".into(),
            "appArmor: container.apparmor",
        ),
        (
            format!("{c}/procMount"),
            "Unmasked".into(),
            "procMount: shoal",
        ),
        (
            "/spec/volumes".into(),
            json!([{"name": "h", "hostPath": {"path": "/"}}]),
            "volume types: h is hostPath",
        ),
        (
            "/spec/volumes".into(),
            json!([{"name": "n", "nfs": {"server": "s", "path": "/"}}]),
            "volume types: n is nfs",
        ),
        (
            format!("{c}/allowPrivilegeEscalation"),
            true.into(),
            "allowPrivilegeEscalation: shoal",
        ),
        (
            format!("{c}/allowPrivilegeEscalation"),
            Value::Null,
            "allowPrivilegeEscalation: shoal",
        ),
        (
            format!("{p}/runAsNonRoot"),
            false.into(),
            "runAsNonRoot: pod false",
        ),
        (
            format!("{p}/runAsNonRoot"),
            Value::Null,
            "runAsNonRoot: shoal unset",
        ),
        (
            format!("{c}/runAsNonRoot"),
            false.into(),
            "runAsNonRoot: shoal false",
        ),
        (format!("{p}/runAsUser"), 0.into(), "runAsUser: pod is 0"),
        (format!("{c}/runAsUser"), 0.into(), "runAsUser: shoal is 0"),
        (
            format!("{p}/seccompProfile/type"),
            "Unconfined".into(),
            "seccompProfile: pod",
        ),
        (
            format!("{p}/seccompProfile"),
            Value::Null,
            "seccompProfile: shoal",
        ),
        (
            format!("{c}/seccompProfile/type"),
            "Unconfined".into(),
            "seccompProfile: shoal",
        ),
        (
            format!("{c}/capabilities/drop"),
            json!(["NET_RAW"]),
            "capabilities: shoal drops not ALL",
        ),
        (
            format!("{c}/capabilities"),
            Value::Null,
            "capabilities: shoal drops not ALL",
        ),
        (
            format!("{c}/capabilities/add"),
            json!(["SYS_ADMIN"]),
            "capabilities: shoal adds SYS_ADMIN",
        ),
        (
            "/spec/automountServiceAccountToken".into(),
            Value::Null,
            "automountServiceAccountToken: pod",
        ),
        (
            format!("{c}/readOnlyRootFilesystem"),
            false.into(),
            "readOnlyRootFilesystem: shoal",
        ),
        // Init and ephemeral containers are held to the same rules.
        (
            "/spec/initContainers".into(),
            json!([{"name": "i", "image": "shoal"}]),
            "allowPrivilegeEscalation: i",
        ),
        (
            "/spec/initContainers".into(),
            json!([{"name": "i", "image": "shoal"}]),
            "capabilities: i drops not ALL",
        ),
        (
            "/spec/ephemeralContainers".into(),
            json!([{"name": "e", "image": "shoal"}]),
            "readOnlyRootFilesystem: e",
        ),
    ];
    for (pointer, value, rule) in cases {
        let mut t = base.clone();
        set(&mut t, pointer, value.clone());
        let mut broken = restricted_violations(&t);
        broken.extend(hardening_violations(&t));
        assert!(
            broken.iter().any(|b| b.starts_with(rule)),
            "{pointer} = {value} went unseen by {rule:?}: {broken:?}"
        );
    }
    // NET_BIND_SERVICE is the one capability a container may add.
    let mut t = base.clone();
    set(
        &mut t,
        &format!("{c}/capabilities/add"),
        json!(["NET_BIND_SERVICE"]),
    );
    assert!(restricted_violations(&t).is_empty());
}

/// The YAML documents of a file, as JSON.
fn file_objects(path: &Path) -> Vec<Value> {
    objects(&std::fs::read_to_string(path).unwrap())
}

/// The image of every container of every pod template in `objs`.
fn images(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .filter_map(pod_template)
        .flat_map(|t| {
            all_containers(&t["spec"])
                .iter()
                .map(|c| c["image"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The tag or digest of an image reference, if it has one (a registry's `host:port/`
/// is not a tag).
fn tag_of(image: &str) -> Option<&str> {
    if let Some((_, digest)) = image.split_once('@') {
        return Some(digest);
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, tag)| tag)
}

#[test]
fn every_image_tag_comes_from_kustomize_images() {
    // No manifest names a tag: an overlay's `images:` gives it.
    let mut seen = 0;
    for dir in std::fs::read_dir(repo().join("k8s")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).into_iter().flatten() {
            let path = f.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.ends_with(".yaml") || name == "kustomization.yaml" {
                continue;
            }
            for image in images(&file_objects(&path)) {
                seen += 1;
                assert_eq!(
                    tag_of(&image),
                    None,
                    "{}: {image} has its tag written in",
                    path.display()
                );
            }
        }
    }
    assert!(seen >= 3, "no workload file found");
    // Each overlay sets every image it renders through `images:`.
    for o in OVERLAYS {
        let k = &file_objects(&repo().join("k8s").join(o).join("kustomization.yaml"))[0];
        let wanted: BTreeMap<String, String> = k["images"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                let name = i["newName"]
                    .as_str()
                    .or(i["name"].as_str())
                    .unwrap_or_default();
                let full = match (i["digest"].as_str(), i["newTag"].as_str()) {
                    (Some(d), _) => format!("{name}@{d}"),
                    (None, Some(t)) => format!("{name}:{t}"),
                    (None, None) => name.to_string(),
                };
                (i["name"].as_str().unwrap_or_default().to_string(), full)
            })
            .collect();
        let rendered = images(&objects(&render(o)));
        assert!(!rendered.is_empty(), "{o}: no container");
        for image in rendered {
            assert!(
                wanted.values().any(|v| *v == image) && tag_of(&image).is_some(),
                "{o}: {image} is not an image its kustomization.yaml sets with a tag ({wanted:?})"
            );
        }
    }
}

#[test]
fn the_init_job_is_cleaned_up_after_it_finishes() {
    let jobs: Vec<Value> = objects(&render("statefulset"))
        .into_iter()
        .filter(|o| o["kind"] == "Job")
        .collect();
    assert_eq!(jobs.len(), 1, "the statefulset overlay has one init Job");
    let ttl = jobs[0]["spec"]["ttlSecondsAfterFinished"].as_u64();
    assert!(
        ttl.is_some_and(|t| t > 0),
        "the init Job stays after it finishes: ttlSecondsAfterFinished is {ttl:?}"
    );
}
