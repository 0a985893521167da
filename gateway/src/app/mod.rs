//! The application: the command line, the configuration, and the wiring
//! that starts every part and stops them together (`run`). Nothing here
//! judges or stores: it connects the parts that do.

pub mod cli;
pub mod config;
pub mod logging;
pub mod run;
pub mod shared;
