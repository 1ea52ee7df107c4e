//! The Kubernetes manifests as a cluster would receive them: the whole
//! fleet (`deploy/kubernetes`) and each role's overlay rendered by
//! `kubectl kustomize`, every rendered object checked against the API's
//! own schemas by kubernetes-validate in strict mode (an unknown or
//! misspelt field fails), each workload's cascade.toml read the way the
//! pod reads it (the ConfigMap behind its `--config` path, the `CASCADE_*`
//! variables of its container) and parsed by cascade's own loader, and the
//! probes, the stop sequence and the routing between the tiers checked
//! against that configuration. The checks return their findings instead of
//! panicking, so the mutation tests at the end can show each one failing
//! on a manifest broken on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::process::Command;

use cascade::config::load::from_text;
use cascade::config::{Config, OriginUrl};
use serde::Deserialize;
use serde_yaml::Value;

use super::{deploy, run_with_timeout, temp_dir, tool, TOOL_TIMEOUT};

/// Kubernetes releases whose API schemas every rendered object must meet:
/// the oldest release the manifests claim to support and the newest that
/// the pinned kubernetes-validate (scripts/install-test-deps.sh) ships.
const KUBE_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Custom resources: kubernetes-validate has no schema for them (it says
/// so and passes them), so they are checked by hand below instead.
const CUSTOM_KINDS: [&str; 1] = ["PodMonitor"];

const WORKLOAD_KINDS: [&str; 3] = ["DaemonSet", "StatefulSet", "Deployment"];

/// What the kubelet's grace period must hold beyond the preStop hook and
/// `server.drain_timeout_ms`: cascade's final close (up to 2 s) plus slack
/// for the kubelet and the container runtime.
const CLOSE_MARGIN_S: u64 = 5;

/// A stream key the routing checks ask each configuration about, so that
/// an `[[edge.app]]` override of the routing would be noticed.
const SAMPLE_KEY: &str = "live/test";

/// `kubectl kustomize` of a directory under deploy/.
fn render(rel: &str) -> String {
    let mut cmd = Command::new(tool("kubectl"));
    cmd.arg("kustomize").arg(deploy(rel));
    let out = run_with_timeout("kubectl kustomize", cmd, TOOL_TIMEOUT);
    assert!(
        out.success(),
        "kubectl kustomize deploy/{rel}: {}\n{}{}",
        out.describe(),
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// The documents of a multi-document YAML text.
fn objects(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn kind(o: &Value) -> &str {
    text(&o["kind"])
}

fn name(o: &Value) -> &str {
    text(&o["metadata"]["name"])
}

/// `Kind/name`, as the problems name objects.
fn id(o: &Value) -> String {
    format!("{}/{}", kind(o), name(o))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

/// A number that YAML may hold as an integer or a string ("4").
fn number(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

// ------------------------------------------------------------------ schema

/// What kubernetes-validate finds wrong with `yaml` under every release of
/// [`KUBE_VERSIONS`], strict mode. An object it did not validate (it only
/// warns about a kind or apiVersion it has no schema for: a misspelt kind,
/// or an API removed in that release) is a problem too, unless its kind is
/// one of [`CUSTOM_KINDS`].
fn schema_problems(yaml: &str) -> Vec<String> {
    let dir = temp_dir("cascade-k8s-schema-");
    let file = dir.path().join("rendered.yaml");
    fs::write(&file, yaml).expect("write rendered manifests");
    let objs = objects(yaml);
    let mut problems = Vec::new();
    for version in KUBE_VERSIONS {
        let minor = version.rsplit_once('.').map_or(version, |(mm, _)| mm);
        let mut cmd = Command::new(tool("python3"));
        cmd.args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            version,
        ])
        .arg(&file);
        let out = run_with_timeout("kubernetes-validate", cmd, TOOL_TIMEOUT);
        assert!(
            !out.stderr.contains("No module named"),
            "kubernetes-validate is not installed: run scripts/install-test-deps.sh\n{}",
            out.stderr
        );
        let before = problems.len();
        let mut passed = BTreeSet::new();
        for line in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let verdict = line
                .split_once(" passed for resource ")
                .and_then(|(_, rest)| rest.split_once(" against version "));
            match verdict {
                Some((res, against)) if line.starts_with("INFO ") && against == minor => {
                    passed.insert(res.to_string());
                }
                _ if line.starts_with("WARN ")
                    && CUSTOM_KINDS
                        .iter()
                        .any(|k| line.contains(&format!("for kind {k} with"))) => {}
                _ => problems.push(format!("{version}: {line}")),
            }
        }
        for o in objs.iter().filter(|o| !CUSTOM_KINDS.contains(&kind(o))) {
            let res = format!("{}/{}", kind(o).to_lowercase(), name(o));
            if !passed.contains(&res) {
                problems.push(format!("{version}: {} was not validated", id(o)));
            }
        }
        if !out.success() && problems.len() == before {
            problems.push(format!(
                "{version}: kubernetes-validate {}\n{}{}",
                out.describe(),
                out.stdout,
                out.stderr
            ));
        }
    }
    problems
}

// ------------------------------------------------------------- workloads

fn workloads(objs: &[Value]) -> Vec<&Value> {
    objs.iter()
        .filter(|o| WORKLOAD_KINDS.contains(&kind(o)))
        .collect()
}

fn pod_spec(w: &Value) -> &Value {
    &w["spec"]["template"]["spec"]
}

/// The role a workload's pods say they have.
fn role(w: &Value) -> &str {
    text(&w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_mapping()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &labels[k] == v))
}

/// Every `CASCADE_SECTION_KEY` variable cascade reads.
fn known_env_vars() -> BTreeSet<String> {
    let defaults = toml::Value::try_from(Config::default()).expect("defaults serialize");
    let mut vars = BTreeSet::new();
    for (section, keys) in defaults.as_table().expect("a table") {
        if let Some(keys) = keys.as_table() {
            for key in keys.keys() {
                vars.insert(format!("CASCADE_{section}_{key}").to_uppercase());
            }
        }
    }
    vars
}

/// The configuration a workload's container runs with: the ConfigMap
/// entry behind its `--config` path, with its `CASCADE_*` variables laid
/// over it, parsed by cascade's loader. Variables filled from a Secret get
/// a stand-in value.
fn workload_config(objs: &[Value], w: &Value) -> Result<Config, Vec<String>> {
    let spec = pod_spec(w);
    let c = &spec["containers"][0];
    let args: Vec<&str> = seq(&c["args"]).iter().map(text).collect();
    let path = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1))
        .ok_or_else(|| vec![format!("no `--config FILE` in args {args:?}")])?;
    let (dir, file) = path
        .rsplit_once('/')
        .ok_or_else(|| vec![format!("--config {path}: not an absolute path")])?;
    let volume = seq(&c["volumeMounts"])
        .iter()
        .find(|m| text(&m["mountPath"]).trim_end_matches('/') == dir)
        .map(|m| text(&m["name"]))
        .ok_or_else(|| vec![format!("no volume mounted at {dir} for --config {path}")])?;
    let map_name = seq(&spec["volumes"])
        .iter()
        .find(|v| text(&v["name"]) == volume)
        .map(|v| text(&v["configMap"]["name"]))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| vec![format!("volume {volume} is not a ConfigMap")])?;
    let config_map = objs
        .iter()
        .find(|o| kind(o) == "ConfigMap" && name(o) == map_name)
        .ok_or_else(|| vec![format!("ConfigMap {map_name} is not in the manifests")])?;
    let toml_text = config_map["data"][file]
        .as_str()
        .ok_or_else(|| vec![format!("ConfigMap {map_name} has no {file}")])?;

    let known = known_env_vars();
    let mut env = Vec::new();
    let mut errs = Vec::new();
    for var in seq(&c["env"]) {
        let var_name = text(&var["name"]);
        if !var_name.starts_with("CASCADE_") {
            continue;
        }
        // cascade ignores a variable that names no key: a typo would leave
        // the setting (the API token, say) silently at its default.
        if !known.contains(var_name) {
            errs.push(format!("env {var_name} names no configuration key"));
        }
        let value = match var["value"].as_str() {
            Some(v) => v.to_string(),
            None => "from-a-secret".to_string(),
        };
        env.push((var_name.to_string(), value));
    }
    match from_text(toml_text, &env) {
        Ok(config) if errs.is_empty() => Ok(config),
        Ok(_) => Err(errs),
        Err(config_errs) => {
            errs.extend(
                config_errs
                    .iter()
                    .map(|e| format!("{map_name} {file}: {e}")),
            );
            Err(errs)
        }
    }
}

