//! .dockerignore: Docker's rules (last match wins, `!` re-includes, a pattern also covers
//! everything below a matching directory), with `*`, `?` and `**` globs.

use std::path::Path;

#[derive(Debug)]
pub(crate) struct IgnoreRule {
    pub(crate) include: bool,
    pub(crate) segments: Vec<String>,
}

pub(crate) fn parse_dockerignore(text: &str) -> Vec<IgnoreRule> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (include, pattern) = match line.strip_prefix('!') {
                Some(pattern) => (true, pattern),
                None => (false, line),
            };
            IgnoreRule {
                include,
                segments: pattern
                    .trim_start_matches('/')
                    .split('/')
                    .filter(|segment| !segment.is_empty() && *segment != ".")
                    .map(str::to_owned)
                    .collect(),
            }
        })
        .collect()
}

pub(crate) fn is_ignored(rules: &[IgnoreRule], path: &Path) -> bool {
    let segments: Vec<String> = path
        .components()
        .map(|component| component.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut ignored = false;
    for rule in rules {
        let matches = (1..=segments.len()).any(|end| glob_path(&rule.segments, &segments[..end]));
        if matches {
            ignored = !rule.include;
        }
    }
    ignored
}

pub(crate) fn glob_path(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| glob_path(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                glob_segment(first.as_bytes(), segment.as_bytes()) && glob_path(rest, path_rest)
            }
            None => false,
        },
    }
}

pub(crate) fn glob_segment(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_segment(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob_segment(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_segment(rest, &text[1..]),
    }
}

mod tests {
    use std::path::Path;

    use super::{is_ignored, parse_dockerignore};

    fn ignored(rules: &str, path: &str) -> bool {
        is_ignored(&parse_dockerignore(rules), Path::new(path))
    }

    #[test]
    fn a_pattern_covers_everything_below_a_matching_directory() {
        assert!(ignored("target\n", "target/debug/bridge"));
        assert!(ignored("/target\n", "target"));
        assert!(!ignored("target\n", "src/target.rs"));
    }

    #[test]
    fn the_last_matching_rule_wins() {
        let rules = "# comment\n*\n!src\n!Cargo.*\nsrc/**/*.bak\n";
        assert!(ignored(rules, "README.md"));
        assert!(!ignored(rules, "src/main.rs"));
        assert!(!ignored(rules, "Cargo.lock"));
        assert!(ignored(rules, "src/deep/er/old.bak"));
        assert!(ignored(rules, "src/old.bak"));
    }

    #[test]
    fn globs_match_within_one_segment() {
        assert!(ignored("*.log\n", "debug.log"));
        assert!(!ignored("*.log\n", "logs/debug.txt"));
        assert!(ignored("spool-?.redb\n", "spool-1.redb"));
        assert!(!ignored("spool-?.redb\n", "spool-12.redb"));
        assert!(!ignored("", "anything"));
    }
}
