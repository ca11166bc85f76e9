//! Attacks, one file per topic: each test shows the attack bounded.

mod bootstrap;
mod bruteforce;
mod dev_process;