/// The port a listen address binds, if pods can be reached on it (not on
/// loopback: the kubelet probes the pod's address).
fn reachable_port(listen: &str) -> Result<u16, String> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("{listen:?} is not an address"))?;
    if addr.ip().is_loopback() {
        return Err(format!("{listen} is on loopback"));
    }
    Ok(addr.port())
}

/// A probe's port (a number or a container port's name) as a number.
fn probe_port(container: &Value, port: &Value) -> Option<u64> {
    port.as_u64().or_else(|| {
        seq(&container["ports"])
            .iter()
            .find(|p| p["name"] == *port)
            .and_then(|p| p["containerPort"].as_u64())
    })
}

/// Seconds the preStop hook waits, if it is a plain wait: `sleep N` run in
/// the container, or the kubelet's own `sleep` action.
fn pre_stop_seconds(container: &Value) -> Option<u64> {
    let hook = &container["lifecycle"]["preStop"];
    if let Some(s) = number(&hook["sleep"]["seconds"]) {
        return Some(s);
    }
    match seq(&hook["exec"]["command"]) {
        [cmd, n] if text(cmd).rsplit('/').next() == Some("sleep") => number(n),
        _ => None,
    }
}

/// Everything wrong with one workload's pod, against its own cascade.toml.
fn pod_problems(objs: &[Value], w: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let spec = pod_spec(w);
    let labels = &w["spec"]["template"]["metadata"]["labels"];
    if !["origin", "mid", "edge"].contains(&role(w)) {
        out.push(format!(
            "label app.kubernetes.io/component is {:?}, not origin, mid or edge",
            role(w)
        ));
    }
    if !selects(&w["spec"]["selector"]["matchLabels"], labels) {
        out.push("the selector does not match the pod template's labels".into());
    }
    let containers = seq(&spec["containers"]);
    if containers.len() != 1 || text(&containers[0]["name"]) != "cascade" {
        out.push("one container, named cascade, expected".into());
        return out;
    }
    let c = &containers[0];
    if text(&c["image"]).is_empty() {
        out.push("no image".into());
    }
    let args: Vec<&str> = seq(&c["args"]).iter().map(text).collect();
    for flag in ["--listen", "--http", "--origin", "--workers", "--io-driver"] {
        if args.contains(&flag) {
            out.push(format!("{flag} in args overrides the ConfigMap"));
        }
    }
    let config = match workload_config(objs, w) {
        Ok(config) => config,
        Err(errs) => {
            out.extend(errs);
            return out;
        }
    };

    // Ports: the container declares what cascade listens on.
    let http = reachable_port(&config.http.listen).map_err(|e| format!("http.listen: {e}"));
    let rtmp = reachable_port(&config.server.listen).map_err(|e| format!("server.listen: {e}"));
    let declared: BTreeSet<u64> = seq(&c["ports"])
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    for port in [&http, &rtmp] {
        match port {
            Ok(p) if !declared.contains(&u64::from(*p)) => {
                out.push(format!("port {p} is not among the container's ports"));
            }
            Ok(_) => {}
            Err(e) => out.push(e.clone()),
        }
    }
    for p in seq(&c["ports"]) {
        if let Some(host) = p["hostPort"].as_u64() {
            if Some(host) != p["containerPort"].as_u64() {
                out.push(format!("hostPort {host} differs from its containerPort"));
            }
        }
    }

    // Probes: readiness follows the drain, liveness only the process.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        if text(&get["path"]) != path {
            out.push(format!("{probe} asks {:?}, not {path}", text(&get["path"])));
        }
        if let Ok(h) = http {
            if probe_port(c, &get["port"]) != Some(u64::from(h)) {
                out.push(format!("{probe} port is not http.listen's {h}"));
            }
        }
    }

    // The stop sequence: preStop waits, SIGTERM drains, the kubelet waits
    // for both and for the close.
    let drain_ms = config.server.drain_timeout_ms;
    match pre_stop_seconds(c) {
        None => out.push("no preStop hook that waits (sleep) before SIGTERM".into()),
        Some(s) if s < 3 => out.push(format!(
            "preStop sleeps {s} s: too short for endpoints to follow"
        )),
        Some(pre_stop) => match number(&spec["terminationGracePeriodSeconds"]) {
            None => out.push("no terminationGracePeriodSeconds".into()),
            Some(grace) if grace * 1000 < drain_ms + (pre_stop + CLOSE_MARGIN_S) * 1000 => {
                out.push(format!(
                    "terminationGracePeriodSeconds {grace} < preStop {pre_stop} s + \
                     server.drain_timeout_ms {drain_ms} ms + {CLOSE_MARGIN_S} s to close"
                ));
            }
            Some(_) => {}
        },
    }

    // Guaranteed QoS with whole CPUs, so the static CPU manager pins them.
    let res = &c["resources"];
    for what in ["cpu", "memory"] {
        if res["limits"][what].is_null() || res["requests"][what] != res["limits"][what] {
            out.push(format!("resources: {what} requests must equal limits"));
        }
    }
    if !number(&res["limits"]["cpu"]).is_some_and(|n| n > 0) {
        out.push(format!(
            "resources: whole CPUs, not {:?}",
            res["limits"]["cpu"]
        ));
    }
    if c["securityContext"]["allowPrivilegeEscalation"].as_bool() != Some(false) {
        out.push("allowPrivilegeEscalation must be false".into());
    }
    if spec["securityContext"]["runAsNonRoot"].as_bool() != Some(true) {
        out.push("runAsNonRoot must be true".into());
    }
    out
}

