//! Property: 3–5 replicas apply random concurrent operations of every kind,
//! exchange changes in random order and grouping, and all end with identical views.
//!
//! 500 cases by default (`PROPTEST_CASES` overrides).

mod common;
use common::*;
use klad_core::views;
use klad_core::*;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// One step of a run. Numbers are seeds, interpreted against the replica's
/// current state, so every generated step is meaningful whatever came before.
#[derive(Clone, Debug)]
enum Step {
    /// Replica `who` tries operation `kind` with seeds `a`, `b`, `c`.
    Op {
        who: usize,
        kind: u8,
        a: u32,
        b: u32,
        c: u32,
    },
    /// Replica `from` sends a random subset (`mask`) of the changes `to` lacks,
    /// shuffled by `shuffle`.
    Send {
        from: usize,
        to: usize,
        mask: u64,
        shuffle: u64,
    },
    /// The facilitator asks the server to move the phase on; the server's
    /// process document then reaches replica `to`.
    Phase { to: usize },
}

const KINDS: u8 = 21;

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..5usize, 0..KINDS, any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(who, kind, a, b, c)| Step::Op { who, kind, a, b, c }),
        3 => (0..5usize, 0..5usize, any::<u64>(), any::<u64>())
            .prop_map(|(from, to, mask, shuffle)| Step::Send { from, to, mask, shuffle }),
        1 => (0..5usize).prop_map(|to| Step::Phase { to }),
    ]
}

fn pick<T: Clone>(items: &[T], seed: u32) -> Option<T> {
    (!items.is_empty()).then(|| items[seed as usize % items.len()].clone())
}

fn words(seed: u32) -> String {
    const W: [&str; 8] = [
        "de ", "buurt ", "groen ", "bomen ", "é ", "straat ", "🌳 ", "regel ",
    ];
    (0..1 + seed % 3)
        .map(|i| W[((seed >> (i * 3)) % 8) as usize])
        .collect()
}

