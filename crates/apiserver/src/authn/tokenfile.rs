//! `--token-auth-file`: static bearer tokens, upstream's CSV format —
//! `token,user,uid,"group1,group2"` — one record a line, at least three
//! columns, the fourth optional (k8s.io/apiserver
//! pkg/authentication/token/tokenfile).

use std::collections::HashMap;
use std::path::Path;

use tracing::warn;

use crate::server::User;

/// The tokens of a token file.
#[derive(Debug, Default)]
pub(crate) struct TokenFile {
    tokens: HashMap<String, User>,
}

impl TokenFile {
    /// Reads a token file; an error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<TokenFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading --token-auth-file {}: {e}", path.display()))?;
        TokenFile::parse(&text, &path.display().to_string())
    }

    /// Parses the CSV text of a token file named `name`.
    pub fn parse(text: &str, name: &str) -> Result<TokenFile, String> {
        let records = csv_records(text).map_err(|e| format!("token file '{name}': {e}"))?;
        let mut tokens = HashMap::new();
        for (number, record) in records.into_iter().enumerate() {
            let number = number + 1;
            if record.len() < 3 {
                return Err(format!(
                    "token file '{name}' must have at least 3 columns (token, user name, user uid), found {}",
                    record.len()
                ));
            }
            if record[0].is_empty() {
                warn!(
                    file = name,
                    record = number,
                    "empty token in the token file"
                );
                continue;
            }
            let groups = match record.get(3) {
                Some(groups) => groups.split(',').map(str::to_owned).collect(),
                None => Vec::new(),
            };
            let user = User {
                name: record[1].clone(),
                uid: record[2].clone(),
                groups,
                ..User::default()
            };
            if tokens.insert(record[0].clone(), user).is_some() {
                warn!(
                    file = name,
                    record = number,
                    "duplicate token in the token file; the later one wins"
                );
            }
        }
        Ok(TokenFile { tokens })
    }

    /// The user a token names.
    pub fn get(&self, token: &str) -> Option<&User> {
        self.tokens.get(token)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }
}

/// Splits CSV text into records as Go's encoding/csv reads it: fields
/// separated by commas, double-quoted fields may hold commas, newlines and
/// `""` for a quote, blank lines are skipped, a quote inside an unquoted
/// field is an error.
fn csv_records(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    // At the start of a field: it may open with a quote.
    let mut field_start = true;
    let mut quoted = false;
    let mut after_quote = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    quoted = false;
                    after_quote = true;
                }
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field_start => {
                quoted = true;
                field_start = false;
            }
            '"' => return Err(format!("line {line}: bare \" in non-quoted field")),
            ',' => {
                record.push(std::mem::take(&mut field));
                field_start = true;
                after_quote = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                if !(record.is_empty() && field.is_empty() && field_start && !after_quote) {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                field_start = true;
                after_quote = false;
            }
            _ if after_quote => {
                return Err(format!("line {line}: extraneous \" in field"));
            }
            _ => {
                field.push(c);
                field_start = false;
            }
        }
    }
    if quoted {
        return Err(format!(
            "line {line}: extraneous or missing \" in quoted field"
        ));
    }
    if !(record.is_empty() && field.is_empty() && field_start && !after_quote) {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_users_uids_and_quoted_groups() {
        let file = TokenFile::parse(
            "abc,alice,1001,\"dev,ops\"\n\nxyz,bob,1002\r\n\"q\"\"t\",carol,1003,admins\n",
            "tokens.csv",
        )
        .unwrap();
        assert_eq!(file.len(), 3);
        let alice = file.get("abc").unwrap();
        assert_eq!((alice.name.as_str(), alice.uid.as_str()), ("alice", "1001"));
        assert_eq!(alice.groups, ["dev", "ops"]);
        assert!(file.get("xyz").unwrap().groups.is_empty());
        assert_eq!(file.get("q\"t").unwrap().groups, ["admins"]);
        assert!(file.get("nope").is_none());
    }

    #[test]
    fn a_record_with_fewer_than_three_columns_is_refused() {
        let e = TokenFile::parse("abc,alice\n", "tokens.csv").unwrap_err();
        assert_eq!(
            e,
            "token file 'tokens.csv' must have at least 3 columns (token, user name, user uid), found 2"
        );
    }

    #[test]
    fn malformed_quotes_are_refused_and_empty_tokens_skipped() {
        assert!(TokenFile::parse("a\"b,alice,1\n", "f").is_err());
        assert!(TokenFile::parse("\"abc,alice,1\n", "f").is_err());
        let file = TokenFile::parse(",alice,1\nabc,bob,2", "f").unwrap();
        assert_eq!(file.len(), 1);
        assert_eq!(file.get("abc").unwrap().name, "bob");
    }
}
