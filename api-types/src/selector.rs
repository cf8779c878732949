//! Label and field selectors: parse, print and match, as upstream's
//! `k8s.io/apimachinery/pkg/labels` and `pkg/fields`.
//!
//! A [`LabelSelector`] is an AND of [`Requirement`]s such as
//! `app=web,tier!=db,env in (prod,staging),!canary`. It comes from a query string
//! ([`LabelSelector::parse`]), from an object's `spec.selector`
//! ([`LabelSelector::from_k8s`]) or from a plain map ([`LabelSelector::from_set`]).
//! Keys must be qualified names (`[prefix/]name`) and values label values, with
//! upstream's error messages.
//!
//! A [`FieldSelector`] is an AND of `field=value` / `field!=value` terms such as
//! `spec.nodeName=node-1,status.phase!=Running`, with `\` escaping `\`, `,` and
//! `=` in values.
//!
//! Two selectors match no object at all, and they differ from the empty selector,
//! which matches every object. [`LabelSelector::nothing`] is one: upstream turns
//! a missing (`nil`) `spec.selector` into it (see
//! [`LabelSelector::from_k8s_option`]), while a present but empty one matches
//! everything ([`LabelSelector::from_k8s`]).

use std::collections::BTreeMap;
use std::fmt;

use crate::k8s::apimachinery::pkg::apis::meta::v1 as metav1;

/// How a [`Requirement`] relates a label's value to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `key=value`: the label is present with that value.
    Equals,
    /// `key==value`: same as [`Operator::Equals`], kept for printing.
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>5`: the label is present and, as an integer, greater than the value.
    GreaterThan,
    /// `key<5`: the label is present and, as an integer, less than the value.
    LessThan,
}

/// One condition on one label key. Built by [`Requirement::new`], which checks
/// the key, the values and their number against the operator.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and without duplicates, as upstream's parser keeps them.
    values: Vec<String>,
}

/// A label selector: every requirement must match. The empty selector matches
/// every label set; [`LabelSelector::nothing`] matches none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    /// Sorted by key (stably, so equal keys keep their order).
    requirements: Vec<Requirement>,
    matches_nothing: bool,
}

/// The two operators a field selector term can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One `field=value` or `field!=value` term of a [`FieldSelector`]; `value` is unescaped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldTerm {
    /// The field path, such as `metadata.name` or `spec.nodeName`.
    pub field: String,
    /// Whether the field must equal the value or differ from it.
    pub op: FieldOperator,
    /// The value, without escapes.
    pub value: String,
}

/// A field selector: every term must match. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    /// Sorted by their printed form, so printing is deterministic.
    terms: Vec<FieldTerm>,
}

/// Why a selector is invalid. Messages follow upstream's wording.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector string is malformed; the message names the token found and
    /// what was expected, e.g. `found 'foo', expected: ',' or ')'`.
    #[error("{0}")]
    Syntax(String),
    /// A label key is not a qualified name.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// Every rule the key breaks, joined by `; `.
        reason: String,
    },
    /// A value is not a valid label value.
    #[error("values[{index}][{key}]: Invalid value: {value:?}: {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value's position among the requirement's values.
        index: usize,
        /// The value as written.
        value: String,
        /// Every rule the value breaks, joined by `; `.
        reason: String,
    },
    /// The operator needs a different number of values.
    #[error("values: Invalid value: {values:?}: {reason}")]
    WrongValueCount {
        /// The values given.
        values: Vec<String>,
        /// What the operator needs.
        reason: &'static str,
    },
    /// A `gt` or `lt` value is not an integer.
    #[error(
        "values[{index}]: Invalid value: {value:?}: for 'Gt', 'Lt' operators, the value must be an integer"
    )]
    NotAnInteger {
        /// The value's position among the requirement's values.
        index: usize,
        /// The value as written.
        value: String,
    },
    /// A `matchExpressions` operator other than `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("{0:?} is not a valid label selector operator")]
    UnknownOperator(String),
    /// A field selector term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole field selector.
        selector: String,
        /// The term that has no operator.
        term: String,
    },
    /// A field selector value has a `\` not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value has a bare `,` or `=`; escape it with `\`.
    #[error("invalid field selector: unescaped character in value: {0:?}")]
    UnescapedCharacter(char),
}

