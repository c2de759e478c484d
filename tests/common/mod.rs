//! Shared test harness: the kim-cm binary, real peers (Postfix, Dovecot), clients.
#![allow(dead_code)]

pub mod cutter;
pub mod fake_mta;
pub mod fake_pop3;
pub mod flood;
pub mod kimcm;
pub mod konnektor_schema;
pub mod ldap;
pub mod mail;
pub mod peers;
pub mod raw;
pub mod webdriver;