/// Applies one operation; refusals and invalid input are expected and ignored.
/// Returns whether it took effect.
fn apply(s: &mut Session, kind: u8, a: u32, b: u32, c: u32, now: i64) -> bool {
    let docs = s.docs().clone();
    let articles = docs.text.article_ids();
    let article = pick(&articles, a);
    let threads: Vec<ContributionId> = docs
        .all_contributions()
        .into_iter()
        .filter(|c| matches!(c.body, Body::Comment { .. } | Body::Suggestion { .. }))
        .map(|c| c.id)
        .collect();
    let suggestions: Vec<ContributionId> = docs
        .all_contributions()
        .into_iter()
        .filter(|c| matches!(c.body, Body::Suggestion { .. }))
        .map(|c| c.id)
        .collect();
    let any_contribution: Vec<ContributionId> =
        docs.all_contributions().into_iter().map(|c| c.id).collect();
    let len = article
        .as_ref()
        .and_then(|id| docs.text.body_len(id).ok())
        .unwrap_or(0);
    let range = |x: u32, y: u32| {
        let start = if len == 0 { 0 } else { x as usize % len };
        let end = start + 1 + (y as usize % (len - start).clamp(1, 12));
        (start, end.min(len.max(1)))
    };
    let result = match (kind, article.clone()) {
        (0, _) => s
            .create_article(now, article.as_ref(), &words(b), &words(c))
            .map(drop),
        (1, Some(id)) => {
            let after = if c.is_multiple_of(3) {
                None
            } else {
                pick(&articles, b)
            };
            s.move_article(now, &id, after.as_ref())
        }
        (2, Some(id)) if b.is_multiple_of(4) => s.remove_article(now, &id),
        (3..=5, Some(id)) => {
            // A batch of keystrokes: one to three splices.
            let mut splices = Vec::new();
            let mut l = len;
            for i in 0..1 + c % 3 {
                let pos = ((b >> (i * 4)) as usize) % (l + 1);
                let del = if (b >> (i + 20)) & 1 == 1 {
                    ((c >> i) as usize % 4).min(l - pos)
                } else {
                    0
                };
                let ins = if del == 0 || (c >> (i + 8)) & 1 == 1 {
                    words(c >> i)
                } else {
                    String::new()
                };
                l = l - del + ins.chars().count();
                splices.push(Splice {
                    pos,
                    delete: del,
                    insert: ins,
                });
            }
            s.edit_body(now, &id, &splices)
        }
        (6, Some(id)) => s.edit_heading(
            now,
            &id,
            &[Splice {
                pos: 0,
                delete: 0,
                insert: words(b),
            }],
        ),
        (7 | 8, Some(id)) => {
            let (st, en) = range(b, c);
            s.comment(now, &id, st, en, &words(c)).map(drop)
        }
        (9, _) => match pick(&threads, b) {
            Some(t) => s.reply(now, &t, &words(c)).map(drop),
            None => Err(nothing()),
        },
        (10, Some(id)) => {
            let (st, en) = range(b, c);
            s.suggest(now, &id, st, en, &words(c), "").map(drop)
        }
        (11, _) => match pick(&suggestions, b) {
            Some(t) => s.accept_suggestion(now, &t),
            None => Err(nothing()),
        },
        (12, _) => match pick(&suggestions, b) {
            Some(t) => s.reject_suggestion(now, &t),
            None => Err(nothing()),
        },
        (13, _) => match pick(&threads, b) {
            Some(t) => s
                .answer(now, &t, AnswerStatus::ALL[c as usize % 4], &words(c))
                .map(drop),
            None => Err(nothing()),
        },
        (14, _) => match pick(&threads, b) {
            Some(t) if c.is_multiple_of(2) => s.resolve(now, &t),
            Some(t) => s.reopen(now, &t),
            None => Err(nothing()),
        },
        (15, _) => match pick(&any_contribution, b) {
            Some(t) if !c.is_multiple_of(3) => s.hide(now, &t, "Reden"),
            Some(t) => s.unhide(now, &t, "Toch niet"),
            None => Err(nothing()),
        },
        (16, Some(id)) => {
            let (st, en) = range(b, c);
            s.enter_on_behalf(
                now,
                "Piet",
                OnBehalf::Comment {
                    article: id,
                    start: st,
                    end: en,
                    text: words(c),
                },
            )
            .map(drop)
        }
        (17, _) => match pick(&threads, b) {
            Some(t) => s
                .enter_on_behalf(
                    now,
                    "Piet",
                    OnBehalf::Reply {
                        thread: t,
                        text: words(c),
                    },
                )
                .map(drop),
            None => Err(nothing()),
        },
        (18, Some(id)) => {
            let (st, en) = range(b, c);
            s.enter_on_behalf(
                now,
                "Piet",
                OnBehalf::Suggestion {
                    article: id,
                    start: st,
                    end: en,
                    replacement: words(c),
                    text: String::new(),
                },
            )
            .map(drop)
        }
        (19 | 20, _) => s.mark_read(now),
        _ => Err(nothing()),
    };
    result.is_ok() && s.docs().text.heads() != docs.text.heads()
        || s.docs()
            .contributions
            .iter()
            .any(|(m, d)| docs.contributions.get(m).map(|o| o.heads()) != Some(d.heads()))
}

/// Sends a random subset of the changes `to` lacks, in a random order.
fn send<D: KladDocument>(from: &D, to: &mut D, mask: u64, shuffle: u64) {
    let mut changes = to.automerge().get_changes_added(from.automerge());
    let mut i = 0;
    changes.retain(|_| {
        i += 1;
        (mask >> (i % 64)) & 1 == 1
    });
    let n = changes.len();
    for k in 0..n {
        changes.swap(k, (shuffle.rotate_left(k as u32) as usize) % n);
    }
    to.automerge_mut().apply_changes(changes).unwrap();
}

fn send_docs(from: &ProcessDocs, to: &mut ProcessDocs, mask: u64, shuffle: u64) {
    send(&from.process, &mut to.process, mask, shuffle);
    send(&from.text, &mut to.text, mask.rotate_left(7), shuffle);
    for (m, doc) in &from.contributions {
        if let Some(mine) = to.contributions.get_mut(m) {
            send(doc, mine, mask.rotate_left(13), shuffle.rotate_left(3));
        }
    }
}

