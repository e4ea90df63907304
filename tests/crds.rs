//! The packaged CRDs generated from the Rust types (src/cluster/crd.rs): the checked-in YAML is
//! not stale, and the schema is as strict as upstream's (openshift/api, in
//! `../shared/envtest/crds/`) for every field it has.

use machine_config_daemon::cluster::crd::{machine_config_crd_yaml, machine_config_node_crd_yaml};
use std::path::Path;

/// The checked-in file is what the types generate (`MCD_BLESS=1` rewrites it).
fn check_generated(packaged: &str, generated: String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(packaged);
    if std::env::var_os("MCD_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert!(
        on_disk == generated,
        "{packaged} is stale: run `MCD_BLESS=1 cargo test --test crds` and commit it"
    );
}

#[test]
fn packaged_machine_config_node_crd_is_generated_from_the_types() {
    check_generated(
        "packaging/kubernetes/12-crd-machineconfignode.yaml",
        machine_config_node_crd_yaml(),
    );
}

#[test]
fn packaged_machine_config_crd_is_generated_from_the_types() {
    check_generated(
        "packaging/kubernetes/10-crd-machineconfig.yaml",
        machine_config_crd_yaml(),
    );
}

/// Upstream's CRD (openshift/api, as the envtest bundle carries it), None when absent (a
/// failure under `CI`).
fn upstream(file: &str) -> Option<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/envtest/crds")
        .join(file);
    if !path.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {} is missing",
            path.display()
        );
        eprintln!("SKIPPED: {} not present", path.display());
        return None;
    }
    Some(serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
}

/// The keywords compared: names, types, required fields, enums, limits, patterns, list types,
/// nullability, open objects, CEL rules. Descriptions and `title` are not.
const KEYWORDS: [&str; 15] = [
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "maximum",
    "type",
    "format",
    "enum",
    "pattern",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "minimum",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "required",
];

/// Every field of `ours` exists in `theirs` with the same keywords and rules; `at` is the path.
fn compare(
    ours: &serde_json::Value,
    theirs: &serde_json::Value,
    at: &str,
    errors: &mut Vec<String>,
) {
    for k in KEYWORDS {
        let (a, b) = (&ours[k], &theirs[k]);
        let same = match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        };
        if !same {
            errors.push(format!("{at}: {k}: ours {a}, upstream {b}"));
        }
    }
    let rules = |v: &serde_json::Value| -> Vec<String> {
        v["x-kubernetes-validations"]
            .as_array()
            .map(|l| l.iter().map(|r| r["rule"].to_string()).collect())
            .unwrap_or_default()
    };
    if rules(ours) != rules(theirs) {
        errors.push(format!(
            "{at}: rules: ours {:?}, upstream {:?}",
            rules(ours),
            rules(theirs)
        ));
    }
    if let Some(props) = ours["properties"].as_object() {
        for (name, sub) in props {
            let path = format!("{at}.{name}");
            match theirs["properties"].get(name) {
                Some(t) => compare(sub, t, &path, errors),
                None => errors.push(format!("{path}: not in upstream's schema")),
            }
        }
    }
    if ours["items"].is_object() {
        compare(&ours["items"], &theirs["items"], &format!("{at}[]"), errors);
    }
}

fn schema(crd: &serde_json::Value) -> &serde_json::Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

#[test]
fn machine_config_node_schema_is_as_strict_as_upstreams() {
    let Some(theirs) =
        upstream("0000_80_machine-config_01_machineconfignodes-SelfManagedHA-Default.crd.yaml")
    else {
        return;
    };
    let ours = machine_config_daemon::cluster::crd::machine_config_node_crd();
    assert_eq!(
        ours["spec"]["names"]["plural"],
        theirs["spec"]["names"]["plural"]
    );
    assert_eq!(ours["spec"]["scope"], theirs["spec"]["scope"]);
    assert_eq!(ours["spec"]["versions"][0]["name"], "v1");
    let mut errors = Vec::new();
    compare(schema(&ours), schema(&theirs), "", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
    // Every printer column upstream shows (but its age) is ours too, same path.
    let cols = |crd: &serde_json::Value| -> Vec<(String, String)> {
        crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] != "Age")
            .map(|c| (c["name"].to_string(), c["jsonPath"].to_string()))
            .collect()
    };
    assert_eq!(cols(&ours), cols(&theirs));
}

