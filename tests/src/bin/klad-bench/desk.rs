//! `klad-bench desk`: how long the web desk takes to answer its main pages
//! for a process of 50 members and 2,000 contributions, p50 and p99, with
//! the same pages of a process of the same 50 members and one article
//! without contributions as the baseline in the same run.
//!
//! A real engine (klad-server's hubs, facilitation and sled store in a
//! temporary directory) holds both processes; the contributions are written
//! through the process's hub as klad-core sessions of their members make
//! them. Each page is asked for through the desk's router in this process
//! (no socket), signed in as an official or a facilitator: what is measured
//! is reading the documents from the store, the klad-core views and the
//! template.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use automerge::ActorId;
use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt as _;
use klad_core::document::KladDocument;
use klad_core::rules::{Phase, Role};
use klad_core::{AnswerStatus, ArticleId, MemberId, ProcessDocs, ProcessId, Session};
use klad_server::desk::ServerDesk;
use klad_server::facilitation::Facilitation;
use klad_server::http::DEFAULT_TTL;
use klad_web::{Backend as _, DeskConfig, StoredSession};
use tower::ServiceExt as _;

const MEMBERS: usize = 50;
const CONTRIBUTIONS: usize = 2_000;
const ARTICLES: usize = 20;
const ROUNDS: usize = 50;

/// A process, and who is signed in to look at it.
struct Seeded {
    process: ProcessId,
    official: MemberId,
    facilitator: MemberId,
    article: ArticleId,
}

/// Writes what `after` has over `before` of every document, through the hub.
async fn write_all(
    facilitation: &Facilitation,
    process: &ProcessId,
    before: &ProcessDocs,
    after: &ProcessDocs,
) -> anyhow::Result<()> {
    let info = after.process.info()?;
    let lease = facilitation.hubs().lease(process)?;
    let mut docs = vec![(
        info.text_doc.to_string(),
        before.text.automerge().get_heads(),
        after.text.automerge(),
    )];
    for m in info.members.values() {
        if let (Some(b), Some(a)) = (
            before.contributions.get(&m.id),
            after.contributions.get(&m.id),
        ) {
            docs.push((
                m.contributions_doc.to_string(),
                b.automerge().get_heads(),
                a.automerge(),
            ));
        }
    }
    for (id, heads, doc) in docs {
        let changes = doc.get_changes(&heads);
        if !changes.is_empty() {
            anyhow::ensure!(
                lease.write(&id, changes).await?,
                "the hub did not store {id}"
            );
        }
    }
    Ok(())
}

async fn seed(
    facilitation: &Arc<Facilitation>,
    desk: &ServerDesk,
    title: &str,
    contributions: usize,
) -> anyhow::Result<Seeded> {
    let created = facilitation.create_process(title).await?;
    let pid = created.process_id;
    let mut members: Vec<(MemberId, Role)> = Vec::new();
    for i in 0..MEMBERS {
        let role = match i % 10 {
            0 => Role::Official,
            1 if i < 20 => Role::Facilitator,
            _ => Role::Drafter,
        };
        let inv = facilitation
            .add_member(&pid, None, &format!("Lid {i}"), role, DEFAULT_TTL, false)
            .await?;
        members.push((inv.member_id, role));
    }
    let of = |role: Role| {
        members
            .iter()
            .filter(move |(_, r)| *r == role)
            .map(|(m, _)| m.clone())
    };
    let drafters: Vec<MemberId> = of(Role::Drafter).collect();
    let officials: Vec<MemberId> = of(Role::Official).collect();
    let facilitator = of(Role::Facilitator).next().context("a facilitator")?;

    let before = desk.process_docs(&pid).await?;
    let t0 = 1_767_571_200_000i64;
    let mut s = Session::new(before.clone(), drafters[0].clone(), ActorId::random());
    let mut articles = Vec::new();
    for a in 0..ARTICLES {
        let body = format!(
            "Artikel over onderwerp {a}. De gemeente zorgt voor groen, bankjes en verlichting in elke straat van de wijk, en overlegt daarover met de bewoners."
        );
        articles.push(s.create_article(t0, articles.last(), &format!("Onderwerp {a}"), &body)?);
    }
    let mut docs = s.into_docs();
    let mut threads = Vec::new();
    for i in 0..contributions {
        let who = &drafters[i % drafters.len()];
        let mut s = Session::new(docs, who.clone(), ActorId::random());
        let article = &articles[i % ARTICLES];
        let start = (i * 7) % 60;
        threads.push(s.comment(
            t0 + i as i64,
            article,
            start,
            start + 12,
            &format!("Reactie nummer {i}: graag meer bomen hier."),
        )?);
        docs = s.into_docs();
    }
    // Half the threads get a formal answer.
    for (i, thread) in threads.iter().enumerate().step_by(2) {
        let who = &officials[i % officials.len()];
        let mut s = Session::new(docs, who.clone(), ActorId::random());
        s.answer(
            t0 + 10_000_000 + i as i64,
            thread,
            AnswerStatus::PartlyAdopted,
            "Deels: waar de stoep breed genoeg is.",
        )?;
        docs = s.into_docs();
    }
    write_all(facilitation, &pid, &before, &docs).await?;
    facilitation
        .set_phase(&pid, None, Phase::Consultation)
        .await?;
    Ok(Seeded {
        process: pid,
        official: officials[0].clone(),
        facilitator,
        article: articles[0].clone(),
    })
}