/// Everything a person can read, for one replica.
fn all_views(docs: &ProcessDocs, now: i64) -> String {
    let info = docs.process.info().unwrap();
    let mut out = format!("{:?}\n", views::articles(docs));
    out += &format!("{:?}\n", views::threads(docs, None, now).unwrap());
    out += &format!("{:?}\n", views::open_suggestions(docs, now).unwrap());
    for id in docs.text.article_ids() {
        out += &format!("{:?}\n", views::blame(docs, &id).unwrap());
    }
    out += &format!("{:?}\n", views::history(docs).unwrap());
    for m in info.members.keys() {
        out += &format!("{:?}\n", views::changes_since_read(docs, m).unwrap());
    }
    out
}

/// Runs the steps, checks convergence, and returns how often each kind of
/// operation took effect.
fn run(replicas: usize, steps: Vec<Step>) -> Result<[usize; KINDS as usize], TestCaseError> {
    let mut effective = [0usize; KINDS as usize];
    let mut w = World::new();
    w.anna
        .create_article(T0, None, "Doel", "Deze verordening regelt het groen.")
        .unwrap();
    w.anna
        .create_article(T0, None, "Bomen", "Elke straat krijgt bomen.")
        .unwrap();
    w.sync_all();
    // Replica order: drafter, official, facilitator, second drafter, observer.
    let mut sessions = vec![w.anna, w.olga, w.fenna, w.bram, w.otto];
    sessions.truncate(replicas);
    let mut server = w.server;
    let fenna = sessions[2].member_id().clone();
    let mut now = T0 + 1000;
    for st in steps {
        now += 997;
        match st {
            Step::Op { who, kind, a, b, c } => {
                let n = sessions.len();
                if apply(&mut sessions[who % n], kind, a, b, c, now) {
                    effective[kind as usize] += 1;
                }
            }
            Step::Send {
                from,
                to,
                mask,
                shuffle,
            } => {
                let n = sessions.len();
                let (from, to) = (from % n, to % n);
                if from != to {
                    let src = sessions[from].docs().clone();
                    send_docs(&src, sessions[to].docs_mut(), mask, shuffle);
                }
            }
            Step::Phase { to } => {
                let phase = server.process.info().unwrap().phase;
                if let Some(next) = phase.next() {
                    server.process.set_phase(now, Some(&fenna), next).unwrap();
                }
                let n = sessions.len();
                sessions[to % n]
                    .docs_mut()
                    .process
                    .merge(&server.process)
                    .unwrap();
            }
        }
    }
    // Finally everyone syncs everything through the server.
    for s in &sessions {
        server.merge(s.docs()).unwrap();
    }
    for s in sessions.iter_mut() {
        s.docs_mut().merge(&server).unwrap();
    }
    let expected = all_views(&server, now + 5 * DAY);
    for s in &sessions {
        let got = all_views(s.docs(), now + 5 * DAY);
        prop_assert_eq!(&got, &expected);
    }
    Ok(effective)
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(500);
    Config {
        cases,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn replicas_converge_to_identical_views(
        replicas in 3..=5usize,
        steps in proptest::collection::vec(step(), 10..60),
    ) {
        run(replicas, steps)?;
    }
}

/// Not vacuous: a typical run really does produce threads, answers and edits.
#[test]
fn a_fixed_run_exercises_every_kind_of_operation() {
    let mut steps = Vec::new();
    for kind in 0..KINDS {
        for who in 0..5 {
            steps.push(Step::Op {
                who,
                kind,
                a: 1,
                b: 8 + 4 * kind as u32,
                c: 3,
            });
        }
        steps.push(Step::Send {
            from: kind as usize % 5,
            to: (kind as usize + 1) % 5,
            mask: u64::MAX,
            shuffle: 5,
        });
    }
    let effective = run(5, steps).unwrap();
    for kind in 0..KINDS as usize {
        assert!(
            effective[kind] > 0,
            "operation kind {kind} never took effect: {effective:?}"
        );
    }
}

/// What an operation that found nothing to act on returns.
fn nothing() -> Error {
    Error::NotFound(Reason::NoSuchContribution {
        id: ContributionId::from("none"),
    })
}
