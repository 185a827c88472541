//! Metrics in the dashboard (issue 21): writers add one with a form that names the event the
//! application tracks; a mistake is said in the form's words and keeps what was typed; readers
//! see the list and cannot post; a post without the CSRF token is refused.

use crate::dashboard::csrf_of;
use crate::dashboard_product::signed_in;

#[test]
fn writers_add_metrics_in_the_dashboard_and_mistakes_name_the_field() {
    fn form(csrf: &str, key: &str, event: &str) -> Vec<(&'static str, String)> {
        vec![
            ("csrf", csrf.to_owned()),
            ("env", "test".to_owned()),
            ("name", "Revenue".to_owned()),
            ("key", key.to_owned()),
            ("event_key", event.to_owned()),
            ("kind", "numeric".to_owned()),
            ("aggregation", "sum".to_owned()),
            ("unit", "EUR".to_owned()),
            ("better", "higher".to_owned()),
        ]
    }
    fn pairs<'a>(fields: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
    let started = crate::dashboard_product::start();
    let (_, base, rt, api) = started.parts();
    rt.block_on(async {
        let mut pm = signed_in(api, base, "pm@example.com", "writer").await;
        let page = pm.get("/projects/default/metrics?env=test").await;
        assert_eq!(page.status, 200);
        assert!(
            page.body.contains("data-testid=\"new-metric\""),
            "writers get the form"
        );
        let csrf = csrf_of(&page.body);
        let made = pm
            .form(
                "/projects/default/metrics",
                &pairs(&form(&csrf, "revenue", "purchase")),
            )
            .await;
        assert_eq!(made.status, 303, "{}", made.body);
        let stored = api.get("/projects/default/metrics/revenue").await;
        assert_eq!(stored["eventKey"], "purchase");
        assert_eq!(stored["aggregation"], "sum");
        let list = pm.get("/projects/default/metrics?env=test").await;
        assert!(
            list.body
                .contains("Numeric: total value of “purchase” per context (EUR)"),
            "{}",
            list.body
        );
        // A missing event key is refused, said in the form's words, and what was typed stays.
        let refused = pm
            .form(
                "/projects/default/metrics",
                &pairs(&form(&csrf, "revenue-2", "")),
            )
            .await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(refused.body.contains("Event key:"), "{}", refused.body);
        assert!(refused.body.contains("value=\"revenue-2\""));
        // Readers see the list, not the form, and their post is refused; so is one without
        // the CSRF token.
        let mut reader = signed_in(api, base, "rita@example.com", "reader").await;
        let seen = reader.get("/projects/default/metrics?env=test").await;
        assert!(seen.body.contains("data-metric=\"revenue\""));
        assert!(!seen.body.contains("data-testid=\"new-metric\""));
        let reader_csrf = csrf_of(&seen.body);
        let denied = reader
            .form(
                "/projects/default/metrics",
                &pairs(&form(&reader_csrf, "sneaky", "purchase")),
            )
            .await;
        assert_eq!(denied.status, 403, "{}", denied.body);
        let without_csrf = pm
            .form(
                "/projects/default/metrics",
                &pairs(&form(&csrf, "no-csrf", "purchase")[1..]),
            )
            .await;
        assert_eq!(without_csrf.status, 403);
        let listed = api.get("/projects/default/metrics").await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    });
}
