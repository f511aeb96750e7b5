//! The name formats Kubernetes requires (k8s.io/apimachinery/pkg/util/validation), each with
//! the text an error shows as what was expected.

/// Namespaces, container names, Service port names.
pub(super) const DNS1123_LABEL: &str = "an RFC 1123 label: at most 63 characters of lowercase letters, digits and '-', starting and ending with a letter or digit (e.g. \"my-name\")";

/// Most object names: Pods, Nodes, Deployments, ConfigMaps, ….
pub(super) const DNS1123_SUBDOMAIN: &str = "an RFC 1123 subdomain: at most 253 characters of lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit (e.g. \"web-1\" or \"node1.lab\")";

/// Service names (they become DNS labels, which must not start with a digit).
pub(super) const DNS1035_LABEL: &str = "an RFC 1035 label: at most 63 characters of lowercase letters, digits and '-', starting with a letter and ending with a letter or digit (e.g. \"my-service\")";

/// Named ports.
pub(super) const IANA_SVC_NAME: &str = "a port name: at most 15 characters of lowercase letters, digits and '-', with at least one letter, no \"--\", not starting or ending with '-' (e.g. \"http\")";

/// Label values.
pub(super) const LABEL_VALUE: &str = "a label value: empty, or at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit";

/// Label and annotation keys.
pub(super) const QUALIFIED_NAME: &str = "a key like \"app\" or \"example.com/app\": an optional RFC 1123 subdomain and '/', then at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit";

/// ConfigMap keys.
pub(super) const CONFIG_KEY: &str =
    "a key of at most 253 letters, digits, '-', '_' and '.' (not \".\" or \"..\")";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, without a length limit.
fn is_label_shaped(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: the name part of label keys and label values.
fn is_label_text(s: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && edge_ok(s.chars().next())
        && edge_ok(s.chars().last())
}

pub(super) fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_label_shaped(s)
}

pub(super) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_shaped)
}

pub(super) fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

pub(super) fn is_iana_svc_name(s: &str) -> bool {
    s.len() <= 15
        && is_label_shaped(s)
        && !s.contains("--")
        && s.bytes().any(|b| b.is_ascii_lowercase())
}

pub(super) fn is_label_value(s: &str) -> bool {
    s.is_empty() || (s.len() <= 63 && is_label_text(s))
}

pub(super) fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(|p| !p.is_empty() && is_dns1123_subdomain(p))
        && name.len() <= 63
        && is_label_text(name)
}

pub(super) fn is_config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains_follow_rfc_1123() {
        assert!(is_dns1123_label("web-1"));
        assert!(!is_dns1123_label("Web"));
        assert!(!is_dns1123_label("-web"));
        assert!(!is_dns1123_label("web."));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("node1.lab"));
        assert!(!is_dns1123_subdomain("node1..lab"));
        assert!(!is_dns1123_subdomain("web_1"));
    }

    #[test]
    fn service_names_must_start_with_a_letter() {
        assert!(is_dns1035_label("web"));
        assert!(!is_dns1035_label("1web"));
    }

    #[test]
    fn port_names_need_a_letter_and_no_double_hyphen() {
        assert!(is_iana_svc_name("http"));
        assert!(is_iana_svc_name("h2c-8080"));
        assert!(!is_iana_svc_name("8080"));
        assert!(!is_iana_svc_name("a--b"));
        assert!(!is_iana_svc_name("a-very-long-port-name"));
    }

    #[test]
    fn label_keys_may_carry_a_dns_prefix() {
        assert!(is_qualified_name("app"));
        assert!(is_qualified_name("app.kubernetes.io/name"));
        assert!(!is_qualified_name("/name"));
        assert!(!is_qualified_name("Example.com/name"));
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3"));
        assert!(!is_label_value("-v1"));
    }
}
