//! The parts of `klad-load` (the server-under-load benchmark): the servers
//! under test, the samod clients and their workload, `/proc` sampling, one
//! run per server and step, the report, and the soak's samples.

pub mod clients;
pub mod procfs;
pub mod report;
pub mod run;
pub mod servers;
pub mod soak;