/// The workload of a role, with its configuration.
fn tier<'a>(objs: &'a [Value], role_name: &str) -> Result<(&'a Value, Config), String> {
    let found: Vec<&Value> = workloads(objs)
        .into_iter()
        .filter(|w| role(w) == role_name)
        .collect();
    let [w] = found.as_slice() else {
        return Err(format!("{} workloads of role {role_name}", found.len()));
    };
    let config = workload_config(objs, w).map_err(|e| format!("{}: {}", id(w), e.join("; ")))?;
    Ok((w, config))
}

/// Host names the tier below must list for a StatefulSet: one per replica,
/// `POD.SERVICE.NAMESPACE.svc`, through a headless Service that selects
/// the pods (only a headless Service gives each pod its own name).
fn pod_hosts(objs: &[Value], sts: &Value) -> Result<BTreeSet<String>, String> {
    if kind(sts) != "StatefulSet" {
        return Err(format!(
            "{}: a StatefulSet gives each pod a stable name to hash over",
            id(sts)
        ));
    }
    let svc_name = text(&sts["spec"]["serviceName"]);
    let svc = objs
        .iter()
        .find(|o| kind(o) == "Service" && name(o) == svc_name)
        .ok_or_else(|| format!("{}: no Service {svc_name:?}", id(sts)))?;
    if text(&svc["spec"]["clusterIP"]) != "None" {
        return Err(format!("{}: not headless (clusterIP: None)", id(svc)));
    }
    if !selects(
        &svc["spec"]["selector"],
        &sts["spec"]["template"]["metadata"]["labels"],
    ) {
        return Err(format!("{} does not select {}'s pods", id(svc), id(sts)));
    }
    let ns = text(&sts["metadata"]["namespace"]);
    let replicas = number(&sts["spec"]["replicas"]).unwrap_or(1);
    Ok((0..replicas)
        .map(|i| format!("{}-{i}.{svc_name}.{ns}.svc", name(sts)))
        .collect())
}

