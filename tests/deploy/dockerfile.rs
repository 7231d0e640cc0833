//! A small Dockerfile reader: instructions per stage, continuation lines joined, comments
//! dropped. Enough for the files here; it panics on forms it does not model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub(crate) struct Dockerfile {
    /// `ARG`s before the first `FROM`, with their defaults.
    pub(crate) global_args: BTreeMap<String, String>,
    pub(crate) stages: Vec<Stage>,
}

#[derive(Debug)]
pub(crate) struct Stage {
    pub(crate) image: String,
    pub(crate) name: Option<String>,
    pub(crate) instructions: Vec<(String, String)>,
}

#[derive(Debug)]
pub(crate) struct Copy {
    pub(crate) from: Option<String>,
    pub(crate) sources: Vec<String>,
    pub(crate) destination: String,
}

impl Copy {
    pub(crate) fn destination(&self, workdir: &Path) -> PathBuf {
        workdir.join(&self.destination)
    }
}

impl Dockerfile {
    pub(crate) fn parse(text: &str) -> Self {
        let mut instructions = Vec::new();
        let mut logical = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match line.trim_end().strip_suffix('\\') {
                Some(body) => {
                    logical.push_str(body);
                    logical.push(' ');
                }
                None => {
                    logical.push_str(line);
                    let (keyword, args) = logical
                        .trim()
                        .split_once(char::is_whitespace)
                        .unwrap_or((logical.trim(), ""));
                    instructions.push((keyword.to_uppercase(), args.trim().to_owned()));
                    logical.clear();
                }
            }
        }
        assert!(
            logical.is_empty(),
            "deploy/Dockerfile ends inside a continuation"
        );

        let mut dockerfile = Dockerfile {
            global_args: BTreeMap::new(),
            stages: Vec::new(),
        };
        for (keyword, args) in instructions {
            if keyword == "FROM" {
                let words: Vec<&str> = args
                    .split_whitespace()
                    .filter(|word| !word.starts_with("--"))
                    .collect();
                let name = match words.as_slice() {
                    [_] => None,
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                    _ => panic!("FROM {args}: not understood"),
                };
                dockerfile.stages.push(Stage {
                    image: words[0].to_owned(),
                    name,
                    instructions: Vec::new(),
                });
            } else if let Some(stage) = dockerfile.stages.last_mut() {
                stage.instructions.push((keyword, args));
            } else if keyword == "ARG" {
                let (name, value) = args.split_once('=').unwrap_or((&args, ""));
                dockerfile
                    .global_args
                    .insert(name.to_owned(), value.to_owned());
            }
        }
        assert!(
            dockerfile.stages.len() >= 2,
            "deploy/Dockerfile should be multi-stage"
        );
        dockerfile
    }

    pub(crate) fn runtime(&self) -> &Stage {
        self.stages.last().expect("at least one stage")
    }

    pub(crate) fn runtime_env(&self) -> BTreeMap<String, String> {
        self.runtime().env().into_iter().collect()
    }

    pub(crate) fn runtime_value(&self, keyword: &str) -> Option<String> {
        self.runtime().last(keyword).map(str::to_owned)
    }

    pub(crate) fn runtime_workdir(&self) -> Option<PathBuf> {
        self.runtime().workdir()
    }

    pub(crate) fn runtime_copies(&self) -> Vec<Copy> {
        self.runtime().copies()
    }

    pub(crate) fn exposed_ports(&self) -> BTreeSet<u16> {
        self.runtime()
            .all("EXPOSE")
            .flat_map(str::split_whitespace)
            .map(|port| {
                let number = port.split('/').next().unwrap_or(port);
                number
                    .parse()
                    .unwrap_or_else(|_| panic!("EXPOSE {port}: not a port number"))
            })
            .collect()
    }

    /// An exec-form (`["a", "b"]`) instruction of the runtime stage.
    pub(crate) fn exec_form(&self, keyword: &str) -> Vec<String> {
        let args = self
            .runtime_value(keyword)
            .unwrap_or_else(|| panic!("the runtime stage has no {keyword}"));
        serde_json::from_str(&args)
            .unwrap_or_else(|error| panic!("{keyword} {args}: not exec form ({error})"))
    }

    /// The HEALTHCHECK's command as an argument vector.
    pub(crate) fn healthcheck_command(&self) -> Vec<String> {
        let args = self
            .runtime_value("HEALTHCHECK")
            .expect("the runtime stage should have a HEALTHCHECK");
        let (_, command) = args
            .split_once("CMD ")
            .unwrap_or_else(|| panic!("HEALTHCHECK {args}: no CMD"));
        let command = command.trim();
        if command.starts_with('[') {
            serde_json::from_str(command)
                .unwrap_or_else(|error| panic!("HEALTHCHECK CMD {command}: {error}"))
        } else {
            vec!["/bin/sh".to_owned(), "-c".to_owned(), command.to_owned()]
        }
    }

    /// `${NAME}` replaced by the default of a global `ARG NAME=...`.
    pub(crate) fn resolve_args(&self, text: &str) -> String {
        self.global_args
            .iter()
            .fold(text.to_owned(), |text, (name, value)| {
                text.replace(&format!("${{{name}}}"), value)
                    .replace(&format!("${name}"), value)
            })
    }
}

