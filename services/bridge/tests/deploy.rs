//! docker-compose.yml and the Kubernetes manifests name only what the binary has: its
//! subcommands, its port, settings keys it accepts, and probes it answers. (No Docker engine or
//! cluster here: the YAML is parsed and checked against the binary and the settings.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary's subcommands, from its own `--help`.
fn subcommands() -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_feishu-bridge"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let mut in_commands = false;
    let mut set = BTreeSet::new();
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                break;
            }
            if let Some(w) = line.split_whitespace().next() {
                if w != "help" {
                    set.insert(w.to_string());
                }
            }
        }
    }
    assert!(set.contains("all") && set.contains("ingress"), "{help}");
    set
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            let mut v = <Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            v.apply_merge().unwrap();
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// A `BRIDGE__...` variable the settings accept: as given when it is a literal, or, for a
/// placeholder or a secret reference, as a key that exists.
fn check_env(key: &str, value: Option<&str>, place: &str) {
    assert!(
        key.starts_with("BRIDGE__"),
        "{place}: {key} is not a settings variable"
    );
    let literal = value.filter(|v| !v.contains("${"));
    let sample = literal
        .map(str::to_string)
        .unwrap_or_else(|| sample_for(key));
    let r = bridge_runtime::Settings::load_from(None, [(key.to_string(), sample.clone())]);
    if let Err(e) = r {
        panic!("{place}: {key}={sample}: {e}");
    }
}

/// A valid value for a key whose real value is a secret or a placeholder.
fn sample_for(key: &str) -> String {
    match key {
        "BRIDGE__DATABASE__URL" => "postgres://u:p@db:5432/bridge".into(),
        "BRIDGE__BROKER__URL" => "amqp://u:p@mq:5672/%2f".into(),
        "BRIDGE__PUBLIC_BASE_URL" | "BRIDGE__FEISHU__BASE_URL" => {
            "https://bridge.example.com".into()
        }
        _ => "c2VjcmV0LXNhbXBsZS12YWx1ZS0zMi1ieXRlcy1sb25nIQ==".into(),
    }
}

fn check_probe(url_or_path: &str, place: &str) {
    assert!(
        url_or_path.ends_with("/readyz") || url_or_path.ends_with("/healthz"),
        "{place}: probe {url_or_path} is neither /readyz nor /healthz"
    );
    if url_or_path.starts_with("http") {
        assert!(
            url_or_path.contains(":8080/"),
            "{place}: probe {url_or_path} is not on port 8080"
        );
    }
}

#[test]
fn compose_names_only_what_the_binary_has() {
    let cmds = subcommands();
    let listen_port = bridge_runtime::Settings::default().http.listen.port();
    assert_eq!(listen_port, 8080);
    let mut seen = BTreeSet::new();
    for file in ["docker-compose.yml", "deploy/compose.emulator.yml"] {
        let doc = docs(&root().join(file)).remove(0);
        for (name, svc) in doc["services"].as_mapping().unwrap() {
            let name = name.as_str().unwrap();
            let place = format!("{file}: {name}");
            let image = svc["image"].as_str().unwrap_or("feishu-bridge:local");
            let bridge = image.starts_with("feishu-bridge");
            if let Some(env) = svc.get("environment").and_then(Value::as_mapping) {
                for (k, v) in env {
                    let k = k.as_str().unwrap();
                    if k.starts_with("BRIDGE__") {
                        check_env(k, v.as_str(), &place);
                    }
                }
            }
            if !bridge {
                continue;
            }
            if let Some(cmd) = svc.get("command").and_then(Value::as_sequence) {
                let sub = cmd[0].as_str().unwrap();
                assert!(
                    cmds.contains(sub),
                    "{place}: `{sub}` is not a subcommand of {cmds:?}"
                );
                seen.insert(sub.to_string());
            }
            if let Some(test) = svc["healthcheck"]["test"].as_sequence() {
                let words: Vec<&str> = test.iter().filter_map(Value::as_str).collect();
                assert_eq!(
                    &words[..3],
                    ["CMD", "/usr/local/bin/feishu-bridge", "probe"],
                    "{place}"
                );
                assert!(cmds.contains("probe"));
                check_probe(words[3], &place);
            }
            for p in svc["ports"].as_sequence().into_iter().flatten() {
                let p = p.as_str().unwrap();
                assert!(p.ends_with(&format!(":{listen_port}")), "{place}: port {p}");
            }
        }
    }
    for service in [
        "ingress",
        "directory-sync",
        "auth",
        "notifier",
        "console",
        "migrate",
    ] {
        assert!(seen.contains(service), "compose runs no `{service}`");
    }
}

