//! `resource.Quantity`: exact fixed-point amounts such as `500m`, `1.5Gi` or `12e6`.
//!
//! A [`Quantity`] holds its value as a whole number of nano-units in an `i128`:
//! upstream never keeps precision below `1n`, so this is exact, and it reaches
//! about ±1.7 × 10²⁹ (upstream's `int64` fast path stops at 9.2 × 10¹⁸). No
//! floating point is used anywhere. Next to the value it remembers the
//! [`Format`] it was written in, so that [`Quantity::canonical`] prints it the
//! way upstream's `String()` does:
//! `1.5` → `1500m`, `1.5Gi` → `1536Mi`, `1000M` → `1G`, `1e3` → `1e3`.
//!
//! Parsing follows upstream's `ParseQuantity`:
//!
//! - suffixes `n u m "" k M G T P E`, `Ki Mi Gi Ti Pi Ei`, and decimal exponents
//!   `e<n>` / `E<n>`; an optional leading `+` or `-`;
//! - digits beyond nano precision round up, away from zero (`0.1n` → `1n`);
//! - a value written with a binary suffix is capped at 2⁶³−1 in magnitude, and
//!   one strictly between −1 and 1 switches to the decimal format.
//!
//! Where this module deliberately differs from upstream:
//!
//! - a bare suffix with no number (`"Mi"`, `"k"`) and a lone sign (`"-"`) are
//!   rejected, as upstream's own regular expression says they should be
//!   (upstream's scanner reads them as zero); `"."` still parses as zero;
//! - a value whose magnitude does not fit (see [`Quantity::MAX`]) is an error
//!   rather than being carried in arbitrary precision;
//! - canonical printing past the largest suffix keeps the suffix and grows the
//!   number (`1000E`, `1024Ei`) where upstream drops the suffix and prints a
//!   wrong value.
//!
//! Comparison and equality are numeric and ignore the format: `1000m == 1`,
//! `1Gi > 1G`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::k8s::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

/// The regular expression upstream quotes when a quantity is malformed.
pub const QUANTITY_REGEX: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// Nano-units in one unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// Upstream caps values written with a binary suffix at 2⁶³−1 units.
const MAX_BINARY_NANOS: i128 = (i64::MAX as i128) * NANOS_PER_UNIT;

/// Decimal SI suffixes by power of ten, from `n` (10⁻⁹) to `E` (10¹⁸).
const DECIMAL_SUFFIXES: [(i32, &str); 10] = [
    (-9, "n"),
    (-6, "u"),
    (-3, "m"),
    (0, ""),
    (3, "k"),
    (6, "M"),
    (9, "G"),
    (12, "T"),
    (15, "P"),
    (18, "E"),
];

/// Binary SI suffixes by power of 1024, from 1024⁰ to `Ei` (1024⁶).
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// A fixed-point amount, as upstream's `resource.Quantity`.
///
/// Equality, ordering and hashing look at the value only, never the format.
#[derive(Clone, Copy, Default)]
pub struct Quantity {
    /// The value in nano-units; never `i128::MIN`, so negation cannot overflow.
    nanos: i128,
    /// How [`Quantity::canonical`] prints the value.
    format: Format,
}

/// How a quantity is printed; a parsed quantity keeps the format of its suffix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// Powers of ten as SI suffixes: `12M` is 12 × 10⁶.
    #[default]
    DecimalSI,
    /// Powers of 1024: `12Mi` is 12 × 2²⁰.
    BinarySI,
    /// Powers of ten as an exponent: `12e6`.
    DecimalExponent,
}

/// Why a string is not a quantity. The messages are upstream's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string does not have the shape number-then-suffix.
    #[error("quantities must match the regular expression '{QUANTITY_REGEX}'")]
    FormatWrong,
    /// The suffix is not one of the known SI suffixes or an exponent.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// The value is too large in magnitude to be held exactly.
    #[error("quantity is too large: its magnitude must stay below 1.7e29")]
    OutOfRange,
}

impl Format {
    /// Upstream's name for the format: `"DecimalSI"`, `"BinarySI"` or `"DecimalExponent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::DecimalSI => "DecimalSI",
            Format::BinarySI => "BinarySI",
            Format::DecimalExponent => "DecimalExponent",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Quantity {
    /// The largest quantity this type holds: `i128::MAX` nano-units (about 1.7e29).
    pub const MAX: Quantity = Quantity {
        nanos: i128::MAX,
        format: Format::DecimalSI,
    };

    /// Parses a quantity as upstream's `ParseQuantity` does (see the module docs).
    ///
    /// Leading or trailing whitespace is an error, as upstream.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        parse_quantity(s)
    }

    /// Reads the string held in a `k8s-openapi` quantity.
    pub fn from_k8s(q: &K8sQuantity) -> Result<Self, QuantityError> {
        Self::parse(&q.0)
    }

    /// The `k8s-openapi` quantity holding this one's canonical string.
    pub fn to_k8s(&self) -> K8sQuantity {
        K8sQuantity(self.canonical())
    }

