//! The sensor's pipeline as a library: configuration, the worker threads, the writer, replay and the
//! live daemon. The binary (`src/main.rs`) is the command line over it; the fuzz targets and tests
//! drive the same code in process.

pub mod app;
pub mod baseline_state;
pub mod health;
pub mod inprocess;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod render;
pub mod replay;
pub mod run;
pub mod session;
pub mod settings;
pub mod worker;
pub mod writer;

#[cfg(test)]
mod contain_tests;
