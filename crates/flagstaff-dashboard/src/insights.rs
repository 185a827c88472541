//! Insights pages: a flag's evaluations over time (an SVG chart drawn here, on the server),
//! the stale-flags view, the contexts seen, and the events pipeline's health with custom events
//! and SDKs. All reads; the data comes from `flagstaff_app::insights`.

use std::fmt::Write as _;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use flagstaff_app::insights::{ContextSearch, Health};
use flagstaff_app::insights::{
    ContextSeenView, CustomEventView, FlagInsights, FlagStatusRow, InsightsRange, SdkReportView,
};
use serde::Deserialize;

use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render};

/// Colours of the chart's series, in variation order (distinguishable with the common colour
/// vision deficiencies: the Okabe-Ito palette); the application default is grey.
const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
];
const DEFAULT_COLOUR: &str = "#8C8C8C";

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A UTC time as `YYYY-MM-DD HH:MM` (civil-from-days, Howard Hinnant's algorithm).
pub(crate) fn utc(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        in_day / 3600,
        (in_day % 3600) / 60
    )
}

fn colour(index: Option<u32>, position: usize) -> &'static str {
    match index {
        None => DEFAULT_COLOUR,
        Some(_) => PALETTE[position % PALETTE.len()],
    }
}

/// The chart: one stacked bar per bucket, a segment per variation, with a legend and a text
/// alternative (the totals) for screen readers.
pub(crate) fn chart(insights: &FlagInsights) -> String {
    const WIDTH: f64 = 960.0;
    const HEIGHT: f64 = 240.0;
    const LEFT: f64 = 56.0;
    const BOTTOM: f64 = 28.0;
    const TOP: f64 = 12.0;
    let plot_width = WIDTH - LEFT - 8.0;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let peak = insights
        .series
        .iter()
        .map(|b| b.counts.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let summary: Vec<String> = insights
        .variations
        .iter()
        .map(|v| format!("{}: {}", v.label, v.total))
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg" aria-labelledby="chart-title chart-desc" data-testid="evaluations-chart"><title id="chart-title">Evaluations of {} in {} over {}</title><desc id="chart-desc">{}</desc>"#,
        escape(&insights.flag),
        escape(&insights.environment),
        insights.range.as_str(),
        escape(&if summary.is_empty() {
            "No evaluations".to_owned()
        } else {
            summary.join(", ")
        })
    );
    // Horizontal grid lines with their values: 0, half, peak.
    for (fraction, value) in [(0.0, 0), (0.5, peak / 2), (1.0, peak)] {
        let y = TOP + plot_height * (1.0 - fraction);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#dde1e6"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11" fill="#5b6470">{value}</text>"##,
            WIDTH - 8.0,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let buckets = insights.series.len().max(1) as f64;
    let slot = plot_width / buckets;
    let bar = (slot * 0.8).max(1.0);
    for (i, bucket) in insights.series.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = TOP + plot_height;
        for (position, count) in bucket.counts.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let height = plot_height * (*count as f64) / (peak as f64);
            y -= height;
            let variation = &insights.variations[position];
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{height:.1}" fill="{}"><title>{}: {} {}</title></rect>"#,
                colour(variation.index, position),
                utc(bucket.start),
                count,
                escape(&variation.label)
            );
        }
    }
    // Time labels at the start, middle and end.
    if let (Some(first), Some(last)) = (insights.series.first(), insights.series.last()) {
        let middle = &insights.series[insights.series.len() / 2];
        for (x, anchor, start) in [
            (LEFT, "start", first.start),
            (LEFT + plot_width / 2.0, "middle", middle.start),
            (LEFT + plot_width, "end", last.start),
        ] {
            let _ = write!(
                svg,
                r##"<text x="{x:.1}" y="{}" text-anchor="{anchor}" font-size="11" fill="#5b6470">{} UTC</text>"##,
                HEIGHT - 8.0,
                utc(start)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A row of the legend.
pub(crate) struct Legend {
    pub colour: &'static str,
    pub label: String,
    pub total: u64,
    pub share: String,
}

#[derive(Template)]
#[template(path = "flag_insights.html")]
struct FlagInsightsPage {
    nav: Nav,
    name: String,
    insights: FlagInsights,
    chart: String,
    legend: Vec<Legend>,
    ranges: Vec<&'static str>,
    /// For a migration flag: what SDK migrators reported, one line per operation and stage.
    migration: Option<MigrationView>,
}

/// A migration flag's insights as the page shows them.
struct MigrationView {
    stage: String,
    check_ratio: String,
    lines: Vec<MigrationLine>,
}

/// One operation at one stage, in words and numbers ready to print.
struct MigrationLine {
    operation: String,
    stage: String,
    operations: u64,
    consistency: String,
    old_errors: String,
    new_errors: String,
    old_latency: String,
    new_latency: String,
    /// Something needs attention: an inconsistency or an error.
    alert: bool,
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_owned(), |r| format!("{:.1} %", 100.0 * r))
}

fn errors(origin: &flagstaff_app::migration::OriginSummary) -> String {
    if origin.invoked == 0 {
        "not used".to_owned()
    } else {
        format!(
            "{} of {} ({})",
            origin.errors,
            origin.invoked,
            percent(origin.error_rate)
        )
    }
}

fn latency(origin: &flagstaff_app::migration::OriginSummary) -> String {
    match (origin.mean_latency_ms, origin.max_latency_ms) {
        (Some(mean), Some(max)) => format!("{mean:.2} ms mean, {max:.2} ms worst"),
        _ => "–".to_owned(),
    }
}

fn migration_view(insights: &flagstaff_app::migration::MigrationInsights) -> MigrationView {
    MigrationView {
        stage: match (&insights.stage, insights.on) {
            (Some(stage), true) => format!("{stage} for everyone"),
            (Some(stage), false) => format!("{stage} for everyone (targeting is off)"),
            (None, _) => "depends on the context (targets, rules or a rollout)".to_owned(),
        },
        check_ratio: match insights.check_ratio {
            0 => "never".to_owned(),
            1 => "every read".to_owned(),
            n => format!("1 read in {n}"),
        },
        lines: insights
            .totals
            .iter()
            .map(|row| MigrationLine {
                operation: row.operation.clone(),
                stage: row.stage.clone(),
                operations: row.operations,
                consistency: if row.consistency_checks == 0 {
                    "no reads compared".to_owned()
                } else {
                    format!(
                        "{} consistent ({} of {} differed)",
                        percent(row.consistency_rate),
                        row.inconsistent,
                        row.consistency_checks
                    )
                },
                old_errors: errors(&row.old),
                new_errors: errors(&row.new),
                old_latency: latency(&row.old),
                new_latency: latency(&row.new),
                alert: row.inconsistent > 0 || row.old.errors > 0 || row.new.errors > 0,
            })
            .collect(),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct InsightsQuery {
    env: Option<String>,
    range: Option<String>,
    days: Option<u32>,
    q: Option<String>,
    kind: Option<String>,
    all: Option<String>,
}

/// `GET /projects/{project}/flags/{key}/insights`.
pub(crate) async fn flag(
    State(dashboard): DashState,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Query(q): Query<InsightsQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "flags",
        format!("/projects/{project}/flags/{key}/insights"),
    )
    .await?;
    let app = &dashboard.app;
    let definition = app.flag(&viewer.actor, &project, &key).await?.value;
    let range = InsightsRange::parse(q.range.as_deref().unwrap_or("24h"))?;
    let insights = app
        .flag_insights(
            &viewer.actor,
            &project,
            &key,
            &nav.environment,
            range,
            q.days.unwrap_or(7),
        )
        .await?;
    let legend = insights
        .variations
        .iter()
        .enumerate()
        .map(|(position, v)| Legend {
            colour: colour(v.index, position),
            label: v.label.clone(),
            total: v.total,
            share: if insights.total == 0 {
                "0 %".into()
            } else {
                format!("{:.1} %", 100.0 * v.total as f64 / insights.total as f64)
            },
        })
        .collect();
    let migration = if definition.kind == flagstaff_app::model::FlagKind::Migration {
        let insights = app
            .migration_insights(&viewer.actor, &project, &key, &nav.environment, range)
            .await?;
        Some(migration_view(&insights))
    } else {
        None
    };
    Ok(render(&FlagInsightsPage {
        migration,
        chart: chart(&insights),
        nav,
        name: definition.name,
        insights,
        legend,
        ranges: InsightsRange::ALL.iter().map(|r| r.as_str()).collect(),
    }))
}

#[derive(Template)]
#[template(path = "stale_flags.html")]
struct StalePage {
    nav: Nav,
    rows: Vec<FlagStatusRow>,
    days: u32,
    all: bool,
}

/// `GET /projects/{project}/stale-flags`: temporary flags safe to remove, with the evidence
/// (`?all=1`: every flag's status).
pub(crate) async fn stale(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(q): Query<InsightsQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "stale",
        format!("/projects/{project}/stale-flags"),
    )
    .await?;
    let days = q.days.unwrap_or(7);
    let all = q.all.is_some_and(|a| !a.is_empty() && a != "0");
    let rows = dashboard
        .app
        .flag_statuses(&viewer.actor, &project, days)
        .await?
        .into_iter()
        .filter(|row| all || row.safe_to_remove)
        .collect();
    Ok(render(&StalePage {
        nav,
        rows,
        days,
        all,
    }))
}

/// A context row with its "test this context" link.
pub(crate) struct ContextRow {
    pub context: ContextSeenView,
    pub attributes: String,
    pub test_link: String,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "contexts.html")]
struct ContextsPage {
    nav: Nav,
    rows: Vec<ContextRow>,
    q: String,
    kind: String,
}

/// Percent-encodes a query parameter value.
fn encode(text: &str) -> String {
    // Everything but RFC 3986's unreserved characters is escaped.
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

/// `GET /projects/{project}/contexts`: contexts seen in the environment, searchable.
pub(crate) async fn contexts(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(q): Query<InsightsQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "contexts",
        format!("/projects/{project}/contexts"),
    )
    .await?;
    let text = q.q.unwrap_or_default();
    let kind = q.kind.unwrap_or_default();
    let search = ContextSearch {
        kind: (!kind.is_empty()).then(|| kind.clone()),
        text: (!text.trim().is_empty()).then(|| text.trim().to_owned()),
        limit: 200,
    };
    let rows = dashboard
        .app
        .contexts_seen(&viewer.actor, &project, &nav.environment, &search)
        .await?
        .into_iter()
        .map(|context| {
            let json = serde_json::to_string_pretty(&context.context_json()).unwrap_or_default();
            ContextRow {
                attributes: context.attributes.to_string(),
                test_link: format!(
                    "/projects/{project}/test?env={}&context={}",
                    encode(&nav.environment),
                    encode(&json)
                ),
                last_seen: utc(context.last_seen),
                context,
            }
        })
        .collect();
    Ok(render(&ContextsPage {
        nav,
        rows,
        q: text,
        kind,
    }))
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    nav: Nav,
    health: Option<Health>,
    last_write: String,
    custom: Vec<CustomEventView>,
    sdks: Vec<SdkReportView>,
    days: u32,
}

/// `GET /projects/{project}/events`: ingestion health, custom events and SDKs.
pub(crate) async fn events(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(q): Query<InsightsQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "events",
        format!("/projects/{project}/events"),
    )
    .await?;
    let app = &dashboard.app;
    let days = q.days.unwrap_or(7);
    let health = app.events_health(&viewer.actor)?;
    let custom = app
        .custom_events(&viewer.actor, &project, &nav.environment, days)
        .await?;
    let sdks = app
        .sdk_reports(&viewer.actor, &project, &nav.environment)
        .await?;
    Ok(render(&EventsPage {
        last_write: health
            .as_ref()
            .and_then(|h| h.last_write_at)
            .map_or_else(|| "never".into(), utc),
        nav,
        health,
        custom,
        sdks,
        days,
    }))
}

