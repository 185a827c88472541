//! The polling data source: `GET {polling}/sdk/latest-all` every interval, first poll at once,
//! with `If-None-Match` so that an unchanged environment costs a `304` and no parsing
//! (`ld-protocol.md` §4.3). Responses may be gzipped (the HTTP client asks for it).

use std::sync::Arc;
use std::time::Duration;

use flagstaff_protocol::FlagData;

use super::{DataSourceState, Shared, is_fatal_status};
use crate::http::Http;

/// Runs until the task is aborted or the server refuses the key.
pub(crate) async fn run(shared: Arc<Shared>, http: Http, interval: Duration) {
    let url = format!("{}/sdk/latest-all", http.endpoints().polling);
    let mut etag: Option<String> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match poll(&shared, &http, &url, &mut etag).await {
            Ok(()) => {}
            Err((true, why)) => {
                tracing::error!(reason = %why, "polling was refused; stopping");
                shared.set_state(DataSourceState::Off, Some(why));
                return;
            }
            Err((false, why)) => {
                tracing::warn!(reason = %why, "poll failed");
                shared.set_state(DataSourceState::Interrupted, Some(why));
            }
        }
    }
}

/// One poll; the error says whether it is fatal.
async fn poll(
    shared: &Shared,
    http: &Http,
    url: &str,
    etag: &mut Option<String>,
) -> Result<(), (bool, String)> {
    let mut request = http.get(url);
    if let Some(tag) = etag.as_deref() {
        request = request.header("If-None-Match", tag);
    }
    let response = request
        .send()
        .await
        .map_err(|e| (false, format!("poll failed: {e}")))?;
    let status = response.status().as_u16();
    if status == 304 {
        shared.set_state(DataSourceState::Valid, None);
        return Ok(());
    }
    if is_fatal_status(status) {
        return Err((true, format!("HTTP {status}")));
    }
    if status != 200 {
        return Err((false, format!("HTTP {status}")));
    }
    let new_etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .bytes()
        .await
        .map_err(|e| (false, format!("poll body: {e}")))?;
    let text = std::str::from_utf8(&body).map_err(|e| (false, format!("poll body: {e}")))?;
    let data = FlagData::from_json_str(text).map_err(|e| (false, format!("bad poll body: {e}")))?;
    shared.replace(data);
    // Keep the tag only once its body was applied, so a bad body is fetched again.
    *etag = new_etag;
    Ok(())
}
