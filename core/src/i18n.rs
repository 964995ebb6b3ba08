//! The message catalogue: every sentence klad-core says to a person, in Dutch
//! (the default; plain language, B1) and English.
//!
//! The sentences live in Project Fluent files, one per language
//! (`core/locales/nl/klad.ftl`, `core/locales/en/klad.ftl`), compiled into the
//! library with `include_str!`, so core still reads no files. Why Fluent
//! (`fluent-bundle`, Mozilla's, used by Firefox): translators edit plain
//! text files without touching Rust; a sentence's placeholders are named
//! (`{ $role }`), and languages that need different word order or forms
//! (plurals, the field an edit was in) choose them in the file with
//! selectors, not in code. A message id is a [`crate::Reason`]'s code.
//!
//! Roles, phases, actions and document kinds are words inside sentences; they
//! have their own messages (`role-drafter`, `roles-drafter` for the plural,
//! `phase-drafting`, `action-edit-text`, `doc-text`) and are filled in
//! before the sentence is formatted. Lists ("drafters or officials") are
//! joined with the language's `list-or`.

use std::sync::OnceLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use serde::{Deserialize, Serialize};

use crate::document::DocKind;
use crate::rules::{Action, Phase, Role};

/// A language Klad speaks. Dutch is the default: the people using Klad read Dutch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    /// Dutch (`nl`), plain language.
    #[default]
    Nl,
    /// English (`en`).
    En,
}

impl Lang {
    /// Every language, Dutch first.
    pub const ALL: [Lang; 2] = [Lang::Nl, Lang::En];

    /// The language's code (`nl`, `en`).
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
        }
    }

    /// Reads a language tag as people and platforms write it: `nl`, `NL`,
    /// `nl-NL`, `nl_BE`, `en-GB`, `en_US.UTF-8`. Only the language part
    /// counts; `None` for a language Klad has no messages for, or no tag.
    pub fn parse(tag: &str) -> Option<Lang> {
        // POSIX locales carry an encoding and modifier (`en_US.UTF-8@euro`).
        let tag = tag.split(['.', '@']).next().unwrap_or_default().trim();
        let id: unic_langid::LanguageIdentifier = tag.replace('_', "-").parse().ok()?;
        Lang::ALL
            .into_iter()
            .find(|l| id.language.as_str() == l.as_str())
    }
}

impl std::str::FromStr for Lang {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Lang, crate::Error> {
        Lang::parse(s).ok_or_else(|| {
            crate::Error::InvalidInput(crate::Reason::UnknownLanguage {
                given: s.to_owned(),
            })
        })
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Fluent source of a language's catalogue, as compiled in.
pub fn catalogue_source(lang: Lang) -> &'static str {
    match lang {
        Lang::Nl => include_str!("../locales/nl/klad.ftl"),
        Lang::En => include_str!("../locales/en/klad.ftl"),
    }
}

/// What fills a placeholder.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    /// Said as it is (an id, a name, a technical detail).
    Text(String),
    /// A count or position.
    Number(u64),
    /// Not shown: chooses between variants of the sentence (`{ $field -> ... }`).
    Select(&'static str),
    /// A role, in the language (`role-<name>`).
    Role(Role),
    /// Roles, plural, joined with "or" (`roles-<name>`).
    Roles(&'static [Role]),
    /// A phase (`phase-<name>`).
    Phase(Phase),
    /// Phases, joined with "or".
    Phases(&'static [Phase]),
    /// What doing an action is called (`action-<name>`).
    Action(Action),
    /// A kind of document (`doc-<name>`).
    Kind(DocKind),
}

struct Catalogue {
    nl: FluentBundle<FluentResource>,
    en: FluentBundle<FluentResource>,
    /// Syntax errors in the sources (empty unless a file was broken by an edit).
    errors: Vec<String>,
}

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let mut errors = Vec::new();
        let mut bundle = |lang: Lang| {
            let id: unic_langid::LanguageIdentifier = lang.as_str().parse().unwrap_or_default();
            let mut bundle = FluentBundle::new_concurrent(vec![id]);
            // Plain text: no Unicode isolation marks around placeables.
            bundle.set_use_isolating(false);
            // A file with syntax errors still yields the entries that parsed;
            // `format` reports the rest, and the catalogue's test fails.
            let resource = match FluentResource::try_new(catalogue_source(lang).to_owned()) {
                Ok(r) => r,
                Err((r, errs)) => {
                    errors.extend(errs.iter().map(|e| format!("{lang}: {e:?}")));
                    r
                }
            };
            if let Err(errs) = bundle.add_resource(resource) {
                errors.extend(errs.iter().map(|e| format!("{lang}: {e:?}")));
            }
            bundle
        };
        let nl = bundle(Lang::Nl);
        let en = bundle(Lang::En);
        Catalogue { nl, en, errors }
    })
}

/// Message ids are Fluent identifiers: `action-edit-text` for `edit_text`.
fn id(prefix: &str, name: &str) -> String {
    format!("{prefix}-{}", name.replace('_', "-"))
}