impl Operator {
    /// Upstream's name for the operator (`selection.Operator`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Requirement {
    /// Checks and builds a requirement, as upstream's `NewRequirement`:
    ///
    /// - the key is a qualified name;
    /// - `in` and `notin` have at least one value; `=`, `==`, `!=`, `gt` and `lt`
    ///   exactly one; `exists` and `!` none;
    /// - `gt` and `lt` values are integers; every value is a valid label value.
    ///
    /// Values are sorted and deduplicated. Upstream reports every problem at
    /// once; this reports the first.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, SelectorError> {
        let key = key.into();
        let mut values: Vec<String> = values.into_iter().map(Into::into).collect();
        validate_label_key(&key)?;
        let count_error = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(reason) = count_error {
            values.sort();
            return Err(SelectorError::WrongValueCount { values, reason });
        }
        for (index, value) in values.iter().enumerate() {
            if matches!(operator, Operator::GreaterThan | Operator::LessThan)
                && value.parse::<i64>().is_err()
            {
                return Err(SelectorError::NotAnInteger {
                    index,
                    value: value.clone(),
                });
            }
            let errors = label_value_errors(value);
            if !errors.is_empty() {
                return Err(SelectorError::InvalidValue {
                    key,
                    index,
                    value: value.clone(),
                    reason: errors.join("; "),
                });
            }
        }
        values.sort();
        values.dedup();
        Ok(Self {
            key,
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and without duplicates.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set satisfies this requirement; see [`Operator`].
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let has = |v: &String| self.values.binary_search(v).is_ok();
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(Ok(actual)), Some(Ok(bound))) = (
                    value.map(|v| v.parse::<i64>()),
                    self.values.first().map(|v| v.parse::<i64>()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

/// Prints as upstream: `key=v`, `key==v`, `key!=v`, `key in (a,b)`,
/// `key notin (a,b)`, `key`, `!key`, `key>5`, `key<5`.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        let key = &self.key;
        match self.operator {
            Operator::Equals => write!(f, "{key}={values}"),
            Operator::DoubleEquals => write!(f, "{key}=={values}"),
            Operator::NotEquals => write!(f, "{key}!={values}"),
            Operator::In => write!(f, "{key} in ({values})"),
            Operator::NotIn => write!(f, "{key} notin ({values})"),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::GreaterThan => write!(f, "{key}>{values}"),
            Operator::LessThan => write!(f, "{key}<{values}"),
        }
    }
}

impl LabelSelector {
    /// The empty selector, which matches every label set.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector that matches no label set, as upstream's `labels.Nothing()`.
    /// It prints as the empty string, like upstream's, so printing does not
    /// round-trip it.
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    /// A selector requiring all of `requirements`, sorted by key.
    pub fn new(requirements: impl IntoIterator<Item = Requirement>) -> Self {
        let mut requirements: Vec<Requirement> = requirements.into_iter().collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self {
            requirements,
            matches_nothing: false,
        }
    }

    /// Parses the query syntax of `?labelSelector=`, as upstream's `labels.Parse`:
    ///
    /// ```text
    /// <selector>    ::= "" | <requirement> | <requirement> "," <selector>
    /// <requirement> ::= ["!"] KEY [ ("in" | "notin") "(" VALUES ")" | ("=" | "==" | "!=" | ">" | "<") VALUE ]
    /// ```
    ///
    /// Whitespace around tokens is ignored; an empty value (`x=`, `x in ()`) is allowed.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let tokens = lex(s);
        let requirements = Parser {
            tokens: &tokens,
            position: 0,
        }
        .parse()?;
        Ok(Self::new(requirements))
    }

    /// A selector requiring each `key=value` of `set`, as upstream's
    /// `ValidatedSelectorFromSet`; an empty set gives [`LabelSelector::everything`].
    pub fn from_set(set: &BTreeMap<String, String>) -> Result<Self, SelectorError> {
        let requirements = set
            .iter()
            .map(|(k, v)| Requirement::new(k.as_str(), Operator::Equals, [v.as_str()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(requirements))
    }

    /// Converts an API `LabelSelector` as upstream's `LabelSelectorAsSelector`:
    /// `matchLabels` become `=` requirements and `matchExpressions` use `In`,
    /// `NotIn`, `Exists` or `DoesNotExist`. A selector with neither matches
    /// everything. For an absent selector use [`LabelSelector::from_k8s_option`].
    pub fn from_k8s(sel: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::new(
                key.as_str(),
                Operator::Equals,
                [value.as_str()],
            )?);
        }
        for expr in sel.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::UnknownOperator(other.to_owned())),
            };
            let values = expr.values.iter().flatten().map(String::as_str);
            requirements.push(Requirement::new(expr.key.as_str(), operator, values)?);
        }
        Ok(Self::new(requirements))
    }

    /// Like [`LabelSelector::from_k8s`], but an absent selector (upstream's `nil`)
    /// gives [`LabelSelector::nothing`], as upstream's `LabelSelectorAsSelector`.
    pub fn from_k8s_option(sel: Option<&metav1::LabelSelector>) -> Result<Self, SelectorError> {
        sel.map_or_else(|| Ok(Self::nothing()), Self::from_k8s)
    }

    /// Whether this selector places no restriction (and so matches everything).
    /// [`LabelSelector::nothing`] is not empty.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.matches_nothing
    }

    /// Whether this is [`LabelSelector::nothing`].
    pub fn matches_nothing(&self) -> bool {
        self.matches_nothing
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The single value `key` must have, if the first requirement on `key` is
    /// `=`, `==` or `in` with one value (upstream's `RequiresExactMatch`).
    pub fn requires_exact(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

/// Prints the requirements joined by `,` (upstream's `String()`); both
/// [`LabelSelector::everything`] and [`LabelSelector::nothing`] print as `""`.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FieldOperator {
    /// The operator as printed: `=` or `!=`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        }
    }
}

impl FieldTerm {
    /// Whether the field's value satisfies the term; an absent field counts as `""`.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let equal = value.unwrap_or("") == self.value;
        match self.op {
            FieldOperator::Equals => equal,
            FieldOperator::NotEquals => !equal,
        }
    }
}

/// Prints `field=value` or `field!=value`, escaping `\`, `,` and `=` in the value.
impl fmt::Display for FieldTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.field,
            self.op.as_str(),
            escape_field_value(&self.value)
        )
    }
}

