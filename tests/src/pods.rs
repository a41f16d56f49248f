//! Pods simulated with Docker, from the rendered manifests.
//!
//! Each pod is a container of the shoal image with the manifest's args and env, the
//! hostname `shoal-N` in the domain `shoal.<ns>.svc.cluster.local` (so `/etc/hosts`
//! holds its FQDN as a pod's does), and network aliases: its own names, and the
//! headless Service's names shared by every pod (Docker's DNS then answers with every
//! pod, as a headless Service with `publishNotReadyAddresses` does). A named volume
//! per pod is its PersistentVolumeClaim, or the DaemonSet's host directory. Each
//! container runs with what its security context in the manifest asks (user, read-only
//! root filesystem, capabilities, no privilege escalation: [`hardening`]), and a
//! workload's init containers run before each of its pods. Pods that mount the
//! manifests' Secret get certificates made with `shoal cert` ([`PodCerts`]) and serve
//! TLS; [`Pods::insecure`] runs them plaintext. The harness reaches pods only
//! through ports published on 127.0.0.1; every container, network and volume carries
//! the test's unique prefix and is removed when the test ends, pass or fail.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use shoal_client::{Client, ClientOptions};

use crate::pod_certs::PodCerts;
pub use crate::pod_spec::{hardening, pod_templates, rendered};
use crate::pod_spec::{resource_limits, secret_mounts, strings, workload_and_job};

