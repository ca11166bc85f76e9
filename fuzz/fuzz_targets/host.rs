//! Feeds arbitrary text to `parse_host` under both wildcard forms: it never
//! panics, and every target it returns has a label that parses back to it
//! and parts that are valid names.
#![no_main]

use berth::host::{parse_host, validate_name, AppTarget, Service, Wildcard};
use libfuzzer_sys::fuzz_target;

fn check(host: &str, wildcard: &Wildcard) {
    let Ok(t) = parse_host(host, wildcard) else {
        return;
    };
    let again: AppTarget = parse_host(&wildcard.host_for(&t.label()), wildcard)
        .expect("the label of a parsed target must parse");
    assert_eq!(again, t);
    assert!(t.label().len() <= wildcard.max_label());
    match &t.service {
        Service::Port(port) => assert_ne!(*port, 0),
        Service::App(app) => {
            validate_name(app).expect("app name");
            assert!(!berth::host::is_port_like(app));
            assert!(!t.tls && t.agent.is_some());
        }
    }
    if let Some(agent) = &t.agent {
        validate_name(agent).expect("agent name");
    }
    validate_name(&t.workspace).expect("workspace name");
    validate_name(&t.user).expect("user name");
}

fuzz_target!(|data: &[u8]| {
    let Ok(host) = std::str::from_utf8(data) else {
        return;
    };
    let dot = Wildcard::parse("*.apps.example.com").unwrap();
    let prefix = Wildcard::parse("*--apps.example.com").unwrap();
    check(host, &dot);
    check(host, &prefix);
    // Also with the wildcard's own suffix glued on, to reach the label parser.
    check(&dot.host_for(host), &dot);
    check(&prefix.host_for(host), &prefix);
});
