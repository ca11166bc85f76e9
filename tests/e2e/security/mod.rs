//! Attacks across the boundaries between app hosts, other users and the
//! control host, each reproduced and shown to fail.

mod cookies;