    /// Zero, in the decimal SI format.
    pub fn zero() -> Self {
        Self::default()
    }

    /// Whether the value is zero (whatever the format).
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The format [`Quantity::canonical`] prints with.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The same value printed in another format.
    pub fn with_format(self, format: Format) -> Self {
        Self { format, ..self }
    }

    /// The exact value in nano-units (10⁻⁹).
    pub fn nano_value(&self) -> i128 {
        self.nanos
    }

    /// The value times 1000, rounded away from zero, as upstream's `MilliValue`.
    pub fn milli_value(&self) -> i128 {
        div_away_from_zero(self.nanos, 1_000_000)
    }

    /// The value rounded away from zero to a whole number, as upstream's `Value`.
    pub fn value(&self) -> i128 {
        div_away_from_zero(self.nanos, NANOS_PER_UNIT)
    }

    /// A quantity of `nanos` nano-units; `None` if `nanos` is `i128::MIN`.
    pub fn from_nanos(nanos: i128, format: Format) -> Option<Self> {
        (nanos != i128::MIN).then_some(Self { nanos, format })
    }

    /// A quantity of `m` thousandths. Values beyond [`Quantity::MAX`] saturate.
    pub fn from_milli(m: i128, format: Format) -> Self {
        Self::saturating(m, 1_000_000, format)
    }

    /// A quantity of `v` units. Values beyond [`Quantity::MAX`] saturate.
    pub fn from_value(v: i128, format: Format) -> Self {
        Self::saturating(v, NANOS_PER_UNIT, format)
    }

    /// `self + other`, or `None` if the sum does not fit. The result keeps
    /// `self`'s format unless `self` is zero, as upstream's `Add`.
    pub fn checked_add(&self, other: &Self) -> Option<Self> {
        let nanos = self.nanos.checked_add(other.nanos)?;
        Self::from_nanos(nanos, self.combined_format(other))
    }

    /// `self - other`, or `None` if the difference does not fit. The result
    /// keeps `self`'s format unless `self` is zero, as upstream's `Sub`.
    pub fn checked_sub(&self, other: &Self) -> Option<Self> {
        let nanos = self.nanos.checked_sub(other.nanos)?;
        Self::from_nanos(nanos, self.combined_format(other))
    }

    /// `self * factor`, or `None` if the product does not fit.
    pub fn checked_mul(&self, factor: i128) -> Option<Self> {
        let nanos = self.nanos.checked_mul(factor)?;
        Self::from_nanos(nanos, self.format)
    }

    /// The canonical string, as upstream's `String()`: the largest suffix that
    /// keeps the number whole, in the quantity's format (see the module docs).
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".to_owned();
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.unsigned_abs();
        let binary_units = (magnitude >= 1024 * NANOS_PER_UNIT as u128
            && magnitude.is_multiple_of(NANOS_PER_UNIT as u128))
        .then_some(magnitude / NANOS_PER_UNIT as u128);
        match (self.format, binary_units) {
            (Format::BinarySI, Some(mut units)) => {
                let mut power = 0;
                while power + 1 < BINARY_SUFFIXES.len() && units.is_multiple_of(1024) {
                    units /= 1024;
                    power += 1;
                }
                format!("{sign}{units}{}", BINARY_SUFFIXES[power])
            }
            (Format::DecimalExponent, _) => {
                let (mantissa, exponent) = decimal_mantissa(magnitude);
                if exponent == 0 {
                    format!("{sign}{mantissa}")
                } else {
                    format!("{sign}{mantissa}e{exponent}")
                }
            }
            // DecimalSI, and BinarySI values that are fractional or below 1024.
            _ => {
                let (mut mantissa, mut exponent) = decimal_mantissa(magnitude);
                if exponent > 18 {
                    // Past `E` there is no suffix: keep `E` and grow the number.
                    // It fits, since it is no larger than the magnitude itself.
                    mantissa *= 10u128.pow((exponent - 18) as u32);
                    exponent = 18;
                }
                let suffix = DECIMAL_SUFFIXES
                    .iter()
                    .find(|(e, _)| *e == exponent)
                    .map_or("", |(_, s)| s);
                format!("{sign}{mantissa}{suffix}")
            }
        }
    }

    fn saturating(value: i128, scale: i128, format: Format) -> Self {
        let nanos = value
            .checked_mul(scale)
            .unwrap_or(if value < 0 { -i128::MAX } else { i128::MAX })
            .max(-i128::MAX);
        Self { nanos, format }
    }

    fn combined_format(&self, other: &Self) -> Format {
        if self.is_zero() {
            other.format
        } else {
            self.format
        }
    }
}

/// `n / d` rounded away from zero; `d` is positive.
fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let (q, r) = (n / d, n % d);
    match r.signum() {
        1 => q + 1,
        -1 => q - 1,
        _ => q,
    }
}