/// Formats message `id` in `lang` with `args`. An error says what is wrong:
/// a syntax error in the catalogue, a missing message, or a placeholder not
/// filled (Fluent would leave `{$x}` in the sentence).
pub(crate) fn format(lang: Lang, id: &str, args: &[(&'static str, Arg)]) -> Result<String, String> {
    let cat = catalogue();
    if !cat.errors.is_empty() {
        return Err(cat.errors.join("; "));
    }
    let mut fluent_args = FluentArgs::with_capacity(args.len());
    for (name, arg) in args {
        let value: FluentValue<'static> = match arg {
            Arg::Text(s) => s.clone().into(),
            Arg::Select(s) => (*s).into(),
            Arg::Number(n) => (*n).into(),
            other => word(lang, other)?.into(),
        };
        fluent_args.set(*name, value);
    }
    format_plain(lang, id, Some(&fluent_args))
}

fn format_plain(lang: Lang, id: &str, args: Option<&FluentArgs>) -> Result<String, String> {
    let cat = catalogue();
    let bundle = match lang {
        Lang::Nl => &cat.nl,
        Lang::En => &cat.en,
    };
    let pattern = bundle
        .get_message(id)
        .and_then(|m| m.value())
        .ok_or_else(|| format!("the {lang} catalogue has no message {id}"))?;
    let mut errors = Vec::new();
    let text = bundle.format_pattern(pattern, args, &mut errors);
    if errors.is_empty() {
        Ok(text.into_owned())
    } else {
        Err(format!("{lang} {id}: {errors:?}"))
    }
}

/// A role, phase, action, kind or list of them, as a word in `lang`.
fn word(lang: Lang, arg: &Arg) -> Result<String, String> {
    let one = |id: String| format_plain(lang, &id, None);
    let list = |words: Vec<String>| -> Result<String, String> {
        match words.as_slice() {
            [] => Ok(String::new()),
            [one] => Ok(one.clone()),
            [init @ .., last] => {
                let mut args = FluentArgs::new();
                args.set("init", init.join(", "));
                args.set("last", last.clone());
                format_plain(lang, "list-or", Some(&args))
            }
        }
    };
    match arg {
        Arg::Role(r) => one(id("role", r.as_str())),
        Arg::Roles(rs) => list(
            rs.iter()
                .map(|r| one(id("roles", r.as_str())))
                .collect::<Result<_, _>>()?,
        ),
        Arg::Phase(p) => one(id("phase", p.as_str())),
        Arg::Phases(ps) => list(
            ps.iter()
                .map(|p| one(id("phase", p.as_str())))
                .collect::<Result<_, _>>()?,
        ),
        Arg::Action(a) => one(id("action", a.as_str())),
        Arg::Kind(k) => one(id("doc", k.as_str())),
        Arg::Text(s) => Ok(s.clone()),
        Arg::Select(s) => Ok((*s).to_owned()),
        Arg::Number(n) => Ok(n.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_are_read_by_their_language() {
        for (tag, lang) in [
            ("nl", Some(Lang::Nl)),
            ("NL", Some(Lang::Nl)),
            ("nl-NL", Some(Lang::Nl)),
            ("nl_BE", Some(Lang::Nl)),
            ("en", Some(Lang::En)),
            ("en-GB", Some(Lang::En)),
            ("en_US.UTF-8", Some(Lang::En)),
            ("de-DE", None),
            ("", None),
            ("not a tag", None),
        ] {
            assert_eq!(Lang::parse(tag), lang, "{tag:?}");
        }
        assert_eq!(Lang::default(), Lang::Nl);
        let err = "fr".parse::<Lang>().unwrap_err();
        assert_eq!(err.code(), "unknown-language");
    }

    #[test]
    fn both_catalogues_parse_and_hold_the_same_messages() {
        assert_eq!(catalogue().errors, Vec::<String>::new());
        let ids = |lang| {
            let mut ids: Vec<String> = catalogue_source(lang)
                .lines()
                .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
                .filter_map(|l| l.split_once(" =").map(|(id, _)| id.trim().to_owned()))
                .collect();
            ids.sort();
            ids
        };
        assert!(ids(Lang::Nl).len() > 50, "{:?}", ids(Lang::Nl));
        assert_eq!(ids(Lang::Nl), ids(Lang::En));
    }

    #[test]
    fn every_word_has_a_message_in_both_languages() {
        for lang in Lang::ALL {
            for r in Role::ALL {
                assert!(word(lang, &Arg::Role(r)).is_ok(), "{lang} {r}");
                assert!(word(lang, &Arg::Roles(&[Role::Drafter, Role::Observer])).is_ok());
            }
            for p in Phase::ALL {
                assert!(word(lang, &Arg::Phase(p)).is_ok(), "{lang} {p}");
            }
            for a in Action::ALL {
                assert!(word(lang, &Arg::Action(a)).is_ok(), "{lang} {a:?}");
            }
            for k in [DocKind::Process, DocKind::Text, DocKind::Contributions] {
                assert!(word(lang, &Arg::Kind(k)).is_ok(), "{lang} {k:?}");
            }
        }
        let three = &[Role::Drafter, Role::Official, Role::Facilitator];
        assert_eq!(
            word(Lang::En, &Arg::Roles(three)).as_deref(),
            Ok("drafters, officials or facilitators")
        );
        assert_eq!(
            word(Lang::Nl, &Arg::Roles(three)).as_deref(),
            Ok("inwoners, ambtenaren of facilitators")
        );
    }
}