/// Whether `config` routes by hash to exactly the pods of `upstream`
/// (on the port `upstream_config` listens on) and forwards publishes.
fn routes_to(
    objs: &[Value],
    config: &Config,
    upstream: &Value,
    upstream_config: &Config,
) -> Vec<String> {
    let mut out = Vec::new();
    let edge = config.edge.for_key(SAMPLE_KEY);
    if edge.mode != "hash" {
        out.push(format!("edge.mode is {:?}, not \"hash\"", edge.mode));
    }
    if !edge.forward_publish {
        out.push("edge.forward_publish is off".into());
    }
    let want = match pod_hosts(objs, upstream) {
        Ok(hosts) => hosts,
        Err(e) => return vec![e],
    };
    let port = reachable_port(&upstream_config.server.listen).ok();
    let mut got = BTreeSet::new();
    for url in &edge.origins {
        match OriginUrl::parse(url) {
            Ok(o) => {
                if Some(o.port) != port {
                    out.push(format!("{url}: {} listens on {port:?}", id(upstream)));
                }
                got.insert(o.host.trim_end_matches(".cluster.local").to_string());
            }
            Err(e) => out.push(e),
        }
    }
    if got != want || got.len() != edge.origins.len() {
        out.push(format!(
            "edge.origins {:?} must name each pod of {} once: {want:?}",
            edge.origins,
            id(upstream)
        ));
    }
    out
}

