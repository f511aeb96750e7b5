//! Label selectors: whether one matches a set of labels, and how kubectl prints them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` selects an object with `labels`. An empty selector selects everything;
/// an unknown operator selects nothing (the API server would have rejected it).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_match = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// Whether `selector` has no requirement at all (and so selects everything).
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// `selector` as kubectl prints it: `app=web,tier in (a,b),!canary`, requirements sorted by key;
/// empty for an empty selector.
pub fn format_selector(selector: &LabelSelector) -> String {
    let mut requirements: Vec<(&str, String)> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), format!("{key}={value}")))
        .collect();
    for req in selector.match_expressions.iter().flatten() {
        let mut values: Vec<&str> = req.values.iter().flatten().map(String::as_str).collect();
        values.sort_unstable();
        let key = req.key.as_str();
        let text = match req.operator.as_str() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        };
        requirements.push((key, text));
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    requirements
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(",")
}

/// `labels` as kubectl prints them: `app=web,tier=front`; empty when there are none.
pub fn format_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
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

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                requirement("tier", "In", &["front", "edge"]),
                requirement("canary", "DoesNotExist", &[]),
            ]),
        };
        assert!(selector_matches(
            &selector,
            &labels(&[("app", "web"), ("tier", "edge")])
        ));
        assert!(!selector_matches(&selector, &labels(&[("app", "web")])));
        assert!(!selector_matches(
            &selector,
            &labels(&[("app", "web"), ("tier", "front"), ("canary", "")])
        ));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
        assert!(selector_is_empty(&LabelSelector::default()));
        let unknown = LabelSelector {
            match_expressions: Some(vec![requirement("a", "Near", &["b"])]),
            ..LabelSelector::default()
        };
        assert!(!selector_matches(&unknown, &labels(&[("a", "b")])));
    }

    #[test]
    fn selectors_print_as_kubectl_prints_them() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("role", "db")])),
            match_expressions: Some(vec![
                requirement("tier", "NotIn", &["b", "a"]),
                requirement("canary", "Exists", &[]),
            ]),
        };
        assert_eq!(
            format_selector(&selector),
            "canary,role=db,tier notin (a,b)"
        );
        assert_eq!(format_selector(&LabelSelector::default()), "");
        assert_eq!(format_labels(&labels(&[("b", "2"), ("a", "1")])), "a=1,b=2");
    }
}