/// Splits a non-zero magnitude in nano-units into `mantissa × 10^exponent`
/// with the exponent a multiple of three and as large as possible.
fn decimal_mantissa(nanos: u128) -> (u128, i32) {
    let mut mantissa = nanos;
    let mut exponent: i32 = -9;
    while mantissa.is_multiple_of(10) {
        mantissa /= 10;
        exponent += 1;
    }
    // Step back down to a multiple of three; this never exceeds `nanos`.
    while exponent.rem_euclid(3) != 0 {
        mantissa *= 10;
        exponent -= 1;
    }
    (mantissa, exponent)
}

/// The pieces of a quantity string, as upstream's scanner splits them.
struct Scanned<'a> {
    negative: bool,
    /// Integer digits, leading zeros included.
    integer: &'a str,
    /// Fraction digits after the `.`.
    fraction: &'a str,
    suffix: &'a str,
}

/// Splits `s` into sign, number and suffix, following upstream's
/// `parseQuantityString` but requiring a number, as its regular expression does.
fn scan(s: &str) -> Result<Scanned<'_>, QuantityError> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            pos += 1;
            true
        }
        Some(b'+') => {
            pos += 1;
            false
        }
        _ => false,
    };
    let digits_from = |from: usize| {
        bytes[from..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(bytes.len(), |n| from + n)
    };
    let number_start = pos;
    let integer_end = digits_from(pos);
    let integer = &s[pos..integer_end];
    pos = integer_end;
    let mut fraction = "";
    if bytes.get(pos) == Some(&b'.') {
        let fraction_end = digits_from(pos + 1);
        fraction = &s[pos + 1..fraction_end];
        pos = fraction_end;
    }
    if pos == number_start {
        return Err(QuantityError::FormatWrong);
    }
    let suffix_start = pos;
    while pos < bytes.len() && b"eEinumkKMGTP".contains(&bytes[pos]) {
        pos += 1;
    }
    if matches!(bytes.get(pos), Some(b'+' | b'-')) {
        pos += 1;
    }
    if digits_from(pos) != bytes.len() {
        return Err(QuantityError::FormatWrong);
    }
    Ok(Scanned {
        negative,
        integer,
        fraction,
        suffix: &s[suffix_start..],
    })
}

/// What a suffix means: the value is multiplied by `1024^binary_power × 10^decimal_exponent`.
struct Suffix {
    format: Format,
    binary_power: u32,
    decimal_exponent: i64,
}

fn interpret_suffix(suffix: &str) -> Result<Suffix, QuantityError> {
    if let Some(&(exponent, _)) = DECIMAL_SUFFIXES.iter().find(|(_, s)| *s == suffix) {
        return Ok(Suffix {
            format: Format::DecimalSI,
            binary_power: 0,
            decimal_exponent: exponent.into(),
        });
    }
    if let Some(power) = BINARY_SUFFIXES[1..].iter().position(|s| *s == suffix) {
        return Ok(Suffix {
            format: Format::BinarySI,
            binary_power: power as u32 + 1,
            decimal_exponent: 0,
        });
    }
    match suffix.strip_prefix(['e', 'E']) {
        Some(exponent) if !exponent.is_empty() => Ok(Suffix {
            format: Format::DecimalExponent,
            binary_power: 0,
            decimal_exponent: exponent.parse().map_err(|_| QuantityError::Suffix)?,
        }),
        _ => Err(QuantityError::Suffix),
    }
}

fn parse_quantity(s: &str) -> Result<Quantity, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::FormatWrong);
    }
    let scanned = scan(s)?;
    let suffix = interpret_suffix(scanned.suffix)?;
    let mut format = suffix.format;

    // All significant digits, most significant first, without leading zeros.
    let mut digits: Vec<u8> = scanned
        .integer
        .bytes()
        .chain(scanned.fraction.bytes())
        .skip_while(|&b| b == b'0')
        .map(|b| b - b'0')
        .collect();
    if digits.is_empty() {
        return Ok(Quantity { nanos: 0, format });
    }
    if suffix.binary_power > 0 {
        multiply_digits(&mut digits, 1u64 << (10 * suffix.binary_power));
    }
    // The value in nano-units is `digits × 10^shift`.
    let shift = i128::from(suffix.decimal_exponent) + 9 - scanned.fraction.len() as i128;
    let magnitude = match scale_digits(&digits, shift) {
        Some(m) => m,
        None if format == Format::BinarySI => MAX_BINARY_NANOS as u128,
        None => return Err(QuantityError::OutOfRange),
    };
    let mut magnitude = i128::try_from(magnitude).map_err(|_| QuantityError::OutOfRange)?;
    if format == Format::BinarySI {
        magnitude = magnitude.min(MAX_BINARY_NANOS);
        if magnitude < NANOS_PER_UNIT {
            format = Format::DecimalSI;
        }
    }
    let nanos = if scanned.negative {
        -magnitude
    } else {
        magnitude
    };
    Ok(Quantity { nanos, format })
}

