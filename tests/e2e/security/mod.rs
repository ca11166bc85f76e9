//! Attacks on berth's boundaries, one file per topic.

mod csrf;
