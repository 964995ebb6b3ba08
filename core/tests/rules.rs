//! The rules table, exhaustively: every role × phase × action.
//!
//! 1. `may` is compared with the reviewed table in `fixtures/rules_table.txt`
//!    (regenerate with `UPDATE_FIXTURES=1 cargo test -p klad-core --test rules`,
//!    then review the diff).
//! 2. Every refusal is a sentence.
//! 3. Every domain operation refuses exactly when `may` does, with its sentence.

mod common;
use common::*;
use klad_core::*;

fn table() -> String {
    let mut out = String::new();
    for role in Role::ALL {
        for phase in Phase::ALL {
            for action in Action::ALL {
                let verdict = match may(role, phase, action) {
                    Ok(()) => "allowed".to_owned(),
                    Err(r) => format!("refused: {r}"),
                };
                out.push_str(&format!("{role} {phase} {action:?} -> {verdict}\n"));
            }
        }
    }
    out
}

#[test]
fn table_matches_the_reviewed_fixture() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rules_table.txt"
    );
    let actual = table();
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(path, &actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(path).expect("fixture missing: run with UPDATE_FIXTURES=1");
    assert_eq!(
        actual, expected,
        "rules table changed; review and update the fixture"
    );
    assert_eq!(actual.lines().count(), 4 * 3 * Action::ALL.len());
}

#[test]
fn every_refusal_is_a_sentence() {
    for role in Role::ALL {
        for phase in Phase::ALL {
            for action in Action::ALL {
                if let Err(r) = may(role, phase, action) {
                    let m = &r.to_string();
                    assert!(m.chars().next().unwrap().is_uppercase(), "{m}");
                    assert!(m.ends_with('.'), "{m}");
                    assert!(m.contains(action.phrase()), "{m}");
                    assert!(
                        m.contains(role.as_str()) || m.contains(phase.as_str()),
                        "a refusal names the role or the phase that stands in the way: {m}"
                    );
                    assert_eq!(Error::from(r.clone()).to_string(), *m);
                    // The Dutch sentence is a sentence too, and another one.
                    let nl = r.message(Lang::Nl);
                    assert!(nl.chars().next().unwrap().is_uppercase(), "{nl}");
                    assert!(nl.ends_with('.') && nl != *m, "{nl}");
                    assert_eq!(Error::from(r.clone()).message(Lang::Nl), nl);
                    assert!(
                        matches!(r.reason().code(), "role-may-not" | "phase-closed"),
                        "{m}"
                    );
                }
            }
        }
    }
}

/// The three text-level rules (README, ARCHITECTURE.md), stated directly.
#[test]
fn design_rules_hold_in_the_table() {
    for role in Role::ALL {
        for phase in Phase::ALL {
            let edit = may(role, phase, Action::EditText).is_ok();
            assert_eq!(edit, role == Role::Drafter && phase == Phase::Drafting);
            if role == Role::Observer {
                for action in Action::ALL {
                    assert_eq!(may(role, phase, action).is_ok(), action == Action::MarkRead);
                }
            }
        }
    }
}

struct Fixture {
    w: World,
    article: ArticleId,
    thread: ContributionId,
    suggestion: ContributionId,
}

fn fixture(phase: Phase) -> Fixture {
    let mut w = World::new();
    let article = w
        .anna
        .create_article(T0, None, "Doel", "Deze verordening regelt het groen.")
        .unwrap();
    w.sync_all();
    let thread = w.olga.comment(T0 + 1, &article, 0, 4, "Welke?").unwrap();
    let suggestion = w
        .olga
        .suggest(T0 + 2, &article, 5, 16, "regeling", "")
        .unwrap();
    w.sync_all();
    if phase >= Phase::Consultation {
        w.set_phase(Phase::Consultation);
    }
    if phase == Phase::Final {
        w.set_phase(Phase::Final);
    }
    Fixture {
        w,
        article,
        thread,
        suggestion,
    }
}

