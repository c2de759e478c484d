//! CareFlex Chemie incident reporting (Germany, n4.de): an employer, or a
//! company managing several, reports its HR incidents (new employees, leavers,
//! ...) to the CareFlex portal over SOAP with an OAuth bearer token, and sends
//! an empty report for every month without any (docs/careflex.md).
//!
//! The parts: the `[careflex]` config ([`config`]), the incidents file and its
//! checks ([`input`]), the SOAP messages ([`soap`]), the token and the two
//! calls ([`client`]), a report split by CareFlex ID and into requests of at
//! most 100 ([`report`]), the importIds kept for the feedback check
//! ([`imports`]), and the command line ([`cli`]).

pub mod cli;
pub mod client;
pub mod config;
pub mod imports;
pub mod input;
pub mod report;
pub mod soap;
