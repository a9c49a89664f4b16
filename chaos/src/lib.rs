//! Fault injection against real `flotilla` processes, and checkers over what clients saw.
//!
//! Start at [`process::FlotillaCluster`]: it runs members as separate processes on loopback
//! and kills, pauses and restarts them. [`acked::AckedWrites`] records which writes were
//! acknowledged and checks that none is lost. The tests in `chaos/tests/` combine the two.

pub mod acked;
pub mod process;

pub use acked::AckedWrites;
pub use process::{flotilla_binary, free_port, FlotillaCluster, FAST_ELECTIONS};