impl FieldSelector {
    /// The empty selector, which matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector requiring all of `terms`.
    pub fn new(terms: impl IntoIterator<Item = FieldTerm>) -> Self {
        let mut terms: Vec<(String, FieldTerm)> =
            terms.into_iter().map(|t| (t.to_string(), t)).collect();
        terms.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            terms: terms.into_iter().map(|(_, t)| t).collect(),
        }
    }

    /// A selector with the single term `field=value`.
    pub fn equals(field: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new([FieldTerm {
            field: field.into(),
            op: FieldOperator::Equals,
            value: value.into(),
        }])
    }

    /// Parses the query syntax of `?fieldSelector=`, as upstream's
    /// `fields.ParseSelector`: terms separated by `,`, each `field=value`,
    /// `field==value` or `field!=value`, split at the first operator. In values
    /// `\\`, `\,` and `\=` stand for `\`, `,` and `=`. Empty terms are skipped;
    /// whitespace is kept as written.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in split_field_terms(s) {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, raw_value)) = split_field_term(part) else {
                return Err(SelectorError::FieldTerm {
                    selector: s.to_owned(),
                    term: part.to_owned(),
                });
            };
            let value = unescape_field_value(raw_value)?;
            // Upstream drops a term with neither field nor value (`=`).
            if field.is_empty() && value.is_empty() {
                continue;
            }
            terms.push(FieldTerm {
                field: field.to_owned(),
                op,
                value,
            });
        }
        Ok(Self::new(terms))
    }

    /// Whether this selector places no restriction.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether every term matches, reading fields through `get`; a field
    /// `get` returns `None` for counts as `""`, as upstream.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms
            .iter()
            .all(|t| t.matches(get(&t.field).as_deref()))
    }

    /// The terms, in printing order.
    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// The value `field` must equal, if a term says `field=value`
    /// (upstream's `RequiresExactMatch`); used to pick an index.
    pub fn requires_exact(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.op == FieldOperator::Equals)
            .map(|t| t.value.as_str())
    }
}

/// Prints the terms joined by `,`, values escaped (upstream's `String()`).
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

// ---------------------------------------------------------------------------
// Label selector lexer and parser.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// Where a token is read: in a value position `in` and `notin` are plain words.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a label selector into tokens, ending with `EndOfString`.
fn lex(s: &str) -> Vec<(Token, &str)> {
    let bytes = s.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while pos < bytes.len() && is_whitespace(bytes[pos]) {
            pos += 1;
        }
        let Some(&c) = bytes.get(pos) else {
            tokens.push((Token::EndOfString, ""));
            return tokens;
        };
        let start = pos;
        let token = if is_special(c) {
            let two = s.get(pos..pos + 2);
            if two == Some("!=") || two == Some("==") {
                pos += 2;
            } else {
                pos += 1;
            }
            match &s[start..pos] {
                "!=" => Token::NotEquals,
                "==" => Token::DoubleEquals,
                "=" => Token::Equals,
                "!" => Token::DoesNotExist,
                "(" => Token::OpenPar,
                ")" => Token::ClosedPar,
                "," => Token::Comma,
                ">" => Token::GreaterThan,
                _ => Token::LessThan,
            }
        } else {
            while pos < bytes.len() && !is_whitespace(bytes[pos]) && !is_special(bytes[pos]) {
                pos += 1;
            }
            match &s[start..pos] {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            }
        };
        tokens.push((token, &s[start..pos]));
    }
}

struct Parser<'a> {
    tokens: &'a [(Token, &'a str)],
    position: usize,
}

fn syntax(message: String) -> SelectorError {
    SelectorError::Syntax(message)
}

/// Upstream wraps errors inside a requirement with this prefix.
fn in_requirement(err: SelectorError) -> SelectorError {
    match err {
        SelectorError::Syntax(message) => {
            SelectorError::Syntax(format!("unable to parse requirement: {message}"))
        }
        other => other,
    }
}

impl<'a> Parser<'a> {
    fn lookahead(&self, context: Context) -> (Token, &'a str) {
        let (token, literal) = self.tokens[self.position];
        match token {
            Token::In | Token::NotIn if context == Context::Values => (Token::Identifier, literal),
            _ => (token, literal),
        }
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let item = self.lookahead(context);
        // The final `EndOfString` is never consumed past.
        if self.position + 1 < self.tokens.len() {
            self.position += 1;
        }
        item
    }

