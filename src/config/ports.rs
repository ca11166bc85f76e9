//! Port sets as written in flags and config: `3000,5432,8000-8100`.

use std::collections::BTreeSet;

/// Parses a comma-separated list of ports and inclusive ranges (1-65535),
/// e.g. `3000-3999,5432`; an empty list is an error.
pub fn parse_ports(s: &str) -> Result<BTreeSet<u16>, String> {
    let mut set = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let port = |p: &str| -> Result<u16, String> {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{p:?} is not a port (1-65535)")),
            }
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(format!("{part:?}: the range is backwards"));
                }
                set.extend(a..=b);
            }
            None => {
                set.insert(port(part)?);
            }
        }
    }
    if set.is_empty() {
        return Err("no ports given".into());
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::parse_ports;

    #[test]
    fn port_sets() {
        let s = parse_ports("3000-3999,5432").unwrap();
        assert_eq!(s.len(), 1001);
        assert!(s.contains(&3000) && s.contains(&3999) && s.contains(&5432));
        assert!(!s.contains(&4000) && !s.contains(&2999));
        assert_eq!(parse_ports(" 22 , 22,80-80 ").unwrap(), [22, 80].into());
        assert_eq!(parse_ports("65535").unwrap(), [65535].into());
        for bad in [
            "",
            ",",
            "0",
            "65536",
            "9-3",
            "x",
            "1-",
            "-5",
            "1-2-3",
            "3000;5432",
        ] {
            assert!(parse_ports(bad).is_err(), "{bad:?}");
        }
    }
}
