use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podnet_store::object::Object;

use super::*;

fn deployment(replicas: i32, image: &str) -> Deployment {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\n  uid: d-uid\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: c\n        image: {image}\n"
    );
    match manifest::parse(&yaml).unwrap().remove(0) {
        Object::Deployment(d) => d,
        other => panic!("{other:?}"),
    }
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

fn ready(mut pod: Pod) -> Pod {
    pod.status = Some(PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    pod
}

#[test]
fn pods_carry_the_template_hash_which_changes_with_the_template() {
    let d = deployment(2, "agnhost");
    let pods = desired_pods(&d);
    assert_eq!(names(&pods), ["web-0", "web-1"]);
    let hash = &pods[0].metadata.labels.as_ref().unwrap()[TEMPLATE_HASH_LABEL];
    assert_eq!(hash, &template_hash(&d));
    assert_eq!(pods[0].metadata.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(
        template_hash(&deployment(5, "agnhost")),
        *hash,
        "replicas are not the template"
    );
    assert_ne!(template_hash(&deployment(2, "busybox")), *hash);
}

#[test]
fn scaling_up_creates_only_the_missing_pods() {
    let existing = desired_pods(&deployment(2, "agnhost"));
    let plan = plan(&deployment(4, "agnhost"), &existing);
    assert_eq!(names(&plan.create), ["web-2", "web-3"]);
    assert!(
        plan.delete.is_empty() && plan.replace.is_empty(),
        "{plan:?}"
    );
    assert!(plan_is_empty(&deployment(2, "agnhost"), &existing));
}

fn plan_is_empty(d: &Deployment, existing: &[Pod]) -> bool {
    plan(d, existing) == Rollout::default()
}

#[test]
fn scaling_down_marks_the_highest_indices_first() {
    let existing = desired_pods(&deployment(12, "agnhost"));
    let plan = plan(&deployment(9, "agnhost"), &existing);
    assert_eq!(plan.delete, ["web-11", "web-10", "web-9"]);
    assert!(
        plan.create.is_empty() && plan.replace.is_empty(),
        "{plan:?}"
    );
}

#[test]
fn a_changed_template_replaces_every_pod() {
    let existing = desired_pods(&deployment(2, "agnhost"));
    let plan = plan(&deployment(2, "busybox"), &existing);
    assert_eq!(plan.delete, ["web-1", "web-0"]);
    assert_eq!(names(&plan.replace), ["web-0", "web-1"]);
    assert!(plan.create.is_empty());
    assert_eq!(
        plan.replace[0].spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some("busybox")
    );
}

#[test]
fn a_wanted_pod_still_terminating_is_replaced_once_gone() {
    let mut existing = desired_pods(&deployment(3, "agnhost"));
    for p in &mut existing[1..] {
        p.metadata.deletion_timestamp = Some(Time(podnet_store::now()));
    }
    let plan = plan(&deployment(3, "agnhost"), &existing);
    assert!(plan.delete.is_empty(), "already being deleted: {plan:?}");
    assert_eq!(names(&plan.replace), ["web-1", "web-2"]);
    // Other Deployments' pods are not this one's business.
    let mut other = desired_pods(&deployment(1, "agnhost"));
    other[0].metadata.owner_references.as_mut().unwrap()[0].name = "api".into();
    other[0].metadata.name = Some("api-0".into());
    assert!(plan_is_empty(
        &deployment(1, "agnhost"),
        &[
            desired_pods(&deployment(1, "agnhost"))[0].clone(),
            other[0].clone()
        ]
    ));
}

#[test]
fn status_counts_live_pods_and_ready_ones() {
    let d = deployment(3, "agnhost");
    let mut pods = desired_pods(&d);
    pods[0] = ready(pods[0].clone());
    pods[1] = ready(pods[1].clone());
    pods[1].metadata.deletion_timestamp = Some(Time(podnet_store::now()));
    let status = status(&d, &pods);
    assert_eq!(status.replicas, Some(2));
    assert_eq!(status.ready_replicas, Some(1));
    assert_eq!(status.available_replicas, Some(1));
    assert_eq!(status.updated_replicas, Some(2));
    assert_eq!(status.unavailable_replicas, Some(1));
}
