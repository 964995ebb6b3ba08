//! The desk's texts in Dutch (the default) and English: Project Fluent
//! catalogues (`web/locales/{nl,en}/desk.ftl`, compiled in), so plurals and
//! word order follow each language's own rules and a translator edits text
//! files, not code.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use unic_langid::LanguageIdentifier;

pub use klad_core::i18n::Lang;

/// The first language of an `Accept-Language` header the desk has, in the
/// order of the header's weights; Dutch when none is.
pub fn from_accept_language(header: &str) -> Lang {
    let mut tags: Vec<(f32, &str)> = header
        .split(',')
        .filter_map(|part| {
            let mut bits = part.split(';');
            let tag = bits.next()?.trim();
            let q = bits
                .find_map(|b| b.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((q, tag))
        })
        .collect();
    tags.sort_by(|a, b| b.0.total_cmp(&a.0));
    tags.into_iter()
        .find_map(|(_, t)| Lang::parse(t))
        .unwrap_or_default()
}

const NL: &str = include_str!("../locales/nl/desk.ftl");
const EN: &str = include_str!("../locales/en/desk.ftl");

/// Both catalogues, parsed once.
pub struct Catalogue {
    nl: FluentBundle<FluentResource>,
    en: FluentBundle<FluentResource>,
}

fn bundle(lang: Lang, source: &str) -> FluentBundle<FluentResource> {
    let id: LanguageIdentifier = lang.as_str().parse().expect("a valid language tag");
    let mut bundle = FluentBundle::new_concurrent(vec![id]);
    // Unicode isolation marks around placeables are for mixed-direction
    // text; in HTML between Latin words they only get in the way.
    bundle.set_use_isolating(false);
    let resource = FluentResource::try_new(source.to_owned()).unwrap_or_else(|(_, errors)| {
        panic!("the {} catalogue does not parse: {errors:?}", lang.as_str())
    });
    bundle.add_resource(resource).unwrap_or_else(|errors| {
        panic!(
            "the {} catalogue repeats a message: {errors:?}",
            lang.as_str()
        )
    });
    bundle
}

impl Default for Catalogue {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalogue {
    /// Parses both catalogues (they are compiled in; a broken one is a bug
    /// the tests catch).
    pub fn new() -> Self {
        Self {
            nl: bundle(Lang::Nl, NL),
            en: bundle(Lang::En, EN),
        }
    }

    /// The texts of one language.
    pub fn tr(&self, lang: Lang) -> Tr<'_> {
        Tr {
            lang,
            bundle: match lang {
                Lang::Nl => &self.nl,
                Lang::En => &self.en,
            },
        }
    }

    /// The message ids of a language's catalogue (for the tests that keep
    /// both catalogues complete).
    pub fn ids(lang: Lang) -> Vec<String> {
        let source = match lang {
            Lang::Nl => NL,
            Lang::En => EN,
        };
        let resource = FluentResource::try_new(source.to_owned()).unwrap_or_else(|(r, _)| r);
        let mut ids: Vec<String> = resource
            .entries()
            .filter_map(|e| match e {
                fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_owned()),
                _ => None,
            })
            .collect();
        ids.sort();
        ids
    }
}

/// The texts of one language, as templates use them.
#[derive(Clone, Copy)]
pub struct Tr<'a> {
    lang: Lang,
    bundle: &'a FluentBundle<FluentResource>,
}

impl Tr<'_> {
    /// The language.
    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// The `lang` attribute value.
    pub fn code(&self) -> &'static str {
        self.lang.as_str()
    }

    fn format(&self, id: &str, args: Option<&FluentArgs<'_>>) -> String {
        let Some(pattern) = self.bundle.get_message(id).and_then(|m| m.value()) else {
            tracing::error!(
                id,
                lang = self.lang.as_str(),
                "a desk text is missing from the catalogue"
            );
            return id.to_owned();
        };
        let mut errors = Vec::new();
        let text = self.bundle.format_pattern(pattern, args, &mut errors);
        if !errors.is_empty() {
            tracing::error!(
                id,
                lang = self.lang.as_str(),
                ?errors,
                "a desk text could not be filled in"
            );
        }
        text.into_owned()
    }

    /// The text `id`.
    pub fn get(&self, id: &str) -> String {
        self.format(id, None)
    }

    /// The text `id` with the number `$n` (plural forms).
    pub fn n(&self, id: &str, n: &u64) -> String {
        let mut args = FluentArgs::new();
        args.set("n", FluentValue::from(*n));
        self.format(id, Some(&args))
    }

    /// The text `id` with the string `$name` filled in.
    pub fn s(&self, id: &str, name: &str, value: impl AsRef<str>) -> String {
        let mut args = FluentArgs::new();
        args.set(
            name.to_owned(),
            FluentValue::from(value.as_ref().to_owned()),
        );
        self.format(id, Some(&args))
    }

    /// The text `id` with every named string, and the number `$n` if
    /// given, filled in.
    pub fn fill(&self, id: &str, strings: &[(&str, &str)], n: Option<u64>) -> String {
        let mut args = FluentArgs::new();
        for (name, value) in strings {
            args.set(name.to_string(), FluentValue::from(value.to_string()));
        }
        if let Some(n) = n {
            args.set("n", FluentValue::from(n));
        }
        self.format(id, Some(&args))
    }

    /// Who wrote something, as shown next to it: their name, or "entered by
    /// F on behalf of P" for a letter a facilitator entered.
    pub fn author(&self, a: &klad_core::views::Attribution) -> String {
        match &a.on_behalf_of {
            Some(person) => self.fill(
                "entered-on-behalf",
                &[("name", a.name.as_str()), ("person", person.as_str())],
                None,
            ),
            None => a.name.clone(),
        }
    }

    /// The name of a role.
    pub fn role(&self, role: &klad_core::rules::Role) -> String {
        self.get(&format!("role-{}", role.as_str()))
    }

    /// The name of a phase.
    pub fn phase(&self, phase: &klad_core::rules::Phase) -> String {
        self.get(&format!("phase-{}", phase.as_str()))
    }
}