/// The tiers fit together: origins pull from nobody, the mid tier hashes
/// over the origin pods, the edges over the mid pods, and a publish on an
/// edge is forwarded up both steps.
fn routing_problems(objs: &[Value]) -> Vec<String> {
    let tiers: Result<Vec<_>, String> = ["origin", "mid", "edge"]
        .iter()
        .map(|r| tier(objs, r))
        .collect();
    let [(origin, origin_cfg), (mid, mid_cfg), (edge, edge_cfg)] = match tiers {
        Ok(t) => <[_; 3]>::try_from(t).unwrap_or_else(|_| unreachable!()),
        Err(e) => return vec![e],
    };
    let mut out = Vec::new();
    if !origin_cfg.edge.for_key(SAMPLE_KEY).origins.is_empty() {
        out.push(format!("{}: an origin pulls from nobody", id(origin)));
    }
    out.extend(
        routes_to(objs, &mid_cfg, origin, &origin_cfg)
            .into_iter()
            .map(|p| format!("{} (mid): {p}", id(mid))),
    );
    out.extend(
        routes_to(objs, &edge_cfg, mid, &mid_cfg)
            .into_iter()
            .map(|p| format!("{} (edge): {p}", id(edge))),
    );
    let spec = pod_spec(edge);
    if kind(edge) != "DaemonSet" || spec["hostNetwork"].as_bool() != Some(true) {
        out.push(format!(
            "{}: edges are a DaemonSet on the host's network",
            id(edge)
        ));
    }
    // Without this a host-network pod resolves with the node's resolver,
    // which knows no cluster names: every pull would fail its lookup.
    if text(&spec["dnsPolicy"]) != "ClusterFirstWithHostNet" {
        out.push(format!(
            "{}: dnsPolicy must be ClusterFirstWithHostNet to resolve the mid tier",
            id(edge)
        ));
    }
    out
}

