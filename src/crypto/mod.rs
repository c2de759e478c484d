//! Who holds the private keys. In the TI that is the practice's smart card behind the
//! Konnektor (KOM-LE-A_2177); for the sandbox, tests and setups without a Konnektor,
//! PKCS#12 files ("software keys"). The send and receive pipelines ask a provider to
//! sign and decrypt for an account and never see where the key lives.

pub mod admission;
pub mod crypt;
pub mod jwt;
pub mod kas_blob;
pub mod konnektor;
pub mod opener;
pub mod sealer;
pub mod software;
pub mod trust;
