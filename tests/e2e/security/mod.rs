//! Attacks on berth's boundaries (between app hosts, other users and the
//! control host), one file per topic, each reproduced and shown to fail.

mod cookies;
mod csrf;
