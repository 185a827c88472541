//! Live updates: an EventSource stream of the project's changes, so that an open page learns at
//! once that someone else changed what it shows. Each event names what changed (kind, scope,
//! key), who changed it and the change-feed position; the page decides whether it is affected
//! and reloads, or, when it holds unsaved edits, says so instead of throwing them away.
//!
//! The stream reads the store's change feed: it wakes on commits made through this node and
//! polls the feed's head every second for commits made by other nodes sharing the database.
//! Streams end when the server shuts down (browsers reconnect with `Last-Event-ID`), and when
//! the viewer's session ends (signed out, expired, or the token revoked): the session is
//! checked again at every wake-up, at least once a second, so an ended session stops seeing
//! changes within a second and its browser's reconnect is refused.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::json;

use crate::session::Viewer;
use crate::{DashState, PageError};

#[derive(Deserialize, Default)]
pub(crate) struct LiveQuery {
    after: Option<u64>,
}

pub(crate) async fn stream(
    State(dashboard): DashState,
    viewer: Viewer,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<LiveQuery>,
) -> Result<Response, PageError> {
    dashboard.app.project(&viewer.actor, &project).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let start = match resume.or(q.after) {
        Some(seq) => seq,
        None => dashboard.app.head().await?,
    };
    let events = changes(dashboard, viewer, project, start);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(25)))
        .into_response())
}

/// The project's changes the viewer may read, as `change` events, from position `start` on.
/// Which changes a viewer may read is decided by the app (`App::changes`), as for the history.
fn changes(
    dashboard: std::sync::Arc<crate::Dashboard>,
    viewer: Viewer,
    project: String,
    start: u64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = (dashboard, start, Vec::<Event>::new());
    futures_util::stream::unfold(state, move |(dashboard, mut last, mut pending)| {
        let project = project.clone();
        let actor = viewer.actor.clone();
        let secret = viewer.secret.clone();
        async move {
            let mut commits = dashboard.app.watch();
            let mut closing = dashboard.closing.subscribe();
            loop {
                if let Some(event) = pending.pop() {
                    return Some((Ok(event), (dashboard, last, pending)));
                }
                if *closing.borrow() {
                    return None;
                }
                if let Err(flagstaff_app::AppError::Unauthorized) =
                    dashboard.app.authenticate(&secret).await
                {
                    return None;
                }
                match dashboard.app.changes(&actor, &project, last, 100).await {
                    Ok((visible, read_up_to)) => {
                        last = read_up_to;
                        for change in visible {
                            let data = json!({
                                "seq": change.seq,
                                "action": change.action_text,
                                "kind": change.kind,
                                "scope": change.scope.to_string(),
                                "key": change.key,
                                "actor": change.actor.strip_prefix("member:").unwrap_or(&change.actor),
                            });
                            pending.push(
                                Event::default()
                                    .event("change")
                                    .id(change.seq.to_string())
                                    .data(data.to_string()),
                            );
                        }
                        // Oldest first: `pop` takes from the end.
                        pending.reverse();
                        if !pending.is_empty() {
                            continue;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "live updates cannot read the change feed")
                    }
                }
                tokio::select! {
                    _ = commits.changed() => {}
                    _ = closing.changed() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    })
}
