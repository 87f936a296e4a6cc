//! Readable random names for containers created without `--name`, in
//! docker's adjective_surname style, and docker's rule for valid names.

use super::error::ContainerError;
use crate::error::Result;

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "brave", "calm", "clever", "cool", "crisp", "eager", "fervent", "gentle", "happy", "jolly",
    "keen", "kind", "lucid", "merry", "nimble", "noble", "patient", "quiet", "quirky", "serene", "sharp", "steady",
    "swift", "tender", "trusting", "vibrant", "wise", "zealous",
];

const SURNAMES: &[&str] = &[
    "allen", "babbage", "bell", "curie", "darwin", "dijkstra", "euler", "faraday", "gauss", "hopper", "hypatia",
    "kepler", "knuth", "lamport", "liskov", "lovelace", "mccarthy", "meitner", "newton", "noether", "pascal",
    "ritchie", "shannon", "thompson", "torvalds", "turing", "volta", "wilson", "wozniak", "yalow",
];

/// A random name; `attempt` > 0 adds a digit, as docker does on collision.
pub fn random(seed: &[u8], attempt: u32) -> String {
    let pick = |i: usize, n: usize| seed.get(i).copied().unwrap_or(0) as usize % n;
    let name = format!(
        "{}_{}",
        ADJECTIVES[pick(0, ADJECTIVES.len())],
        SURNAMES[pick(1, SURNAMES.len())]
    );
    if attempt == 0 {
        name
    } else {
        format!("{name}{attempt}")
    }
}

/// docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`; a leading `/` is accepted and dropped.
pub fn validate(name: &str) -> Result<String> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(ContainerError::InvalidName { name: name.into() }.into());
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = random(&[3, 7], 0);
        assert!(n.contains('_') && validate(&n).is_ok());
        assert_eq!(random(&[3, 7], 2), format!("{n}2"));
        assert_eq!(validate("/web-1").unwrap(), "web-1");
        for bad in ["", "a", "-x", "a b", "a/b", "_x"] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