#[cfg(test)]
mod tests {
    use flagstaff_app::insights::{SeriesBucket, VariationLabel};

    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(utc(1_800_000_000_000), "2027-01-15 08:00");
        assert_eq!(utc(-60_000), "1969-12-31 23:59");
    }

    #[test]
    fn the_chart_stacks_each_variation_and_escapes_labels() {
        let insights = FlagInsights {
            flag: "checkout".into(),
            environment: "production".into(),
            range: InsightsRange::Hour,
            bucket_millis: 60_000,
            variations: vec![
                VariationLabel {
                    index: Some(0),
                    label: "<b>new</b>".into(),
                    total: 30,
                },
                VariationLabel {
                    index: None,
                    label: "default".into(),
                    total: 10,
                },
            ],
            series: vec![
                SeriesBucket {
                    start: 0,
                    counts: vec![30, 0],
                },
                SeriesBucket {
                    start: 60_000,
                    counts: vec![0, 10],
                },
            ],
            total: 40,
            environments: Vec::new(),
            sdks: Vec::new(),
            status_days: 7,
        };
        let svg = chart(&insights);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("&lt;b&gt;new&lt;/b&gt;: 30, default: 10"));
        // The tallest bucket fills the plot; the other is a third of it.
        assert!(svg.contains(r#"height="200.0""#), "{svg}");
        assert!(svg.contains(r#"height="66.7""#), "{svg}");
        assert!(svg.contains(DEFAULT_COLOUR));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("{\"a\": 1}"), "%7B%22a%22%3A%201%7D");
    }
}
