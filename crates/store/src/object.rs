//! The Kubernetes kinds podnet keeps, and [`Object`], which holds any one of them.

use std::fmt;

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podnet_model::policy::{CNP_API_VERSION, CNP_KIND, ClusterNetworkPolicy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::StoreError;

mod decode;
#[cfg(test)]
mod tests;

/// A kind of object podnet stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1` Namespace.
    Namespace,
    /// `v1` Node.
    Node,
    /// `v1` Pod.
    Pod,
    /// `apps/v1` Deployment.
    Deployment,
    /// `v1` Service.
    Service,
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice,
    /// `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy,
    /// `networking.k8s.io/v1` Ingress.
    Ingress,
    /// `v1` ConfigMap.
    ConfigMap,
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy (cluster-scoped).
    ClusterNetworkPolicy,
}

/// Any object podnet stores, as its k8s-openapi type.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A Namespace.
    Namespace(Namespace),
    /// A Node.
    Node(Node),
    /// A Pod.
    Pod(Pod),
    /// A Deployment.
    Deployment(Deployment),
    /// A Service.
    Service(Service),
    /// An EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
    /// An Ingress.
    Ingress(Ingress),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
    /// A ClusterNetworkPolicy.
    ClusterNetworkPolicy(ClusterNetworkPolicy),
}

/// Evaluates `$body` with `$o` bound to the typed value inside `$object`, whatever its kind.
macro_rules! with_object {
    ($object:expr, $o:ident => $body:expr) => {
        match $object {
            Object::Namespace($o) => $body,
            Object::Node($o) => $body,
            Object::Pod($o) => $body,
            Object::Deployment($o) => $body,
            Object::Service($o) => $body,
            Object::EndpointSlice($o) => $body,
            Object::NetworkPolicy($o) => $body,
            Object::Ingress($o) => $body,
            Object::ConfigMap($o) => $body,
            Object::ClusterNetworkPolicy($o) => $body,
        }
    };
}

/// Evaluates `$body` with `$t` bound to the k8s-openapi type of `$kind`.
macro_rules! with_type {
    ($kind:expr, $t:ident => $body:expr) => {
        match $kind {
            Kind::Namespace => {
                type $t = Namespace;
                $body
            }
            Kind::Node => {
                type $t = Node;
                $body
            }
            Kind::Pod => {
                type $t = Pod;
                $body
            }
            Kind::Deployment => {
                type $t = Deployment;
                $body
            }
            Kind::Service => {
                type $t = Service;
                $body
            }
            Kind::EndpointSlice => {
                type $t = EndpointSlice;
                $body
            }
            Kind::NetworkPolicy => {
                type $t = NetworkPolicy;
                $body
            }
            Kind::Ingress => {
                type $t = Ingress;
                $body
            }
            Kind::ConfigMap => {
                type $t = ConfigMap;
                $body
            }
            Kind::ClusterNetworkPolicy => {
                type $t = ClusterNetworkPolicy;
                $body
            }
        }
    };
}

// === impl Kind ===

