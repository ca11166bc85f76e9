//! Attacks, one file per topic: each test shows the attack bounded.

mod bruteforce;
mod dev_process;
