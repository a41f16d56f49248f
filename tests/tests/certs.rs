//! `shoal cert` (issue 19, item 3) through the real binary, its certificates checked
//! with a real X.509 implementation, OpenSSL's command line: a CA, a node certificate
//! valid for the pod names it was given and for serving and calling peers, a client
//! certificate for its user alone, keys that match and that only their owner reads,
//! the listing, and bad input refused with nothing written.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn shoal(args: &[&str], dir: &Path, ca_key: &Path) -> Output {
    Command::new(shoal_tests::shoal_bin())
        .args(args)
        .env("SHOAL_CERTS_DIR", dir)
        .env("SHOAL_CA_KEY", ca_key)
        .env_remove("SHOAL_FORMAT")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running shoal")
}

fn ok(args: &[&str], dir: &Path, ca_key: &Path) -> String {
    let out = shoal(args, dir, ca_key);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `openssl ARGS`: its exit code and output (stdout then stderr).
fn openssl(args: &[&str]) -> (i32, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl");
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout) + &text(&out.stderr),
    )
}

fn verify(dir: &Path, purpose: &str, cert: &str) -> (i32, String) {
    openssl(&[
        "verify",
        "-CAfile",
        &dir.join("ca.crt").display().to_string(),
        "-purpose",
        purpose,
        &dir.join(cert).display().to_string(),
    ])
}

fn public_key_of_cert(path: &Path) -> String {
    let (code, out) = openssl(&[
        "x509",
        "-in",
        &path.display().to_string(),
        "-noout",
        "-pubkey",
    ]);
    assert_eq!(code, 0, "{out}");
    out
}