impl Stage {
    pub(crate) fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions
            .iter()
            .filter(move |(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
    }

    pub(crate) fn last(&self, keyword: &str) -> Option<&str> {
        self.instructions
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
    }

    pub(crate) fn runs(&self, command: &str) -> bool {
        self.all("RUN").any(|run| run.contains(command))
    }

    pub(crate) fn workdir(&self) -> Option<PathBuf> {
        self.all("WORKDIR")
            .fold(None, |current: Option<PathBuf>, dir| {
                Some(current.unwrap_or_else(|| PathBuf::from("/")).join(dir))
            })
    }

    /// `ENV` pairs in order; both `ENV A=1 B=2` and `ENV A 1`.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for args in self.all("ENV") {
            let words = shell_words(args);
            if !words[0].contains('=') {
                pairs.push((words[0].clone(), words[1..].join(" ")));
                continue;
            }
            for word in words {
                let (name, value) = word
                    .split_once('=')
                    .unwrap_or_else(|| panic!("ENV {args}: {word:?} has no value"));
                assert!(
                    !value.contains('$'),
                    "ENV {name}: variable expansion is not modelled"
                );
                pairs.push((name.to_owned(), value.to_owned()));
            }
        }
        pairs
    }

    pub(crate) fn copies(&self) -> Vec<Copy> {
        self.all("COPY")
            .map(|args| {
                let words = shell_words(args);
                let (flags, paths): (Vec<String>, Vec<String>) =
                    words.into_iter().partition(|word| word.starts_with("--"));
                assert!(
                    paths.len() >= 2,
                    "COPY {args}: needs a source and a destination"
                );
                let from = flags
                    .iter()
                    .find_map(|flag| flag.strip_prefix("--from="))
                    .map(str::to_owned);
                Copy {
                    from,
                    sources: paths[..paths.len() - 1].to_vec(),
                    destination: paths[paths.len() - 1].clone(),
                }
            })
            .collect()
    }
}

/// Splits an instruction's arguments into words as Docker does: whitespace separates, quotes
/// group, a backslash escapes.
pub(crate) fn shell_words(text: &str) -> Vec<String> {
    shlex::split(text).unwrap_or_else(|| panic!("unbalanced quotes in {text:?}"))
}

pub(crate) fn debian_release(image: &str) -> Option<&'static str> {
    ["bullseye", "bookworm", "trixie", "forky"]
        .into_iter()
        .find(|release| image.contains(release))
}

mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    use super::{Dockerfile, debian_release, shell_words};

    const DOCKERFILE: &str = r#"
# syntax comment, dropped
ARG RUST_VERSION=1.90
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
RUN cargo build \
    --release

FROM --platform=linux/amd64 debian:bookworm-slim
WORKDIR /app
WORKDIR config
COPY --from=builder /build/target/release/bridge /usr/local/bin/bridge
ENV A=1 \
    B="two words"
ENV LEGACY old form
EXPOSE 8080 9090/tcp
HEALTHCHECK --interval=10s CMD ["bridge", "health"]
ENTRYPOINT ["bridge"]
"#;

    #[test]
    fn stages_args_and_continuations() {
        let dockerfile = Dockerfile::parse(DOCKERFILE);
        assert_eq!(dockerfile.stages.len(), 2);
        assert_eq!(dockerfile.stages[0].name.as_deref(), Some("builder"));
        assert_eq!(dockerfile.runtime().name, None);
        assert_eq!(dockerfile.runtime().image, "debian:bookworm-slim");
        assert_eq!(
            dockerfile.resolve_args(&dockerfile.stages[0].image),
            "rust:1.90-bookworm"
        );
        let build = dockerfile.stages[0].last("RUN").expect("a RUN");
        assert!(
            build.starts_with("cargo build") && build.ends_with("--release"),
            "{build:?}"
        );
        assert_eq!(dockerfile.stages[0].all("RUN").count(), 1);
    }

    #[test]
    fn runtime_environment_workdir_ports_and_commands() {
        let dockerfile = Dockerfile::parse(DOCKERFILE);
        let expected: BTreeMap<String, String> =
            [("A", "1"), ("B", "two words"), ("LEGACY", "old form")]
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
        assert_eq!(dockerfile.runtime_env(), expected);
        assert_eq!(
            dockerfile.runtime_workdir(),
            Some(PathBuf::from("/app/config"))
        );
        assert_eq!(dockerfile.exposed_ports(), BTreeSet::from([8080, 9090]));
        assert_eq!(dockerfile.healthcheck_command(), ["bridge", "health"]);
        assert_eq!(dockerfile.exec_form("ENTRYPOINT"), ["bridge"]);
    }

    #[test]
    fn copies_name_their_stage_sources_and_destination() {
        let dockerfile = Dockerfile::parse(DOCKERFILE);
        let builder = dockerfile.stages[0].copies();
        assert_eq!(builder[0].from, None);
        assert_eq!(builder[0].sources, ["Cargo.toml", "Cargo.lock"]);
        assert_eq!(
            builder[0].destination(&PathBuf::from("/build")),
            PathBuf::from("/build/./")
        );
        let runtime = dockerfile.runtime_copies();
        assert_eq!(runtime[0].from.as_deref(), Some("builder"));
        assert_eq!(runtime[0].destination, "/usr/local/bin/bridge");
    }

    #[test]
    fn shell_words_honour_quotes() {
        assert_eq!(
            shell_words(r#"A=1 B="two words" C='it''s'"#),
            ["A=1", "B=two words", "C=its"]
        );
    }

    #[test]
    fn debian_releases_are_found_in_image_names() {
        assert_eq!(debian_release("debian:bookworm-slim"), Some("bookworm"));
        assert_eq!(debian_release("rust:1.90-trixie"), Some("trixie"));
        assert_eq!(debian_release("alpine:3.20"), None);
    }
}