#[test]
fn machine_config_schema_is_upstreams() {
    let Some(theirs) = upstream("0000_80_machine-config_01_machineconfigs.crd.yaml") else {
        return;
    };
    let ours = machine_config_daemon::cluster::crd::machine_config_crd();
    assert_eq!(
        ours["spec"]["names"]["plural"],
        theirs["spec"]["names"]["plural"]
    );
    assert_eq!(
        ours["spec"]["names"]["shortNames"],
        theirs["spec"]["names"]["shortNames"]
    );
    assert_eq!(ours["spec"]["scope"], theirs["spec"]["scope"]);
    let mut errors = Vec::new();
    compare(schema(&ours), schema(&theirs), "", &mut errors);
    // Both ways: every field of upstream's spec is ours too.
    compare(
        &schema(&theirs)["properties"]["spec"],
        &schema(&ours)["properties"]["spec"],
        "(upstream).spec",
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:#?}");
    let cols = |crd: &serde_json::Value| -> Vec<String> {
        crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {} {} {}",
                    c["name"], c["type"], c["jsonPath"], c["priority"]
                )
            })
            .collect()
    };
    assert_eq!(cols(&ours), cols(&theirs));
}

#[test]
fn packaged_machine_configuration_crd_is_generated_from_the_types() {
    check_generated(
        "packaging/kubernetes/11-crd-machineconfiguration.yaml",
        machine_config_daemon::cluster::machineconfiguration::machine_configuration_crd_yaml(),
    );
}