/// The PodMonitor scrapes every workload's pods on a port they have.
fn monitor_problems(objs: &[Value]) -> Vec<String> {
    let monitors: Vec<&Value> = objs.iter().filter(|o| kind(o) == "PodMonitor").collect();
    let [pm] = monitors.as_slice() else {
        return vec![format!("{} PodMonitors, one expected", monitors.len())];
    };
    let mut out = Vec::new();
    if text(&pm["apiVersion"]) != "monitoring.coreos.com/v1" {
        out.push(format!("{}: apiVersion", id(pm)));
    }
    let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
    if text(&endpoint["path"]) != "/metrics" {
        out.push(format!("{}: path is not /metrics", id(pm)));
    }
    for w in workloads(objs) {
        if !selects(
            &pm["spec"]["selector"]["matchLabels"],
            &w["spec"]["template"]["metadata"]["labels"],
        ) {
            out.push(format!("{} does not select {}", id(pm), id(w)));
        }
        let has_port = seq(&pod_spec(w)["containers"][0]["ports"])
            .iter()
            .any(|p| p["name"] == endpoint["port"]);
        if !has_port {
            out.push(format!(
                "{}: {} has no port {:?}",
                id(pm),
                id(w),
                endpoint["port"]
            ));
        }
    }
    out
}

/// Every check on the rendered fleet but the schemas.
fn fleet_problems(objs: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let loads = workloads(objs);
    if loads.len() != 3 {
        out.push(format!("{} workloads, one per role expected", loads.len()));
    }
    for w in loads {
        out.extend(
            pod_problems(objs, w)
                .into_iter()
                .map(|p| format!("{}: {p}", id(w))),
        );
    }
    out.extend(routing_problems(objs));
    out.extend(monitor_problems(objs));
    out
}

// ------------------------------------------------------------------ tests

#[test]
fn kustomize_renders_the_fleet_as_its_three_role_overlays() {
    let fleet = objects(&render("kubernetes"));
    let by_id: BTreeMap<String, &Value> = fleet.iter().map(|o| (id(o), o)).collect();
    assert_eq!(by_id.len(), fleet.len(), "an object twice in the fleet");
    let mut from_overlays = BTreeSet::new();
    for role_name in ["origin", "mid", "edge"] {
        let objs = objects(&render(&format!("kubernetes/overlays/{role_name}")));
        let loads = workloads(&objs);
        assert_eq!(loads.len(), 1, "{role_name}: one workload");
        assert_eq!(role(loads[0]), role_name, "{role_name}: its pods' role");
        assert!(
            objs.iter().any(|o| kind(o) == "ConfigMap"),
            "{role_name}: its own cascade.toml"
        );
        for o in &objs {
            assert_eq!(
                text(&o["metadata"]["namespace"]),
                "cascade",
                "{role_name}: {} namespace",
                id(o)
            );
            // The fleet applies each overlay as it renders alone.
            assert_eq!(
                by_id.get(&id(o)),
                Some(&o),
                "{role_name}: {} in the fleet",
                id(o)
            );
            from_overlays.insert(id(o));
        }
    }
    let extra: BTreeSet<String> = by_id
        .keys()
        .filter(|k| !from_overlays.contains(*k))
        .cloned()
        .collect();
    let want: BTreeSet<String> = ["Namespace/cascade", "PodMonitor/cascade"]
        .map(String::from)
        .into();
    assert_eq!(extra, want, "the fleet is the overlays plus these");
}

#[test]
fn rendered_manifests_pass_the_kubernetes_api_schemas() {
    let yaml = render("kubernetes");
    assert!(objects(&yaml).len() >= 10, "{yaml}");
    let problems = schema_problems(&yaml);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_role_runs_a_valid_config_drains_within_its_grace_and_routes_by_hash() {
    let fleet = objects(&render("kubernetes"));
    let problems = fleet_problems(&fleet);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[path = "kubernetes_mutations.rs"]
mod mutations;