/// Signs `member` in and returns the cookie header.
async fn sign_in(
    desk: &ServerDesk,
    process: &ProcessId,
    member: &MemberId,
) -> anyhow::Result<String> {
    let cookie = klad_web::session::random_secret();
    desk.save_session(
        &klad_web::session::storage_id(&cookie),
        &StoredSession {
            member: member.clone(),
            process: process.clone(),
            generation: 0,
            expires_at: u64::MAX / 2,
            csrf: klad_web::session::random_secret(),
            lang: "nl".into(),
        },
    )
    .await?;
    Ok(format!("{}={cookie}", klad_web::session::COOKIE))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p99 in milliseconds of `ROUNDS` requests for `path`.
async fn measure(
    router: &axum::Router,
    path: &str,
    cookie: &str,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut times = Vec::with_capacity(ROUNDS);
    let mut size = 0;
    for round in 0..ROUNDS + 3 {
        let req = Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())?;
        let started = Instant::now();
        let response = router.clone().oneshot(req).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let took = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            status.is_success(),
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        size = body.len();
        if round >= 3 {
            times.push(took);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 0.99), size))
}

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = klad_server::server::open_engine(dir.path()).await?;
    let desk = ServerDesk::new(engine.facilitation.clone());
    eprintln!(
        "seeding: {MEMBERS} members, {CONTRIBUTIONS} contributions on {ARTICLES} articles (and a baseline process without any)"
    );
    let started = Instant::now();
    let full = seed(&engine.facilitation, &desk, "Groot proces", CONTRIBUTIONS).await?;
    let base = seed(&engine.facilitation, &desk, "Leeg proces", 0).await?;
    eprintln!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    let router = klad_web::router(
        Arc::new(ServerDesk::new(engine.facilitation.clone())),
        DeskConfig::default(),
    );

    println!("| page | p50 (ms) | p99 (ms) | size (KiB) | p50 ÷ baseline |");
    println!("|---|---|---|---|---|");
    for (name, path, as_facilitator) in [
        ("official's inbox", "/desk/inbox", false),
        ("article with its threads", "/desk/articles/{a}", false),
        ("facilitator's check-in", "/desk/checkin", true),
        ("nota (printable HTML)", "/desk/export/nota.html", true),
        ("nota (CSV)", "/desk/export/nota.csv", true),
    ] {
        let mut row = Vec::new();
        for s in [&full, &base] {
            let who = if as_facilitator {
                &s.facilitator
            } else {
                &s.official
            };
            let cookie = sign_in(&desk, &s.process, who).await?;
            let path = path.replace("{a}", s.article.as_str());
            row.push(measure(&router, &path, &cookie).await?);
        }
        let ((p50, p99, size), (b50, _, _)) = (row[0], row[1]);
        println!(
            "| {name} | {p50:.1} | {p99:.1} | {:.0} | {:.1} |",
            size as f64 / 1024.0,
            p50 / b50.max(0.001)
        );
    }
    engine.stop().await;
    Ok(())
}
