//! Compose's variable interpolation.

/// Compose's `${VAR}`, `${VAR:?err}`, `${VAR?err}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:+alt}`, `${VAR+alt}`, `$VAR` and `$$`. A plain `${VAR}` without a value becomes an
/// empty string, as in compose, unless `strict`, where it is an error so that every variable
/// the file uses has a placeholder in `COMPOSE_VARIABLES`.
pub(crate) fn interpolate(
    text: &str,
    variables: &[(&str, &str)],
    strict: bool,
) -> Result<String, String> {
    let lookup = |name: &str| {
        variables
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| *value)
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let (body, tail) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
                (&braced[..end], &braced[end + 1..])
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        rest = tail;
        let name_end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let (name, operator) = body.split_at(name_end);
        let value = lookup(name);
        let set_nonempty = value.filter(|value| !value.is_empty());
        let resolved = if let Some(message) = operator.strip_prefix(":?") {
            set_nonempty
                .ok_or_else(|| format!("{name}: {message}"))?
                .to_owned()
        } else if let Some(message) = operator.strip_prefix('?') {
            value
                .ok_or_else(|| format!("{name}: {message}"))?
                .to_owned()
        } else if let Some(default) = operator.strip_prefix(":-") {
            set_nonempty.unwrap_or(default).to_owned()
        } else if let Some(default) = operator.strip_prefix('-') {
            value.unwrap_or(default).to_owned()
        } else if let Some(alternative) = operator.strip_prefix(":+") {
            set_nonempty.map_or("", |_| alternative).to_owned()
        } else if let Some(alternative) = operator.strip_prefix('+') {
            value.map_or("", |_| alternative).to_owned()
        } else if operator.is_empty() {
            match value {
                Some(value) => value.to_owned(),
                None if strict => {
                    return Err(format!(
                        "{name} has no value; add a placeholder to COMPOSE_VARIABLES"
                    ));
                }
                None => String::new(),
            }
        } else {
            return Err(format!("${{{body}}}: not understood"));
        };
        out.push_str(&resolved);
    }
    out.push_str(rest);
    Ok(out)
}

mod tests {
    use super::interpolate;

    const VARIABLES: [(&str, &str); 2] = [("SET", "value"), ("EMPTY", "")];

    fn lenient(text: &str) -> Result<String, String> {
        interpolate(text, &VARIABLES, false)
    }

    #[test]
    fn plain_references_and_escapes() {
        assert_eq!(
            lenient("a ${SET} $SET/b $$SET").as_deref(),
            Ok("a value value/b $SET")
        );
        assert_eq!(lenient("[${UNSET}]").as_deref(), Ok("[]"));
        assert!(interpolate("${UNSET}", &VARIABLES, true).is_err());
        assert_eq!(
            interpolate("${SET}", &VARIABLES, true).as_deref(),
            Ok("value")
        );
    }

    #[test]
    fn defaults_tell_unset_from_empty() {
        assert_eq!(lenient("${EMPTY:-d}").as_deref(), Ok("d"));
        assert_eq!(lenient("${EMPTY-d}").as_deref(), Ok(""));
        assert_eq!(lenient("${UNSET-d}").as_deref(), Ok("d"));
        assert_eq!(lenient("${SET:-d}").as_deref(), Ok("value"));
    }

    #[test]
    fn alternatives_and_required_values() {
        assert_eq!(lenient("${SET:+alt}").as_deref(), Ok("alt"));
        assert_eq!(lenient("${EMPTY:+alt}").as_deref(), Ok(""));
        assert_eq!(lenient("${EMPTY+alt}").as_deref(), Ok("alt"));
        assert_eq!(lenient("${UNSET+alt}").as_deref(), Ok(""));
        assert_eq!(lenient("${EMPTY?missing}").as_deref(), Ok(""));
        assert_eq!(
            lenient("${EMPTY:?missing}"),
            Err("EMPTY: missing".to_owned())
        );
        assert_eq!(
            lenient("${UNSET?missing}"),
            Err("UNSET: missing".to_owned())
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(lenient("${SET").is_err());
        assert!(lenient("${SET/x}").is_err());
    }
}