/// Multiplies a decimal digit string (most significant first) by `factor` in place.
fn multiply_digits(digits: &mut Vec<u8>, factor: u64) {
    let mut carry: u128 = 0;
    for digit in digits.iter_mut().rev() {
        let t = u128::from(*digit) * u128::from(factor) + carry;
        *digit = (t % 10) as u8;
        carry = t / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

/// `digits × 10^shift` rounded up (away from zero), or `None` if it exceeds `u128`.
/// `digits` has no leading zeros and is not empty.
fn scale_digits(digits: &[u8], shift: i128) -> Option<u128> {
    let trailing_zeros = digits.iter().rev().take_while(|&&d| d == 0).count();
    let digits = &digits[..digits.len() - trailing_zeros];
    let shift = shift + trailing_zeros as i128;
    let to_int = |ds: &[u8]| {
        ds.iter().try_fold(0u128, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u128::from(d))
        })
    };
    if shift >= 0 {
        if digits.len() as i128 + shift > 40 {
            return None;
        }
        to_int(digits)?.checked_mul(10u128.checked_pow(shift as u32)?)
    } else {
        if -shift >= digits.len() as i128 {
            return Some(1);
        }
        let dropped = (-shift) as usize;
        // The last digit kept in `digits` is non-zero, so something is dropped: round up.
        to_int(&digits[..digits.len() - dropped])?.checked_add(1)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quantity({:?}, {})", self.canonical(), self.format)
    }
}

/// Prints [`Quantity::canonical`].
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.canonical())
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::ops::Neg for Quantity {
    type Output = Quantity;

    fn neg(self) -> Quantity {
        // Cannot overflow: `nanos` is never `i128::MIN`.
        Quantity {
            nanos: -self.nanos,
            format: self.format,
        }
    }
}

impl TryFrom<&K8sQuantity> for Quantity {
    type Error = QuantityError;

    fn try_from(q: &K8sQuantity) -> Result<Self, Self::Error> {
        Self::from_k8s(q)
    }
}

impl From<&Quantity> for K8sQuantity {
    fn from(q: &Quantity) -> Self {
        q.to_k8s()
    }
}

/// Serializes as the canonical string.
impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical())
    }
}

