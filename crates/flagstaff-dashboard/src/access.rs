//! "Why can't I?" on the pages: what the signed-in person's roles leave out, in words, beside
//! the controls that are hidden for it. The server decides every change anyway (`flagstaff-app`
//! `access.rs`); these sentences only explain.

use flagstaff_app::AccessDecision;

use crate::session::Viewer;

/// What each targeting action lets people do, in words.
fn action_words(action: &str) -> &'static str {
    match action {
        "updateOn" => "turn it on or off",
        "updateTargets" => "change individual targets",
        "updateRules" => "change rules",
        "updateFallthrough" => "change the default rule",
        "updateOffVariation" => "change what is served when off",
        "updatePrerequisites" => "change prerequisites",
        _ => "change event tracking",
    }
}

/// The "why can't I?" line: which parts of targeting the viewer's roles leave out, naming the
/// roles and the actions to ask for; `None` when they may do everything.
pub(crate) fn note(
    viewer: &Viewer,
    environment: &str,
    decisions: &[AccessDecision],
) -> Option<String> {
    let refused: Vec<&AccessDecision> = decisions.iter().filter(|d| !d.allowed).collect();
    if refused.is_empty() {
        return None;
    }
    let mut roles = vec![viewer.actor.role.as_str().to_owned()];
    roles.extend(viewer.actor.custom_roles.iter().map(|r| r.key.clone()));
    let roles = roles.join(", ");
    let actions: Vec<&str> = refused.iter().map(|d| d.action.as_str()).collect();
    if refused.len() == decisions.len() {
        return Some(format!(
            "Your roles ({roles}) cannot change this flag in {environment}. To change it, ask an              admin for one of: {}.",
            actions.join(", ")
        ));
    }
    let words: Vec<&str> = refused.iter().map(|d| action_words(&d.action)).collect();
    Some(format!(
        "Your roles ({roles}) cannot {} in {environment} ({}); the server refuses such changes.",
        words.join(", "),
        actions.join(", ")
    ))
}