#[test]
fn kubernetes_manifests_name_only_what_the_binary_has() {
    let cmds = subcommands();
    let mut seen = BTreeSet::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["deploy/k8s/base", "deploy/k8s/overlays/example"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    let mut resources = BTreeSet::new();
    for f in &files {
        for doc in docs(f) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let place = format!(
                "{}: {kind} {}",
                f.display(),
                doc["metadata"]["name"].as_str().unwrap_or("")
            );
            if kind == "Kustomization" {
                for r in doc["resources"].as_sequence().into_iter().flatten() {
                    let r = r.as_str().unwrap();
                    assert!(
                        f.parent().unwrap().join(r).exists(),
                        "{place}: resource {r} missing"
                    );
                }
                continue;
            }
            resources.insert(kind.clone());
            if kind == "ConfigMap" {
                for (k, v) in doc["data"].as_mapping().into_iter().flatten() {
                    check_env(k.as_str().unwrap(), v.as_str(), &place);
                }
            }
            let pod = match kind.as_str() {
                "Deployment" | "Job" => &doc["spec"]["template"]["spec"],
                _ => continue,
            };
            for c in pod["containers"].as_sequence().unwrap() {
                let sub = c["args"][0].as_str().unwrap();
                assert!(
                    cmds.contains(sub),
                    "{place}: `{sub}` is not a subcommand of {cmds:?}"
                );
                seen.insert(sub.to_string());
                for e in c["env"].as_sequence().into_iter().flatten() {
                    check_env(e["name"].as_str().unwrap(), e["value"].as_str(), &place);
                }
                for p in c["ports"].as_sequence().into_iter().flatten() {
                    assert_eq!(p["containerPort"].as_u64(), Some(8080), "{place}");
                }
                for probe in ["readinessProbe", "livenessProbe"] {
                    if kind == "Deployment" {
                        let path = c[probe]["httpGet"]["path"]
                            .as_str()
                            .unwrap_or_else(|| panic!("{place}: no {probe}"));
                        check_probe(path, &place);
                        assert!(
                            c["resources"]["requests"].is_mapping(),
                            "{place}: no resource requests"
                        );
                    }
                }
            }
        }
    }
    for service in [
        "ingress",
        "directory-sync",
        "auth",
        "notifier",
        "console",
        "migrate",
    ] {
        assert!(seen.contains(service), "the manifests run no `{service}`");
    }
    for kind in [
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "Ingress",
        "Service",
    ] {
        assert!(resources.contains(kind), "no {kind}");
    }
}

/// A one-shot HTTP server answering `status`; returns its address.
fn answer_once(status: &'static str) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes());
        }
    });
    addr
}

#[test]
fn the_probe_health_check_follows_the_status() {
    let probe = |addr: std::net::SocketAddr| {
        std::process::Command::new(env!("CARGO_BIN_EXE_feishu-bridge"))
            .args(["probe", "/readyz", "--addr", &addr.to_string()])
            .output()
            .unwrap()
    };
    assert!(probe(answer_once("200 OK")).status.success());
    let down = probe(answer_once("503 Service Unavailable"));
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("503"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(!probe(closed).status.success());
}

/// The broker definitions docker compose loads are the topology the services declare
/// (`feishu-bridge rabbitmq-definitions`), not a copy kept by hand.
#[test]
fn rabbitmq_definitions_are_the_topology() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_feishu-bridge"))
        .arg("rabbitmq-definitions")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = root().join("deploy/rabbitmq/definitions.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in ["exchanges", "queues", "bindings"] {
        assert_eq!(
            committed[key],
            generated[key],
            "{key} in {} differ from `feishu-bridge rabbitmq-definitions`; regenerate them",
            path.display()
        );
    }
    let queues = generated["queues"].as_array().unwrap();
    assert!(queues
        .iter()
        .all(|q| q["arguments"]["x-queue-type"] == "quorum"));
    assert!(generated["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "auth.events"));
}
