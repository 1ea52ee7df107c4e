//! Broken manifests and roles the checks of `kubernetes.rs` must reject:
//! each test mutates the rendered fleet and expects the problem it plants.

use super::*;

/// The rendered fleet with one text replaced (which must occur).
fn mutated(yaml: &str, from: &str, to: &str) -> String {
    assert!(yaml.contains(from), "nothing to mutate: {from:?}");
    yaml.replacen(from, to, 1)
}

#[test]
fn the_schema_check_rejects_broken_manifests() {
    let yaml = render("kubernetes");
    for (from, to, expect) in [
        // A misspelt field, which the API server would drop or refuse.
        (
            "terminationGracePeriodSeconds:",
            "terminationGracePeriodSecond:",
            "terminationGracePeriodSecond",
        ),
        ("readinessProbe:", "readinesProbe:", "readinesProbe"),
        // A wrong type.
        (
            "containerPort: 1935",
            "containerPort: \"1935\"",
            "containerPort",
        ),
        // A misspelt kind, and an API removed in 1.25: kubernetes-validate
        // only warns that it has no schema for them.
        ("kind: DaemonSet", "kind: DaemonSett", "DaemonSett"),
        (
            "apiVersion: policy/v1\nkind: PodDisruptionBudget",
            "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget",
            "PodDisruptionBudget",
        ),
    ] {
        let problems = schema_problems(&mutated(&yaml, from, to));
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{from:?} -> {to:?} passed the schema check: {problems:?}"
        );
    }
}

/// The fleet with one object changed by `f`.
fn with(objs: &[Value], pick: impl Fn(&Value) -> bool, f: impl FnOnce(&mut Value)) -> Vec<Value> {
    let mut out = objs.to_vec();
    let o = out
        .iter_mut()
        .find(|o| pick(o))
        .expect("the object to mutate");
    f(o);
    out
}

fn workload_of(role_name: &'static str) -> impl Fn(&Value) -> bool {
    move |o: &Value| WORKLOAD_KINDS.contains(&kind(o)) && role(o) == role_name
}

fn config_of(role_name: &'static str) -> impl Fn(&Value) -> bool {
    move |o: &Value| {
        kind(o) == "ConfigMap" && name(o).starts_with(&format!("cascade-{role_name}-config"))
    }
}

/// Replaces text in a ConfigMap's cascade.toml (the text must occur).
fn edit_toml(from: &'static str, to: &'static str) -> impl FnOnce(&mut Value) {
    move |cm: &mut Value| {
        let old = text(&cm["data"]["cascade.toml"]).to_string();
        assert!(old.contains(from), "nothing to mutate: {from:?}");
        cm["data"]["cascade.toml"] = Value::from(old.replacen(from, to, 1));
    }
}

