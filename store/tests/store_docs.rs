//! Klad documents kept in the sled store: saved incrementally after every
//! operation, compacted, reopened, and read back into identical views.

// The domain fixtures of klad-core's own tests (one home for them).
#[path = "../../core/tests/common/mod.rs"]
mod common;
use common::*;
use klad_core::*;
use klad_store::{DocStore, SledStore};

fn save_all(
    store: &DocStore<SledStore>,
    docs: &ProcessDocs,
    saved: &mut std::collections::BTreeMap<String, Vec<ChangeHash>>,
) {
    let info = docs.process.info().unwrap();
    let mut put = |id: &str, doc: &automerge::Automerge| {
        let since = saved.get(id).cloned().unwrap_or_default();
        let heads = store.save_incremental(id, doc, &since).unwrap();
        saved.insert(id.to_owned(), heads);
    };
    put("process", docs.process.automerge());
    put(info.text_doc.as_str(), docs.text.automerge());
    for m in info.members.values() {
        put(
            m.contributions_doc.as_str(),
            docs.contributions[&m.id].automerge(),
        );
    }
}

#[test]
fn documents_round_trip_through_the_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let mut saved = Default::default();
    let expected;
    {
        let store = DocStore::new(SledStore::open(dir.path()).unwrap());
        let a = w
            .anna
            .create_article(T0, None, "Doel", "De buurt wordt groen.")
            .unwrap();
        save_all(&store, w.anna.docs(), &mut saved);
        for i in 0..50 {
            w.anna.splice_body(T0 + i, &a, 0, 0, "x").unwrap();
            save_all(&store, w.anna.docs(), &mut saved);
        }
        w.sync_all();
        w.olga.comment(T0 + 100, &a, 0, 5, "Waarom x?").unwrap();
        w.sync_all();
        save_all(&store, w.anna.docs(), &mut saved);
        assert!(
            store.chunk_count("text").unwrap() > 50,
            "saved incrementally, one chunk per save"
        );
        store.compact("text").unwrap();
        assert_eq!(store.chunk_count("text").unwrap(), 1);
        expected = format!(
            "{:?}{:?}",
            views::articles(w.anna.docs()),
            views::threads(w.anna.docs(), None, T0).unwrap()
        );
    }
    let store = DocStore::new(SledStore::open(dir.path()).unwrap());
    let process = ProcessDoc::from_automerge(store.load("process").unwrap().unwrap()).unwrap();
    let info = process.info().unwrap();
    let text =
        TextDoc::from_automerge(store.load(info.text_doc.as_str()).unwrap().unwrap()).unwrap();
    let contributions = info
        .members
        .values()
        .map(|m| {
            let doc = store.load(m.contributions_doc.as_str()).unwrap().unwrap();
            (m.id.clone(), ContributionsDoc::from_automerge(doc).unwrap())
        })
        .collect();
    let docs = ProcessDocs {
        process,
        text,
        contributions,
    };
    let got = format!(
        "{:?}{:?}",
        views::articles(&docs),
        views::threads(&docs, None, T0).unwrap()
    );
    assert_eq!(got, expected);
}
