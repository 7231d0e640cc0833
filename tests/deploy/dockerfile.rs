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

/// Splits on whitespace, honouring double and single quotes.
pub(crate) fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

pub(crate) fn debian_release(image: &str) -> Option<&'static str> {
    ["bullseye", "bookworm", "trixie", "forky"]
        .into_iter()
        .find(|release| image.contains(release))
}
