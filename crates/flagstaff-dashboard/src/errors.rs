//! Errors said the way people see the page: fields named as they are labelled and counted from
//! one ("Rule 2, condition 1"), not as JSON paths counted from zero (`rules[1].clauses[0]`),
//! and never more than a short excerpt of what was typed.

/// Longest excerpt of typed input an error or review line repeats.
const EXCERPT_CHARS: usize = 60;
/// Longest error message shown.
const MESSAGE_CHARS: usize = 1_000;

/// At most [`EXCERPT_CHARS`] characters of `text`, with "…" when cut.
pub(crate) fn excerpt(text: &str) -> String {
    clip(text, EXCERPT_CHARS)
}

fn clip(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// What people call the part of a flag or segment a JSON path names.
fn segment_word(name: &str) -> Option<&'static str> {
    Some(match name {
        "variations" => "Variation",
        "rules" => "Rule",
        "clauses" => "condition",
        "values" => "value",
        "targets" | "contextTargets" => "Individual targets",
        "prerequisites" => "Prerequisite",
        "included" => "Included keys",
        "excluded" => "Excluded keys",
        "fallthrough" => "Default rule",
        "offVariation" => "Off variation",
        "rollout" => "rollout",
        "attribute" => "attribute",
        "op" => "operator",
        "name" => "Name",
        "key" => "Key",
        "description" => "Description",
        "tags" => "Tags",
        "maintainer" => "Maintainer",
        "eventKey" => "Event key",
        "unit" => "Unit",
        "aggregation" => "Numeric values per context",
        _ => return None,
    })
}

/// `rules[1].clauses[0].values` as "Rule 2, condition 1, value"; `None` for a path that is not
/// one (then the message is shown as it is).
pub(crate) fn field_words(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let mut words = Vec::new();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if part == "environments" {
            // `environments.production.rules[0]`: the environment by its key.
            if let Some(env) = parts.next() {
                words.push(format!("in {env}"));
            }
            continue;
        }
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let word = segment_word(name)?;
        words.push(match index {
            Some(i) => format!("{word} {}", i + 1),
            // The whole list: "Variations", "Rules".
            None if matches!(name, "variations" | "rules" | "prerequisites") => format!("{word}s"),
            None => word.to_owned(),
        });
    }
    Some(words.join(", "))
}

/// The message shown for an error about `field`: named as people see it, counted from one,
/// and short.
pub(crate) fn humane(field: &str, message: &str) -> String {
    let message = clip(message, MESSAGE_CHARS);
    match field_words(field) {
        // Messages made for people already start with what they are about.
        Some(words) if !message.starts_with(&words) => {
            let mut m = message.clone();
            if let Some(first) = m.get(..1) {
                m.replace_range(..1, &first.to_lowercase());
            }
            format!("{words}: {m}")
        }
        _ => message,
    }
}

/// A form page shown again after a refusal: the status (`400` when refused), the error in the
/// form's words, the field it names (for `aria-invalid`), and the form as typed — or, when
/// nothing was refused, `200` and the `blank` form.
pub(crate) struct Refused<F> {
    pub status: axum::http::StatusCode,
    pub error: Option<String>,
    pub field: String,
    pub form: F,
}

impl<F> Refused<F> {
    pub(crate) fn of(
        refused: Option<(flagstaff_app::AppError, F)>,
        blank: impl FnOnce() -> F,
    ) -> Refused<F> {
        use flagstaff_app::AppError;
        let bad = axum::http::StatusCode::BAD_REQUEST;
        match refused {
            Some((AppError::Invalid { field, message, .. }, form)) => Refused {
                status: bad,
                error: Some(humane(&field, &message)),
                field,
                form,
            },
            Some((other, form)) => Refused {
                status: bad,
                error: Some(other.to_string()),
                field: String::new(),
                form,
            },
            None => Refused {
                status: axum::http::StatusCode::OK,
                error: None,
                field: String::new(),
                form: blank(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_as_labels_counted_from_one() {
        assert_eq!(field_words("variations[1]").as_deref(), Some("Variation 2"));
        assert_eq!(
            field_words("rules[1].clauses[0].values").as_deref(),
            Some("Rule 2, condition 1, value")
        );
        assert_eq!(
            field_words("environments.production.fallthrough").as_deref(),
            Some("in production, Default rule")
        );
        assert_eq!(field_words("variations").as_deref(), Some("Variations"));
        assert_eq!(field_words("mystery[0]"), None);
        assert_eq!(field_words(""), None);
    }

    #[test]
    fn messages_name_the_field_and_stay_short() {
        assert_eq!(
            humane("variations[0]", "Not a number"),
            "Variation 1: not a number"
        );
        assert_eq!(
            humane("variations[0]", "Variation 1: “x” is not a number"),
            "Variation 1: “x” is not a number"
        );
        let long = humane("name", &"é".repeat(5000));
        assert!(long.chars().count() <= MESSAGE_CHARS + 10, "{}", long.len());
        assert_eq!(excerpt("short"), "short");
        assert_eq!(excerpt(&"a".repeat(100)).chars().count(), EXCERPT_CHARS + 1);
    }
}