impl Kind {
    /// Every kind, in the order `podnet lab get all`-style listings use.
    pub fn all() -> &'static [Kind] {
        &[
            Kind::Namespace,
            Kind::Node,
            Kind::Pod,
            Kind::Deployment,
            Kind::Service,
            Kind::EndpointSlice,
            Kind::NetworkPolicy,
            Kind::Ingress,
            Kind::ConfigMap,
            Kind::ClusterNetworkPolicy,
        ]
    }

    /// The resource name in URLs and kubectl: `pods`, `endpointslices`, `networkpolicies`, …
    pub fn plural(self) -> &'static str {
        with_type!(self, T => <T as TypeMeta>::URL_PATH_SEGMENT)
    }

    /// The `kind` field: `Pod`, `EndpointSlice`, …
    pub fn kind_name(self) -> &'static str {
        with_type!(self, T => <T as TypeMeta>::KIND)
    }

    /// The `apiVersion` field: `v1`, `apps/v1`, `discovery.k8s.io/v1`, `networking.k8s.io/v1`.
    pub fn api_version(self) -> &'static str {
        with_type!(self, T => <T as TypeMeta>::API_VERSION)
    }

    /// The API group: empty for core kinds, `apps`, `discovery.k8s.io`, `networking.k8s.io`.
    pub fn group(self) -> &'static str {
        with_type!(self, T => <T as TypeMeta>::GROUP)
    }

    /// kubectl's short name, if the kind has one (EndpointSlice has none).
    pub fn short_name(self) -> Option<&'static str> {
        match self {
            Kind::Namespace => Some("ns"),
            Kind::Node => Some("no"),
            Kind::Pod => Some("po"),
            Kind::Deployment => Some("deploy"),
            Kind::Service => Some("svc"),
            Kind::EndpointSlice => None,
            Kind::NetworkPolicy => Some("netpol"),
            Kind::Ingress => Some("ing"),
            Kind::ConfigMap => Some("cm"),
            Kind::ClusterNetworkPolicy => Some("cnp"),
        }
    }

    /// Whether objects of this kind live in a namespace (Namespace, Node and
    /// ClusterNetworkPolicy do not).
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Namespace | Kind::Node | Kind::ClusterNetworkPolicy
        )
    }

    /// Parses a resource type as kubectl accepts it: singular (`pod`), plural (`pods`), short name
    /// (`po`), or kind (`Pod`), in any case, optionally qualified by its group
    /// (`deployments.apps`, `networkpolicies.networking.k8s.io`, `deployments.v1.apps`).
    pub fn from_user(s: &str) -> Result<Kind, StoreError> {
        let input = s.trim();
        let (resource, group) = match input.split_once('.') {
            Some((resource, group)) => (resource, Some(group)),
            None => (input, None),
        };
        let found = Kind::all().iter().copied().find(|kind| {
            let name_matches = resource.eq_ignore_ascii_case(kind.plural())
                || resource.eq_ignore_ascii_case(kind.kind_name())
                || kind
                    .short_name()
                    .is_some_and(|short| resource.eq_ignore_ascii_case(short));
            let group_matches = group.is_none_or(|group| kind.group_matches(group));
            name_matches && group_matches
        });
        found.ok_or_else(|| StoreError::UnknownKind {
            input: input.to_owned(),
            accepted: Kind::accepted_forms(),
        })
    }

    /// `group` as kubectl accepts it after the resource name: `apps` or `v1.apps`.
    fn group_matches(self, group: &str) -> bool {
        let own = self.group();
        if own.is_empty() {
            return false;
        }
        let versioned = self.api_version();
        // apiVersion is `<group>/<version>`; kubectl writes it `<version>.<group>`.
        let dotted = versioned
            .split_once('/')
            .map(|(g, v)| format!("{v}.{g}"))
            .unwrap_or_default();
        group.eq_ignore_ascii_case(own) || group.eq_ignore_ascii_case(&dotted)
    }

    /// `pods (po), …`, for error messages.
    fn accepted_forms() -> String {
        Kind::all()
            .iter()
            .map(|kind| match kind.short_name() {
                Some(short) => format!("{} ({short})", kind.plural()),
                None => kind.plural().to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind_name())
    }
}

// === impl Object ===

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Node(_) => Kind::Node,
            Object::Pod(_) => Kind::Pod,
            Object::Deployment(_) => Kind::Deployment,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
            Object::Ingress(_) => Kind::Ingress,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::ClusterNetworkPolicy(_) => Kind::ClusterNetworkPolicy,
        }
    }

    /// `metadata`.
    pub fn metadata(&self) -> &ObjectMeta {
        with_object!(self, o => &o.metadata)
    }

    /// `metadata`, to change.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        with_object!(self, o => &mut o.metadata)
    }

    /// `metadata.name`, or `""` when it is missing.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// `metadata.namespace` as written (the store fills in `default` for namespaced kinds).
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// The object as JSON, with `apiVersion` and `kind` set.
    pub fn to_value(&self) -> Value {
        // Every k8s-openapi type serializes to a JSON map with string keys, and `Time` formats
        // any jiff timestamp, so this cannot fail; Null stands in for the impossible.
        self.try_to_value().unwrap_or(Value::Null)
    }

    /// [`Object::to_value`] for callers that write the result somewhere and must not write Null.
    pub(crate) fn try_to_value(&self) -> Result<Value, StoreError> {
        serde_json::to_value(self).map_err(|e| StoreError::Encode {
            what: self.describe(),
            message: e.to_string(),
        })
    }

    /// The object as YAML, keys sorted as `kubectl get -o yaml` prints them.
    pub(crate) fn to_yaml(&self) -> Result<String, StoreError> {
        // Through a `Value` (a sorted map) rather than straight from the struct: kubectl's
        // YAML is sorted by key, and so the files read like its output.
        serde_yaml::to_string(&self.try_to_value()?).map_err(|e| StoreError::Encode {
            what: self.describe(),
            message: e.to_string(),
        })
    }

    /// Decodes an object, choosing its type from `apiVersion` and `kind`.
    ///
    /// A field of the wrong type is reported with its path, e.g. `spec.ports[0].port`. Fields
    /// Kubernetes does not define are ignored (manifests are read strictly instead).
    pub fn from_value(v: Value) -> Result<Object, StoreError> {
        Self::decode(v, false)
    }

    /// [`Object::from_value`], but a field Kubernetes does not define is an error too, as with
    /// kubectl's default `--validate=strict`: a misspelt `contianers` is caught, not dropped.
    pub(crate) fn from_value_strict(v: Value) -> Result<Object, StoreError> {
        Self::decode(v, true)
    }

    fn decode(v: Value, strict: bool) -> Result<Object, StoreError> {
        let kind_name = v
            .get("kind")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(StoreError::MissingType { field: "kind" })?;
        let api_version = v
            .get("apiVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(StoreError::MissingType {
                field: "apiVersion",
            })?;
        let Some(kind) = Kind::all()
            .iter()
            .copied()
            .find(|k| k.kind_name() == kind_name && k.api_version() == api_version)
        else {
            return Err(unknown_type(kind_name, api_version));
        };
        let decode_error = |e: decode::DecodeError| StoreError::Decode {
            kind: kind.kind_name(),
            api_version: kind.api_version(),
            path: e.path,
            message: e.message,
        };
        Ok(
            with_type!(kind, T => Object::from(decode::from_value::<T>(&v, strict).map_err(decode_error)?)),
        )
    }

    /// `Pod default/web`, `Node n1`: how messages name an object.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) if self.kind().namespaced() => {
                format!("{} {ns}/{}", self.kind(), self.name())
            }
            _ => format!("{} {}", self.kind(), self.name()),
        }
    }
}