/// Accepts a quantity string (surrounding whitespace is trimmed, as upstream's
/// `UnmarshalJSON`) or a JSON number.
impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity such as \"500m\" or \"1Gi\", or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        Quantity::parse(v.trim()).map_err(|e| E::custom(format_args!("quantity {v:?}: {e}")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        Ok(Quantity::from_value(v.into(), Format::DecimalSI))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        Ok(Quantity::from_value(v.into(), Format::DecimalSI))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        if !v.is_finite() {
            return Err(E::custom(format_args!("quantity {v}: not a finite number")));
        }
        // `Display` for f64 prints the shortest exact decimal, never an exponent.
        self.visit_str(&v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    /// (input, canonical form, format kept), mostly from upstream's quantity_test.go.
    const CANONICAL: &[(&str, &str, Format)] = &[
        ("0", "0", Format::DecimalSI),
        ("0n", "0", Format::DecimalSI),
        ("0u", "0", Format::DecimalSI),
        ("0m", "0", Format::DecimalSI),
        ("0Ki", "0", Format::BinarySI),
        ("0k", "0", Format::DecimalSI),
        ("0Mi", "0", Format::BinarySI),
        ("0Ti", "0", Format::BinarySI),
        ("00", "0", Format::DecimalSI),
        (".", "0", Format::DecimalSI),
        ("1", "1", Format::DecimalSI),
        // Binary suffixes.
        ("1Ki", "1Ki", Format::BinarySI),
        ("8Ki", "8Ki", Format::BinarySI),
        ("7Mi", "7Mi", Format::BinarySI),
        ("6Gi", "6Gi", Format::BinarySI),
        ("5Ti", "5Ti", Format::BinarySI),
        ("4Pi", "4Pi", Format::BinarySI),
        ("3Ei", "3Ei", Format::BinarySI),
        ("10Ti", "10Ti", Format::BinarySI),
        ("100Ti", "100Ti", Format::BinarySI),
        ("1024Mi", "1Gi", Format::BinarySI),
        ("1.5Gi", "1536Mi", Format::BinarySI),
        ("1Gi", "1Gi", Format::BinarySI),
        // Decimal suffixes.
        ("5n", "5n", Format::DecimalSI),
        ("4u", "4u", Format::DecimalSI),
        ("3m", "3m", Format::DecimalSI),
        ("9", "9", Format::DecimalSI),
        ("8k", "8k", Format::DecimalSI),
        ("50k", "50k", Format::DecimalSI),
        ("7M", "7M", Format::DecimalSI),
        ("6G", "6G", Format::DecimalSI),
        ("5T", "5T", Format::DecimalSI),
        ("40T", "40T", Format::DecimalSI),
        ("300T", "300T", Format::DecimalSI),
        ("2P", "2P", Format::DecimalSI),
        ("1E", "1E", Format::DecimalSI),
        ("12E", "12E", Format::DecimalSI),
        ("1000M", "1G", Format::DecimalSI),
        ("1000m", "1", Format::DecimalSI),
        ("0.1", "100m", Format::DecimalSI),
        ("1.5", "1500m", Format::DecimalSI),
        ("1.08", "1080m", Format::DecimalSI),
        ("1080000000n", "1080m", Format::DecimalSI),
        ("1000u", "1m", Format::DecimalSI),
        ("0.001T", "1G", Format::DecimalSI),
        // Decimal exponents.
        ("1E-3", "1e-3", Format::DecimalExponent),
        ("1e3", "1e3", Format::DecimalExponent),
        ("1E6", "1e6", Format::DecimalExponent),
        ("1e9", "1e9", Format::DecimalExponent),
        ("1E12", "1e12", Format::DecimalExponent),
        ("1e15", "1e15", Format::DecimalExponent),
        ("1E18", "1e18", Format::DecimalExponent),
        ("12e6", "12e6", Format::DecimalExponent),
        ("1e14", "100e12", Format::DecimalExponent),
        ("1e13", "10e12", Format::DecimalExponent),
        (".001e12", "1e9", Format::DecimalExponent),
        ("0.001e0", "1e-3", Format::DecimalExponent),
        ("1000e-12", "1e-9", Format::DecimalExponent),
        ("80e-3", "80e-3", Format::DecimalExponent),
        ("1e0", "1", Format::DecimalExponent),
        ("100.035k", "100035", Format::DecimalSI),
        // Things that look like floating point.
        ("0.001", "1m", Format::DecimalSI),
        ("0.0005k", "500m", Format::DecimalSI),
        ("0.005", "5m", Format::DecimalSI),
        ("0.05", "50m", Format::DecimalSI),
        ("0.5", "500m", Format::DecimalSI),
        ("0.00050k", "500m", Format::DecimalSI),
        ("0.00500", "5m", Format::DecimalSI),
        ("0.5e0", "500e-3", Format::DecimalExponent),
        ("0.5e-1", "50e-3", Format::DecimalExponent),
        ("0.5e-2", "5e-3", Format::DecimalExponent),
        ("10.035M", "10035k", Format::DecimalSI),
        ("1.2e3", "1200", Format::DecimalExponent),
        ("1.3E+6", "1300e3", Format::DecimalExponent),
        ("1.40e9", "1400e6", Format::DecimalExponent),
        ("1.53E12", "1530e9", Format::DecimalExponent),
        ("1.6e15", "1600e12", Format::DecimalExponent),
        ("1.7E18", "1700e15", Format::DecimalExponent),
        ("9.01", "9010m", Format::DecimalSI),
        ("8.1k", "8100", Format::DecimalSI),
        ("7.123456M", "7123456", Format::DecimalSI),
        ("6.987654321G", "6987654321", Format::DecimalSI),
        ("5.444T", "5444G", Format::DecimalSI),
        ("40.1T", "40100G", Format::DecimalSI),
        ("300.2T", "300200G", Format::DecimalSI),
        ("2.5P", "2500T", Format::DecimalSI),
        ("1.01E", "1010P", Format::DecimalSI),
        // Precision beyond nanos rounds up.
        ("3.001n", "4n", Format::DecimalSI),
        ("1.1E-9", "2e-9", Format::DecimalExponent),
        ("0.0000000001", "1n", Format::DecimalSI),
        ("0.0000000005", "1n", Format::DecimalSI),
        ("0.00000000050", "1n", Format::DecimalSI),
        ("0.5e-9", "1e-9", Format::DecimalExponent),
        ("0.9n", "1n", Format::DecimalSI),
        ("0.00000012345", "124n", Format::DecimalSI),
        ("0.00000012354", "124n", Format::DecimalSI),
        ("1e-1000000", "1e-9", Format::DecimalExponent),
        // Binary values are capped at 2^63-1.
        ("9Ei", "9223372036854775807", Format::BinarySI),
        (
            "9223372036854775807Ki",
            "9223372036854775807",
            Format::BinarySI,
        ),
        ("8Ei", "9223372036854775807", Format::BinarySI),
        ("7Ei", "7Ei", Format::BinarySI),
        // Fractional binary values print in decimal.
        ("100.035Ki", "102435840m", Format::BinarySI),
        ("0.5Mi", "512Ki", Format::BinarySI),
        ("0.05Gi", "53687091200m", Format::BinarySI),
        ("0.025Ti", "27487790694400m", Format::BinarySI),
        ("1.5Ki", "1536", Format::BinarySI),
        ("1023Ki", "1023Ki", Format::BinarySI),
        (".001Ki", "1024m", Format::BinarySI),
        (".000001Ki", "1024u", Format::DecimalSI),
        (".000000001Ki", "1024n", Format::DecimalSI),
        ("0.000000000001Ki", "2n", Format::DecimalSI),
        // Things written by trolls.
        (".001", "1m", Format::DecimalSI),
        (".0001k", "100m", Format::DecimalSI),
        ("1.", "1", Format::DecimalSI),
        ("1.G", "1G", Format::DecimalSI),
        ("007", "7", Format::DecimalSI),
        // Beyond int64, from upstream's TestParseQuantity.
        (
            "999999999999999999.1",
            "999999999999999999100m",
            Format::DecimalSI,
        ),
        (
            "9999999999999999999",
            "9999999999999999999",
            Format::DecimalSI,
        ),
        ("1000000000000000000", "1E", Format::DecimalSI),
        (
            "1.0000000000000000001E",
            "1000000000000000000100m",
            Format::DecimalSI,
        ),
        (
            "1.000000000000000001E",
            "1000000000000000001",
            Format::DecimalSI,
        ),
        ("10000000000000000000000m", "10E", Format::DecimalSI),
        (
            "10.0000000000000000001E",
            "10000000000000000000100m",
            Format::DecimalSI,
        ),
        (
            "9223372036854775808.1",
            "9223372036854775808100m",
            Format::DecimalSI,
        ),
        (
            "9223372036854775807000m",
            "9223372036854775807",
            Format::DecimalSI,
        ),
        // Past the largest suffix the number grows (upstream drops the suffix).
        ("1000E", "1000E", Format::DecimalSI),
        ("1e21", "1e21", Format::DecimalExponent),
        ("1e29", "100e27", Format::DecimalExponent),
    ];

    #[test]
    fn parsing_then_printing_gives_upstreams_canonical_form() {
        for &(input, canonical, format) in CANONICAL {
            let parsed = q(input);
            assert_eq!(parsed.canonical(), canonical, "canonical form of {input:?}");
            assert_eq!(parsed.format(), format, "format of {input:?}");
            assert_eq!(parsed.to_string(), canonical, "Display of {input:?}");
            assert_eq!(q(canonical), parsed, "{canonical:?} reparsed");
        }
    }

    #[test]
    fn negative_and_explicitly_positive_inputs_mirror_the_table() {
        for &(input, canonical, format) in CANONICAL {
            let negative = q(&format!("-{input}"));
            let expected = if canonical == "0" {
                "0".to_owned()
            } else {
                format!("-{canonical}")
            };
            assert_eq!(negative.canonical(), expected, "canonical form of -{input}");
            assert_eq!(negative.format(), format, "format of -{input}");
            assert_eq!(negative, -q(input));
            assert_eq!(q(&format!("+{input}")), q(input));
        }
    }

    #[test]
    fn malformed_quantities_are_rejected_with_upstreams_messages() {
        let cases = [
            ("", QuantityError::FormatWrong),
            ("1.2.3", QuantityError::FormatWrong),
            ("1.1.M", QuantityError::FormatWrong),
            ("1+1.0M", QuantityError::FormatWrong),
            ("1Z", QuantityError::FormatWrong),
            ("1 Gi", QuantityError::FormatWrong),
            (" 1", QuantityError::FormatWrong),
            ("1 ", QuantityError::FormatWrong),
            ("aoeu", QuantityError::FormatWrong),
            ("0.1am", QuantityError::FormatWrong),
            ("Mi", QuantityError::FormatWrong),
            ("k", QuantityError::FormatWrong),
            ("e3", QuantityError::FormatWrong),
            ("-", QuantityError::FormatWrong),
            ("+", QuantityError::FormatWrong),
            ("--1", QuantityError::FormatWrong),
            ("+-1", QuantityError::FormatWrong),
            ("1e3.5", QuantityError::FormatWrong),
            ("0.1mi", QuantityError::Suffix),
            (".5i", QuantityError::Suffix),
            ("1i", QuantityError::Suffix),
            ("-3.01i", QuantityError::Suffix),
            ("-3.01e-", QuantityError::Suffix),
            ("1e", QuantityError::Suffix),
            ("1KI", QuantityError::FormatWrong),
            ("1kk", QuantityError::Suffix),
            ("1e99999999999999999999", QuantityError::Suffix),
            ("1e30", QuantityError::OutOfRange),
            ("-1e30", QuantityError::OutOfRange),
            ("1000000000000000000000000000000", QuantityError::OutOfRange),
        ];
        for (input, expected) in cases {
            assert_eq!(Quantity::parse(input), Err(expected), "{input:?}");
        }
        assert_eq!(
            QuantityError::FormatWrong.to_string(),
            "quantities must match the regular expression \
             '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(
            QuantityError::Suffix.to_string(),
            "unable to parse quantity's suffix"
        );
    }

    #[test]
    fn zero_with_a_huge_exponent_is_still_zero() {
        assert!(q("0e999999").is_zero());
        assert!(q("0.000E").is_zero());
    }

    #[test]
    fn comparison_is_numeric_and_ignores_the_format() {
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1Ki"), q("1024"));
        assert!(q("10000T") > q("100Gi"));
        assert!(q("100m") > q("50m"));
        assert!(q("-1") < q("0"));
        assert!(q("-1Ki") < q("-1k"));
        assert_eq!(q("0"), Quantity::zero());
        assert_eq!(q("0Ki"), q("-0"));
        let mut sorted = [q("1Gi"), q("1"), q("-5m"), q("1G"), q("500m")];
        sorted.sort();
        let printed: Vec<String> = sorted.iter().map(Quantity::canonical).collect();
        assert_eq!(printed, ["-5m", "500m", "1", "1G", "1Gi"]);
    }

    #[test]
    fn equal_quantities_hash_alike() {
        use std::collections::HashSet;
        let set: HashSet<Quantity> = [q("1000m"), q("1"), q("1e0")].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn addition_and_subtraction_are_exact_and_keep_the_left_format() {
        let sum = q("100m").checked_add(&q("900m")).unwrap();
        assert_eq!(sum.canonical(), "1");
        let sum = q("1Gi").checked_add(&q("512Mi")).unwrap();
        assert_eq!(sum.canonical(), "1536Mi");
        let sum = q("0.1").checked_add(&q("0.2")).unwrap();
        assert_eq!(sum, q("0.3"));
        let diff = q("1").checked_sub(&q("1n")).unwrap();
        assert_eq!(diff.canonical(), "999999999n");
        let diff = q("10").checked_sub(&q("1Ki")).unwrap();
        assert_eq!(diff.canonical(), "-1014");
        // Adding to zero takes the other side's format, as upstream.
        assert_eq!(
            Quantity::zero().checked_add(&q("1Gi")).unwrap().canonical(),
            "1Gi"
        );
        assert_eq!(
            q("1Gi").checked_add(&Quantity::zero()).unwrap().canonical(),
            "1Gi"
        );
        assert_eq!(q("100m").checked_add(&q("0")).unwrap().canonical(), "100m");
        assert_eq!(
            Quantity::zero().checked_sub(&q("1Gi")).unwrap().canonical(),
            "-1Gi"
        );
        assert_eq!(
            Quantity::from_value(10, Format::BinarySI)
                .checked_add(&q("1"))
                .unwrap()
                .format(),
            Format::BinarySI
        );
        assert_eq!((-q("9.01")).canonical(), "-9010m");
        assert_eq!(-(-q("9.01")), q("9.01"));
        assert_eq!(q("1.5").checked_mul(-2).unwrap(), q("-3"));
    }

    #[test]
    fn arithmetic_that_overflows_returns_none() {
        assert_eq!(Quantity::MAX.checked_add(&q("1n")), None);
        assert_eq!((-Quantity::MAX).checked_sub(&q("1n")), None);
        assert_eq!(Quantity::MAX.checked_mul(2), None);
        assert_eq!(
            Quantity::MAX
                .checked_sub(&q("1n"))
                .map(|x| x < Quantity::MAX),
            Some(true)
        );
    }

    #[test]
    fn values_round_away_from_zero_as_upstream() {
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("-1n").milli_value(), -1);
        assert_eq!(q("1.5").value(), 2);
        assert_eq!(q("-1.5").value(), -2);
        assert_eq!(q("100m").value(), 1);
        assert_eq!(q("2Gi").value(), 2 * 1024 * 1024 * 1024);
        assert_eq!(q("250m").milli_value(), 250);
        assert_eq!(q("0").value(), 0);
        assert_eq!(q("1e-1000").nano_value(), 1);
    }

    #[test]
    fn constructors_print_like_upstreams_new_quantity() {
        let cases = [
            (Quantity::from_value(1, Format::DecimalSI), "1"),
            (Quantity::from_value(1000, Format::DecimalSI), "1k"),
            (Quantity::from_value(1_234_000, Format::DecimalSI), "1234k"),
            (Quantity::from_value(1024, Format::BinarySI), "1Ki"),
            (
                Quantity::from_value(1_000_000, Format::DecimalExponent),
                "1e6",
            ),
            (Quantity::from_value(1024 * 1024, Format::BinarySI), "1Mi"),
            (Quantity::from_value(5, Format::BinarySI), "5"),
            (Quantity::from_value(1025, Format::BinarySI), "1025"),
            (Quantity::from_milli(1, Format::DecimalSI), "1m"),
            (Quantity::from_milli(1000, Format::DecimalSI), "1"),
            (Quantity::from_milli(1_234_000, Format::DecimalSI), "1234"),
            (Quantity::from_milli(1024, Format::BinarySI), "1024m"),
            (
                Quantity::from_milli(1_000_000, Format::DecimalExponent),
                "1e3",
            ),
            (
                Quantity::from_milli(1024 * 1024, Format::BinarySI),
                "1048576m",
            ),
            (Quantity::from_milli(500, Format::BinarySI), "500m"),
            (
                Quantity::from_milli(1_234_567, Format::BinarySI),
                "1234567m",
            ),
            (Quantity::from_value(0, Format::BinarySI), "0"),
            (
                Quantity::from_value(1024_i128.pow(7), Format::BinarySI),
                "1024Ei",
            ),
        ];
        for (quantity, expected) in cases {
            assert_eq!(quantity.canonical(), expected, "{quantity:?}");
        }
        assert_eq!(
            Quantity::from_value(i128::MAX, Format::DecimalSI),
            Quantity::MAX
        );
        assert_eq!(
            Quantity::from_milli(i128::MIN, Format::DecimalSI),
            -Quantity::MAX
        );
        assert_eq!(Quantity::from_nanos(i128::MIN, Format::DecimalSI), None);
    }

    #[test]
    fn k8s_quantities_convert_both_ways() {
        let k8s = K8sQuantity("1.5Gi".to_owned());
        let parsed = Quantity::from_k8s(&k8s).unwrap();
        assert_eq!(parsed.to_k8s(), K8sQuantity("1536Mi".to_owned()));
        assert_eq!(
            Quantity::from_k8s(&K8sQuantity("1 Gi".to_owned())),
            Err(QuantityError::FormatWrong)
        );
    }

    #[test]
    fn serde_uses_the_canonical_string_and_accepts_numbers() {
        assert_eq!(serde_json::to_string(&q("1.5Gi")).unwrap(), "\"1536Mi\"");
        let cases = [
            ("\"1.5Gi\"", "1536Mi"),
            ("\" 100m \"", "100m"),
            ("2", "2"),
            ("-3", "-3"),
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("1e3", "1k"),
        ];
        for (json, expected) in cases {
            let parsed: Quantity = serde_json::from_str(json).unwrap();
            assert_eq!(parsed.canonical(), expected, "{json}");
        }
        let err = serde_json::from_str::<Quantity>("\"1Z\"").unwrap_err();
        assert!(err.to_string().contains("quantities must match"), "{err}");
        assert!(serde_json::from_str::<Quantity>("true").is_err());
    }

    fn any_format() -> impl Strategy<Value = Format> {
        prop_oneof![
            Just(Format::DecimalSI),
            Just(Format::BinarySI),
            Just(Format::DecimalExponent)
        ]
    }

    /// Nano values shaped like real quantities: small numbers times a power of ten
    /// or of 1024, and arbitrary ones. Binary-format values stay under upstream's
    /// 2^63-1 cap, which parsing applies.
    fn any_quantity() -> impl Strategy<Value = Quantity> {
        let nanos = prop_oneof![
            (-(i64::MAX as i128)..=i64::MAX as i128, 0u32..=9)
                .prop_map(|(n, scale)| n * 10i128.pow(scale)),
            (-10_000i128..10_000, 0u32..=28).prop_map(|(n, e)| n * 10i128.pow(e)),
            (-10_000i128..10_000, 0u32..=6).prop_map(|(n, p)| n * 1024i128.pow(p) * NANOS_PER_UNIT),
            -MAX_BINARY_NANOS..=MAX_BINARY_NANOS,
            (-i128::MAX..=i128::MAX),
        ];
        (nanos, any_format()).prop_map(|(nanos, format)| {
            let format = if format == Format::BinarySI && nanos.abs() > MAX_BINARY_NANOS {
                Format::DecimalSI
            } else {
                format
            };
            Quantity::from_nanos(nanos, format).unwrap()
        })
    }

    proptest! {
        #[test]
        fn parsing_the_canonical_form_gives_back_the_quantity(quantity in any_quantity()) {
            let printed = quantity.canonical();
            let reparsed = Quantity::parse(&printed).unwrap();
            prop_assert_eq!(reparsed, quantity);
            // A binary-format value printed without a binary suffix comes back
            // decimal (as upstream), so the printed form may change once, then never.
            let reprinted = reparsed.canonical();
            if quantity.format() != Format::BinarySI {
                prop_assert_eq!(&reprinted, &printed);
            }
            prop_assert_eq!(Quantity::parse(&reprinted).unwrap().canonical(), reprinted);
        }

        #[test]
        fn canonicalizing_is_idempotent_for_any_well_formed_input(
            sign in prop_oneof![Just(""), Just("-"), Just("+")],
            integer in "[0-9]{0,12}",
            fraction in proptest::option::of("[0-9]{0,12}"),
            suffix in prop_oneof![
                Just(String::new()),
                "[numkMGTPE]",
                "(Ki|Mi|Gi|Ti|Pi|Ei)",
                "[eE][+-]?[0-9]{1,2}",
            ],
        ) {
            let input = match &fraction {
                Some(fraction) => format!("{sign}{integer}.{fraction}{suffix}"),
                None => format!("{sign}{integer}{suffix}"),
            };
            prop_assume!(!integer.is_empty() || fraction.is_some());
            if let Ok(parsed) = Quantity::parse(&input) {
                let printed = parsed.canonical();
                let reparsed = Quantity::parse(&printed).unwrap();
                prop_assert_eq!(reparsed, parsed, "{} printed as {}", input, printed);
                let reprinted = reparsed.canonical();
                prop_assert_eq!(Quantity::parse(&reprinted).unwrap().canonical(), reprinted);
            } else {
                // Only values too large for 128 bits fail.
                prop_assert!(suffix.starts_with(['e', 'E']) || integer.len() >= 9, "{}", input);
            }
        }

        #[test]
        fn addition_then_subtraction_cancels(a in any_quantity(), b in any_quantity()) {
            if let Some(sum) = a.checked_add(&b) {
                prop_assert_eq!(sum.checked_sub(&b), Some(a));
                prop_assert_eq!(sum.cmp(&a), b.nano_value().cmp(&0));
            }
        }
    }
}
