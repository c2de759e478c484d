//! The administration module (gemSpec_CM_KOMLE 2.1, 3.7): what the practice's admin
//! uses to look after kim-cm and the KIM accounts. `web` is the local admin page
//! that `kim-cm serve` offers on a loopback port.

pub mod web;
