//! Cluster state as standard Kubernetes objects.
