//! A local mirror of the Swiss ZSR register (SASIS ZSR-Webservice, issue 7):
//! `kim-cm zsr sync` loads the register into `state.sqlite` within SASIS's
//! rules, `zsr show` reads a number from the mirror, `zsr validate` checks
//! numbers offline. See docs/zsr.md.

pub mod api;
pub mod cli;
pub mod config;
pub mod mirror;
pub mod number;
pub mod sync;
pub mod window;
