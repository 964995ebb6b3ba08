//! The end product of a consultation: the ordinance text and the *nota van
//! beantwoording* — per article, every contribution, the municipality's
//! answer with its reason, and what changed in the text because of it — as
//! printable HTML, Markdown and CSV.
//!
//! Residents are not named by default: each gets a number ("inwoner 12",
//! in the order they first contributed); a facilitator may switch names on.
//! Officials and facilitators appear by their role. What changed in the text
//! is read from the contribution's anchor: the passage as it was quoted
//! against the passage as it reads now (or that it was removed), and for an
//! accepted suggestion, its wording.

use std::collections::HashMap;
use std::fmt::Write as _;

use klad_core::views::{Attribution, SuggestionState, ThreadKind};

use super::*;

/// How a person is named in the export.
struct Names<'a> {
    t: &'a Tr<'a>,
    info: &'a ProcessInfo,
    with_names: bool,
    /// Residents' numbers, by member id or (for letters) by person's name.
    numbers: HashMap<String, usize>,
}

impl Names<'_> {
    fn number(&mut self, key: String) -> usize {
        let next = self.numbers.len() + 1;
        *self.numbers.entry(key).or_insert(next)
    }

    fn of(&mut self, a: &Attribution) -> String {
        if let Some(person) = &a.on_behalf_of {
            // A letter: the resident wrote it, the facilitator typed it in.
            return if self.with_names {
                person.clone()
            } else {
                let n = self.number(format!("letter:{person}"));
                self.t.n("export-resident", &(n as u64))
            };
        }
        let role = self.info.members.get(&a.member).map(|m| m.role);
        match role {
            Some(Role::Drafter) | Some(Role::Observer) | None => {
                if self.with_names {
                    a.name.clone()
                } else {
                    let n = self.number(format!("member:{}", a.member));
                    self.t.n("export-resident", &(n as u64))
                }
            }
            Some(role) => {
                if self.with_names {
                    format!("{} ({})", a.name, self.t.role(&role))
                } else {
                    self.t.role(&role)
                }
            }
        }
    }
}

/// What changed in the text because of a contribution, as far as its
/// anchor tells.
pub(super) enum TextChange {
    /// The passage reads as it did.
    None,
    /// The passage reads differently now.
    Changed { was: String, now: String },
    /// The passage is gone from the text.
    Removed { was: String },
    /// The suggestion was accepted: this wording was put in.
    Accepted { wording: String },
}

/// One contribution in the nota.
pub(super) struct NotaItem {
    pub number: usize,
    pub who: String,
    pub suggestion: bool,
    pub passage: String,
    pub text: String,
    pub wording: Option<String>,
    pub answer: Option<(String, String, String)>,
    pub change: TextChange,
}

impl NotaItem {
    fn change_text(&self, t: &Tr<'_>) -> String {
        match &self.change {
            TextChange::None => t.get("export-change-none"),
            TextChange::Changed { was, now } => t.fill(
                "export-change-changed",
                &[("was", was.as_str()), ("now", now.as_str())],
                None,
            ),
            TextChange::Removed { was } => t.s("export-change-removed", "was", was),
            TextChange::Accepted { wording } => t.s("export-change-accepted", "wording", wording),
        }
    }
}

/// One article with its contributions.
pub(super) struct NotaArticle {
    pub label: String,
    pub heading: String,
    pub body: String,
    pub items: Vec<NotaItem>,
}

/// The whole nota.
pub(super) struct Nota {
    pub title: String,
    pub date: String,
    pub articles: Vec<NotaArticle>,
    /// Contributions on articles removed since.
    pub elsewhere: Vec<NotaItem>,
}

