//! Replays the real 259,778-edit typing trace (CC BY 4.0, see
//! `tests/data/README.md`) through klad-core's public edit API, one change per
//! transaction, and checks the final text is exactly the trace's `endContent`.

use klad_core::*;
use klad_tests::automerge_paper_trace;

#[test]
fn automerge_paper_trace_replays_to_its_end_content() -> anyhow::Result<()> {
    let trace = automerge_paper_trace()?;
    assert_eq!(trace.txns.len(), 259_778);

    let t0 = 1_767_571_200_000;
    let mut docs =
        ProcessDocs::create(t0, &ProcessId::from("trace"), "Trace", &DocId::from("text"))?;
    let writer = docs.add_member(t0, None, "Typist", Role::Drafter, &DocId::from("c"))?;
    let device = ActorId::from(vec![7u8; 16]);
    docs.process.register_device(t0, &writer, &device, None)?;
    let mut session = Session::new(docs, writer, device);
    let article = session.create_article(t0, None, "Paper", &trace.start_content)?;

    for (i, txn) in trace.txns.iter().enumerate() {
        let splices: Vec<Splice> = txn
            .patches
            .iter()
            .map(|(pos, delete, insert)| Splice {
                pos: *pos,
                delete: *delete,
                insert: insert.clone(),
            })
            .collect();
        session.edit_body(t0 + i as i64, &article, &splices)?;
    }
    let body = session.docs().text.body(&article)?;
    assert_eq!(body.chars().count(), 104_852);
    assert!(
        body == trace.end_content,
        "replayed text differs from endContent"
    );

    // And it survives a save/load round trip.
    let reloaded = TextDoc::load(&session.docs().text.save())?;
    assert!(reloaded.body(&article)? == trace.end_content);
    Ok(())
}