fn run(f: &mut Fixture, role: Role, action: Action) -> Result<()> {
    let (article, thread, suggestion) = (f.article.clone(), f.thread.clone(), f.suggestion.clone());
    let s: &mut Session = match role {
        Role::Drafter => &mut f.w.anna,
        Role::Official => &mut f.w.olga,
        Role::Facilitator => &mut f.w.fenna,
        Role::Observer => &mut f.w.otto,
    };
    let me = s.member_id().clone();
    let t = T0 + 100;
    match action {
        Action::EditText => s.splice_body(t, &article, 0, 0, "Nu: "),
        Action::Comment => s.comment(t, &article, 0, 4, "Vraag").map(drop),
        Action::Reply => s.reply(t, &thread, "Antwoord").map(drop),
        Action::Suggest => s.suggest(t, &article, 0, 4, "Die", "").map(drop),
        Action::DecideSuggestion => s.reject_suggestion(t, &suggestion),
        Action::Answer => s
            .answer(t, &thread, AnswerStatus::Noted, "Genoteerd")
            .map(drop),
        Action::Resolve => s.resolve(t, &thread),
        Action::Hide => s.hide(t, &thread, "Test"),
        Action::EnterOnBehalf => s
            .enter_on_behalf(
                t,
                "Piet",
                OnBehalf::Reply {
                    thread,
                    text: "Eens".into(),
                },
            )
            .map(drop),
        Action::MarkRead => s.mark_read(t),
        Action::ChangePhase => {
            let phase = f.w.server.process.info()?.phase;
            let next = phase.next().unwrap_or(Phase::Final);
            f.w.server.process.set_phase(t, Some(&me), next)
        }
        Action::ManageMembers => {
            f.w.server
                .add_member(t, Some(&me), "Nieuw", Role::Drafter, &DocId::from("c-new"))
                .map(drop)
        }
        Action::NameVersion => s.name_version(t, "Concept voor inspraak").map(drop),
    }
}

#[test]
fn every_operation_refuses_exactly_when_the_table_does() {
    for phase in Phase::ALL {
        let base = fixture(phase);
        for role in Role::ALL {
            for action in Action::ALL {
                let mut f = Fixture {
                    w: World {
                        server: base.w.server.clone(),
                        anna: base.w.anna.clone(),
                        bram: base.w.bram.clone(),
                        olga: base.w.olga.clone(),
                        fenna: base.w.fenna.clone(),
                        otto: base.w.otto.clone(),
                    },
                    article: base.article.clone(),
                    thread: base.thread.clone(),
                    suggestion: base.suggestion.clone(),
                };
                let got = run(&mut f, role, action);
                match may(role, phase, action) {
                    Ok(()) => assert!(
                        got.is_ok(),
                        "{role} {phase} {action:?} is allowed by the table but the operation failed: {got:?}"
                    ),
                    Err(r) => assert_eq!(
                        got,
                        Err(Error::NotAllowed(r.reason())),
                        "{role} {phase} {action:?}"
                    ),
                }
            }
        }
    }
}

/// `docs/SCHEMA.md` shows the table as role × action with the phases in
/// which each is allowed; it is generated from `may` and checked here.
#[test]
fn schema_doc_shows_the_current_table() {
    let mut md = String::from(
        "| action | drafter | official | facilitator | observer |\n|---|---|---|---|---|\n",
    );
    for action in Action::ALL {
        md.push_str(&format!("| {action:?} ({}) |", action.phrase()));
        for role in Role::ALL {
            let phases: Vec<&str> = Phase::ALL
                .into_iter()
                .filter(|p| may(role, *p, action).is_ok())
                .map(|p| p.as_str())
                .collect();
            let cell = if phases.is_empty() {
                "—".to_owned()
            } else {
                phases.join(", ")
            };
            md.push_str(&format!(" {cell} |"));
        }
        md.push('\n');
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SCHEMA.md");
    let doc = std::fs::read_to_string(path).expect("docs/SCHEMA.md is missing");
    let (start, end) = ("<!-- rules-table:start -->\n", "<!-- rules-table:end -->");
    let a = doc.find(start).expect("rules-table start marker") + start.len();
    let b = doc.find(end).expect("rules-table end marker");
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(path, format!("{}{md}{}", &doc[..a], &doc[b..])).unwrap();
        return;
    }
    assert_eq!(
        &doc[a..b],
        md,
        "docs/SCHEMA.md's rules table is stale: run UPDATE_FIXTURES=1 cargo test -p klad-core --test rules"
    );
}

/// The document boundary follows the same table: the text is writable exactly
/// by whoever may edit it now, a contributions document only by its owner
/// (observers too: their read marks sync), the process document by no member.
#[test]
fn document_access_follows_the_rules() {
    for role in Role::ALL {
        for phase in Phase::ALL {
            for own in [false, true] {
                let text = document_access(role, phase, DocKind::Text, own);
                assert_eq!(
                    text == DocumentAccess::ReadWrite,
                    may(role, phase, Action::EditText).is_ok()
                );
                let contributions = document_access(role, phase, DocKind::Contributions, own);
                assert_eq!(contributions == DocumentAccess::ReadWrite, own);
                assert!(matches!(
                    document_access(role, phase, DocKind::Process, own),
                    DocumentAccess::ReadOnly(_)
                ));
            }
        }
    }
}
