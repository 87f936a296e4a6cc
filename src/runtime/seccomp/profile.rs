//! docker's JSON seccomp profile format (`--security-opt seccomp=FILE`, and
//! our default in `default.json`), and the rules it yields for one
//! container: `includes`/`excludes` are decided against the container's
//! capabilities, the host's architecture and its kernel. Pure logic.

use serde::Deserialize;

use super::SeccompError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// The older form: architectures to filter, listed flat.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// The newer form: for the host's architecture, the ones its processes
    /// may also use (x86 and x32 beside x86_64).
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    #[serde(default)]
    pub names: Vec<String>,
    /// docker's oldest form: one name.
    #[serde(default)]
    pub name: Option<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<Arg>,
    #[serde(default)]
    pub includes: Condition,
    #[serde(default)]
    pub excludes: Condition,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default)]
    pub caps: Vec<String>,
    /// Go's names (amd64, arm64, …), as docker writes them.
    #[serde(default)]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// What a rule is decided against.
#[derive(Clone, Debug)]
pub struct Host<'a> {
    /// The container's capabilities (`CAP_…`).
    pub capabilities: &'a [String],
    /// The host's architecture in Go's naming (amd64, arm64, …).
    pub arch: &'static str,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Host<'_> {
    /// This machine, for a container with `capabilities`.
    pub fn native(capabilities: &[String]) -> Host<'_> {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        let kernel = nix::sys::utsname::uname()
            .ok()
            .and_then(|u| parse_kernel(&u.release().to_string_lossy()))
            .unwrap_or((0, 0));
        Host {
            capabilities,
            arch,
            kernel,
        }
    }
}

/// `major.minor` from a kernel release (`6.1.0-28-amd64`) or a profile's
/// `minKernel` (`4.8`).
pub fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map(|m| m.parse().ok()).unwrap_or(Some(0))?;
    Some((major, minor))
}

impl Profile {
    pub fn parse(json: &str) -> Result<Profile, SeccompError> {
        serde_json::from_str(json).map_err(|e| SeccompError::InvalidProfile(e.to_string()))
    }

    /// The rules that apply on `host`, in the profile's order.
    pub fn rules_for<'p>(&'p self, host: &Host) -> Result<Vec<&'p SyscallRule>, SeccompError> {
        let mut rules = Vec::new();
        for rule in &self.syscalls {
            if rule.names.is_empty() && rule.name.is_none() {
                return Err(SeccompError::InvalidProfile("a syscall rule names no syscall".into()));
            }
            if rule.includes.holds(host, true)? && !rule.excludes.holds(host, false)? {
                rules.push(rule);
            }
        }
        Ok(rules)
    }
}

impl SyscallRule {
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str).chain(self.name.as_deref())
    }
}

impl Condition {
    /// As docker decides: an `includes` holds when every capability it
    /// lists is held, the host's architecture is listed and the kernel is
    /// recent enough (an empty field always holds); an `excludes` holds when
    /// any one of its fields does (an empty field never does).
    fn holds(&self, host: &Host, includes: bool) -> Result<bool, SeccompError> {
        let min_kernel = match &self.min_kernel {
            Some(k) => Some(parse_kernel(k).ok_or_else(|| {
                SeccompError::InvalidProfile(format!("minKernel {k:?} is not a kernel version such as 4.8"))
            })?),
            None => None,
        };
        let has_cap = |c: &String| host.capabilities.iter().any(|held| held.eq_ignore_ascii_case(c));
        let arch_listed = self.arches.iter().any(|a| a == host.arch);
        let kernel_ok = min_kernel.map(|k| host.kernel >= k);
        Ok(if includes {
            self.caps.iter().all(has_cap) && (self.arches.is_empty() || arch_listed) && kernel_ok.unwrap_or(true)
        } else {
            self.caps.iter().any(has_cap) || arch_listed || kernel_ok == Some(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(caps: &[String]) -> Host<'_> {
        Host {
            capabilities: caps,
            arch: "amd64",
            kernel: (6, 1),
        }
    }

    fn names(rules: &[&SyscallRule]) -> Vec<String> {
        rules.iter().flat_map(|r| r.all_names().map(str::to_string)).collect()
    }

    #[test]
    fn includes_and_excludes_follow_capabilities_arch_and_kernel() {
        let profile = Profile::parse(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "9.0"}},
                {"name": "old", "action": "SCMP_ACT_ALLOW"}
            ]}"#,
        )
        .unwrap();
        let plain = profile.rules_for(&host(&[])).unwrap();
        assert_eq!(names(&plain), ["read", "clone3", "arch_prctl", "ptrace", "old"]);
        let admin = ["CAP_SYS_ADMIN".to_string()];
        let admin = profile.rules_for(&host(&admin)).unwrap();
        assert_eq!(names(&admin), ["read", "mount", "arch_prctl", "ptrace", "old"]);
    }

    #[test]
    fn the_default_profile_parses_and_gates_namespaces_on_sys_admin() {
        let profile = Profile::parse(super::super::DEFAULT_PROFILE).unwrap();
        let plain = names(&profile.rules_for(&host(&[])).unwrap());
        for denied in [
            "mount",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "reboot",
            "bpf",
            "kexec_load",
        ] {
            assert!(!plain.iter().any(|n| n == denied), "{denied} is allowed by default");
        }
        assert!(plain.iter().any(|n| n == "read") && plain.iter().any(|n| n == "clone"));
        let admin = ["CAP_SYS_ADMIN".to_string()];
        let admin = names(&profile.rules_for(&host(&admin)).unwrap());
        assert!(admin.iter().any(|n| n == "mount") && admin.iter().any(|n| n == "unshare"));
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(Profile::parse("{").is_err());
        assert!(Profile::parse(r#"{"syscalls": []}"#).is_err());
        let nameless =
            Profile::parse(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#)
                .unwrap();
        assert!(nameless.rules_for(&host(&[])).is_err());
        assert_eq!(parse_kernel("6.1.0-28-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel("4"), Some((4, 0)));
        assert_eq!(parse_kernel("x"), None);
    }
}
