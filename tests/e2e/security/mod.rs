//! Attacks on berth and the behaviour that defeats them.

mod revocation;
