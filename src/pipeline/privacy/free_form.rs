//! Inside the fields whose keys the customer chooses (`custom`, `extra_params`), numbers are
//! found by their look, not their name: any value or run of text that looks like a phone
//! number. Separate from the matching by name because it is a heuristic with its own bounds
//! (how many digits, which separators), tuned on its own.

use serde_json::Value;

use super::{Privacy, comparable};

/// Digits in a phone number: E.164 allows 15; 7 keeps years, amounts and ids short of it out.
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 7..=15;

impl Privacy {
    /// A field of JSON text whose keys the customer chooses: named fields and anything that
    /// looks like a phone number are protected inside it; text that is not JSON has its
    /// phone-like runs replaced. Already parsed (a form's fields after normalisation never
    /// are, but a JSON body may send an object), it is searched the same way.
    pub(super) fn protect_json_text(&self, value: &mut Value, path: &mut Vec<String>) -> bool {
        if let Value::String(text) = value
            && let Ok(mut parsed @ (Value::Object(_) | Value::Array(_))) =
                serde_json::from_str::<Value>(text)
        {
            let changed = self.protect_free_form(&mut parsed, path);
            if changed {
                *text = parsed.to_string();
            }
            return changed;
        }
        self.protect_free_form(value, path)
    }

    fn protect_free_form(&self, value: &mut Value, path: &mut Vec<String>) -> bool {
        match value {
            Value::Object(map) => {
                let mut changed = false;
                for (key, value) in map.iter_mut() {
                    path.push(comparable(key));
                    changed |= if self.matches(path) {
                        self.protect_value(value)
                    } else {
                        self.protect_free_form(value, path)
                    };
                    path.pop();
                }
                changed
            }
            Value::Array(values) => values.iter_mut().fold(false, |changed, value| {
                self.protect_free_form(value, path) | changed
            }),
            Value::String(text) => match self.protect_runs(text) {
                Some(protected) => {
                    *text = protected;
                    true
                }
                None => false,
            },
            Value::Number(number) if looks_like_phone_number(&number.to_string()) => {
                self.protect_value(value)
            }
            _ => false,
        }
    }

    /// `text` with each phone-like run replaced; `None` when it has none.
    fn protect_runs(&self, text: &str) -> Option<String> {
        let mut protected = String::with_capacity(text.len());
        let mut rest = text;
        let mut changed = false;
        while let Some(start) = rest.find(|c: char| c.is_ascii_digit() || matches!(c, '+' | '(')) {
            let run_length = rest[start..]
                .find(|c: char| !is_phone_char(c))
                .unwrap_or(rest.len() - start);
            let run =
                rest[start..start + run_length].trim_end_matches(|c: char| !c.is_ascii_digit());
            let end = start + run.len().max(1);
            protected.push_str(&rest[..start]);
            if looks_like_phone_number(run) {
                protected.push_str(&self.protect_text(run));
                changed = true;
            } else {
                protected.push_str(&rest[start..end]);
            }
            rest = &rest[end..];
        }
        protected.push_str(rest);
        changed.then_some(protected)
    }
}

fn is_phone_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')')
}

/// 7 to 15 digits, written only with what phone numbers are written with.
fn looks_like_phone_number(text: &str) -> bool {
    let text = text.trim();
    let digits = text.chars().filter(char::is_ascii_digit).count();
    PHONE_DIGITS.contains(&digits) && text.chars().all(is_phone_char)
}