fn build(
    docs: &ProcessDocs,
    info: &ProcessInfo,
    t: &Tr<'_>,
    with_names: bool,
) -> klad_core::Result<Nota> {
    let threads = views::threads(docs, None, now_ms())?;
    let articles = views::articles(docs);
    let mut names = Names {
        t,
        info,
        with_names,
        numbers: HashMap::new(),
    };
    // Residents are numbered in the order they first contributed.
    let mut by_time: Vec<&ThreadView> = threads.iter().collect();
    by_time.sort_by_key(|th| (th.created_at, th.id.to_string()));
    for th in &by_time {
        names.of(&th.author);
    }
    let mut number = 0;
    let mut item = |th: &ThreadView, names: &mut Names<'_>| {
        number += 1;
        let (passage, change) = match &th.anchor {
            AnchorView::Live { text, quote, .. } if text != quote => (
                quote.clone(),
                TextChange::Changed {
                    was: quote.clone(),
                    now: text.clone(),
                },
            ),
            AnchorView::Live { quote, .. } => (quote.clone(), TextChange::None),
            AnchorView::Orphaned { quote } | AnchorView::Pending { quote } => {
                (quote.clone(), TextChange::Removed { was: quote.clone() })
            }
        };
        let change = match (&th.suggestion, &th.replacement) {
            (Some(SuggestionState::Accepted), Some(wording)) => TextChange::Accepted {
                wording: wording.clone(),
            },
            _ => change,
        };
        let answer = th
            .answers
            .iter()
            .rev()
            .find(|a| a.hidden.is_none())
            .map(|a| {
                (
                    t.get(answer_status_key(a.status)),
                    a.reason.clone(),
                    names.of(&a.author),
                )
            });
        NotaItem {
            number,
            who: names.of(&th.author),
            suggestion: th.kind == ThreadKind::Suggestion,
            passage,
            text: th.text.clone(),
            wording: th.replacement.clone(),
            answer,
            change,
        }
    };
    let visible = |th: &&ThreadView| th.hidden.is_none();
    let mut out = Vec::new();
    for a in &articles {
        let items = threads
            .iter()
            .filter(visible)
            .filter(|th| th.article == a.id)
            .map(|th| item(th, &mut names))
            .collect();
        out.push(NotaArticle {
            label: a.label.clone(),
            heading: a.heading.clone(),
            body: a.body.clone(),
            items,
        });
    }
    let elsewhere = threads
        .iter()
        .filter(visible)
        .filter(|th| !articles.iter().any(|a| a.id == th.article))
        .map(|th| item(th, &mut names))
        .collect();
    Ok(Nota {
        title: info.title.clone(),
        date: date_of(now_secs()),
        articles: out,
        elsewhere,
    })
}

#[derive(Template)]
#[template(path = "export.html")]
pub(super) struct ExportPage<'a> {
    pub ctx: Ctx<'a>,
    pub may_name: bool,
}

#[derive(Template)]
#[template(path = "nota.html")]
pub(super) struct NotaPage<'a> {
    pub ctx: Ctx<'a>,
    pub nota: Nota,
}

#[derive(Deserialize)]
pub(super) struct ExportQuery {
    #[serde(default)]
    names: Option<String>,
}

/// Who may export: officials and facilitators; only facilitators may
/// switch names on.
fn may_export(role: Option<Role>) -> (bool, bool) {
    match role {
        Some(Role::Facilitator) => (true, true),
        Some(Role::Official) => (true, false),
        _ => (false, false),
    }
}

pub(super) async fn export_page<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    headers: HeaderMap,
) -> Response {
    let (me, _docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let (may, may_name) = may_export(info.members.get(&me.session.member).map(|m| m.role));
    if !may {
        return desk.error_page(me.lang, StatusCode::FORBIDDEN, &t.get("export-refused"));
    }
    let page = ExportPage {
        ctx: desk.ctx(me.lang, t.get("export-title"), "export", Some((&me, &info))),
        may_name,
    };
    render(StatusCode::OK, &page)
}

pub(super) async fn export<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(file): Path<String>,
    query: Result<axum::extract::Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let (may, may_name) = may_export(info.members.get(&me.session.member).map(|m| m.role));
    if !may {
        return desk.error_page(me.lang, StatusCode::FORBIDDEN, &t.get("export-refused"));
    }
    let with_names = query.ok().and_then(|q| q.0.names).is_some_and(|n| n == "1");
    if with_names && !may_name {
        return desk.error_page(
            me.lang,
            StatusCode::FORBIDDEN,
            &t.get("export-names-refused"),
        );
    }
    let nota = match build(&docs, &info, &t, with_names) {
        Ok(n) => n,
        Err(e) => return desk.desk_error(me.lang, &DeskError::Internal(e.to_string())),
    };
    let stem = t.get("export-file-stem");
    match file.as_str() {
        "nota.html" => {
            let page = NotaPage {
                ctx: desk.ctx(
                    me.lang,
                    t.s("export-nota-title", "title", &nota.title),
                    "export",
                    Some((&me, &info)),
                ),
                nota,
            };
            render(StatusCode::OK, &page)
        }
        "nota.md" => download(
            markdown(&nota, &t),
            "text/markdown; charset=utf-8",
            &format!("{stem}.md"),
        ),
        "nota.csv" => match csv_of(&nota, &t) {
            Ok(text) => download(text, "text/csv; charset=utf-8", &format!("{stem}.csv")),
            Err(e) => desk.desk_error(me.lang, &DeskError::Internal(e)),
        },
        _ => desk.error_page(me.lang, StatusCode::NOT_FOUND, &t.get("not-found-sentence")),
    }
}