    fn parse(mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    requirements.push(self.parse_requirement().map_err(in_requirement)?);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(syntax(format!(
                                    "found '{literal}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(syntax(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(syntax(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut negated = false;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            negated = true;
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(syntax(format!("found '{literal}', expected: identifier")));
        }
        let key = literal;
        validate_label_key(key)?;
        let (next, _) = self.lookahead(Context::Values);
        if negated {
            return Requirement::new(key, Operator::DoesNotExist, Vec::<String>::new());
        }
        if next == Token::EndOfString || next == Token::Comma {
            return Requirement::new(key, Operator::Exists, Vec::<String>::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, operator, values)
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(syntax(format!(
                    "found '{literal}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            }
        })
    }

    /// `( a, b, ... )`; empty entries stand for the empty value.
    fn parse_values(&mut self) -> Result<Vec<&'a str>, SelectorError> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(syntax(format!("found '{literal}' expected: '('")));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (token, literal) = self.consume(Context::Values);
                if token != Token::ClosedPar {
                    return Err(syntax(format!("found '{literal}', expected: ')'")));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![""])
            }
            _ => Err(syntax(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            ))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<&'a str>, SelectorError> {
        let mut values = Vec::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.push(literal);
                    let (next, literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => {
                            return Err(syntax(format!("found '{literal}', expected: ',' or ')'")));
                        }
                    }
                }
                Token::Comma => {
                    // A comma with nothing before or after it separates an empty value.
                    if values.is_empty() {
                        values.push("");
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        values.push("");
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        values.push("");
                    }
                }
                _ => {
                    return Err(syntax(format!(
                        "found '{literal}', expected: ',', or identifier"
                    )));
                }
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; none means `""`.
    fn parse_exact_value(&mut self) -> Result<Vec<&'a str>, SelectorError> {
        let (token, _) = self.lookahead(Context::Values);
        if token == Token::EndOfString || token == Token::Comma {
            return Ok(vec![""]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(vec![literal])
        } else {
            Err(syntax(format!("found '{literal}', expected: identifier")))
        }
    }
}

// ---------------------------------------------------------------------------
// Label key and value rules (upstream's IsQualifiedName and IsValidLabelValue).

fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    let errors = label_key_errors(key);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::InvalidKey {
            key: key.to_owned(),
            reason: errors.join("; "),
        })
    }
}

/// Label keys are qualified names; the messages are validation's.
fn label_key_errors(key: &str) -> Vec<String> {
    crate::validation::is_qualified_name(key)
}

fn label_value_errors(value: &str) -> Vec<String> {
    crate::validation::is_valid_label_value(value)
}

// ---------------------------------------------------------------------------
// Field selector helpers.

fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => out.push(escaped),
                Some(other) => return Err(SelectorError::InvalidEscape(format!("\\{other}"))),
                None => return Err(SelectorError::InvalidEscape("\\".to_owned())),
            },
            ',' | '=' => return Err(SelectorError::UnescapedCharacter(c)),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Splits at commas not escaped by a backslash.
