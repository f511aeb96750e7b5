//! Label selectors as NetworkPolicy and ClusterNetworkPolicy use them (metav1 `LabelSelector`
//! semantics: `matchLabels` and every `matchExpressions` requirement must hold).
//!
//! `podnet-store` has a matcher with the same semantics (`labels::selector_matches`), but the
//! model crate does not depend on the store, so policy has its own; both follow
//! apimachinery's `labels.Selector`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` selects an object with `labels`. An empty selector selects everything.
/// A requirement the API server would have rejected (unknown operator, `In`/`NotIn` without
/// values) selects nothing: `check` reports it.
pub(crate) fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    labels_match
        && selector.match_expressions.iter().flatten().all(|req| {
            let values = req.values.as_deref().unwrap_or_default();
            let value = labels.get(&req.key);
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                // NotIn also selects objects without the key (apimachinery `selection.NotIn`).
                "NotIn" => !values.is_empty() && !value.is_some_and(|v| values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// What is wrong with `selector` (as the API server's validation would say), naming `field`.
pub(crate) fn check(selector: &LabelSelector, field: &str) -> Result<(), String> {
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let has_values = req.values.as_ref().is_some_and(|v| !v.is_empty());
        match req.operator.as_str() {
            "In" | "NotIn" if !has_values => {
                return Err(format!(
                    "{field}.matchExpressions[{i}]: operator {} needs values",
                    req.operator
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "{field}.matchExpressions[{i}].operator {other:?} is not In, NotIn, Exists or DoesNotExist"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator: operator.to_owned(),
                values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
            }]),
            ..LabelSelector::default()
        }
    }

    #[test]
    fn expressions_follow_apimachinery() {
        let web = labels(&[("app", "web")]);
        let none = labels(&[]);
        assert!(matches(&expr("app", "In", &["web", "db"]), &web));
        assert!(!matches(&expr("app", "In", &["web"]), &none));
        assert!(!matches(&expr("app", "NotIn", &["web"]), &web));
        assert!(matches(&expr("app", "NotIn", &["web"]), &none));
        assert!(matches(&expr("app", "Exists", &[]), &web));
        assert!(matches(&expr("app", "DoesNotExist", &[]), &none));
        assert!(matches(&LabelSelector::default(), &none));
    }

    #[test]
    fn invalid_requirements_select_nothing_and_are_reported() {
        let web = labels(&[("app", "web")]);
        let near = expr("app", "Near", &["web"]);
        assert!(!matches(&near, &web));
        let err = check(&near, "spec.podSelector").unwrap_err();
        assert_eq!(
            err,
            "spec.podSelector.matchExpressions[0].operator \"Near\" is not In, NotIn, Exists or DoesNotExist"
        );
        let empty_in = expr("app", "NotIn", &[]);
        assert!(!matches(&empty_in, &web));
        assert!(check(&empty_in, "x").unwrap_err().contains("needs values"));
    }
}
