//! Attacks on berth, one file per topic.

mod stall;
