//! Request handling of the test API server.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::json::{fields_match, json_patch, merge_patch};
use super::{Change, Request, Shared, key_of, kind_of};

type Body = BoxBody<Bytes, Infallible>;

pub(super) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn full(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn error(code: u16, reason: &str, message: String) -> Response<Body> {
    full(
        StatusCode::from_u16(code).unwrap(),
        status_body(code, reason, &message),
    )
}

/// A parsed request path.
struct Target {
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv_len, rest) = match *parts.first()? {
        "api" => (2, &parts[2.min(parts.len())..]),
        "apis" => (3, &parts[3.min(parts.len())..]),
        _ => return None,
    };
    let gv = parts.get(..gv_len)?.join("/");
    let (namespace, rest) = if rest.len() >= 3 && rest[0] == "namespaces" {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let resource = rest.first()?;
    Some(Target {
        collection: format!("{gv}/{resource}"),
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

async fn handle(shared: Arc<Shared>, req: hyper::Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(doc) = discovery(&path) {
        return full(StatusCode::OK, doc);
    }
    let Some(target) = parse_path(&path) else {
        return error(404, "NotFound", format!("no route {path}"));
    };
    let watching = query_param(&query, "watch").as_deref() == Some("true");
    let verb = match (&method, target.name.is_some()) {
        (&Method::GET, _) if watching => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => "other",
    };
    {
        let mut s = shared.store.lock().unwrap();
        s.requests.push(Request {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            verb,
        });
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return error(500, "InternalError", "injected failure".into());
        }
        if matches!(verb, "patch" | "update")
            && s.conflict_next_writes > 0
            && path.contains(&s.conflict_path)
        {
            s.conflict_next_writes -= 1;
            return conflict(&target);
        }
        if let Some(r) = s
            .refusals
            .iter()
            .find(|r| r.verb == verb && path.contains(&r.path_part))
        {
            let reason = match r.code {
                400 => "BadRequest",
                403 => "Forbidden",
                404 => "NotFound",
                422 => "Invalid",
                _ => "Refused",
            };
            return error(r.code, reason, format!("injected {} refusal", r.code));
        }
    }
    let ns = target.namespace.clone().unwrap_or_default();
    match verb {
        "watch" => watch(shared, target, &query),
        "list" => list(&shared, &target, &query),
        "get" => match shared.get(&target.collection, &ns, target.name.as_deref().unwrap()) {
            Some(obj) => full(StatusCode::OK, obj),
            None => not_found(&target),
        },
        "create" if target.subresource.as_deref() == Some("eviction") => {
            evict(&shared, &ns, target.name.as_deref().unwrap())
        }
        "create" => create(&shared, &target, &body),
        "update" | "patch" => write(&shared, &target, verb, &content_type, &body),
        "delete" => match shared.get(&target.collection, &ns, target.name.as_deref().unwrap()) {
            Some(obj) => full(
                StatusCode::OK,
                shared.write(&target.collection, obj, "DELETED"),
            ),
            None => not_found(&target),
        },
        _ => error(405, "MethodNotAllowed", format!("{method} {path}")),
    }
}

fn resource_name(target: &Target) -> &str {
    target.collection.rsplit('/').next().unwrap_or_default()
}

fn not_found(target: &Target) -> Response<Body> {
    error(
        404,
        "NotFound",
        format!(
            "{} \"{}\" not found",
            resource_name(target),
            target.name.as_deref().unwrap_or_default()
        ),
    )
}

fn conflict(target: &Target) -> Response<Body> {
    error(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            resource_name(target),
            target.name.as_deref().unwrap_or_default()
        ),
    )
}

fn matching(target: &Target, query: &str, obj: &Value) -> bool {
    if let Some(ns) = &target.namespace
        && obj["metadata"]["namespace"].as_str() != Some(ns.as_str())
    {
        return false;
    }
    match query_param(query, "fieldSelector") {
        Some(sel) => fields_match(obj, &sel),
        None => true,
    }
}

fn list(shared: &Shared, target: &Target, query: &str) -> Response<Body> {
    let s = shared.store.lock().unwrap();
    let items: Vec<Value> = s
        .objects
        .get(&target.collection)
        .map(|m| {
            m.values()
                .filter(|o| matching(target, query, o))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let (kind, api_version) = kind_of(&target.collection);
    full(
        StatusCode::OK,
        json!({"kind": format!("{kind}List"), "apiVersion": api_version,
               "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
    )
}

fn create(shared: &Shared, target: &Target, body: &[u8]) -> Response<Body> {
    let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
        return error(400, "BadRequest", "body is not JSON".into());
    };
    if let Some(ns) = &target.namespace {
        obj["metadata"]["namespace"] = json!(ns);
    }
    if obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        return error(422, "Invalid", "metadata.name: Required value".into());
    }
    let (ns, name) = key_of(&obj);
    if shared.get(&target.collection, &ns, &name).is_some() {
        return error(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource_name(target)),
        );
    }
    obj["metadata"]["generation"] = json!(1);
    obj["metadata"]
        .as_object_mut()
        .map(|m| m.remove("resourceVersion"));
    let stored = shared.write(&target.collection, obj, "ADDED");
    full(StatusCode::CREATED, stored)
}

fn write(
    shared: &Shared,
    target: &Target,
    verb: &str,
    content_type: &str,
    body: &[u8],
) -> Response<Body> {
    let ns = target.namespace.clone().unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    let Some(old) = shared.get(&target.collection, &ns, &name) else {
        return not_found(target);
    };
    let Ok(input) = serde_json::from_slice::<Value>(body) else {
        return error(400, "BadRequest", "body is not JSON".into());
    };
    let mut new = old.clone();
    if verb == "update" {
        new = input.clone();
    } else if content_type.starts_with("application/json-patch+json") {
        if let Err(e) = json_patch(&mut new, &input) {
            return error(422, "Invalid", e);
        }
    } else if content_type.starts_with("application/merge-patch+json")
        || content_type.starts_with("application/strategic-merge-patch+json")
    {
        merge_patch(&mut new, &input);
    } else {
        return error(415, "UnsupportedMediaType", content_type.to_string());
    }
    // Optimistic concurrency: a resourceVersion in the request must be the current one.
    let sent_rv = if verb == "update" {
        input["metadata"]["resourceVersion"].as_str()
    } else {
        new["metadata"]["resourceVersion"].as_str()
    };
    if let Some(rv) = sent_rv
        && Some(rv) != old["metadata"]["resourceVersion"].as_str()
    {
        return conflict(target);
    }
    // Subresource rules: /status changes only status; the main resource never changes status.
    let mut result = old.clone();
    if target.subresource.as_deref() == Some("status") {
        result["status"] = new["status"].clone();
    } else {
        for field in ["metadata", "spec"] {
            result[field] = new[field].clone();
        }
        if let (Some(r), Some(n)) = (result.as_object_mut(), new.as_object()) {
            for (k, v) in n {
                if !matches!(k.as_str(), "metadata" | "spec" | "status") {
                    r.insert(k.clone(), v.clone());
                }
            }
        }
        for keep in [
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "generation",
        ] {
            result["metadata"][keep] = old["metadata"][keep].clone();
        }
        if result["spec"] != old["spec"] {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            result["metadata"]["generation"] = json!(g + 1);
        }
    }
    if result.get("status") == Some(&Value::Null) {
        result.as_object_mut().map(|m| m.remove("status"));
    }
    let stored = shared.write(&target.collection, result, "MODIFIED");
    full(StatusCode::OK, stored)
}

fn evict(shared: &Arc<Shared>, ns: &str, name: &str) -> Response<Body> {
    if shared.get(super::PODS, ns, name).is_none() {
        return error(404, "NotFound", format!("pods \"{name}\" not found"));
    }
    {
        let mut s = shared.store.lock().unwrap();
        if let Some(left) = s
            .eviction_blocks
            .get_mut(&(ns.to_string(), name.to_string()))
            && *left > 0
        {
            *left -= 1;
            return error(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            );
        }
    }
    let delay = *shared.eviction_delete_delay.lock().unwrap();
    let shared2 = shared.clone();
    let (ns2, name2) = (ns.to_string(), name.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if let Some(obj) = shared2.get(super::PODS, &ns2, &name2) {
            shared2.write(super::PODS, obj, "DELETED");
        }
    });
    full(
        StatusCode::CREATED,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

fn watch(shared: Arc<Shared>, target: Target, query: &str) -> Response<Body> {
    let from: u64 = query_param(query, "resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = query_param(query, "timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let bookmarks = query_param(query, "allowWatchBookmarks").as_deref() == Some("true");
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut changes = shared.changes.subscribe();
    let mut dropped = shared.drop_watches.subscribe();
    let (kind, api_version) = kind_of(&target.collection);

    // What to send first: history after `from`, or (from 0) the current objects as ADDED.
    let (initial, mut last_rv, gone) = {
        let mut s = shared.store.lock().unwrap();
        if from != 0 && s.gone_next_watches > 0 {
            s.gone_next_watches -= 1;
            s.gone += 1;
            (Vec::new(), s.rv, true)
        } else if from != 0 && from < s.compacted {
            s.gone += 1;
            (Vec::new(), s.rv, true)
        } else if from == 0 {
            let objs: Vec<Value> = s
                .objects
                .get(&target.collection)
                .map(|m| {
                    m.values()
                        .filter(|o| matching(&target, query, o))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let initial = objs.into_iter().map(|o| ("ADDED", o)).collect();
            (initial, s.rv, false)
        } else {
            let initial = s
                .history
                .iter()
                .filter(|c| c.rv > from && c.collection == target.collection)
                .filter(|c| matching(&target, query, &c.object))
                .map(|c| (c.kind, c.object.clone()))
                .collect();
            (initial, s.rv, false)
        }
    };
    let query = query.to_string();
    tokio::spawn(async move {
        let line =
            |t: &str, o: &Value| Bytes::from(format!("{}\n", json!({"type": t, "object": o})));
        if gone {
            let status = status_body(410, "Expired", "too old resource version");
            let _ = tx.send(line("ERROR", &status)).await;
            return;
        }
        for (t, o) in initial {
            if tx.send(line(t, &o)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let interval = *shared.bookmark_interval.lock().unwrap();
        let mut ticker = tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600)));
        ticker.tick().await;
        loop {
            // Biased, the drop first: no change written after `drop_watches` returned reaches a
            // watch that was open before it (the client must re-watch to see it).
            tokio::select! {
                biased;
                _ = dropped.changed() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = ticker.tick(), if bookmarks && interval.is_some() => {
                    let rv = {
                        let mut s = shared.store.lock().unwrap();
                        s.bookmarks += 1;
                        s.rv
                    };
                    let bm = json!({"kind": kind, "apiVersion": api_version,
                                    "metadata": {"resourceVersion": rv.to_string()}});
                    if tx.send(line("BOOKMARK", &bm)).await.is_err() { return; }
                }
                change = changes.recv() => {
                    let Ok(Change { rv, collection, kind: t, object }) = change else { return };
                    if rv <= last_rv || collection != target.collection || !matching(&target, &query, &object) {
                        continue;
                    }
                    last_rv = rv;
                    if tx.send(line(t, &object)).await.is_err() { return; }
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

/// Legacy discovery documents, enough for `kubectl apply --dry-run=client` to map the kinds of
/// packaging/kubernetes/ to resources.
fn discovery(path: &str) -> Option<Value> {
    type Resources = &'static [(&'static str, &'static str, bool)];
    const GROUPS: &[(&str, &str, Resources)] = &[
        (
            "apps",
            "v1",
            &[
                ("daemonsets", "DaemonSet", true),
                ("deployments", "Deployment", true),
            ],
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            &[
                ("clusterroles", "ClusterRole", false),
                ("clusterrolebindings", "ClusterRoleBinding", false),
                ("roles", "Role", true),
                ("rolebindings", "RoleBinding", true),
            ],
        ),
        (
            "apiextensions.k8s.io",
            "v1",
            &[(
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
            )],
        ),
        ("events.k8s.io", "v1", &[("events", "Event", true)]),
        (
            "machineconfiguration.openshift.io",
            "v1",
            &[
                ("machineconfigs", "MachineConfig", false),
                ("machineconfignodes", "MachineConfigNode", false),
                ("machineconfigpools", "MachineConfigPool", false),
                ("controllerconfigs", "ControllerConfig", false),
            ],
        ),
        (
            "operator.openshift.io",
            "v1",
            &[("machineconfigurations", "MachineConfiguration", false)],
        ),
    ];
    let core: &[(&str, &str, bool)] = &[
        ("namespaces", "Namespace", false),
        ("serviceaccounts", "ServiceAccount", true),
        ("nodes", "Node", false),
        ("pods", "Pod", true),
        ("services", "Service", true),
        ("secrets", "Secret", true),
    ];
    let resources = |gv: &str, list: &[(&str, &str, bool)]| {
        json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": list.iter().map(|(name, kind, namespaced)| json!({
                "name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            })).collect::<Vec<_>>(),
        })
    };
    match path.trim_end_matches('/') {
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"]})),
        "/api/v1" => Some(resources("v1", core)),
        "/apis" => Some(
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": GROUPS.iter().map(|(g, v, _)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        }).collect::<Vec<_>>()}),
        ),
        p => GROUPS.iter().find_map(|(g, v, list)| {
            (p == format!("/apis/{g}/{v}")).then(|| resources(&format!("{g}/{v}"), list))
        }),
    }
}
