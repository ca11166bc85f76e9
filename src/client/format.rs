//! Pure helpers for the CLI: `--ttl` parsing, tables, and how ports and
//! share links are shown.

use serde_json::Value;

/// Parses a duration such as `90s`, `30m`, `2h`, `1d`, `1h30m` or a bare
/// number of seconds into seconds (at least 1).
pub(crate) fn parse_ttl(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; use e.g. 90s, 30m, 2h or 1d".into());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return match t.parse::<u64>() {
            Ok(0) => Err("the duration must be at least 1s".into()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("{t:?} is too long a duration")),
        };
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "{t:?}: unknown unit {c:?}; use s, m, h or d (e.g. 90s, 30m, 2h, 1d)"
                ))
            }
        };
        if digits.is_empty() {
            return Err(format!("{t:?}: a number must come before {c:?}"));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{t:?} is too long a duration"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{t:?} is too long a duration"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "{t:?}: the last number has no unit; use s, m, h or d"
        ));
    }
    if total == 0 {
        return Err("the duration must be at least 1s".into());
    }
    Ok(total)
}

/// Left-aligned columns separated by two spaces, no trailing spaces.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            if i + 1 < cells.len() {
                l.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        let mut cells: Vec<&str> = row.iter().map(String::as_str).take(cols).collect();
        cells.resize(cols, "");
        line(cells);
    }
    out
}

