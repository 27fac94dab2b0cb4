//! The users a run plays: names generated from a prefix, or read from a sipp
//! injection file (`user;domain;token` lines) with their bearer tokens.

use std::path::Path;

/// Errors reading an injection file.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The reason.
        source: std::io::Error,
    },
    /// A line is not `user;domain;token`.
    #[error("{path} line {line}: expected user;domain;token")]
    Line {
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
    },
    /// The file lists nobody.
    #[error("{0} lists no user")]
    Empty(String),
}

/// One user: an address-of-record and, with authentication, its bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user part.
    pub user: String,
    /// The domain.
    pub domain: String,
    /// The bearer token sent in `Authorization`, if any.
    pub token: Option<String>,
}

impl User {
    /// `user@domain`.
    pub fn aor(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }
}

/// `count` users `<prefix><n>@<domain>` from `first` on, numbers zero-padded to at least
/// four digits (`user0001`), without tokens.
pub fn generated(prefix: &str, domain: &str, first: u64, count: u64) -> Vec<User> {
    let last = first.saturating_add(count.saturating_sub(1));
    let width = last.to_string().len().max(4);
    (first..first.saturating_add(count))
        .map(|n| User {
            user: format!("{prefix}{n:0width$}"),
            domain: domain.to_owned(),
            token: None,
        })
        .collect()
}

/// Reads an injection file: an optional first line `SEQUENTIAL`, `RANDOM` or `USER`,
/// then `user;domain;token` lines (blank lines and `#` comments skipped).
pub fn load(path: &Path) -> Result<Vec<User>, UsersError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
        path: name.clone(),
        source,
    })?;
    parse(&text, &name)
}

/// Parses the text of an injection file (`name` is used in errors).
pub fn parse(text: &str, name: &str) -> Result<Vec<User>, UsersError> {
    let mut users = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty()
            || line.starts_with('#')
            || (index == 0 && matches!(line, "SEQUENTIAL" | "RANDOM" | "USER"))
        {
            continue;
        }
        let fields: Vec<&str> = line.split(';').map(str::trim).collect();
        match fields.as_slice() {
            [user, domain, token, ..] if !user.is_empty() && !domain.is_empty() => {
                users.push(User {
                    user: (*user).to_owned(),
                    domain: (*domain).to_owned(),
                    token: (!token.is_empty()).then(|| (*token).to_owned()),
                })
            }
            _ => {
                return Err(UsersError::Line {
                    path: name.to_owned(),
                    line: index + 1,
                })
            }
        }
    }
    if users.is_empty() {
        return Err(UsersError::Empty(name.to_owned()));
    }
    Ok(users)
}

/// The injection file of `users` (with their tokens), as sipp reads it.
pub fn to_csv(users: &[User]) -> String {
    let mut out = String::from("SEQUENTIAL\n");
    for user in users {
        out.push_str(&user.user);
        out.push(';');
        out.push_str(&user.domain);
        out.push(';');
        out.push_str(user.token.as_deref().unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_padded() {
        let users = generated("user", "example.com", 1, 3);
        assert_eq!(users[0].aor(), "user0001@example.com");
        assert_eq!(users[2].user, "user0003");
        let many = generated("u", "d", 99_999, 2);
        assert_eq!(many[1].user, "u100000");
    }

    #[test]
    fn injection_files_round_trip() {
        let mut users = generated("user", "example.com", 1, 2);
        users[0].token = Some("t0".into());
        users[1].token = Some("t1".into());
        let csv = to_csv(&users);
        assert!(csv.starts_with("SEQUENTIAL\nuser0001;example.com;t0\n"));
        assert_eq!(parse(&csv, "x").expect("parses"), users);
    }

    #[test]
    fn bad_lines_and_empty_files_are_errors() {
        assert!(matches!(
            parse("SEQUENTIAL\nalice;example.com\n", "f"),
            Err(UsersError::Line { line: 2, .. })
        ));
        assert!(matches!(
            parse("SEQUENTIAL\n", "f"),
            Err(UsersError::Empty(_))
        ));
        let no_token = parse("bob;example.com;\n", "f").expect("parses");
        assert_eq!(no_token[0].token, None);
    }
}