/// The error for a `kind`/`apiVersion` pair podnet does not store, saying what would fit.
fn unknown_type(kind_name: &str, api_version: &str) -> StoreError {
    let same_kind = Kind::all()
        .iter()
        .find(|k| k.kind_name().eq_ignore_ascii_case(kind_name));
    let expected = match same_kind {
        Some(k) => format!(
            "{} is served as apiVersion {}",
            k.kind_name(),
            k.api_version()
        ),
        None => {
            let known: Vec<String> = Kind::all()
                .iter()
                .map(|k| format!("{} ({})", k.kind_name(), k.api_version()))
                .collect();
            format!("podnet stores {}", known.join(", "))
        }
    };
    StoreError::UnknownType {
        kind: kind_name.to_owned(),
        api_version: api_version.to_owned(),
        expected,
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            // k8s-openapi types write their own apiVersion and kind; this one has them as
            // plain fields, which a caller may have left empty.
            Object::ClusterNetworkPolicy(o) => {
                let mut o = o.clone();
                o.api_version = Some(CNP_API_VERSION.to_owned());
                o.kind = Some(CNP_KIND.to_owned());
                o.serialize(serializer)
            }
            other => with_object!(other, o => o.serialize(serializer)),
        }
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Object::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// `From<Pod> for Object` and `TryFrom<Object> for Pod` (giving the object back when it is
/// another kind), for each kind.
macro_rules! conversions {
    ($($variant:ident),* $(,)?) => {
        $(
            impl From<$variant> for Object {
                fn from(o: $variant) -> Self {
                    Object::$variant(o)
                }
            }

            impl TryFrom<Object> for $variant {
                type Error = Object;

                fn try_from(o: Object) -> Result<Self, Object> {
                    match o {
                        Object::$variant(inner) => Ok(inner),
                        other => Err(other),
                    }
                }
            }
        )*
    };
}

conversions!(
    Namespace,
    Node,
    Pod,
    Deployment,
    Service,
    EndpointSlice,
    NetworkPolicy,
    Ingress,
    ConfigMap,
    ClusterNetworkPolicy,
);

/// What the store needs to know of a type: k8s-openapi's [`Resource`] constants, for the
/// k8s-openapi types and for the ClusterNetworkPolicy k8s-openapi does not have.
trait TypeMeta {
    const URL_PATH_SEGMENT: &'static str;
    const KIND: &'static str;
    const API_VERSION: &'static str;
    const GROUP: &'static str;
}

macro_rules! type_meta_from_resource {
    ($($t:ty),* $(,)?) => {
        $(
            impl TypeMeta for $t {
                const URL_PATH_SEGMENT: &'static str = <$t as Resource>::URL_PATH_SEGMENT;
                const KIND: &'static str = <$t as Resource>::KIND;
                const API_VERSION: &'static str = <$t as Resource>::API_VERSION;
                const GROUP: &'static str = <$t as Resource>::GROUP;
            }
        )*
    };
}

type_meta_from_resource!(
    Namespace,
    Node,
    Pod,
    Deployment,
    Service,
    EndpointSlice,
    NetworkPolicy,
    Ingress,
    ConfigMap,
);

impl TypeMeta for ClusterNetworkPolicy {
    const URL_PATH_SEGMENT: &'static str = "clusternetworkpolicies";
    const KIND: &'static str = CNP_KIND;
    const API_VERSION: &'static str = CNP_API_VERSION;
    const GROUP: &'static str = "policy.networking.k8s.io";
}
