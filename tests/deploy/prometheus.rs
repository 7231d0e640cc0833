//! The operator's PrometheusRule and the tested rules file.

use crate::support::*;

/// The operator's PrometheusRule carries exactly the rules that promtool checks and tests in
/// CI (deploy/prometheus/alerts.yaml), and every alert links its runbook section.
#[test]
fn the_prometheus_rule_is_the_tested_rules_file() {
    let rules = single_yaml_document("deploy/prometheus/alerts.yaml");
    let operator = single_yaml_document("deploy/prometheus/prometheusrule.yaml");
    assert_eq!(operator["kind"], "PrometheusRule");
    assert_eq!(
        operator["spec"]["groups"], rules["groups"],
        "deploy/prometheus/prometheusrule.yaml differs from alerts.yaml"
    );
    let runbook = read("docs/operations.md").to_lowercase();
    for group in array(&rules, "groups") {
        for rule in array(group, "rules") {
            let alert = scalar(&rule["alert"], "alert");
            let anchor = format!("#{}", alert.to_lowercase());
            assert_eq!(
                rule["annotations"]["runbook"],
                format!("docs/operations.md{anchor}").as_str(),
                "{alert}: runbook link"
            );
            assert!(
                runbook.contains(&format!("### {}", alert.to_lowercase())),
                "docs/operations.md has no section for {alert}"
            );
        }
    }
}