fn split_field_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at its first `!=`, `==` or `=`.
fn split_field_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        if let Some(value) = rest.strip_prefix("!=") {
            Some((&term[..i], FieldOperator::NotEquals, value))
        } else if let Some(value) = rest.strip_prefix("==") {
            Some((&term[..i], FieldOperator::Equals, value))
        } else {
            rest.strip_prefix('=')
                .map(|value| (&term[..i], FieldOperator::Equals, value))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
        Requirement::new(key, op, values.iter().copied()).unwrap()
    }

    #[test]
    fn label_selectors_print_back_without_whitespace() {
        // From upstream's TestSelectorParse.
        for input in [
            "x=a,y=b,z=c",
            "",
            "x!=a,y=b",
            "x=",
            "x= ",
            "x=,z= ",
            "x= ,z= ",
            "!x",
            "x>1",
            "x>1,z<5",
        ] {
            assert_eq!(sel(input).to_string(), input.replace(' ', ""), "{input:?}");
        }
    }

    #[test]
    fn label_selectors_parse_to_sorted_requirements() {
        use Operator::*;
        // From upstream's TestSetSelectorParser.
        let cases: Vec<(&str, Vec<Requirement>)> = vec![
            ("", vec![]),
            ("   ", vec![]),
            ("\rx", vec![req("x", Exists, &[])]),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                vec![req("this-is-a-dns.domain.com/key-with-dash", Exists, &[])],
            ),
            (
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
                vec![req(
                    "this-is-another-dns.domain.com/key-with-dash",
                    In,
                    &["so", "what"],
                )],
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                vec![req(
                    "0.1.2.domain/99",
                    NotIn,
                    &["10.10.100.1", "tick.tack.clock"],
                )],
            ),
            ("foo  in\t (abc)", vec![req("foo", In, &["abc"])]),
            ("x notin\n (abc)", vec![req("x", NotIn, &["abc"])]),
            (
                "x  notin\t\t(abc,def)",
                vec![req("x", NotIn, &["abc", "def"])],
            ),
            ("x in (abc,)", vec![req("x", In, &["abc", ""])]),
            ("x in (abc,abc)", vec![req("x", In, &["abc"])]),
            ("x in ()", vec![req("x", In, &[""])]),
            ("x in (a,,)", vec![req("x", In, &["a", ""])]),
            ("x in (a,,,,,,)", vec![req("x", In, &["a", ""])]),
            ("x in (a,,a,,a,,a,,)", vec![req("x", In, &["a", ""])]),
            (
                "x notin (abc,,def),bar,z in (),w",
                vec![
                    req("bar", Exists, &[]),
                    req("w", Exists, &[]),
                    req("x", NotIn, &["abc", "", "def"]),
                    req("z", In, &[""]),
                ],
            ),
            (
                "x,y in (a)",
                vec![req("x", Exists, &[]), req("y", In, &["a"])],
            ),
            ("x=a", vec![req("x", Equals, &["a"])]),
            ("x==a", vec![req("x", DoubleEquals, &["a"])]),
            ("x>1", vec![req("x", GreaterThan, &["1"])]),
            ("x<7", vec![req("x", LessThan, &["7"])]),
            (
                "x=a,y!=b,z in (h,i,j)",
                vec![
                    req("x", Equals, &["a"]),
                    req("y", NotEquals, &["b"]),
                    req("z", In, &["h", "i", "j"]),
                ],
            ),
            ("x notin ( )", vec![req("x", NotIn, &[""])]),
            ("x notin (, a)", vec![req("x", NotIn, &["", "a"])]),
            ("a ", vec![req("a", Exists, &[])]),
            (
                "a in (x,y,notin, z,in)",
                vec![req("a", In, &["in", "notin", "x", "y", "z"])],
            ),
            ("in in (in)", vec![req("in", In, &["in"])]),
            ("notin=in", vec![req("notin", Equals, &["in"])]),
            ("!in", vec![req("in", DoesNotExist, &[])]),
            (
                "z=1,a=2,z!=3",
                vec![
                    req("a", Equals, &["2"]),
                    req("z", Equals, &["1"]),
                    req("z", NotEquals, &["3"]),
                ],
            ),
        ];
        for (input, expected) in cases {
            let parsed = sel(input);
            assert_eq!(parsed.requirements(), expected.as_slice(), "{input:?}");
            assert_eq!(parsed, LabelSelector::new(expected), "{input:?}");
        }
    }

    #[test]
    fn malformed_label_selectors_say_what_was_found_and_expected() {
        let cases = [
            (
                "x=a||y=b",
                "values[0][x]: Invalid value: \"a||y\": a valid label must be",
            ),
            ("x==a==b", "found '==', expected: ',' or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            (
                "x<a",
                "values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            ("x,,y", "found ',', expected: identifier after ','"),
            (
                ",x,y",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                "x nott in (y)",
                "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt",
            ),
            ("a in (xyz),", "found '', expected: identifier after ','"),
            (
                "a in (xyz)b notin ()",
                "found 'b', expected: ',' or 'end of string'",
            ),
            (
                "a in (xyz abc)",
                "unable to parse requirement: found 'abc', expected: ',' or ')'",
            ),
            (
                "a notin(",
                "unable to parse requirement: found '', expected: ',', ')' or identifier",
            ),
            (
                "a (",
                "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "(",
                "found '(', expected: !, identifier, or 'end of string'",
            ),
            (
                "x in a",
                "unable to parse requirement: found 'a' expected: '('",
            ),
            (
                "x in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "x in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "x in (a,=)",
                "unable to parse requirement: found '=', expected: ',', or identifier",
            ),
            (
                "x=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            ("x>1>2", "found '>', expected: ',' or 'end of string'"),
            (
                "a/b/c",
                "invalid label key \"a/b/c\": a qualified name must consist of alphanumeric \
                 characters, '-', '_' or '.', and must start and end with an alphanumeric \
                 character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
                 validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS \
                 subdomain prefix and '/' (e.g. 'example.com/MyName')",
            ),
            (
                "/a",
                "invalid label key \"/a\": prefix part must be non-empty",
            ),
            (
                "Example.com/a",
                "invalid label key \"Example.com/a\": prefix part a lowercase RFC 1123 subdomain",
            ),
            (
                "a/",
                "invalid label key \"a/\": name part must be non-empty; name part must consist",
            ),
            (
                "-a",
                "invalid label key \"-a\": name part must consist of alphanumeric characters",
            ),
            (
                "app=bad value",
                "found 'value', expected: ',' or 'end of string'",
            ),
            (
                "app=-bad",
                "values[0][app]: Invalid value: \"-bad\": a valid label must be an empty string",
            ),
        ];
        for (input, expected) in cases {
            let err = LabelSelector::parse(input).expect_err(input).to_string();
            assert!(
                err.starts_with(expected),
                "{input:?}: got {err:?}, want {expected:?}"
            );
        }
        let long = "a".repeat(64);
        let err = LabelSelector::parse(&long).unwrap_err().to_string();
        assert!(
            err.contains("name part must be no more than 63 characters"),
            "{err}"
        );
        let err = LabelSelector::parse(&format!("x={long}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be no more than 63 characters"), "{err}");
        let prefix = format!("{}.com/x", "a".repeat(250));
        let err = LabelSelector::parse(&prefix).unwrap_err().to_string();
        assert!(
            err.contains("prefix part must be no more than 253 characters"),
            "{err}"
        );
    }

    #[test]
    fn requirements_check_their_values_against_the_operator() {
        use Operator::*;
        let none: [&str; 0] = [];
        let cases = [
            (
                In,
                &none[..],
                Some(
                    "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty",
                ),
            ),
            (
                NotIn,
                &none[..],
                Some("values: Invalid value: []: for 'in', 'notin' operators"),
            ),
            (In, &["foo"][..], None),
            (
                Equals,
                &["foo", "bar"][..],
                Some(
                    "values: Invalid value: [\"bar\", \"foo\"]: exact-match compatibility requires one single value",
                ),
            ),
            (Exists, &none[..], None),
            (DoesNotExist, &none[..], None),
            (
                Exists,
                &["foo"][..],
                Some(
                    "values: Invalid value: [\"foo\"]: values set must be empty for exists and does not exist",
                ),
            ),
            (GreaterThan, &["1"][..], None),
            (
                LessThan,
                &["-6"][..],
                Some("values[0][x]: Invalid value: \"-6\""),
            ),
            (
                GreaterThan,
                &none[..],
                Some(
                    "values: Invalid value: []: for 'Gt', 'Lt' operators, exactly one value is required",
                ),
            ),
            (
                GreaterThan,
                &["bar"][..],
                Some(
                    "values[0]: Invalid value: \"bar\": for 'Gt', 'Lt' operators, the value must be an integer",
                ),
            ),
            (
                Equals,
                &["a b"][..],
                Some("values[0][x]: Invalid value: \"a b\""),
            ),
        ];
        for (op, values, expected) in cases {
            let result = Requirement::new("x", op, values.iter().copied());
            match expected {
                None => assert!(result.is_ok(), "{op} {values:?}: {result:?}"),
                Some(expected) => {
                    let err = result.unwrap_err().to_string();
                    assert!(err.starts_with(expected), "{op} {values:?}: {err}");
                }
            }
        }
        let err = Requirement::new("a".repeat(254), Exists, none).unwrap_err();
        assert!(matches!(err, SelectorError::InvalidKey { .. }));
    }

    #[test]
    fn label_selectors_match_as_upstream() {
        // From upstream's TestSelectorMatches and TestRequirementSelectorMatching.
        type Labels<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(&str, Labels, bool)] = &[
            ("", &[("x", "y")], true),
            ("x=y", &[("x", "y")], true),
            ("x=y,z=w", &[("x", "y"), ("z", "w")], true),
            ("x!=y,z!=w", &[("x", "z"), ("z", "a")], true),
            ("notin=in", &[("notin", "in")], true),
            ("x", &[("x", "z")], true),
            ("!x", &[("y", "z")], true),
            ("x>1", &[("x", "2")], true),
            ("x<1", &[("x", "0")], true),
            ("x<1", &[("x", "-5")], true),
            ("x=z", &[], false),
            ("x=y", &[("x", "z")], false),
            ("x=y,z=w", &[("x", "w"), ("z", "w")], false),
            ("x!=y,z!=w", &[("x", "z"), ("z", "w")], false),
            ("x", &[("y", "z")], false),
            ("!x", &[("x", "z")], false),
            ("x>1", &[("x", "0")], false),
            ("x<1", &[("x", "2")], false),
            ("x>1", &[("x", "v2")], false),
            ("x>1", &[], false),
            (
                "x in (foo),y notin (alpha)",
                &[("x", "foo"), ("y", "baz")],
                true,
            ),
            (
                "x in (foo),y in (alpha)",
                &[("x", "foo"), ("y", "baz")],
                false,
            ),
            ("x notin (),y", &[("y", "")], true),
            ("!x,y", &[("y", "")], true),
            ("x notin (),!y", &[("y", "")], false),
            ("x in ()", &[("y", "baz")], false),
            ("x in ()", &[("x", "")], true),
            ("x=", &[("x", "")], true),
            ("x!=", &[], true),
            ("x notin (a,b)", &[("x", "c")], true),
            ("x notin (a,b)", &[("x", "b")], false),
            ("foo=bar,baz=blah", &[("foo", "bar"), ("baz", "blah")], true),
            (
                "foo=bar,foobar=bar,baz=blah",
                &[("foo", "bar"), ("baz", "blah")],
                false,
            ),
        ];
        for &(selector, set, expected) in cases {
            assert_eq!(
                sel(selector).matches(&labels(set)),
                expected,
                "{selector:?} on {set:?}"
            );
        }
    }

    #[test]
    fn everything_matches_all_and_nothing_matches_none() {
        let set = labels(&[("x", "y")]);
        assert!(LabelSelector::everything().matches(&set));
        assert!(LabelSelector::everything().is_empty());
        assert!(!LabelSelector::nothing().matches(&set));
        assert!(!LabelSelector::nothing().matches(&BTreeMap::new()));
        assert!(!LabelSelector::nothing().is_empty());
        assert!(LabelSelector::nothing().matches_nothing());
        assert_eq!(LabelSelector::nothing().to_string(), "");
        assert_ne!(LabelSelector::nothing(), LabelSelector::everything());
    }

    #[test]
    fn parsing_is_deterministic_whatever_the_order() {
        assert_eq!(sel("x=a,a=x"), sel("a=x,x=a"));
        assert_eq!(sel("x=a,a=x").to_string(), "a=x,x=a");
        assert_eq!(sel("x in (c,b,a)").to_string(), "x in (a,b,c)");
    }

    #[test]
    fn requirement_printing_follows_upstream() {
        use Operator::*;
        // From upstream's TestToString.
        let cases = [
            (
                vec![
                    req("x", In, &["abc", "def"]),
                    req("y", NotIn, &["jkl"]),
                    req("z", Exists, &[]),
                ],
                "x in (abc,def),y notin (jkl),z",
            ),
            (
                vec![
                    req("x", NotIn, &["abc", "def"]),
                    req("y", NotEquals, &["jkl"]),
                    req("z", DoesNotExist, &[]),
                ],
                "x notin (abc,def),y!=jkl,!z",
            ),
            (
                vec![
                    req("x", NotIn, &["abc"]),
                    req("y", In, &["jkl", "mno"]),
                    req("z", NotIn, &[""]),
                ],
                "x notin (abc),y in (jkl,mno),z notin ()",
            ),
            (
                vec![
                    req("x", Equals, &["abc"]),
                    req("y", DoubleEquals, &["jkl"]),
                    req("z", NotEquals, &["a"]),
                    req("z", Exists, &[]),
                ],
                "x=abc,y==jkl,z!=a,z",
            ),
            (
                vec![
                    req("x", GreaterThan, &["2"]),
                    req("y", LessThan, &["8"]),
                    req("z", Exists, &[]),
                ],
                "x>2,y<8,z",
            ),
        ];
        for (requirements, expected) in cases {
            let selector = LabelSelector::new(requirements);
            assert_eq!(selector.to_string(), expected);
            assert_eq!(sel(expected), selector);
        }
    }

    #[test]
    fn requires_exact_finds_single_value_equality() {
        let s = sel("key in (value),key2 in (a,b),key3=c,key4==d,key5!=e");
        assert_eq!(s.requires_exact("key"), Some("value"));
        assert_eq!(s.requires_exact("key2"), None);
        assert_eq!(s.requires_exact("key3"), Some("c"));
        assert_eq!(s.requires_exact("key4"), Some("d"));
        assert_eq!(s.requires_exact("key5"), None);
        assert_eq!(s.requires_exact("missing"), None);
    }

    #[test]
    fn api_label_selectors_convert_as_upstream() {
        use crate::k8s::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let expr = |key: &str, operator: &str, values: Option<&[&str]>| LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: values.map(|v| v.iter().map(|s| (*s).to_owned()).collect()),
        };
        let api = metav1::LabelSelector {
            match_labels: Some(labels(&[("app", "web"), ("tier", "front")])),
            match_expressions: Some(vec![
                expr("env", "In", Some(&["prod", "staging"])),
                expr("canary", "DoesNotExist", None),
                expr("zone", "NotIn", Some(&["b"])),
                expr("team", "Exists", Some(&[])),
            ]),
        };
        let selector = LabelSelector::from_k8s(&api).unwrap();
        assert_eq!(
            selector.to_string(),
            "app=web,!canary,env in (prod,staging),team,tier=front,zone notin (b)"
        );
        let pod = labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("env", "prod"),
            ("team", "x"),
        ]);
        assert!(selector.matches(&pod));
        let mut canary = pod.clone();
        canary.insert("canary".into(), "true".into());
        assert!(!selector.matches(&canary));

        // Empty matches everything; absent matches nothing.
        let empty = metav1::LabelSelector::default();
        assert!(LabelSelector::from_k8s(&empty).unwrap().is_empty());
        assert!(
            LabelSelector::from_k8s_option(Some(&empty))
                .unwrap()
                .matches(&pod)
        );
        assert!(!LabelSelector::from_k8s_option(None).unwrap().matches(&pod));

        let bad_op = metav1::LabelSelector {
            match_expressions: Some(vec![expr("a", "Gt", Some(&["1"]))]),
            ..Default::default()
        };
        assert_eq!(
            LabelSelector::from_k8s(&bad_op).unwrap_err().to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        let no_values = metav1::LabelSelector {
            match_expressions: Some(vec![expr("a", "In", None)]),
            ..Default::default()
        };
        assert!(matches!(
            LabelSelector::from_k8s(&no_values),
            Err(SelectorError::WrongValueCount { .. })
        ));
        let bad_value = metav1::LabelSelector {
            match_labels: Some(labels(&[("app", "bad value")])),
            ..Default::default()
        };
        assert!(
            LabelSelector::from_k8s(&bad_value)
                .unwrap_err()
                .to_string()
                .starts_with("values[0][app]: Invalid value: \"bad value\": a valid label must be")
        );
    }

    #[test]
    fn label_sets_become_equality_selectors() {
        let set = labels(&[("b", "2"), ("a", "1")]);
        let selector = LabelSelector::from_set(&set).unwrap();
        assert_eq!(selector.to_string(), "a=1,b=2");
        assert!(selector.matches(&set));
        assert!(
            LabelSelector::from_set(&BTreeMap::new())
                .unwrap()
                .is_empty()
        );
        assert!(LabelSelector::from_set(&labels(&[("a", "=x")])).is_err());
    }

    fn fields(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map = labels(pairs);
        move |f| map.get(f).cloned()
    }

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn field_selectors_print_back_as_written() {
        // From upstream's TestSelectorParse (fields).
        for input in [
            "x=a,y=b,z=c",
            "",
            "x!=a,y=b",
            r"x=a||y\=b",
            r"x=a\=\=b",
            r"k=\\\,\=x",
        ] {
            assert_eq!(fsel(input).to_string(), input);
        }
        assert_eq!(fsel("x==a").to_string(), "x=a");
        assert_eq!(fsel("b=1,,a=2,").to_string(), "a=2,b=1");
        assert_eq!(fsel("x=a,a=x"), fsel("a=x,x=a"));
        assert_eq!(fsel("=").to_string(), "");
        assert_eq!(fsel("함=수,목=록").terms().len(), 2);
        assert_eq!(fsel(r"k=a\,b").terms()[0].value, "a,b");
    }

    #[test]
    fn malformed_field_selectors_are_rejected() {
        let cases = [
            (
                "x=a||y=b",
                "invalid field selector: unescaped character in value: '='",
            ),
            (
                "x==a==b",
                "invalid field selector: unescaped character in value: '='",
            ),
            ("x=a,b", "invalid selector: 'x=a,b'; can't understand 'b'"),
            (
                "x in (a)",
                "invalid selector: 'x in (a)'; can't understand 'x in (a)'",
            ),
            ("x", "invalid selector: 'x'; can't understand 'x'"),
            (
                r"k=\a",
                r"invalid field selector: invalid escape sequence: \a",
            ),
            (
                r"k=\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                r"k=\\\",
                r"invalid field selector: invalid escape sequence: \",
            ),
        ];
        for (input, expected) in cases {
            let err = FieldSelector::parse(input).expect_err(input).to_string();
            assert_eq!(err, expected, "{input:?}");
        }
    }

    #[test]
    fn field_selectors_match_with_absent_fields_as_empty() {
        let pod = fields(&[("metadata.name", "web-1"), ("spec.nodeName", "node-a")]);
        assert!(fsel("").matches(&pod));
        assert!(fsel("metadata.name=web-1").matches(&pod));
        assert!(fsel("metadata.name==web-1,spec.nodeName=node-a").matches(&pod));
        assert!(!fsel("metadata.name=web-2").matches(&pod));
        assert!(fsel("spec.nodeName!=node-b").matches(&pod));
        assert!(!fsel("spec.nodeName!=node-a").matches(&pod));
        assert!(fsel("status.phase=").matches(&pod));
        assert!(!fsel("status.phase!=").matches(&pod));
        assert!(fsel("status.phase!=Running").matches(&pod));
        assert!(FieldSelector::everything().is_empty());
        assert!(!fsel("a=b").is_empty());
    }

    #[test]
    fn field_selectors_report_exact_requirements_for_indexing() {
        let s = fsel("spec.nodeName=node-a,status.phase!=Failed");
        assert_eq!(s.requires_exact("spec.nodeName"), Some("node-a"));
        assert_eq!(s.requires_exact("status.phase"), None);
        assert_eq!(s.requires_exact("metadata.name"), None);
        assert_eq!(fsel("a==b").requires_exact("a"), Some("b"));
        let built = FieldSelector::equals("spec.nodeName", "n,1");
        assert_eq!(built.to_string(), r"spec.nodeName=n\,1");
        assert_eq!(fsel(&built.to_string()), built);
    }

    fn label_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9]",
            "[a-zA-Z0-9][-a-zA-Z0-9_.]{0,20}[a-zA-Z0-9]",
            Just("in".to_owned()),
            Just("notin".to_owned()),
        ]
    }

    fn label_key() -> impl Strategy<Value = String> {
        (
            proptest::option::of("[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,2}"),
            label_name(),
        )
            .prop_map(|(prefix, name)| match prefix {
                Some(prefix) => format!("{prefix}/{name}"),
                None => name,
            })
    }

    fn label_value() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), label_name()]
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        use Operator::*;
        let op = prop_oneof![
            Just(Equals),
            Just(DoubleEquals),
            Just(NotEquals),
            Just(In),
            Just(NotIn),
            Just(Exists),
            Just(DoesNotExist),
            Just(GreaterThan),
            Just(LessThan),
        ];
        (
            label_key(),
            op,
            proptest::collection::vec(label_value(), 1..4),
            0u32..100_000,
        )
            .prop_map(|(key, op, values, number)| {
                let values = match op {
                    Exists | DoesNotExist => vec![],
                    Equals | DoubleEquals | NotEquals => vec![values[0].clone()],
                    GreaterThan | LessThan => vec![number.to_string()],
                    In | NotIn => values,
                };
                Requirement::new(key, op, values).unwrap()
            })
    }

    fn field_term() -> impl Strategy<Value = FieldTerm> {
        (
            "[a-zA-Z][a-zA-Z.]{0,15}",
            prop_oneof![Just(FieldOperator::Equals), Just(FieldOperator::NotEquals)],
            "[-a-z0-9=,\\\\! ]{0,10}",
        )
            .prop_map(|(field, op, value)| FieldTerm { field, op, value })
    }

    proptest! {
        #[test]
        fn label_selectors_survive_printing_and_parsing(
            requirements in proptest::collection::vec(requirement(), 0..6)
        ) {
            let selector = LabelSelector::new(requirements);
            let printed = selector.to_string();
            let reparsed = LabelSelector::parse(&printed);
            prop_assert_eq!(reparsed.as_ref(), Ok(&selector), "printed as {}", printed);
            prop_assert_eq!(reparsed.unwrap().to_string(), printed);
        }

        #[test]
        fn field_selectors_survive_printing_and_parsing(
            terms in proptest::collection::vec(field_term(), 0..5)
        ) {
            let selector = FieldSelector::new(terms);
            let printed = selector.to_string();
            let reparsed = FieldSelector::parse(&printed);
            prop_assert_eq!(reparsed.as_ref(), Ok(&selector), "printed as {}", printed);
        }

        #[test]
        fn label_selector_parsing_never_panics(input in "[a-z =!(),<>0-9/.-]{0,30}") {
            if let Ok(selector) = LabelSelector::parse(&input) {
                let printed = selector.to_string();
                prop_assert_eq!(LabelSelector::parse(&printed), Ok(selector));
            }
        }
    }
}