fn download(body: String, content_type: &'static str, name: &str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Markdown with the characters that would start markup escaped.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '<' | '>' | '|'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn markdown(nota: &Nota, t: &Tr<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {}\n",
        md(&t.s("export-nota-title", "title", &nota.title))
    );
    let _ = writeln!(out, "{}\n", md(&t.s("export-made-on", "date", &nota.date)));
    let _ = writeln!(out, "## {}\n", md(&t.get("export-text")));
    for a in &nota.articles {
        let _ = writeln!(out, "### {}: {}\n", md(&a.label), md(&a.heading));
        for para in a.body.split('\n') {
            let _ = writeln!(out, "{}\n", md(para));
        }
    }
    let _ = writeln!(out, "## {}\n", md(&t.get("export-nota")));
    let item_md = |out: &mut String, i: &NotaItem| {
        let kind = if i.suggestion {
            t.s("export-suggestion-by", "name", &i.who)
        } else {
            t.s("export-comment-by", "name", &i.who)
        };
        let _ = writeln!(out, "#### {} {}\n", i.number, md(&kind));
        if !i.passage.is_empty() {
            let _ = writeln!(
                out,
                "- {} “{}”",
                md(&t.get("export-passage")),
                md(&i.passage)
            );
        }
        let _ = writeln!(
            out,
            "- {} {}",
            md(&t.get("export-contribution")),
            md(&i.text)
        );
        if let Some(w) = &i.wording {
            let _ = writeln!(out, "- {} “{}”", md(&t.get("thread-wording")), md(w));
        }
        match &i.answer {
            Some((status, reason, who)) => {
                let _ = writeln!(
                    out,
                    "- {} **{}** ({}): {}",
                    md(&t.get("export-answer")),
                    md(status),
                    md(who),
                    md(reason)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "- {} {}",
                    md(&t.get("export-answer")),
                    md(&t.get("export-no-answer"))
                );
            }
        }
        let _ = writeln!(
            out,
            "- {} {}\n",
            md(&t.get("export-change")),
            md(&i.change_text(t))
        );
    };
    for a in &nota.articles {
        let _ = writeln!(out, "### {}: {}\n", md(&a.label), md(&a.heading));
        if a.items.is_empty() {
            let _ = writeln!(out, "{}\n", md(&t.get("export-no-contributions")));
        }
        for i in &a.items {
            item_md(&mut out, i);
        }
    }
    if !nota.elsewhere.is_empty() {
        let _ = writeln!(out, "### {}\n", md(&t.get("export-elsewhere")));
        for i in &nota.elsewhere {
            item_md(&mut out, i);
        }
    }
    out
}

