//! Segments of any size people can read and change: each list counted, searched and paged
//! (never printed whole: a page of 50,000 keys would be megabytes), and keys added or removed by
//! pasting them, through a review that counts them, applied as the semantic-patch instructions
//! `addIncludedTargets`, `removeExcludedTargets`, … so that they merge with whatever changed
//! meanwhile instead of overwriting it.

use std::collections::BTreeSet;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::AppError;
use flagstaff_protocol::Segment;
use serde::Deserialize;
use serde_json::json;

use crate::describe::{some_keys, thousands};
use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render};

/// Above this many keys in all its lists, a segment's page shows its lists as counts with
/// search and paging, and the editor leaves them alone (they change through "Add or remove
/// keys").
pub(crate) const LARGE_SEGMENT: usize = 1_000;
/// Keys shown per page of a list.
const PAGE_SIZE: usize = 100;
/// Most keys one paste may add or remove.
const MAX_PASTED: usize = 100_000;

/// One list of a segment: included or excluded keys of one context kind.
pub(crate) struct List {
    /// `included:user`, `excluded:organization`.
    pub id: String,
    pub label: String,
    pub count: usize,
}

/// A page of one list, for the segment's page.
pub(crate) struct Members {
    pub lists: Vec<List>,
    /// The list shown.
    pub list: String,
    pub q: String,
    pub page: usize,
    pub pages: usize,
    pub matching: usize,
    pub keys: Vec<String>,
}

/// Every list of the segment, in the order people read them.
fn lists<'s>(s: &'s Segment) -> Vec<(String, String, Vec<&'s String>)> {
    let mut out: Vec<(String, String, Vec<&'s String>)> = Vec::new();
    let mut add = |verb: &str, kind: &str, values: &'s [String]| {
        let id = format!("{verb}:{kind}");
        match out.iter_mut().find(|(i, _, _)| *i == id) {
            Some((_, _, keys)) => keys.extend(values),
            None => out.push((
                id,
                format!(
                    "{} {kind} keys",
                    if verb == "included" {
                        "Included"
                    } else {
                        "Excluded"
                    }
                ),
                values.iter().collect(),
            )),
        }
    };
    add("included", "user", &s.included);
    for t in &s.included_contexts {
        add(
            "included",
            t.context_kind.as_deref().unwrap_or("user"),
            &t.values,
        );
    }
    add("excluded", "user", &s.excluded);
    for t in &s.excluded_contexts {
        add(
            "excluded",
            t.context_kind.as_deref().unwrap_or("user"),
            &t.values,
        );
    }
    out
}

/// Page `page` of list `list` (the first with keys by default), filtered by `q` (a substring).
pub(crate) fn members(s: &Segment, list: &str, q: &str, page: usize) -> Members {
    let all = lists(s);
    let chosen = all
        .iter()
        .find(|(id, _, _)| id == list)
        .or_else(|| all.iter().find(|(_, _, keys)| !keys.is_empty()))
        .or(all.first());
    let q = q.trim();
    let matching: Vec<&String> = chosen
        .map(|(_, _, keys)| keys.iter().copied().filter(|k| k.contains(q)).collect())
        .unwrap_or_default();
    let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages - 1);
    Members {
        list: chosen.map(|(id, _, _)| id.clone()).unwrap_or_default(),
        q: q.chars().take(200).collect(),
        page,
        pages,
        matching: matching.len(),
        keys: matching
            .iter()
            .skip(page * PAGE_SIZE)
            .take(PAGE_SIZE)
            .map(|k| (*k).clone())
            .collect(),
        lists: all
            .iter()
            .map(|(id, label, keys)| List {
                id: id.clone(),
                label: label.clone(),
                count: keys.len(),
            })
            .collect(),
    }
}

/// Keys pasted one per line, or separated by commas or spaces; each kept once, in order.
fn pasted(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|k| !k.is_empty())
        .filter(|k| seen.insert(*k))
        .take(MAX_PASTED)
        .map(str::to_owned)
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct KeysForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    env: String,
    /// `included` or `excluded`.
    #[serde(default)]
    list: String,
    /// The context kind of the keys (`user` when empty).
    #[serde(default)]
    kind: String,
    #[serde(default)]
    add: String,
    #[serde(default)]
    remove: String,
    #[serde(default)]
    comment: String,
    /// `review` or `save`.
    #[serde(default)]
    op: String,
}

#[derive(Template)]
#[template(path = "segment_keys.html")]
struct ReviewPage {
    nav: Nav,
    key: String,
    list: String,
    kind: String,
    add: String,
    remove: String,
    comment: String,
    /// The change in words.
    lines: Vec<String>,
    error: Option<String>,
}

