//! Manifests: the YAML (or JSON) a user applies, read into objects and checked the way the API
//! server would check them, so a mistake is reported before anything reaches the lab — naming
//! the document, the field, the value found and what was expected.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Deserialize;
use serde_json::Value;

use crate::StoreError;
use crate::dir::DEFAULT_NAMESPACE;
use crate::object::{Kind, Object};

mod names;
mod rules;
#[cfg(test)]
mod tests;

/// Namespaces every cluster has before anything is applied.
const BUILTIN_NAMESPACES: &[&str] = &[DEFAULT_NAMESPACE, "kube-system"];

/// Which object of a manifest an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRef {
    /// The YAML document, counting from 1 as a reader does (empty documents count too).
    pub document: usize,
    /// The item of a `kind: List` document, counting from 1.
    pub item: Option<usize>,
    /// `kind`, as written.
    pub kind: Option<String>,
    /// `metadata.namespace`, as written.
    pub namespace: Option<String>,
    /// `metadata.name`, as written.
    pub name: Option<String>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A document is not valid YAML (or JSON).
    #[error("document {document}: not valid YAML or JSON: {message}")]
    Syntax {
        /// The document, counting from 1.
        document: usize,
        /// The parser's message, with line and column.
        message: String,
    },

    /// A document is not a mapping, so it cannot be an object.
    #[error(
        "{doc}: expected an object (a mapping with apiVersion, kind and metadata), found {found}"
    )]
    NotAnObject {
        /// The document.
        doc: Box<DocRef>,
        /// What it is instead, e.g. `a list`.
        found: &'static str,
    },

    /// A document's kind is unknown or a field has the wrong type.
    #[error("{doc}: {problem}")]
    Decode {
        /// The document.
        doc: Box<DocRef>,
        /// What did not decode, with the field's path. (Not a `source`: the message already
        /// says it, and error chains would say it twice.)
        problem: StoreError,
    },

    /// A required field is absent (or empty).
    #[error("{doc}: {field} is missing: expected {expected}")]
    Missing {
        /// The document.
        doc: Box<DocRef>,
        /// The field's path, e.g. `spec.containers[0].image`.
        field: String,
        /// What should be there.
        expected: String,
    },

    /// A field holds a value Kubernetes would refuse.
    #[error("{doc}: {field}: {value} is not valid: expected {expected}")]
    Invalid {
        /// The document.
        doc: Box<DocRef>,
        /// The field's path, e.g. `spec.clusterIP`.
        field: String,
        /// The value found, quoted if a string.
        value: String,
        /// What would be accepted.
        expected: String,
    },

    /// A pod (or a Deployment's pod template) is pinned to a node the cluster does not have.
    #[error("{object}: {field} {node:?} is not a node of the cluster (nodes: {known})")]
    UnknownNode {
        /// E.g. `Pod default/web`.
        object: String,
        /// `spec.nodeName` or `spec.template.spec.nodeName`.
        field: &'static str,
        /// The node named.
        node: String,
        /// The nodes there are.
        known: String,
    },

    /// An object is in a namespace that does not exist and the manifest does not create.
    #[error(
        "{object}: namespace {namespace:?} does not exist and this manifest does not create it (namespaces: {known})"
    )]
    UnknownNamespace {
        /// E.g. `Service shop/web`.
        object: String,
        /// The namespace named.
        namespace: String,
        /// The namespaces there are.
        known: String,
    },
}

/// Reads every object of a manifest: multi-document YAML, a JSON object (or several), and
/// `kind: List` documents with `items`. Empty documents are skipped. Each object is checked as
/// the API server would check the fields the lab relies on (names, containers, selectors, ports,
/// IPs, CIDRs); the first problem found is returned.
pub fn parse(text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut objects = Vec::new();
    for (index, document) in documents(text)?.into_iter().enumerate() {
        let number = index + 1;
        if document.is_null() {
            continue;
        }
        if is_list(&document) {
            let Value::Object(mut list) = document else {
                continue;
            };
            let items = match list.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            for (item, value) in items.into_iter().enumerate() {
                objects.push(parse_object(value, number, Some(item + 1))?);
            }
        } else {
            objects.push(parse_object(document, number, None)?);
        }
    }
    Ok(objects)
}