fn public_key_of_key(path: &Path) -> String {
    let (code, out) = openssl(&["pkey", "-in", &path.display().to_string(), "-pubout"]);
    assert_eq!(code, 0, "{out}");
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The files of a directory, with their contents.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|it| {
            it.map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().to_string(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

const HOSTS: &[&str] = &[
    "shoal-0.shoal.default.svc.cluster.local",
    "*.shoal.default.svc.cluster.local",
    "shoal-public",
    "localhost",
    "127.0.0.1",
];

#[test]
fn a_ca_signs_node_and_client_certificates_that_openssl_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let ca_key = tmp.path().join("safe").join("ca.key");
    ok(&["cert", "create-ca"], &dir, &ca_key);
    let mut node = vec!["cert", "create-node"];
    node.extend(HOSTS);
    ok(&node, &dir, &ca_key);
    ok(&["cert", "create-client", "root"], &dir, &ca_key);

    // The CA's key is where --ca-key says, not among what pods mount.
    let mut names: Vec<String> = snapshot(&dir).into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ca.crt",
            "client.root.crt",
            "client.root.key",
            "node.crt",
            "node.key"
        ]
    );
    for key in [
        ca_key.clone(),
        dir.join("node.key"),
        dir.join("client.root.key"),
    ] {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    for (cert, key) in [
        ("node.crt", "node.key"),
        ("client.root.crt", "client.root.key"),
    ] {
        assert_eq!(
            public_key_of_cert(&dir.join(cert)),
            public_key_of_key(&dir.join(key)),
            "{key} is not the key of {cert}"
        );
    }
    assert_eq!(
        public_key_of_cert(&dir.join("ca.crt")),
        public_key_of_key(&ca_key)
    );

    // The node's certificate serves and calls peers; the client's only calls.
    for purpose in ["sslserver", "sslclient"] {
        let (code, out) = verify(&dir, purpose, "node.crt");
        assert_eq!(code, 0, "node.crt as {purpose}: {out}");
    }
    let (code, out) = verify(&dir, "sslclient", "client.root.crt");
    assert_eq!(code, 0, "client.root.crt: {out}");
    let (code, _) = verify(&dir, "sslserver", "client.root.crt");
    assert_ne!(code, 0, "a client certificate must not serve");

    // The names it was given, and only those, as a TLS client checks them.
    let node_crt = dir.join("node.crt").display().to_string();
    for (host, matches) in [
        ("shoal-0.shoal.default.svc.cluster.local", true),
        ("shoal-2.shoal.default.svc.cluster.local", true),
        ("shoal-public", true),
        ("localhost", true),
        ("shoal-0.other.default.svc.cluster.local", false),
        ("evil.example", false),
    ] {
        let (_, out) = openssl(&["x509", "-in", &node_crt, "-noout", "-checkhost", host]);
        assert_eq!(!out.contains("does NOT match"), matches, "{host}: {out}");
    }
    let (_, out) = openssl(&["x509", "-in", &node_crt, "-noout", "-checkip", "127.0.0.1"]);
    assert!(!out.contains("does NOT match"), "{out}");
    let (_, out) = openssl(&["x509", "-in", &node_crt, "-noout", "-subject"]);
    assert!(
        out.contains("CN=node") || out.contains("CN = node"),
        "{out}"
    );
    let client_crt = dir.join("client.root.crt").display().to_string();
    let (_, out) = openssl(&["x509", "-in", &client_crt, "-noout", "-subject"]);
    assert!(
        out.contains("CN=root") || out.contains("CN = root"),
        "{out}"
    );

    // A certificate of another CA does not verify against this one.
    let other = tmp.path().join("other");
    let other_key = tmp.path().join("other.key");
    ok(&["cert", "create-ca"], &other, &other_key);
    ok(&["cert", "create-client", "root"], &other, &other_key);
    let (code, _) = openssl(&[
        "verify",
        "-CAfile",
        &dir.join("ca.crt").display().to_string(),
        &other.join("client.root.crt").display().to_string(),
    ]);
    assert_ne!(code, 0, "another CA's certificate verified");

    // The listing: plain, and JSON for programs.
    let plain = ok(&["cert", "ls"], &dir, &ca_key);
    let lines: Vec<&str> = plain.lines().collect();
    assert!(lines[0].starts_with("USAGE"), "{plain}");
    assert!(
        lines[1].starts_with("ca ") && lines[1].contains("shoal CA"),
        "{plain}"
    );
    assert!(
        lines[2].starts_with("node ")
            && lines[2].contains("*.shoal.default.svc.cluster.local")
            && lines[2].contains("127.0.0.1"),
        "{plain}"
    );
    assert!(
        lines[3].starts_with("client ") && lines[3].contains("root"),
        "{plain}"
    );
    let json = ok(&["cert", "ls", "--format", "json"], &dir, &ca_key);
    let rows: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{json}");
    let now = chrono::Utc::now();
    for r in &rows {
        assert_eq!(r["expired"], false, "{r}");
        let expires = chrono::DateTime::parse_from_rfc3339(r["expires"].as_str().unwrap()).unwrap();
        let years = (expires.with_timezone(&chrono::Utc) - now).num_days() / 365;
        let want = if r["usage"] == "ca" { 10 } else { 5 };
        assert!((want - 1..=want).contains(&years), "{r}: {years} years");
    }
    assert_eq!(rows[1]["hosts"].as_array().unwrap().len(), HOSTS.len());

    // --overwrite makes a new key and certificate, which verify as the old did.
    let before = std::fs::read(dir.join("node.key")).unwrap();
    let mut again = node.clone();
    again.push("--overwrite");
    ok(&again, &dir, &ca_key);
    assert_ne!(std::fs::read(dir.join("node.key")).unwrap(), before);
    assert_eq!(verify(&dir, "sslserver", "node.crt").0, 0);
}

#[test]
fn a_certificate_never_outlives_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ca_key) = (tmp.path().join("certs"), tmp.path().join("ca.key"));
    ok(&["cert", "create-ca", "--lifetime", "2d"], &dir, &ca_key);
    let out = shoal(&["cert", "create-client", "app"], &dir, &ca_key);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("CA's own expiry"),
        "{}",
        text(&out.stderr)
    );
    let json = ok(&["cert", "ls", "--format", "json"], &dir, &ca_key);
    let expiries: Vec<String> = json
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["expires"].to_string())
        .collect();
    assert_eq!(expiries.len(), 2, "{json}");
    assert_eq!(
        expiries[0], expiries[1],
        "the client's expiry is not the CA's"
    );
    assert_eq!(verify(&dir, "sslclient", "client.app.crt").0, 0);
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ca_key) = (tmp.path().join("certs"), tmp.path().join("ca.key"));

    // No CA yet: nothing to sign with.
    let out = shoal(&["cert", "create-node", "localhost"], &dir, &ca_key);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("create-ca"),
        "{}",
        text(&out.stderr)
    );
    assert!(snapshot(&dir).is_empty());

    ok(&["cert", "create-ca"], &dir, &ca_key);
    let ca_before = (snapshot(&dir), std::fs::read(&ca_key).unwrap());

    let cases: &[(&[&str], i32, &str)] = &[
        // A second CA over the first: every certificate it signed would stop verifying.
        (&["cert", "create-ca"], 1, "--overwrite"),
        (
            &["cert", "create-node", "bad host"],
            1,
            "neither an IP address nor a DNS name",
        ),
        (
            &["cert", "create-node", "a..b"],
            1,
            "neither an IP address nor a DNS name",
        ),
        (&["cert", "create-node"], 2, "HOSTS"),
        (&["cert", "create-client", "Root"], 2, "not a user name"),
        (&["cert", "create-client", "../etc"], 2, "not a user name"),
        (&["cert", "create-client", "node"], 2, "nodes' certificates"),
        (
            &["cert", "create-client", "app", "--lifetime", "1s"],
            2,
            "a minute or more",
        ),
        (
            &["cert", "create-client", "app", "--lifetime", "soon"],
            2,
            "not a duration",
        ),
        (&["cert", "create-nodes", "x"], 2, "unrecognized subcommand"),
    ];
    for (args, code, says) in cases {
        let out = shoal(args, &dir, &ca_key);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            (snapshot(&dir), std::fs::read(&ca_key).unwrap()),
            ca_before,
            "{args:?} changed the files"
        );
    }

    // Another CA's key does not sign for this CA.
    let other_key = tmp.path().join("other.key");
    ok(
        &["cert", "create-ca"],
        &tmp.path().join("other"),
        &other_key,
    );
    let out = shoal(&["cert", "create-client", "app"], &dir, &other_key);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the key is not the CA's"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(snapshot(&dir), ca_before.0);

    // A file that is not a certificate is named by the listing, which fails.
    std::fs::write(dir.join("junk.crt"), "not a certificate").unwrap();
    let out = shoal(&["cert", "ls"], &dir, &ca_key);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("junk.crt"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("shoal CA"),
        "the good ones are still listed"
    );
}

