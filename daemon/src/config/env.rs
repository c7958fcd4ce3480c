//! `${VAR}` in string values is replaced by the environment variable's value, so secrets
//! can stay out of the file. Only string values are expanded (never keys, never the file's
//! text), `$${VAR}` writes a literal `${VAR}`, and an unset variable is an error naming it.

use super::Problem;

/// Expands every string value in `value`; `lookup` reads a variable.
pub fn expand(
    value: toml::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<toml::Value, Vec<Problem>> {
    let mut problems = Vec::new();
    let out = walk(value, "", lookup, &mut problems);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn walk(
    value: toml::Value,
    key: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> toml::Value {
    match value {
        toml::Value::String(s) => match expand_str(&s, lookup) {
            Ok(s) => toml::Value::String(s),
            Err(message) => {
                problems.push(Problem {
                    key: key.to_string(),
                    message,
                    line: None,
                });
                toml::Value::String(s)
            }
        },
        toml::Value::Array(items) => toml::Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| walk(v, &format!("{key}[{i}]"), lookup, problems))
                .collect(),
        ),
        toml::Value::Table(table) => toml::Value::Table(
            table
                .into_iter()
                .map(|(k, v)| {
                    let path = if key.is_empty() {
                        k.clone()
                    } else {
                        format!("{key}.{k}")
                    };
                    let v = walk(v, &path, lookup, problems);
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// Expands one string.
pub fn expand_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            let name = &tail[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "${{{name}}} is not a valid environment variable name"
                ));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOME_DIR").then(|| "/home/x".to_string())
    }

    #[test]
    fn expands_escapes_and_leaves_plain_dollars() {
        assert_eq!(expand_str("${HOME_DIR}/in", &env), Ok("/home/x/in".into()));
        assert_eq!(expand_str("$${HOME_DIR}", &env), Ok("${HOME_DIR}".into()));
        assert_eq!(expand_str("cost $5", &env), Ok("cost $5".into()));
    }

    #[test]
    fn unset_and_malformed_variables_are_errors() {
        assert!(expand_str("${NOPE}", &env)
            .expect_err("unset")
            .contains("NOPE"));
        assert!(expand_str("${HOME_DIR", &env).is_err());
        assert!(expand_str("${A-B}", &env).is_err());
    }

    #[test]
    fn reports_the_key_path() {
        let value: toml::Value =
            toml::from_str("[sources.a]\npath = \"${MISSING}\"").expect("toml");
        let problems = expand(value, &env).expect_err("unset");
        assert_eq!(problems[0].key, "sources.a.path");
        assert!(problems[0].message.contains("MISSING"));
    }
}
