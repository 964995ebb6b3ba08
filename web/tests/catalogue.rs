//! The desk's two catalogues say the same things: every message is in Dutch
//! and in English, every text the pages ask for exists, and every message
//! fills in without a placeholder left over.

use std::collections::BTreeSet;
use std::path::Path;

use klad_core::rules::{Phase, Role};
use klad_web::{Catalogue, Lang};

fn ids(lang: Lang) -> BTreeSet<String> {
    Catalogue::ids(lang).into_iter().collect()
}

#[test]
fn dutch_and_english_have_the_same_messages() {
    let (nl, en) = (ids(Lang::Nl), ids(Lang::En));
    assert!(
        nl.len() > 50,
        "the Dutch catalogue is read ({} messages)",
        nl.len()
    );
    let only_nl: Vec<_> = nl.difference(&en).collect();
    let only_en: Vec<_> = en.difference(&nl).collect();
    assert!(only_nl.is_empty(), "only in Dutch: {only_nl:?}");
    assert!(only_en.is_empty(), "only in English: {only_en:?}");
}

/// Every `t.get("id")`, `t.n("id", ..)` and `t.s("id", ..)` in the templates
/// and the code, and every message chosen by a `=> "id"` arm.
fn ids_used() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut used = BTreeSet::new();
    for dir in ["templates", "src", "src/pages"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for call in ["t.get(\"", "t.n(\"", "t.s(\""] {
                for (i, _) in text.match_indices(call) {
                    let rest = &text[i + call.len()..];
                    let id: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                        .collect();
                    if rest[id.len()..].starts_with('"') && id.contains('-') {
                        used.insert(id);
                    }
                }
            }
            for (i, _) in text.match_indices("=> \"") {
                let rest = &text[i + 4..];
                let id: String = rest.chars().take_while(|c| *c != '"').collect();
                if id.starts_with("status-") || id.starts_with("answer-") {
                    used.insert(id);
                }
            }
        }
    }
    for role in Role::ALL {
        used.insert(format!("role-{}", role.as_str()));
    }
    for phase in Phase::ALL {
        used.insert(format!("phase-{}", phase.as_str()));
    }
    used
}

#[test]
fn every_text_the_pages_ask_for_exists() {
    let used = ids_used();
    assert!(
        used.len() > 40,
        "the scan finds the texts in use ({})",
        used.len()
    );
    for lang in Lang::ALL {
        let have = ids(lang);
        let missing: Vec<_> = used.difference(&have).collect();
        assert!(
            missing.is_empty(),
            "missing in {}: {missing:?}",
            lang.as_str()
        );
    }
}

#[test]
fn every_message_fills_in_completely() {
    let catalogue = Catalogue::new();
    for lang in Lang::ALL {
        let t = catalogue.tr(lang);
        for id in ids(lang) {
            let strings = [
                ("name", "Anna"),
                ("title", "Groen in de wijk"),
                ("role", "ambtenaar"),
                ("date", "2026-12-01"),
                ("detail", "missing field `csrf`"),
                ("reason", "dubbel"),
                ("person", "Piet"),
                ("phase", "inspraak"),
                ("was", "oud"),
                ("now", "nieuw"),
                ("wording", "voorstel"),
                ("from", "toen"),
                ("to", "nu"),
                ("label", "Artikel 2"),
            ];
            for n in [0, 1, 7] {
                let text = t.fill(&id, &strings, Some(n));
                assert!(!text.trim().is_empty(), "{id} ({}) is empty", lang.as_str());
                assert!(
                    !text.contains('{') && !text.contains('}'),
                    "{id} ({}): {text}",
                    lang.as_str()
                );
            }
        }
    }
}

#[test]
fn plurals_follow_the_language() {
    let catalogue = Catalogue::new();
    let nl = catalogue.tr(Lang::Nl);
    let en = catalogue.tr(Lang::En);
    assert_eq!(nl.n("days-waiting", &1), "1 dag");
    assert_eq!(nl.n("days-waiting", &3), "3 dagen");
    assert_eq!(en.n("days-waiting", &3), "3 days");
    assert_eq!(en.n("days-waiting", &0), "since today");
}

#[test]
fn languages_are_read_from_tags_and_headers() {
    assert_eq!(Lang::parse("nl-NL"), Some(Lang::Nl));
    assert_eq!(Lang::parse("en_GB"), Some(Lang::En));
    assert_eq!(Lang::parse("fy"), None);
    assert_eq!(
        klad_web::i18n::from_accept_language("fr-FR,en;q=0.8,nl;q=0.9"),
        Lang::Nl
    );
    assert_eq!(
        klad_web::i18n::from_accept_language("de, en-US;q=0.5"),
        Lang::En
    );
    assert_eq!(klad_web::i18n::from_accept_language(""), Lang::Nl);
}
