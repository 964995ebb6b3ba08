//! The facilitators' pages: the weekly check-in (what waits for an answer
//! and since when, per article and per official, with a chart; what changed
//! since the last check-in; who has not synced for long; the phase), and
//! entering a letter or a spoken contribution on behalf of a resident.

use std::fmt::Write as _;

use klad_core::OnBehalf;
use klad_core::views::ChangesSinceRead;

use super::*;

/// Days after which a member counts as not synced for long.
const QUIET_DAYS: u64 = 7;

/// One article's waiting threads.
pub(super) struct ArticleWaiting {
    pub id: String,
    pub label: String,
    pub heading: String,
    pub open: usize,
    pub oldest_days: u32,
}

/// One official's answers.
pub(super) struct OfficialRow {
    pub name: String,
    pub answers: usize,
    pub since_checkin: usize,
    pub last_answer: Option<String>,
}

/// A member and when the server last saw them.
pub(super) struct QuietRow {
    pub name: String,
    pub role: Role,
    pub last: Option<String>,
}

#[derive(Template)]
#[template(path = "checkin.html")]
pub(super) struct CheckinPage<'a> {
    pub ctx: Ctx<'a>,
    pub per_article: Vec<ArticleWaiting>,
    pub chart_svg: String,
    pub officials: Vec<OfficialRow>,
    pub since: Option<String>,
    pub changes: ChangesSinceRead,
    pub quiet: Vec<QuietRow>,
    pub watching_since: String,
    pub phase: Phase,
    pub phases: Vec<Phase>,
    pub done: bool,
}

fn date_ms(ms: i64) -> String {
    date_of((ms.max(0) / 1000) as u64)
}

/// XML text with `&`, `<`, `>` and quotes escaped.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar per article: how long its oldest contribution has been
/// waiting for an answer, with the count and the days written out beside
/// the bar (the chart is read, not only looked at).
fn chart(t: &Tr<'_>, rows: &[ArticleWaiting]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let (label_w, bar_w, row_h) = (120u32, 200u32, 28u32);
    // Room after the longest bar for its number.
    let width = label_w + bar_w + 60;
    let height = row_h * rows.len() as u32 + 10;
    // A week is the shortest scale, so a day's wait does not fill the chart.
    let scale = rows.iter().map(|r| r.oldest_days).max().unwrap_or(0).max(7) + 1;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title chart-desc" class="chart"><title id="chart-title">{}</title><desc id="chart-desc">{}</desc>"##,
        xml(&t.get("checkin-chart-title")),
        xml(&t.get("checkin-chart-desc")),
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 5 + row_h * i as u32;
        let w = (u64::from(bar_w) * u64::from(r.oldest_days + 1) / u64::from(scale)) as u32;
        let _ = write!(
            svg,
            r##"<text x="0" y="{}" font-size="13" fill="#1a1a1a">{}</text><rect x="{label_w}" y="{}" width="{w}" height="{}" fill="#0b4f9c"/><text x="{}" y="{}" font-size="12" fill="#1a1a1a">{}</text>"##,
            y + 17,
            xml(&r.label),
            y + 4,
            row_h - 10,
            label_w + w + 6,
            y + 17,
            r.oldest_days,
        );
    }
    svg.push_str("</svg>");
    svg
}

pub(super) async fn checkin<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    query: Result<axum::extract::Query<ArticleQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let now = now_ms();
    let (threads, changes) = match (
        views::threads(&docs, None, now),
        views::changes_since_read(&docs, &me.session.member),
    ) {
        (Ok(th), Ok(ch)) => (th, ch),
        (Err(e), _) | (_, Err(e)) => {
            return desk.desk_error(me.lang, &DeskError::Internal(e.to_string()));
        }
    };
    let articles = views::articles(&docs);
    let per_article: Vec<ArticleWaiting> = articles
        .iter()
        .filter_map(|a| {
            let open: Vec<&ThreadView> = threads
                .iter()
                .filter(|th| th.article == a.id && th.status == ThreadStatus::Open)
                .collect();
            (!open.is_empty()).then(|| ArticleWaiting {
                id: a.id.to_string(),
                label: a.label.clone(),
                heading: a.heading.clone(),
                open: open.len(),
                oldest_days: open
                    .iter()
                    .filter_map(|th| th.days_waiting)
                    .max()
                    .unwrap_or(0),
            })
        })
        .collect();
    let mut officials: Vec<OfficialRow> = info
        .members
        .values()
        .filter(|m| m.role == Role::Official)
        .map(|m| {
            let mine: Vec<i64> = threads
                .iter()
                .flat_map(|th| &th.answers)
                .filter(|a| a.author.member == m.id)
                .map(|a| a.created_at)
                .collect();
            OfficialRow {
                name: m.name.clone(),
                answers: mine.len(),
                since_checkin: mine
                    .iter()
                    .filter(|at| changes.since.is_none_or(|s| **at > s))
                    .count(),
                last_answer: mine.iter().max().map(|ms| date_ms(*ms)),
            }
        })
        .collect();
    officials.sort_by(|a, b| a.name.cmp(&b.name));
    let seen = desk.backend.last_seen(&me.session.process);
    let quiet_before = now_secs().saturating_sub(QUIET_DAYS * 86_400);
    let mut quiet: Vec<(Option<u64>, QuietRow)> = info
        .members
        .values()
        .filter(|m| m.id != me.session.member)
        .filter_map(|m| {
            let last = seen.members.get(&m.id).copied();
            last.is_none_or(|l| l < quiet_before).then(|| {
                (
                    last,
                    QuietRow {
                        name: m.name.clone(),
                        role: m.role,
                        last: last.map(date_of),
                    },
                )
            })
        })
        .collect();
    quiet.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.name.cmp(&b.1.name)));
    let done = query.ok().is_some_and(|q| q.0.saved.is_some());
    let page = CheckinPage {
        ctx: desk.ctx(
            me.lang,
            t.get("checkin-title"),
            "checkin",
            Some((&me, &info)),
        ),
        chart_svg: chart(&t, &per_article),
        per_article,
        officials,
        since: changes.since.map(date_ms),
        changes,
        quiet: quiet.into_iter().map(|(_, q)| q).collect(),
        watching_since: date_of(seen.since),
        phase: info.phase,
        phases: Phase::ALL.to_vec(),
        done,
    };
    render(StatusCode::OK, &page)
}