/// Reviews or saves keys pasted to add to or remove from one list of a segment.
pub(crate) async fn keys(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Form(form): Form<KeysForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        Some(form.env.as_str()).filter(|e| !e.is_empty()),
        "segments",
        format!("/projects/{project}/segments/{key}"),
    )
    .await
    .map_err(IntoResponse::into_response)?;
    // Authorized before the paste is read or compared with anything.
    dashboard
        .app
        .authorize_segment_change(&viewer.actor, &project, &nav.environment, &key)
        .await
        .map_err(|e| PageError(e).into_response())?;
    let current = dashboard
        .app
        .segment(&viewer.actor, &project, &nav.environment, &key)
        .await
        .map_err(|e| PageError(e).into_response())?;
    let excluded = form.list == "excluded";
    let kind = Some(form.kind.trim())
        .filter(|k| !k.is_empty())
        .unwrap_or("user")
        .to_owned();
    let add = pasted(&form.add);
    let remove = pasted(&form.remove);
    let listed: BTreeSet<&String> = lists(&current.value)
        .into_iter()
        .filter(|(id, _, _)| {
            *id == format!("{}:{kind}", if excluded { "excluded" } else { "included" })
        })
        .flat_map(|(_, _, keys)| keys)
        .collect();
    let new: Vec<&String> = add.iter().filter(|k| !listed.contains(k)).collect();
    let gone: Vec<&String> = remove.iter().filter(|k| listed.contains(k)).collect();
    let past = if excluded { "excluded" } else { "included" };
    let mut lines = Vec::new();
    if !new.is_empty() {
        lines.push(format!(
            "+ {} {kind} keys {past}: {}",
            thousands(new.len()),
            some_keys(new.iter().copied())
        ));
    }
    if add.len() > new.len() {
        lines.push(format!(
            "{} of the keys to add are already {past}",
            thousands(add.len() - new.len())
        ));
    }
    if !gone.is_empty() {
        lines.push(format!(
            "− {} {kind} keys no longer {past}: {}",
            thousands(gone.len()),
            some_keys(gone.iter().copied())
        ));
    }
    if remove.len() > gone.len() {
        lines.push(format!(
            "{} of the keys to remove are not {past} anyway",
            thousands(remove.len() - gone.len())
        ));
    }
    let mut page = ReviewPage {
        nav,
        key: key.clone(),
        list: if excluded { "excluded" } else { "included" }.into(),
        kind: kind.clone(),
        add: form.add,
        remove: form.remove,
        comment: form.comment.chars().take(500).collect(),
        lines,
        error: None,
    };
    if form.op != "save" || (new.is_empty() && gone.is_empty()) {
        return Ok(render(&page));
    }
    let (add_kind, remove_kind) = if excluded {
        ("addExcludedTargets", "removeExcludedTargets")
    } else {
        ("addIncludedTargets", "removeIncludedTargets")
    };
    let mut instructions = Vec::new();
    if !new.is_empty() {
        instructions.push(json!({"kind": add_kind, "contextKind": kind, "values": new}));
    }
    if !gone.is_empty() {
        instructions.push(json!({"kind": remove_kind, "contextKind": kind, "values": gone}));
    }
    let comment = Some(page.comment.trim())
        .filter(|c| !c.is_empty())
        .unwrap_or("keys pasted in the dashboard")
        .to_owned();
    match dashboard
        .app
        .apply_segment_instructions(
            (&project, &page.nav.environment, &key),
            &instructions,
            None,
            &viewer.actor,
            &comment,
        )
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!(
            "/projects/{project}/segments/{key}?env={}&list={}:{}",
            crate::url_encode(&page.nav.environment),
            page.list,
            crate::url_encode(&kind)
        ))
        .into_response()),
        // Invalid keys, or an environment where changes need approval (`approval_required`).
        Err(AppError::Invalid { field, message, .. }) => {
            page.error = Some(crate::errors::humane(&field, &message));
            let mut response = render(&page);
            *response.status_mut() = StatusCode::BAD_REQUEST;
            Ok(response)
        }
        Err(e) => Err(PageError(e).into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(n: usize) -> Segment {
        serde_json::from_value(json!({"key": "big",
            "included": (0..n).map(|i| format!("user-{i}")).collect::<Vec<_>>(),
            "includedContexts": [{"contextKind": "organization", "values": ["acme", "globex"]}],
            "excluded": ["user-7"]}))
        .unwrap()
    }

    #[test]
    fn lists_are_counted_searched_and_paged() {
        let s = segment(50_000);
        let m = members(&s, "", "", 0);
        assert_eq!(m.list, "included:user");
        let counts: Vec<(&str, usize)> = m.lists.iter().map(|l| (l.id.as_str(), l.count)).collect();
        assert_eq!(
            counts,
            vec![
                ("included:user", 50_000),
                ("included:organization", 2),
                ("excluded:user", 1)
            ]
        );
        assert_eq!((m.pages, m.keys.len()), (500, PAGE_SIZE));
        let m = members(&s, "included:user", "user-4999", 0);
        assert_eq!(m.matching, 11, "user-4999 and user-49990…user-49999");
        let m = members(&s, "included:organization", "", 7);
        assert_eq!(
            (m.page, m.keys),
            (0, vec!["acme".to_owned(), "globex".to_owned()])
        );
    }

    #[test]
    fn pasted_keys_split_on_lines_commas_and_spaces_and_repeat_once() {
        assert_eq!(pasted("a, b\nc  a\r\n\nb"), vec!["a", "b", "c"]);
    }
}