#[test]
fn a_rotated_ca_signs_anew_while_what_the_old_one_signed_stays_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ca_key) = (tmp.path().join("certs"), tmp.path().join("ca.key"));
    ok(&["cert", "create-ca"], &dir, &ca_key);
    ok(&["cert", "create-node", "localhost"], &dir, &ca_key);
    let old_ca = tmp.path().join("old-ca.crt");
    std::fs::copy(dir.join("ca.crt"), &old_ca).unwrap();

    // Rotating needs a CA to rotate from, and is not --overwrite.
    let empty = tmp.path().join("empty");
    let out = shoal(
        &["cert", "create-ca", "--rotate"],
        &empty,
        &tmp.path().join("k"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(snapshot(&empty).is_empty());
    let out = shoal(
        &["cert", "create-ca", "--rotate", "--overwrite"],
        &dir,
        &ca_key,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    ok(&["cert", "create-ca", "--rotate"], &dir, &ca_key);
    let json = ok(&["cert", "ls", "--format", "json"], &dir, &ca_key);
    let cas = json
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["usage"] == "ca")
        .count();
    assert_eq!(cas, 2, "ca.crt holds the new CA and the old: {json}");
    // The node's certificate, signed by the old CA, still verifies.
    assert_eq!(verify(&dir, "sslserver", "node.crt").0, 0);
    // A new one is signed by the new CA: it verifies against ca.crt, not the old CA.
    ok(&["cert", "create-client", "app"], &dir, &ca_key);
    assert_eq!(verify(&dir, "sslclient", "client.app.crt").0, 0);
    let (code, _) = openssl(&[
        "verify",
        "-CAfile",
        &old_ca.display().to_string(),
        &dir.join("client.app.crt").display().to_string(),
    ]);
    assert_ne!(code, 0, "the new certificate was signed by the old CA");
    // The node's certificate issued again comes from the new CA too.
    ok(
        &["cert", "create-node", "localhost", "--overwrite"],
        &dir,
        &ca_key,
    );
    let (code, _) = openssl(&[
        "verify",
        "-CAfile",
        &old_ca.display().to_string(),
        &dir.join("node.crt").display().to_string(),
    ]);
    assert_ne!(code, 0);
    assert_eq!(verify(&dir, "sslserver", "node.crt").0, 0);
}