fn container(w: &mut Value) -> &mut Value {
    &mut w["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn the_role_checks_reject_broken_roles() {
    let fleet = objects(&render("kubernetes"));
    assert!(fleet_problems(&fleet).is_empty());
    type Pick = Box<dyn Fn(&Value) -> bool>;
    type Mutation = Box<dyn FnOnce(&mut Value)>;
    // What is broken, in which object, how, and the finding expected.
    let cases: Vec<(&str, Pick, Mutation, &str)> = vec![
        (
            "grace below drain + preStop + close",
            Box::new(workload_of("edge")),
            Box::new(|w: &mut Value| {
                w["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30.into()
            }),
            "terminationGracePeriodSeconds 30",
        ),
        (
            "a drain longer than the grace allows",
            Box::new(config_of("origin")),
            Box::new(edit_toml(
                "drain_timeout_ms = 30000",
                "drain_timeout_ms = 60000",
            )),
            "server.drain_timeout_ms 60000",
        ),
        (
            "readiness on the liveness path",
            Box::new(workload_of("mid")),
            Box::new(|w: &mut Value| {
                container(w)["readinessProbe"]["httpGet"]["path"] = "/healthz".into()
            }),
            "readinessProbe asks \"/healthz\"",
        ),
        (
            "readiness on another port",
            Box::new(workload_of("origin")),
            Box::new(|w: &mut Value| {
                container(w)["readinessProbe"]["httpGet"]["port"] = "rtmp".into()
            }),
            "readinessProbe port",
        ),
        (
            "no preStop",
            Box::new(workload_of("origin")),
            Box::new(|w: &mut Value| container(w)["lifecycle"] = Value::Null),
            "no preStop hook",
        ),
        (
            "a preStop that signals instead of waiting",
            Box::new(workload_of("edge")),
            Box::new(|w: &mut Value| {
                container(w)["lifecycle"]["preStop"]["exec"]["command"] =
                    serde_yaml::from_str("[kill, -TERM, '1']").expect("yaml")
            }),
            "no preStop hook",
        ),
        (
            "an unknown key in cascade.toml",
            Box::new(config_of("mid")),
            Box::new(edit_toml("mode = \"hash\"", "mdoe = \"hash\"")),
            "mdoe",
        ),
        (
            "a bad value in cascade.toml",
            Box::new(config_of("edge")),
            Box::new(edit_toml("io_driver = \"auto\"", "io_driver = \"fast\"")),
            "io_driver",
        ),
        (
            "the probes' listener on loopback",
            Box::new(config_of("edge")),
            Box::new(edit_toml(
                "listen = \"0.0.0.0:8080\"",
                "listen = \"127.0.0.1:8080\"",
            )),
            "http.listen: 127.0.0.1:8080 is on loopback",
        ),
        (
            "a misspelt CASCADE_ variable",
            Box::new(workload_of("mid")),
            Box::new(|w: &mut Value| {
                container(w)["env"][0]["name"] = "CASCADE_HTTP_API_TOKN".into()
            }),
            "CASCADE_HTTP_API_TOKN names no configuration key",
        ),
        (
            "a flag that overrides the ConfigMap",
            Box::new(workload_of("edge")),
            Box::new(|w: &mut Value| {
                container(w)["args"] = serde_yaml::from_str(
                    "[--config, /etc/cascade/cascade.toml, --http, '0.0.0.0:9090']",
                )
                .expect("yaml")
            }),
            "--http in args",
        ),
        (
            "a third origin the mid tier does not list",
            Box::new(workload_of("origin")),
            Box::new(|w: &mut Value| w["spec"]["replicas"] = 3.into()),
            "must name each pod of StatefulSet/cascade-origin",
        ),
        (
            "the edges hash over a mid node that is not there",
            Box::new(config_of("edge")),
            Box::new(edit_toml("cascade-mid-1.", "cascade-mid-2.")),
            "must name each pod of StatefulSet/cascade-mid",
        ),
        (
            "mid tier on failover",
            Box::new(config_of("mid")),
            Box::new(edit_toml("mode = \"hash\"", "mode = \"failover\"")),
            "edge.mode is \"failover\"",
        ),
        (
            "edges that do not forward publishes",
            Box::new(config_of("edge")),
            Box::new(edit_toml(
                "forward_publish = true",
                "forward_publish = false",
            )),
            "edge.forward_publish is off",
        ),
        (
            "a Service with a cluster IP under the origins",
            Box::new(|o: &Value| kind(o) == "Service" && name(o) == "cascade-origin"),
            Box::new(|s: &mut Value| s["spec"]["clusterIP"] = Value::Null),
            "not headless",
        ),
        (
            "edges without cluster DNS",
            Box::new(workload_of("edge")),
            Box::new(|w: &mut Value| w["spec"]["template"]["spec"]["dnsPolicy"] = Value::Null),
            "dnsPolicy",
        ),
        (
            "a fractional CPU",
            Box::new(workload_of("mid")),
            Box::new(|w: &mut Value| {
                let res = &mut container(w)["resources"];
                res["limits"]["cpu"] = "1500m".into();
                res["requests"]["cpu"] = "1500m".into();
            }),
            "whole CPUs",
        ),
        (
            "a PodMonitor that misses a role",
            Box::new(|o: &Value| kind(o) == "PodMonitor"),
            Box::new(|pm: &mut Value| {
                pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "edge".into()
            }),
            "does not select StatefulSet/cascade-origin",
        ),
    ];
    for (what, pick, mutate, expect) in cases {
        let problems = fleet_problems(&with(&fleet, pick, mutate));
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{what}: no problem mentioning {expect:?} in {problems:#?}"
        );
    }
}
