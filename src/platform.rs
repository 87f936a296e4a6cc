//! Platforms (`os/arch[/variant]`) and choosing one from an image index.
//! oci-client's own resolver ignores the variant, so selection lives here.

use std::fmt;

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(input: &str) -> Result<Self> {
        let parts: Vec<&str> = input.split('/').collect();
        let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(Error::InvalidPlatform {
                input: input.to_string(),
            }),
        }
    }

    fn new(os: &str, arch: &str, variant: Option<&str>) -> Self {
        // Accept the kernel's names for architectures as docker does.
        let arch = match arch {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            "armhf" => "arm",
            other => other,
        };
        Platform {
            os: os.to_string(),
            arch: arch.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// The platform this binary runs on.
    pub fn host() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            other => (other, None),
        };
        Platform::new("linux", arch, variant)
    }

    /// The variant an image means when it names none (arm64 → v8, arm → v7).
    fn normalized_variant(arch: &str, variant: Option<&str>) -> Option<String> {
        match (arch, variant) {
            ("arm64", None) => Some("v8".into()),
            ("arm", None) => Some("v7".into()),
            ("amd64", Some("v1")) | ("amd64", None) => None,
            (_, v) => v.map(str::to_string),
        }
    }

    /// Whether an index entry with this os/arch/variant satisfies `self`.
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        let other = Platform::new(os, arch, variant);
        self.os == other.os
            && self.arch == other.arch
            && Self::normalized_variant(&self.arch, self.variant.as_deref())
                == Self::normalized_variant(&other.arch, other.variant.as_deref())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(Platform::parse("linux/arm64/v8").unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(Platform::parse("linux/x86_64").unwrap().arch, "amd64");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn variants_normalise() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(arm64.matches("linux", "arm64", Some("v8")));
        assert!(arm64.matches("linux", "arm64", None));
        let armv6 = Platform::parse("linux/arm/v6").unwrap();
        assert!(!armv6.matches("linux", "arm", Some("v7")));
        assert!(!armv6.matches("linux", "arm", None));
        assert!(Platform::parse("linux/arm")
            .unwrap()
            .matches("linux", "arm", Some("v7")));
        assert!(Platform::host().matches("linux", "amd64", None) || cfg!(not(target_arch = "x86_64")));
    }
}