pub(super) async fn checkin_done<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let (me, _) = match desk.posted(&headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match desk
        .backend
        .act(&me.session.process, &me.session.member, Act::MarkRead)
        .await
    {
        Ok(()) => Redirect::to("/desk/checkin?saved=1").into_response(),
        Err(e) => desk.desk_error(me.lang, &e),
    }
}

#[derive(Deserialize)]
pub(super) struct PhaseForm {
    csrf: String,
    #[serde(default)]
    phase: String,
}

pub(super) async fn phase<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    headers: HeaderMap,
    form: Result<Form<PhaseForm>, FormRejection>,
) -> Response {
    let (me, form) = match desk.posted(&headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(to) = Phase::parse(form.phase.trim()) else {
        let t = desk.catalogue.tr(me.lang);
        return desk.error_page(me.lang, StatusCode::BAD_REQUEST, &t.get("phase-bad"));
    };
    match desk
        .backend
        .set_phase(&me.session.process, &me.session.member, to)
        .await
    {
        Ok(()) => Redirect::to("/desk/checkin").into_response(),
        Err(e) => desk.desk_error(me.lang, &e),
    }
}

#[derive(Template)]
#[template(path = "letters.html")]
pub(super) struct LettersPage<'a> {
    pub ctx: Ctx<'a>,
    pub articles: Vec<ArticleView>,
    pub problem: Option<String>,
    pub person: String,
    pub article: String,
    pub passage: String,
    pub text: String,
    pub saved: bool,
}

pub(super) async fn letters<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    query: Result<axum::extract::Query<ArticleQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let page = LettersPage {
        ctx: desk.ctx(
            me.lang,
            t.get("letters-title"),
            "letters",
            Some((&me, &info)),
        ),
        articles: views::articles(&docs),
        problem: None,
        person: String::new(),
        article: String::new(),
        passage: String::new(),
        text: String::new(),
        saved: query.ok().is_some_and(|q| q.0.saved.is_some()),
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub(super) struct LetterForm {
    csrf: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    article: String,
    #[serde(default)]
    passage: String,
    #[serde(default)]
    text: String,
}

/// Where `passage` is in `body`, in characters (the whole body when the
/// passage is left empty).
pub(super) fn find_passage(body: &str, passage: &str) -> Option<(usize, usize)> {
    let passage = passage.trim();
    if passage.is_empty() {
        let len = body.chars().count();
        return (len > 0).then_some((0, len));
    }
    let at = body.find(passage)?;
    let start = body[..at].chars().count();
    Some((start, start + passage.chars().count()))
}

pub(super) async fn letter<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    headers: HeaderMap,
    form: Result<Form<LetterForm>, FormRejection>,
) -> Response {
    let (me, form) = match desk.posted(&headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok((_, docs, info)) => (me, docs, info),
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let articles = views::articles(&docs);
    let again = |status: StatusCode, problem: String| {
        let page = LettersPage {
            ctx: desk.ctx(
                me.lang,
                t.get("letters-title"),
                "letters",
                Some((&me, &info)),
            ),
            articles: articles.clone(),
            problem: Some(problem),
            person: form.person.clone(),
            article: form.article.clone(),
            passage: form.passage.clone(),
            text: form.text.clone(),
            saved: false,
        };
        render(status, &page)
    };
    let Some(article) = articles.iter().find(|a| a.id.as_str() == form.article) else {
        return again(StatusCode::BAD_REQUEST, t.get("letter-need-article"));
    };
    let Some((start, end)) = find_passage(&article.body, &form.passage) else {
        return again(StatusCode::BAD_REQUEST, t.get("letter-passage-missing"));
    };
    let act = Act::OnBehalf {
        person: form.person.clone(),
        what: OnBehalf::Comment {
            article: article.id.clone(),
            start,
            end,
            text: form.text.clone(),
        },
    };
    match desk
        .backend
        .act(&me.session.process, &me.session.member, act)
        .await
    {
        Ok(()) => Redirect::to("/desk/letters?saved=1").into_response(),
        Err(DeskError::BadInput(m)) => again(StatusCode::BAD_REQUEST, m),
        Err(DeskError::Refused(m)) => again(StatusCode::FORBIDDEN, m),
        Err(DeskError::Core(e)) => again(core_status(&e), e.message(me.lang)),
        Err(e) => desk.desk_error(me.lang, &e),
    }
}

has_csrf!(PhaseForm, LetterForm);

#[cfg(test)]
mod tests {
    use super::find_passage;

    #[test]
    fn passages_are_found_in_characters() {
        assert_eq!(find_passage("één boom", "boom"), Some((4, 8)));
        assert_eq!(find_passage("één boom", " "), Some((0, 8)));
        assert_eq!(find_passage("één boom", "struik"), None);
        assert_eq!(find_passage("", ""), None);
    }
}
