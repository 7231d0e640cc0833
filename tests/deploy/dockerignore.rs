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