#[test]
fn machine_configuration_schema_is_upstreams_for_what_it_has() {
    let Some(theirs) = upstream("0000_80_machine-config_01_machineconfigurations.crd.yaml") else {
        return;
    };
    let ours = machine_config_daemon::cluster::machineconfiguration::machine_configuration_crd();
    for key in ["plural", "singular", "kind"] {
        assert_eq!(ours["spec"]["names"][key], theirs["spec"]["names"][key]);
    }
    assert_eq!(ours["spec"]["scope"], theirs["spec"]["scope"]);
    assert_eq!(ours["spec"]["group"], theirs["spec"]["group"]);
    assert_eq!(
        ours["spec"]["versions"][0]["subresources"],
        theirs["spec"]["versions"][0]["subresources"]
    );
    let (o, t) = (schema(&ours), schema(&theirs));
    assert_eq!(o["required"], t["required"]);
    let mut errors = Vec::new();
    for part in ["spec", "status"] {
        compare(
            &o["properties"][part],
            &t["properties"][part],
            part,
            &mut errors,
        );
    }
    // Both ways: every upstream field is ours too, but the boot image and irreconcilable
    // override fields the module doc lists as left out.
    let left_out = [
        "spec.managedBootImages",
        "spec.bootImageSkewEnforcement",
        "spec.irreconcilableValidationOverrides",
        "status.managedBootImagesStatus",
        "status.bootImageSkewEnforcementStatus",
    ];
    for part in ["spec", "status"] {
        for (name, sub) in t["properties"][part]["properties"].as_object().unwrap() {
            let at = format!("{part}.{name}");
            if left_out.contains(&at.as_str()) {
                continue;
            }
            compare(
                sub,
                &o["properties"][part]["properties"][name],
                &format!("(upstream).{at}"),
                &mut errors,
            );
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
}
#[test]
fn packaged_machine_config_pool_crd_is_generated_from_the_types() {
    check_generated(
        "packaging/kubernetes/13-crd-machineconfigpool.yaml",
        machine_config_daemon::cluster::mcp::machine_config_pool_crd_yaml(),
    );
}

#[test]
fn machine_config_pool_schema_is_upstreams() {
    let Some(theirs) = upstream("0000_80_machine-config_01_machineconfigpools.crd.yaml") else {
        return;
    };
    let ours = machine_config_daemon::cluster::mcp::machine_config_pool_crd();
    for key in ["plural", "singular", "kind", "shortNames"] {
        assert_eq!(
            ours["spec"]["names"][key], theirs["spec"]["names"][key],
            "names.{key}"
        );
    }
    assert_eq!(ours["spec"]["scope"], theirs["spec"]["scope"]);
    assert_eq!(
        ours["spec"]["versions"][0]["subresources"],
        theirs["spec"]["versions"][0]["subresources"]
    );
    let mut errors = Vec::new();
    compare(schema(&ours), schema(&theirs), "", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
    let max = |crd: &serde_json::Value| {
        let m = &schema(crd)["properties"]["spec"]["properties"]["maxUnavailable"];
        (m["anyOf"].clone(), m["x-kubernetes-int-or-string"].clone())
    };
    assert_eq!(max(&ours), max(&theirs));
    // The printer columns are upstream's, in order, with the same paths and types: what
    // `kubectl get mcp` prints as the seed's `oc get machineconfigpool` does.
    let cols = |crd: &serde_json::Value| -> Vec<String> {
        crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{} {} {}", c["name"], c["type"], c["jsonPath"]))
            .collect()
    };
    assert_eq!(cols(&ours), cols(&theirs));
}

/// `kubectl get mcp` prints the column names upper-cased: the seed's header, whatever upstream
/// has.
#[test]
fn machine_config_pool_columns_are_the_seeds() {
    let ours = machine_config_daemon::cluster::mcp::machine_config_pool_crd();
    let header: Vec<String> = std::iter::once("NAME".to_string())
        .chain(
            ours["spec"]["versions"][0]["additionalPrinterColumns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_uppercase()),
        )
        .collect();
    assert_eq!(
        header.join(" "),
        "NAME CONFIG UPDATED UPDATING DEGRADED MACHINECOUNT READYMACHINECOUNT \
         UPDATEDMACHINECOUNT DEGRADEDMACHINECOUNT AGE"
    );
}

#[test]
fn packaged_controller_config_crd_is_generated_from_the_types() {
    check_generated(
        "packaging/kubernetes/14-crd-controllerconfig.yaml",
        machine_config_daemon::cluster::controllerconfig::controller_config_crd_yaml(),
    );
}

/// The fields kept are upstream's, keyword for keyword, both ways for the status; of the spec's
/// required fields ours are a subset of upstream's (the module doc says which are left out).
#[test]
fn controller_config_schema_is_upstreams_for_what_it_has() {
    let Some(theirs) = upstream("0000_80_machine-config_01_controllerconfigs-Default.crd.yaml")
    else {
        return;
    };
    let ours = machine_config_daemon::cluster::controllerconfig::controller_config_crd();
    for key in ["plural", "singular", "kind"] {
        assert_eq!(ours["spec"]["names"][key], theirs["spec"]["names"][key]);
    }
    assert_eq!(ours["spec"]["scope"], theirs["spec"]["scope"]);
    assert_eq!(ours["spec"]["group"], theirs["spec"]["group"]);
    assert_eq!(
        ours["spec"]["versions"][0]["subresources"],
        theirs["spec"]["versions"][0]["subresources"]
    );
    let (o, t) = (schema(&ours), schema(&theirs));
    assert_eq!(o["required"], t["required"]);
    let mut errors = Vec::new();
    for (name, sub) in o["properties"]["spec"]["properties"].as_object().unwrap() {
        compare(
            sub,
            &t["properties"]["spec"]["properties"][name],
            &format!("spec.{name}"),
            &mut errors,
        );
    }
    let required = |s: &serde_json::Value| -> Vec<String> {
        s["properties"]["spec"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };
    let theirs_required = required(t);
    assert_eq!(
        required(o),
        ["kubeAPIServerServingCAData", "rootCAData"],
        "the bundles without which there is nothing to write"
    );
    for r in required(o) {
        assert!(
            theirs_required.contains(&r),
            "spec.{r} is not required upstream"
        );
    }
    let status_kept = |s: &serde_json::Value| {
        let mut st = s["properties"]["status"].clone();
        st["properties"]
            .as_object_mut()
            .unwrap()
            .remove("conditions");
        st
    };
    compare(
        &o["properties"]["status"],
        &t["properties"]["status"],
        "status",
        &mut errors,
    );
    compare(
        &status_kept(t),
        &status_kept(o),
        "(upstream).status",
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:#?}");
}