fn csv_of(nota: &Nota, t: &Tr<'_>) -> Result<String, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "export-col-number",
        "export-col-article",
        "export-col-who",
        "export-col-kind",
        "export-col-passage",
        "export-col-contribution",
        "export-col-wording",
        "export-col-answer",
        "export-col-reason",
        "export-col-answered-by",
        "export-col-change",
    ]
    .map(|k| t.get(k));
    w.write_record(&header).map_err(|e| e.to_string())?;
    let rows = nota
        .articles
        .iter()
        .flat_map(|a| {
            a.items
                .iter()
                .map(move |i| (format!("{}: {}", a.label, a.heading), i))
        })
        .chain(
            nota.elsewhere
                .iter()
                .map(|i| (t.get("export-elsewhere"), i)),
        );
    for (article, i) in rows {
        let (status, reason, who) = i.answer.clone().unwrap_or_default();
        let kind = if i.suggestion {
            t.get("export-kind-suggestion")
        } else {
            t.get("export-kind-comment")
        };
        w.write_record([
            i.number.to_string(),
            article,
            i.who.clone(),
            kind,
            i.passage.clone(),
            i.text.clone(),
            i.wording.clone().unwrap_or_default(),
            status,
            reason,
            who,
            i.change_text(t),
        ])
        .map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Catalogue;
    use klad_core::{ActorId, DocId, ProcessId, Session};

    /// A process where Anna (resident) comments on a passage that Bram
    /// (resident) then rewrites, Olga (official) answers, and Fenna
    /// (facilitator) enters Piet's letter.
    fn consultation() -> (ProcessDocs, ArticleId) {
        let t0 = 1_700_000_000_000;
        let pid = ProcessId("p".into());
        let mut docs = ProcessDocs::create(t0, &pid, "Groen", &DocId("text".into())).unwrap();
        let mut add = |name: &str, role: Role| {
            docs.add_member(t0, None, name, role, &DocId(format!("c-{name}")))
                .unwrap()
        };
        let (anna, bram, olga, fenna) = (
            add("Anna", Role::Drafter),
            add("Bram", Role::Drafter),
            add("Olga", Role::Official),
            add("Fenna", Role::Facilitator),
        );
        let mut s = Session::new(docs, bram.clone(), ActorId::random());
        let art = s
            .create_article(t0, None, "Bomen", "De gemeente plant bomen in elke straat.")
            .unwrap();
        let mut s = Session::new(s.into_docs(), anna, ActorId::random());
        let thread = s.comment(t0 + 1, &art, 12, 38, "Welke bomen?").unwrap();
        let mut s = Session::new(s.into_docs(), bram, ActorId::random());
        s.replace_range(t0 + 2, &art, 18, 23, "linden").unwrap();
        let mut s = Session::new(s.into_docs(), olga, ActorId::random());
        s.answer(t0 + 3, &thread, AnswerStatus::Adopted, "Het worden linden.")
            .unwrap();
        let mut s = Session::new(s.into_docs(), fenna, ActorId::random());
        s.enter_on_behalf(
            t0 + 4,
            "Piet Jansen",
            OnBehalf::Comment {
                article: art.clone(),
                start: 0,
                end: 2,
                text: "Graag ook bankjes.".into(),
            },
        )
        .unwrap();
        (s.into_docs(), art)
    }

    use klad_core::OnBehalf;

    #[test]
    fn the_nota_names_residents_by_number_officials_by_role_and_shows_the_change() {
        let (docs, _) = consultation();
        let info = docs.process.info().unwrap();
        let catalogue = Catalogue::new();
        let t = catalogue.tr(Lang::Nl);
        let nota = build(&docs, &info, &t, false).unwrap();
        let items = &nota.articles[0].items;
        assert_eq!(items.len(), 2);
        let anna = items.iter().find(|i| i.text == "Welke bomen?").unwrap();
        assert_eq!(anna.who, "inwoner 1");
        let (status, reason, who) = anna.answer.clone().unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str(), who.as_str()),
            ("overgenomen", "Het worden linden.", "ambtenaar")
        );
        assert_eq!(
            anna.change_text(&t),
            "„plant bomen in elke straat” werd „plant linden in elke straat”"
        );
        let piet = items
            .iter()
            .find(|i| i.text == "Graag ook bankjes.")
            .unwrap();
        assert_eq!(piet.who, "inwoner 2");
        assert_eq!(piet.change_text(&t), "geen");

        let md = markdown(&nota, &t);
        assert!(
            md.contains("Reactie van inwoner 1") && !md.contains("Anna") && !md.contains("Piet")
        );
        let csv = csv_of(&nota, &t).unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(csv.contains("„plant bomen in elke straat” werd „plant linden in elke straat”"));

        let named = build(&docs, &info, &t, true).unwrap();
        let whos: Vec<&str> = named.articles[0]
            .items
            .iter()
            .map(|i| i.who.as_str())
            .collect();
        assert!(
            whos.contains(&"Anna") && whos.contains(&"Piet Jansen"),
            "{whos:?}"
        );
        let answered_by = named.articles[0]
            .items
            .iter()
            .find_map(|i| i.answer.clone())
            .unwrap()
            .2;
        assert_eq!(answered_by, "Olga (ambtenaar)");
    }

    #[test]
    fn markdown_escapes_what_would_be_markup() {
        assert_eq!(md("*vet* [link](x) <b>"), "\\*vet\\* \\[link\\](x) \\<b\\>");
    }
}