/// A JSON value as a table cell: strings bare, null as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `berth ports` table from a `GET .../ports` answer.
pub(crate) fn ports_table(answer: &Value) -> String {
    let empty = vec![];
    let ports = answer["ports"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            let listening = match (p["listening"].as_bool(), p["reachable"].as_bool()) {
                (Some(true), Some(false)) => "yes (not on loopback)",
                (Some(true), _) => "yes",
                _ => "no",
            };
            let apps: Vec<String> = p["apps"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(|a| a["name"].as_str().map(str::to_owned))
                .collect();
            vec![
                cell(&p["port"]),
                listening.to_owned(),
                level_cell(p),
                p["expires_in_secs"]
                    .as_i64()
                    .map(|s| format!("in {}", remaining(s)))
                    .unwrap_or_else(|| "-".into()),
                cell(&p["protocol"]),
                cell(&p["url"]),
                if apps.is_empty() {
                    "-".into()
                } else {
                    apps.join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "PORT",
            "LISTENING",
            "LEVEL",
            "ENDS",
            "PROTOCOL",
            "URL",
            "APPS",
        ],
        &rows,
    )
}

/// ", and users bob, carol and groups eng" for a share naming people; empty
/// for one that names nobody.
pub(crate) fn named_suffix(share: &Value) -> String {
    let names = |k: &str| -> Vec<String> {
        share[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (users, groups) = (names("users"), names("groups"));
    let mut parts = Vec::new();
    if !users.is_empty() {
        parts.push(format!("users {}", users.join(", ")));
    }
    if !groups.is_empty() {
        parts.push(format!("groups {}", groups.join(", ")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(", and {}", parts.join(" and "))
    }
}

/// A share's level with whom it names, for the ports table:
/// `owner +bob +@eng`.
fn level_cell(p: &Value) -> String {
    let mut out = cell(&p["level"]);
    for (key, mark) in [("users", "+"), ("groups", "+@")] {
        for name in p[key].as_array().into_iter().flatten() {
            if let Some(n) = name.as_str() {
                out.push_str(&format!(" {mark}{n}"));
            }
        }
    }
    out
}

/// The `berth groups` table: one line a group, its members by name.
pub(crate) fn groups_table(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = answer
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let members: Vec<String> = g["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| match (m["username"].as_str(), m["source"].as_str()) {
                    (Some(u), Some("oidc")) => format!("{u} (sign-in)"),
                    (Some(u), _) => u.to_owned(),
                    _ => "?".into(),
                })
                .collect();
            vec![
                cell(&g["name"]),
                members.len().to_string(),
                if members.is_empty() {
                    "-".into()
                } else {
                    members.join(", ")
                },
            ]
        })
        .collect();
    table(&["GROUP", "SIZE", "MEMBERS"], &rows)
}

/// A time left, to the minute (to the second under one): `1d 2h`, `2h 5m`,
/// `12m`, `40s`; `0s` when it is up.
pub(crate) fn remaining(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// What a share level means, for `berth share`.
pub(crate) fn level_meaning(level: &str) -> &'static str {
    match level {
        "owner" => "you and site admins only",
        "organization" => "members of your organization",
        "authenticated" => "anyone signed in to this berth",
        "public" => "anyone, no sign-in",
        _ => "see the berth documentation",
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time such as
/// `2025-01-02T03:04:05Z`, `2025-01-02T03:04:05.123+02:00` or
/// `2025-01-02 03:04:05` (taken as UTC); `None` if it is not one.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19 || !s.is_char_boundary(19) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm = rest.get(1..)?;
            let (oh, om) = hm.split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// A share link's state: `revoked`, `used up`, `expired` or `active`.
pub(crate) fn link_status(link: &Value, now: i64) -> &'static str {
    // The server says (since dashboard v2); worked out here for older ones.
    match link["status"].as_str() {
        Some("active") => return "active",
        Some("used_up") => return "used up",
        Some("expired") => return "expired",
        Some("revoked") => return "revoked",
        _ => {}
    }
    if link["revoked"].as_bool() == Some(true) {
        return "revoked";
    }
    if let (Some(max), Some(uses)) = (link["max_uses"].as_u64(), link["uses"].as_u64()) {
        if uses >= max {
            return "used up";
        }
    }
    match link["expires_at"].as_str().and_then(parse_rfc3339) {
        Some(t) if t <= now => "expired",
        _ => "active",
    }
}

/// `berth workspaces`: one row per workspace, with its agents and whether each is connected.
pub(crate) fn workspaces_table(answer: &Value) -> String {
    let empty = vec![];
    let list = answer.as_array().unwrap_or(&empty);
    if list.is_empty() {
        return "No workspaces yet. Create one with `berth workspaces create NAME`.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            let agents: Vec<String> = w["agents"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|a| {
                    let state = if a["connected"] == true { "up" } else { "down" };
                    format!("{} ({state})", cell(&a["name"]))
                })
                .collect();
            vec![
                cell(&w["owner"]),
                cell(&w["name"]),
                if agents.is_empty() {
                    "-".into()
                } else {
                    agents.join(", ")
                },
                cell(&w["created_at"]),
            ]
        })
        .collect();
    table(&["OWNER", "WORKSPACE", "AGENTS", "CREATED"], &rows)
}

/// `berth agents`: one row per agent.
pub(crate) fn agents_table(answer: &Value) -> String {
    let empty = vec![];
    let list = answer.as_array().unwrap_or(&empty);
    if list.is_empty() {
        return "No agents yet. Create one with `berth agents create NAME`.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                cell(&a["name"]),
                if a["connected"] == true {
                    "connected"
                } else {
                    "not connected"
                }
                .to_owned(),
                cell(&a["url_template"]),
            ]
        })
        .collect();
    table(&["AGENT", "STATE", "URLS"], &rows)
}

/// `berth users`: one row per user.
pub(crate) fn users_table(answer: &Value) -> String {
    let empty = vec![];
    let rows: Vec<Vec<String>> = answer
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|u| {
            vec![
                cell(&u["username"]),
                cell(&u["role"]),
                cell(&u["email"]),
                cell(&u["organization"]),
                cell(&u["created_at"]),
            ]
        })
        .collect();
    table(&["USER", "ROLE", "EMAIL", "ORGANIZATION", "CREATED"], &rows)
}

