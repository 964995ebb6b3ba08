//! Test support: a process with one member of each role, each on their own device.
#![allow(dead_code)]

use klad_core::*;

/// A fixed clock start (2026-01-05, ms).
pub const T0: i64 = 1_767_571_200_000;
pub const DAY: i64 = 24 * 60 * 60 * 1000;

pub struct World {
    pub server: ProcessDocs,
    pub anna: Session,  // drafter
    pub bram: Session,  // drafter
    pub olga: Session,  // official
    pub fenna: Session, // facilitator
    pub otto: Session,  // observer
}

pub fn device(n: u8) -> ActorId {
    ActorId::from(vec![n; 16])
}

impl World {
    pub fn new() -> World {
        let pid = ProcessId::from("p1");
        let mut server =
            ProcessDocs::create(T0, &pid, "Verordening Groene Buurt", &DocId::from("text"))
                .unwrap();
        let mut ids = Vec::new();
        for (i, (name, role)) in [
            ("Anna", Role::Drafter),
            ("Bram", Role::Drafter),
            ("Olga", Role::Official),
            ("Fenna", Role::Facilitator),
            ("Otto", Role::Observer),
        ]
        .into_iter()
        .enumerate()
        {
            let m = server
                .add_member(T0, None, name, role, &DocId(format!("contrib-{name}")))
                .unwrap();
            server
                .process
                .register_device(T0, &m, &device(i as u8 + 1), None)
                .unwrap();
            ids.push(m);
        }
        let session = |i: usize| Session::new(server.clone(), ids[i].clone(), device(i as u8 + 1));
        World {
            anna: session(0),
            bram: session(1),
            olga: session(2),
            fenna: session(3),
            otto: session(4),
            server,
        }
    }

    pub fn sessions(&mut self) -> [&mut Session; 5] {
        [
            &mut self.anna,
            &mut self.bram,
            &mut self.olga,
            &mut self.fenna,
            &mut self.otto,
        ]
    }

    /// Everyone sends everything to the server, then receives everything back.
    pub fn sync_all(&mut self) {
        let mut server = self.server.clone();
        for s in self.sessions() {
            server.merge(s.docs()).unwrap();
        }
        for s in self.sessions() {
            s.docs_mut().merge(&server).unwrap();
        }
        self.server = server;
    }

    pub fn set_phase(&mut self, phase: Phase) {
        let fenna = self.fenna.member_id().clone();
        self.server
            .process
            .set_phase(T0, Some(&fenna), phase)
            .unwrap();
        self.sync_all();
    }
}