/// The image under test: `$SHOAL_TEST_IMAGE` (scripts/test.sh builds it).
pub fn image() -> String {
    std::env::var("SHOAL_TEST_IMAGE").unwrap_or_else(|_| "shoal:dev".into())
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out: Output = Command::new("docker")
        .args(args)
        .output()
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A pod's container and how the harness reaches it.
#[derive(Debug, Clone)]
pub struct Pod {
    pub container: String,
    pub ip: String,
    pub grpc: String,
    pub http: String,
}

/// A set of simulated pods on one private network.
pub struct Pods {
    pub prefix: String,
    pub ns: String,
    pub net: String,
    subnet_base: String,
    next_ip: u8,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The pod templates of the workload and of the Job, if any.
    template: Value,
    job: Option<Value>,
    pub pods: BTreeMap<String, Pod>,
    /// Each pod's published ports: gRPC, HTTP, SQL.
    ports: BTreeMap<String, (u16, u16, u16)>,
    volumes: Vec<String>,
    /// Volumes that are host directories (tmpfs mounts of a fixed size).
    binds: BTreeMap<String, PathBuf>,
    /// Links cut with [`Pods::cut_link`]: (from pod, to address).
    cuts: std::collections::BTreeSet<(String, String)>,
    /// The certificates of the manifests' Secret, when the pods mount one: the nodes
    /// then serve TLS, and the harness reaches them over TLS.
    pub certs: Option<PodCerts>,
    /// CPUs and memory bytes for the pods' containers, instead of the manifest's.
    limits: Option<(f64, u64)>,
}

impl Pods {
    /// A network for the pods of test `name`, and the container spec of `overlay`.
    pub fn new(name: &str, overlay: &str) -> anyhow::Result<Self> {
        let prefix = format!("shoaltest-{}-{name}", std::process::id());
        let net = format!("{prefix}-net");
        // A subnet of our own, so pods can be given (new) addresses: a rescheduled pod
        // comes back with a new IP.
        let mut subnet_base = None;
        let seed = std::process::id() as usize + name.len() * 7919;
        for i in 0..64 {
            let n = (seed + i * 37) % (12 * 256);
            let base = format!("172.{}.{}.", 20 + n / 256, n % 256);
            if docker(&[
                "network",
                "create",
                "--subnet",
                &format!("{base}0/24"),
                &net,
            ])
            .is_ok()
            {
                subnet_base = Some(base);
                break;
            }
        }
        let subnet_base = subnet_base.context("no free subnet for the test network")?;
        let (template, job) = workload_and_job(overlay)?;
        let ns = "default".to_string();
        let secret =
            (template["volumes"].as_array().into_iter().flatten()).any(|v| v["secret"].is_object());
        let certs = if secret {
            Some(PodCerts::make(&ns)?)
        } else {
            None
        };
        let c = &template["containers"][0];
        let args = strings(&c["args"]);
        let env = c["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| {
                let v = e["value"].as_str()?;
                Some((
                    e["name"].as_str()?.to_string(),
                    v.replace("$(POD_NAMESPACE)", &ns),
                ))
            })
            .collect();
        Ok(Self {
            prefix,
            ns,
            net,
            subnet_base,
            next_ip: 10,
            args,
            env,
            template,
            job,
            pods: BTreeMap::new(),
            ports: BTreeMap::new(),
            volumes: Vec::new(),
            binds: BTreeMap::new(),
            cuts: Default::default(),
            certs,
            limits: None,
        })
    }

    /// Pods with this CPU quota and memory limit (bytes) instead of the manifest's
    /// `resources.limits`.
    pub fn limit(&mut self, cpus: f64, memory: u64) {
        self.limits = Some((cpus, memory));
    }

    /// Pods that serve plaintext (`SHOAL_INSECURE`) without the manifests'
    /// certificates, for clients that speak no TLS.
    pub fn insecure(mut self) -> Self {
        self.certs = None;
        self.env.retain(|(n, _)| n != "SHOAL_CERTS_DIR");
        self.set_env("SHOAL_INSECURE", "true");
        self
    }

    /// Sets (or adds) an env var of every pod started from now on.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_string(), value.to_string()));
    }

    pub fn volume(&mut self, name: &str) -> String {
        let v = format!("{}-{name}", self.prefix);
        if !self.volumes.contains(&v) {
            self.volumes.push(v.clone());
        }
        v
    }

    /// Starts StatefulSet pod `shoal-<ordinal>` on volume `volume`, with a new IP.
    pub fn start(&mut self, ordinal: usize, volume: &str) -> anyhow::Result<Pod> {
        let name = format!("shoal-{ordinal}");
        let domain = format!("shoal.{}.svc.cluster.local", self.ns);
        let ip = self.new_ip();
        self.run_pod(&name, Some(&domain), &ip, volume, &[])
    }

    /// Starts a DaemonSet pod on "host" `host` (its node name) with the host's address
    /// `ip` and its local disk `volume`, as the downward API gives them.
    pub fn start_on_host(&mut self, host: &str, ip: &str, volume: &str) -> anyhow::Result<Pod> {
        self.run_pod(
            host,
            None,
            ip,
            volume,
            &[("HOST_IP", ip), ("NODE_NAME", host)],
        )
    }

    /// A new address on the test's subnet.
    pub fn new_ip(&mut self) -> String {
        let ip = format!("{}{}", self.subnet_base, self.next_ip);
        self.next_ip += 1;
        ip
    }

    fn run_pod(
        &mut self,
        name: &str,
        domain: Option<&str>,
        ip: &str,
        volume: &str,
        downward: &[(&str, &str)],
    ) -> anyhow::Result<Pod> {
        let container = format!("{}-{name}", self.prefix);
        self.run_init(volume)?;
        // A pod keeps its published ports across restarts: the harness's clients reach
        // pods through them as through a Service, whose address does not change.
        let (grpc_port, http_port, sql_port) = *self
            .ports
            .entry(name.to_string())
            .or_insert_with(|| (crate::free_port(), crate::free_port(), crate::free_port()));
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            container.clone(),
            "--hostname".into(),
            name.to_string(),
            "--network".into(),
            self.net.clone(),
            "--ip".into(),
            ip.to_string(),
            "-p".into(),
            format!("127.0.0.1:{grpc_port}:7070"),
            "-p".into(),
            format!("127.0.0.1:{http_port}:7080"),
            "-p".into(),
            format!("127.0.0.1:{sql_port}:5432"),
            "--stop-timeout".into(),
            "30".into(),
        ];
        args.extend(self.mount(volume, "/var/lib/shoal"));
        if let Some(certs) = &self.certs {
            args.extend(secret_mounts(
                &self.template,
                &self.template["containers"][0],
                &certs.dir,
            ));
        }
        args.extend(hardening(&self.template, &self.template["containers"][0])?);
        args.extend(resource_limits(
            &self.template["containers"][0],
            self.limits,
        ));
        if let Some(d) = domain {
            args.push("--domainname".into());
            args.push(d.to_string());
        }
        for alias in self.aliases(name, domain.is_some()) {
            args.push("--network-alias".into());
            args.push(alias);
        }
        for (k, v) in &self.env {
            let mut v = v.clone();
            for (var, val) in downward {
                v = v.replace(&format!("$({var})"), val);
            }
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push("-e".into());
        args.push("RUST_LOG=info".into());
        args.push(image());
        args.extend(self.args.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&refs)?;
        let grpc = docker(&["port", &container, "7070/tcp"])?;
        let http = docker(&["port", &container, "7080/tcp"])?;
        let pod = Pod {
            container,
            ip: ip.to_string(),
            grpc: grpc.lines().next().unwrap_or_default().to_string(),
            http: http.lines().next().unwrap_or_default().to_string(),
        };
        self.pods.insert(name.to_string(), pod.clone());
        Ok(pod)
    }

    /// `docker run` flags mounting a pod's volume at `path`: a host directory (a
    /// [`Pods::small_disk`]), else a named volume. A hostPath volume (the DaemonSet's)
    /// starts as the kubelet makes a missing one, empty and owned by root, mode 0755
    /// (`volume-nocopy`: Docker would fill it from the image, owner and all); a
    /// PersistentVolumeClaim starts writable by the image's user, as fsGroup makes it.
    fn mount(&mut self, volume: &str, path: &str) -> Vec<String> {
        if let Some(dir) = self.binds.get(volume) {
            return vec!["-v".into(), format!("{}:{path}", dir.display())];
        }
        let host_path = (self.template["volumes"].as_array().into_iter().flatten())
            .any(|v| v["hostPath"].is_object());
        let nocopy = if host_path { ",volume-nocopy" } else { "" };
        let v = self.volume(volume);
        vec![
            "--mount".into(),
            format!("type=volume,src={v},dst={path}{nocopy}"),
        ]
    }

    /// Runs the workload's init containers on a pod's volume, in order and to
    /// completion, as the kubelet does before it starts the pod's container.
    fn run_init(&mut self, volume: &str) -> anyhow::Result<()> {
        let inits = self.template["initContainers"].as_array().cloned();
        for c in inits.into_iter().flatten() {
            let mut a: Vec<String> = vec!["run".into(), "--rm".into(), "--network=none".into()];
            a.extend(hardening(&self.template, &c)?);
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                a.extend(self.mount(volume, m["mountPath"].as_str().unwrap_or_default()));
            }
            let command = strings(&c["command"]);
            if let Some((entry, _)) = command.split_first() {
                a.extend(["--entrypoint".into(), entry.clone()]);
            }
            a.push(image());
            a.extend(command.into_iter().skip(1).chain(strings(&c["args"])));
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            docker(&refs).with_context(|| format!("init container {}", c["name"]))?;
        }
        Ok(())
    }

    /// DNS names of a pod: its own (StatefulSet pods only) and the headless Service's.
    fn aliases(&self, name: &str, stable_name: bool) -> Vec<String> {
        let domain = format!("shoal.{}.svc.cluster.local", self.ns);
        let mut v = Vec::new();
        if stable_name {
            v.extend([
                name.to_string(),
                format!("{name}.shoal"),
                format!("{name}.{domain}"),
            ]);
        }
        v.extend(["shoal".to_string(), domain]);
        v
    }

    /// Removes a pod's container (its volume stays, as a PVC does).
    pub fn remove(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(p) = self.pods.remove(name) {
            docker(&["rm", "-f", &p.container])?;
        }
        Ok(())
    }

    /// `docker stop`: SIGTERM, then SIGKILL after the grace period, as the kubelet does.
    pub fn stop(&mut self, name: &str) -> anyhow::Result<Duration> {
        let p = self.pods.get(name).context("no such pod")?;
        let t = Instant::now();
        docker(&["stop", "-t", "30", &p.container])?;
        let took = t.elapsed();
        self.remove(name)?;
        Ok(took)
    }

    /// Runs a one-off container on the network (a Job's pod), to completion.
    pub fn run_job(&self, args: &[String]) -> anyhow::Result<Output> {
        let mut a: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--name".into(),
            format!("{}-job-{}", self.prefix, rand_suffix()),
            "--network".into(),
            self.net.clone(),
            "--dns-search".into(),
            format!("{}.svc.cluster.local", self.ns),
        ];
        if let Some(j) = &self.job {
            let c = &j["containers"][0];
            a.extend(hardening(j, c)?);
            if let Some(certs) = &self.certs {
                a.extend(secret_mounts(j, c, &certs.dir));
            }
            for e in c["env"].as_array().into_iter().flatten() {
                if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
                    a.extend(["-e".into(), format!("{k}={v}")]);
                }
            }
        }
        a.push(image());
        // `$(POD_NAMESPACE)` in the Job's args, as the kubelet expands it.
        a.extend(args.iter().map(|s| s.replace("$(POD_NAMESPACE)", &self.ns)));
        Ok(Command::new("docker").args(&a).output()?)
    }

    /// `kubectl exec POD -- shoal ARGS`.
    pub fn exec(&self, name: &str, args: &[&str]) -> anyhow::Result<Output> {
        let p = self.pods.get(name).context("no such pod")?;
        let mut a = vec!["exec", p.container.as_str(), "shoal"];
        a.extend_from_slice(args);
        Ok(Command::new("docker").args(&a).output()?)
    }

    /// `kubectl exec -i POD -- shoal ARGS < input`.
    pub fn exec_with_input(
        &self,
        name: &str,
        args: &[&str],
        input: &str,
    ) -> anyhow::Result<Output> {
        let p = self.pods.get(name).context("no such pod")?;
        let mut a = vec!["exec", "-i", p.container.as_str(), "shoal"];
        a.extend_from_slice(args);
        Ok(crate::run_with_input(
            Command::new("docker").args(&a),
            input.as_bytes(),
        )?)
    }

    pub fn logs(&self, name: &str) -> String {
        self.pods
            .get(name)
            .and_then(|p| {
                Command::new("docker")
                    .args(["logs", "--tail", "40", &p.container])
                    .output()
                    .ok()
            })
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }

    /// Polls `/readyz` as the kubelet does, until 200 or `timeout`.
    pub async fn wait_ready(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let p = self.pods.get(name).context("no such pod")?.clone();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = self.http_get(&p.http, "/readyz") {
                return Ok(());
            }
            if Instant::now() > deadline {
                let verbose = self
                    .http_get(&p.http, "/readyz?verbose")
                    .map(|r| r.1)
                    .unwrap_or_default();
                bail!(
                    "{name} not ready within {timeout:?}:\n{verbose}\n{}",
                    self.logs(name)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn wait_all_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        for name in self.pods.keys() {
            self.wait_ready(name, timeout).await?;
        }
        Ok(())
    }

    /// `GET PATH` on a pod's published HTTP port (`addr`): HTTPS checked against the
    /// pods' CA when they serve TLS.
    pub fn http_get(&self, addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
        match &self.certs {
            Some(c) => c.https_get(addr, path),
            None => crate::http_get(addr, path),
        }
    }

    /// A client of the "public Service": every pod's published port.
    pub fn client(&self) -> Client {
        let opts = ClientOptions {
            retry_deadline: Duration::from_secs(30),
            tls: self.certs.as_ref().map(PodCerts::client_tls),
            ..Default::default()
        };
        Client::with_options(self.pods.values().map(|p| p.grpc.clone()), opts).expect("client")
    }

    /// Status of a pod's node.
    pub async fn status(&self, name: &str) -> anyhow::Result<shoal_proto::v1::StatusResponse> {
        let p = self.pods.get(name).context("no such pod")?;
        Ok(self.client().status_of(&p.grpc).await?)
    }

    /// Addresses (published gRPC ports) of every pod.
    pub fn addrs(&self) -> Vec<String> {
        self.pods.values().map(|p| p.grpc.clone()).collect()
    }

    /// Addresses (published SQL ports) of every pod; a pod keeps its own across
    /// restarts and partitions.
    pub fn sql_addrs(&self) -> Vec<String> {
        self.pods
            .keys()
            .filter_map(|name| self.ports.get(name))
            .map(|(_, _, sql)| format!("127.0.0.1:{sql}"))
            .collect()
    }

    /// A volume that is a tmpfs of `mib` MiB mounted on the host: it keeps its data
    /// across container restarts, and fills up. Needs root.
    pub fn small_disk(&mut self, volume: &str, mib: u64) -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("{}-{volume}", self.prefix));
        std::fs::create_dir_all(&dir)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={mib}m,uid=10001,gid=10001,mode=0700"))
            .arg("tmpfs")
            .arg(&dir)
            .status()
            .context("mount")?;
        if !status.success() {
            bail!("mounting a tmpfs on {} failed (root needed)", dir.display());
        }
        self.binds.insert(volume.to_string(), dir);
        Ok(())
    }

    /// Fills a [`Pods::small_disk`] volume up (`fill: true`), or frees it again.
    pub fn fill_disk(&self, volume: &str, fill: bool) -> anyhow::Result<()> {
        let dir = self.binds.get(volume).context("not a small disk")?;
        let path = dir.join("fill");
        if !fill {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            };
        }
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        let block = vec![0u8; 1 << 20];
        // Until the disk says no more.
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        Ok(())
    }

    /// `kill -9` of the pod's process (the container stays, as a crashed pod's does).
    pub fn kill9(&self, name: &str) -> anyhow::Result<()> {
        let p = self.pods.get(name).context("no such pod")?;
        docker(&["kill", "-s", "KILL", &p.container])?;
        Ok(())
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the pod's process.
    pub fn signal(&self, name: &str, signal: &str) -> anyhow::Result<()> {
        let p = self.pods.get(name).context("no such pod")?;
        docker(&["kill", "-s", signal, &p.container])?;
        Ok(())
    }

    /// Starts a stopped or crashed pod's container again (same address, ports and
    /// volume), as the kubelet restarts a container.
    pub fn start_again(&mut self, name: &str) -> anyhow::Result<()> {
        let p = self.pods.get(name).context("no such pod")?.clone();
        docker(&["start", &p.container])?;
        // Its network namespace is new: the links it had cut are whole again.
        self.cuts.retain(|(from, _)| from != name);
        Ok(())
    }

    /// Restarts the pod's container: SIGTERM (the node drains), SIGKILL after 30 s,
    /// then started again on the same volume, address and ports.
    pub fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        let p = self.pods.get(name).context("no such pod")?.clone();
        docker(&["restart", "-t", "30", &p.container])?;
        self.cuts.retain(|(from, _)| from != name);
        Ok(())
    }

    /// Whether the pod's container is running.
    /// The anonymous memory (heap, memtables: what cannot be reclaimed) of pod
    /// `name`'s cgroup now, in bytes, as cgroup v2 or v1 counts it.
    pub fn anon_memory(&self, name: &str) -> Option<u64> {
        let p = self.pods.get(name)?;
        for (file, key) in [
            ("/sys/fs/cgroup/memory.stat", "anon"),
            ("/sys/fs/cgroup/memory/memory.stat", "rss"),
        ] {
            let Ok(stat) = docker(&["exec", &p.container, "cat", file]) else {
                continue;
            };
            let found = stat.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok())?
            });
            if found.is_some() {
                return found;
            }
        }
        None
    }

    pub fn running(&self, name: &str) -> bool {
        self.pods
            .get(name)
            .and_then(|p| docker(&["inspect", "-f", "{{.State.Running}}", &p.container]).ok())
            .is_some_and(|s| s == "true")
    }

    /// Drops (or lets through again) every packet from pod `from` to pod `to`, with a
    /// blackhole route in `from`'s network namespace: the harness still reaches both
    /// through their published ports, as clients outside a partition would. Needs root.
    pub fn cut_link(&mut self, from: &str, to: &str, cut: bool) -> anyhow::Result<()> {
        let src = self.pods.get(from).context("no such pod")?;
        let dst = self.pods.get(to).context("no such pod")?.ip.clone();
        let key = (from.to_string(), dst.clone());
        if cut == self.cuts.contains(&key) {
            return Ok(());
        }
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &src.container])?;
        let out = Command::new("nsenter")
            .args(["-t", &pid, "-n", "ip", "route"])
            .arg(if cut { "add" } else { "del" })
            .args(["blackhole", &format!("{dst}/32")])
            .output()
            .context("nsenter")?;
        if !out.status.success() {
            bail!(
                "route {} {from} -> {to}: {}",
                if cut { "add" } else { "del" },
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if cut {
            self.cuts.insert(key);
        } else {
            self.cuts.remove(&key);
        }
        Ok(())
    }

    /// Cuts (or heals) both directions between `a` and `b`.
    pub fn cut_between(&mut self, a: &str, b: &str, cut: bool) -> anyhow::Result<()> {
        self.cut_link(a, b, cut)?;
        self.cut_link(b, a, cut)
    }

    /// Heals every cut link.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        let by_ip: BTreeMap<String, String> = self
            .pods
            .iter()
            .map(|(n, p)| (p.ip.clone(), n.clone()))
            .collect();
        for (from, ip) in self.cuts.clone() {
            match by_ip.get(&ip) {
                Some(to) if self.running(&from) => self.cut_link(&from, &to.clone(), false)?,
                _ => {
                    self.cuts.remove(&(from, ip));
                }
            }
        }
        Ok(())
    }

    /// The pod whose node leads the (first) range, as its own status says.
    pub async fn leader(&self) -> Option<String> {
        let mut ids = BTreeMap::new();
        let mut leader = None;
        for name in self.pods.keys() {
            if let Ok(s) = self.status(name).await {
                ids.insert(s.node_id, name.clone());
                if let Some(r) = s.ranges.first() {
                    if r.role == "leader" {
                        leader = Some(s.node_id);
                    }
                }
            }
        }
        leader.and_then(|id| ids.get(&id).cloned())
    }

    /// Cuts a pod off the network, or puts it back (same address and names; the
    /// published ports may change, and are read again).
    pub fn partition(&mut self, name: &str, cut: bool) -> anyhow::Result<()> {
        let p = self.pods.get(name).context("no such pod")?.clone();
        if cut {
            docker(&["network", "disconnect", &self.net, &p.container])?;
            return Ok(());
        }
        let aliases = self.aliases(name, name.starts_with("shoal-"));
        let mut a = vec!["network", "connect", "--ip", p.ip.as_str()];
        for al in &aliases {
            a.push("--alias");
            a.push(al);
        }
        a.push(&self.net);
        a.push(&p.container);
        docker(&a)?;
        let grpc = docker(&["port", &p.container, "7070/tcp"])?;
        let http = docker(&["port", &p.container, "7080/tcp"])?;
        if let Some(pod) = self.pods.get_mut(name) {
            pod.grpc = grpc.lines().next().unwrap_or_default().to_string();
            pod.http = http.lines().next().unwrap_or_default().to_string();
        }
        Ok(())
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

impl Pods {
    /// After a failed test: each pod's log kept under the system's temporary
    /// directory, and its last lines printed (a CI run shows them), before the
    /// containers go.
    fn keep_logs(&self) {
        let dir = std::env::temp_dir()
            .join("shoal-pod-logs")
            .join(&self.prefix);
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        for (name, p) in &self.pods {
            let Ok(out) = Command::new("docker").args(["logs", &p.container]).output() else {
                continue;
            };
            let mut log = out.stdout;
            log.extend_from_slice(&out.stderr);
            let path = dir.join(format!("{name}.log"));
            let _ = std::fs::write(&path, &log);
            let text = String::from_utf8_lossy(&log);
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "---- pod {name}: last lines of its log (all of it in {}) ----",
                path.display()
            );
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.keep_logs();
        }
        let names: Vec<String> = self.pods.values().map(|p| p.container.clone()).collect();
        for c in names {
            let _ = docker(&["rm", "-f", &c]);
        }
        let _ = docker(&["network", "rm", &self.net]);
        for v in &self.volumes {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        for dir in self.binds.values() {
            let _ = Command::new("umount").arg(dir).status();
            let _ = std::fs::remove_dir(dir);
        }
    }
}