/// `berth regions`: one row per region with its health.
pub(crate) fn regions_table(answer: &Value) -> String {
    let empty = vec![];
    let rows: Vec<Vec<String>> = answer
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|r| {
            vec![
                cell(&r["name"]),
                if r["healthy"] == true {
                    "healthy"
                } else {
                    "unhealthy"
                }
                .to_owned(),
                cell(&r["agents"]),
                cell(&r["last_heartbeat"]),
                cell(&r["version"]),
                cell(&r["url"]),
                cell(&r["wildcard"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "HEALTH",
            "AGENTS",
            "LAST HEARTBEAT",
            "VERSION",
            "URL",
            "WILDCARD",
        ],
        &rows,
    )
}

/// The `berth link ls` table from a `GET /share-links` answer (a list, or an
/// object with a `links` list).
pub(crate) fn links_table(answer: &Value, now: i64) -> String {
    let empty = vec![];
    let links = answer
        .as_array()
        .or_else(|| answer["links"].as_array())
        .unwrap_or(&empty);
    let rows: Vec<Vec<String>> = links
        .iter()
        .map(|l| {
            let uses = match l["max_uses"].as_u64() {
                Some(max) => format!("{}/{max}", l["uses"].as_u64().unwrap_or(0)),
                None => l["uses"].as_u64().unwrap_or(0).to_string(),
            };
            vec![
                cell(&l["id"]),
                cell(&l["port"]),
                format!(
                    "{}/{}/{}",
                    cell(&l["user"]),
                    cell(&l["workspace"]),
                    cell(&l["agent"])
                ),
                cell(&l["expires_at"]),
                uses,
                link_status(l, now).to_owned(),
                cell(&l["url"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "PORT",
            "USER/WORKSPACE/AGENT",
            "EXPIRES",
            "USES",
            "STATUS",
            "URL",
        ],
        &rows,
    )
}

/// What `berth link create` prints for a `POST /share-links` answer.
pub(crate) fn link_created(answer: &Value, port: u16, max_uses: Option<u64>) -> String {
    let uses = match max_uses {
        Some(1) => ", 1 use".to_owned(),
        Some(n) => format!(", up to {n} uses"),
        None => String::new(),
    };
    format!(
        "Share link {} for port {port} (expires {}{uses}):\n  {}\n",
        cell(&answer["id"]),
        cell(&answer["expires_at"]),
        cell(&answer["url"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remaining_time() {
        for (secs, want) in [
            (-5, "0s"),
            (40, "40s"),
            (60, "1m"),
            (754, "12m"),
            (7200, "2h"),
            (7500, "2h 5m"),
            (86_400, "1d"),
            (93_600, "1d 2h"),
        ] {
            assert_eq!(remaining(secs), want, "{secs}");
        }
    }

    #[test]
    fn ttl() {
        for (s, want) in [
            ("90s", 90),
            ("30m", 1800),
            ("2h", 7200),
            ("1d", 86_400),
            ("1h30m", 5400),
            ("2H", 7200),
            (" 45 ", 45),
            ("1", 1),
            ("1d2h3m4s", 93_784),
        ] {
            assert_eq!(parse_ttl(s), Ok(want), "{s}");
        }
        for s in [
            "",
            "0",
            "0s",
            "h",
            "2x",
            "2h30",
            "-1h",
            "1.5h",
            "2 h",
            "99999999999999999999",
            "999999999999999999d",
        ] {
            assert!(parse_ttl(s).is_err(), "{s:?} parsed");
        }
        assert!(parse_ttl("2w").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn tables_align_without_trailing_spaces() {
        let t = table(
            &["A", "LONGER", "C"],
            &[vec!["xxx".into(), "y".into(), "".into()], vec!["z".into()]],
        );
        assert_eq!(t, "A    LONGER  C\nxxx  y\nz\n");
    }

    #[test]
    fn ports() {
        let answer = json!({"agent": "main", "connected": true, "ports": [
            {"port": 3000, "listening": true, "reachable": true, "level": "public",
             "expires_in_secs": 7500, "users": ["bob"], "groups": ["eng"], "protocol": "http", "url": "https://3000--main--dev--admin.berth.localhost:8443",
             "apps": [{"name": "web", "port": 3000, "protocol": "http", "url": "x"},
                      {"name": "api", "port": 3000, "protocol": "http", "url": "y"}]},
            {"port": 8443, "listening": false, "reachable": false, "level": "owner",
             "protocol": "https", "url": "https://8443s--main--dev--admin.berth.localhost:8443",
             "apps": []},
            {"port": 9000, "listening": true, "reachable": false, "level": "owner",
             "protocol": "http", "url": "u", "apps": []},
        ]});
        let want = "\
PORT  LISTENING              LEVEL              ENDS      PROTOCOL  URL                                                   APPS
3000  yes                    public +bob +@eng  in 2h 5m  http      https://3000--main--dev--admin.berth.localhost:8443   web,api
8443  no                     owner              -         https     https://8443s--main--dev--admin.berth.localhost:8443  -
9000  yes (not on loopback)  owner              -         http      u                                                     -
";
        assert_eq!(ports_table(&answer), want);
        assert_eq!(
            ports_table(&json!({"ports": []})),
            "PORT  LISTENING  LEVEL  ENDS  PROTOCOL  URL  APPS\n"
        );
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.5+02:00"),
            Some(1_709_200_800)
        );
        assert_eq!(parse_rfc3339("2024-02-29 10:00:00"), Some(1_709_200_800));
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-02-29T10:00:00Q",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn links() {
        let now = parse_rfc3339("2025-06-01T12:00:00Z").unwrap();
        let answer = json!([
            {"id": "a1", "url": "https://5173--main--dev--admin.berth.localhost:8443",
             "user": "admin", "workspace": "dev", "agent": "main", "port": 5173,
             "expires_at": "2025-06-01T14:00:00Z", "max_uses": null, "uses": 0, "revoked": false},
            {"id": 7, "url": "u", "user": "admin", "workspace": "dev", "agent": "main",
             "port": 3000, "expires_at": "2025-06-01T11:00:00Z", "max_uses": 5, "uses": 2,
             "revoked": false},
            {"id": "c", "url": "u", "user": "bob", "workspace": "w", "agent": "a", "port": 1,
             "expires_at": "2025-06-02T00:00:00Z", "max_uses": 1, "uses": 1, "revoked": false},
            {"id": "d", "url": "u", "user": "bob", "workspace": "w", "agent": "a", "port": 1,
             "expires_at": "2025-06-02T00:00:00Z", "max_uses": 1, "uses": 1, "revoked": true},
        ]);
        let want = "\
ID  PORT  USER/WORKSPACE/AGENT  EXPIRES               USES  STATUS   URL
a1  5173  admin/dev/main        2025-06-01T14:00:00Z  0     active   https://5173--main--dev--admin.berth.localhost:8443
7   3000  admin/dev/main        2025-06-01T11:00:00Z  2/5   expired  u
c   1     bob/w/a               2025-06-02T00:00:00Z  1/1   used up  u
d   1     bob/w/a               2025-06-02T00:00:00Z  1/1   revoked  u
";
        assert_eq!(links_table(&answer, now), want);
        assert_eq!(
            links_table(&json!({"links": []}), now),
            "ID  PORT  USER/WORKSPACE/AGENT  EXPIRES  USES  STATUS  URL\n"
        );
    }

    #[test]
    fn created_link() {
        let answer = json!({"id": "abc", "url": "https://x/?berth_share=berth_link_y",
                            "expires_at": "2025-06-01T14:00:00Z"});
        assert_eq!(
            link_created(&answer, 5173, Some(3)),
            "Share link abc for port 5173 (expires 2025-06-01T14:00:00Z, up to 3 uses):\n  https://x/?berth_share=berth_link_y\n"
        );
        assert_eq!(
            link_created(&answer, 5173, None),
            "Share link abc for port 5173 (expires 2025-06-01T14:00:00Z):\n  https://x/?berth_share=berth_link_y\n"
        );
    }

    #[test]
    fn regions_table_shows_health() {
        let t = regions_table(&json!([
            {"name": "eu", "healthy": true, "agents": 3, "last_heartbeat": "2026-11-28T16:00:00Z",
             "version": "0.1.0", "url": "https://eu.example.com", "wildcard": "*.eu.example.com"},
            {"name": "us", "healthy": false, "agents": 0, "last_heartbeat": null,
             "version": null, "url": "https://us.example.com", "wildcard": "*.us.example.com"}
        ]));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{t}");
        assert!(
            lines[1].starts_with("eu") && lines[1].contains("healthy") && lines[1].contains(" 3 "),
            "{t}"
        );
        assert!(
            lines[2].starts_with("us") && lines[2].contains("unhealthy"),
            "{t}"
        );
    }
}