/// Checks `objects` against the cluster they are applied to: every pod (or Deployment pod
/// template) pinned with `nodeName` must name an existing node, and every namespaced object must
/// be in a namespace that exists or that `objects` creates. `default` and `kube-system` always
/// exist, and Nodes in `objects` count as existing.
pub fn validate_against(
    objects: &[Object],
    nodes: &[String],
    namespaces: &[String],
) -> Result<(), ManifestError> {
    let known_nodes: BTreeSet<&str> = nodes
        .iter()
        .map(String::as_str)
        .chain(
            objects
                .iter()
                .filter(|o| o.kind() == Kind::Node)
                .map(Object::name),
        )
        .collect();
    let known_namespaces: BTreeSet<&str> = namespaces
        .iter()
        .map(String::as_str)
        .chain(BUILTIN_NAMESPACES.iter().copied())
        .chain(
            objects
                .iter()
                .filter(|o| o.kind() == Kind::Namespace)
                .map(Object::name),
        )
        .collect();
    let list = |set: &BTreeSet<&str>| set.iter().copied().collect::<Vec<_>>().join(", ");

    for obj in objects {
        if obj.kind().namespaced() {
            let namespace = obj
                .namespace()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(DEFAULT_NAMESPACE);
            if !known_namespaces.contains(namespace) {
                return Err(ManifestError::UnknownNamespace {
                    object: describe_defaulted(obj),
                    namespace: namespace.to_owned(),
                    known: list(&known_namespaces),
                });
            }
        }
        let pinned = match obj {
            Object::Pod(pod) => pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .map(|node| ("spec.nodeName", node)),
            Object::Deployment(d) => d
                .spec
                .template
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .map(|node| ("spec.template.spec.nodeName", node)),
            _ => None,
        };
        if let Some((field, node)) = pinned.filter(|(_, node)| !node.is_empty())
            && !known_nodes.contains(node)
        {
            return Err(ManifestError::UnknownNode {
                object: describe_defaulted(obj),
                field,
                node: node.to_owned(),
                known: if known_nodes.is_empty() {
                    "none".to_owned()
                } else {
                    list(&known_nodes)
                },
            });
        }
    }
    Ok(())
}

/// The pods a Deployment stands for. The lab has no ReplicaSet controller: a Deployment of
/// `replicas` (default one) is pods `<deployment>-0` … `<deployment>-<n-1>`, in its namespace,
/// with the template's labels, annotations and spec, owned by it (`controller: true`).
///
/// Put the Deployment first and expand the stored copy, so the owner reference carries its uid.
pub fn expand_deployment(d: &Deployment) -> Vec<Pod> {
    let name = d.metadata.name.clone().unwrap_or_default();
    let replicas = d.spec.replicas.unwrap_or(1).max(0);
    let template_meta = d.spec.template.metadata.clone().unwrap_or_default();
    let owner = OwnerReference {
        api_version: Kind::Deployment.api_version().to_owned(),
        kind: Kind::Deployment.kind_name().to_owned(),
        name: name.clone(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    (0..replicas)
        .map(|i| Pod {
            metadata: ObjectMeta {
                name: Some(format!("{name}-{i}")),
                namespace: d.metadata.namespace.clone(),
                labels: template_meta.labels.clone(),
                annotations: template_meta.annotations.clone(),
                owner_references: Some(vec![owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: d.spec.template.spec.clone(),
            status: None,
        })
        .collect()
}

// === impl DocRef ===

impl DocRef {
    /// What a raw document says about itself, before it is decoded: enough to name it.
    fn of(value: &Value, document: usize, item: Option<usize>) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let metadata = value.get("metadata");
        Self {
            document,
            item,
            kind: text(value.get("kind")),
            namespace: text(metadata.and_then(|m| m.get("namespace"))),
            name: text(metadata.and_then(|m| m.get("name"))),
        }
    }
}

impl fmt::Display for DocRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        let kind = self.kind.as_deref().unwrap_or("object");
        match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => write!(f, " ({kind} {ns}/{name})"),
            (None, Some(name)) => write!(f, " ({kind} {name})"),
            (_, None) => write!(f, " ({kind} without a name)"),
        }
    }
}

/// `Pod default/web` for an object whose namespace may not be written out yet.
fn describe_defaulted(obj: &Object) -> String {
    let namespace = obj
        .namespace()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    format!("{} {namespace}/{}", obj.kind(), obj.name())
}

/// Splits `text` into its documents. Text that starts with `{` is read as JSON (one or more
/// objects one after another); anything else as YAML, whose superset covers most JSON too.
fn documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    if text.trim_start().starts_with('{') {
        let json: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect();
        match json {
            Ok(values) => return Ok(values),
            // A YAML flow mapping also starts with `{`: give YAML its chance, but report JSON's
            // complaint if YAML has one too, since JSON is what the text looked like.
            Err(json_error) => {
                return yaml_documents(text).map_err(|_| ManifestError::Syntax {
                    document: 1,
                    message: json_error.to_string(),
                });
            }
        }
    }
    yaml_documents(text)
}

fn yaml_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .map(|(index, document)| {
            Value::deserialize(document).map_err(|e| ManifestError::Syntax {
                document: index + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// `kind: List` (or `PodList`, `ServiceList`, … as `kubectl get -o yaml` writes) with `items`.
fn is_list(document: &Value) -> bool {
    let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
    kind.ends_with("List") && document.get("items").is_some_and(Value::is_array)
}

/// Decodes and checks one object.
fn parse_object(
    value: Value,
    document: usize,
    item: Option<usize>,
) -> Result<Object, ManifestError> {
    let doc = Box::new(DocRef::of(&value, document, item));
    let found = match &value {
        Value::Object(_) => None,
        Value::Array(_) => Some("a list"),
        Value::String(_) => Some("a string"),
        Value::Number(_) => Some("a number"),
        Value::Bool(_) => Some("a boolean"),
        Value::Null => Some("nothing"),
    };
    if let Some(found) = found {
        return Err(ManifestError::NotAnObject { doc, found });
    }
    let obj = match Object::from_value_strict(value) {
        Ok(obj) => obj,
        Err(problem) => return Err(ManifestError::Decode { doc, problem }),
    };
    match rules::check(&obj) {
        Ok(()) => Ok(obj),
        Err(problem) => Err(problem.into_error(doc)),
    }
}
