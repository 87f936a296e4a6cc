//! seccomp: a container's system-call filter. A profile in docker's JSON
//! format (ours by default, `default.json`: the effect of docker's) is
//! compiled by libseccomp into a BPF program once, at create, and kept in
//! the container's config; PID 1 and every `exec` load that same program
//! last before their exec.

mod profile;

use std::io::{Read, Seek};
use std::os::fd::AsFd;
use std::path::Path;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use profile::{Host, Profile};

/// The default profile, in docker's format.
pub const DEFAULT_PROFILE: &str = include_str!("default.json");

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("invalid seccomp profile: {0}")]
    InvalidProfile(String),
    #[error("seccomp profile {path}: {source}")]
    ReadProfile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building the seccomp filter ({what}): {source}")]
    Build {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("exporting the seccomp filter: {0}")]
    Export(#[source] std::io::Error),
    #[error("loading the seccomp filter: {0}")]
    Load(#[source] nix::errno::Errno),
}

/// BPF_MAXINSNS: the kernel refuses a longer filter (at every start, were
/// it not refused at create).
const MAX_INSTRUCTIONS: usize = 4096;

/// Part of the cache key: a change to how profiles compile must not be
/// hidden by programs compiled before it.
const COMPILER_REVISION: &str = concat!(env!("CARGO_PKG_VERSION"), "/1");

/// A compiled filter: the kernel's `sock_filter` array.
#[derive(Clone, Debug, PartialEq)]
pub struct Program(Vec<nix::libc::sock_filter>);

impl Program {
    fn from_bytes(bytes: &[u8]) -> Result<Program, SeccompError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
            return Err(SeccompError::InvalidProfile(format!(
                "a compiled filter of {} bytes is not a BPF program",
                bytes.len()
            )));
        }
        if bytes.len() / 8 > MAX_INSTRUCTIONS {
            return Err(SeccompError::InvalidProfile(format!(
                "it compiles to {} instructions, over the kernel's limit of {MAX_INSTRUCTIONS}: allow or deny fewer calls",
                bytes.len() / 8
            )));
        }
        Ok(Program(
            bytes
                .chunks_exact(8)
                .map(|c| nix::libc::sock_filter {
                    code: u16::from_ne_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect(),
        ))
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 8);
        for f in &self.0 {
            out.extend(f.code.to_ne_bytes());
            out.extend([f.jt, f.jf]);
            out.extend(f.k.to_ne_bytes());
        }
        out
    }

    /// Instructions in the program.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Install the filter on this thread. Needs `no_new_privs` or
    /// CAP_SYS_ADMIN; everything after it runs filtered.
    pub fn load(&self) -> Result<(), SeccompError> {
        let prog = nix::libc::sock_fprog {
            len: self.0.len() as u16,
            filter: self.0.as_ptr() as *mut nix::libc::sock_filter,
        };
        // SAFETY: `prog` points at `len` valid instructions that outlive the
        // call; the kernel copies them.
        let rc = unsafe {
            nix::libc::prctl(
                nix::libc::PR_SET_SECCOMP,
                nix::libc::SECCOMP_MODE_FILTER,
                &prog as *const nix::libc::sock_fprog,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(SeccompError::Load(nix::errno::Errno::last()))
        }
    }
}

// Kept in config.json as base64, and in an exec's spec the same way.
impl Serialize for Program {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for Program {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Program, D::Error> {
        use base64::Engine;
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        Program::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// Compile `profile` (docker's JSON) for a container holding `capabilities`
/// on this machine.
pub fn compile(profile: &str, capabilities: &[String]) -> Result<Program, SeccompError> {
    let profile = Profile::parse(profile)?;
    let host = Host::native(capabilities);
    let build = |what: &str| {
        let what = what.to_string();
        move |source| SeccompError::Build { what, source }
    };
    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let mut filter = ScmpFilterContext::new(default).map_err(build("the default action"))?;
    // We set no_new_privs ourselves, when the container asks for it.
    filter.set_ctl_nnp(false).map_err(build("no_new_privs"))?;
    for arch in architectures(&profile)? {
        if !filter.is_arch_present(arch).map_err(build("architectures"))? {
            filter.add_arch(arch).map_err(build("architectures"))?;
        }
    }
    for rule in profile.rules_for(&host)? {
        let act = action(&rule.action, rule.errno_ret)?;
        // libseccomp refuses a rule that changes nothing.
        if act == default {
            continue;
        }
        let conditions = rule
            .args
            .iter()
            .map(|a| Ok((a.index, compare(a)?)))
            .collect::<Result<Vec<_>, SeccompError>>()?;
        for name in rule.all_names() {
            // A name this libseccomp does not know is a call this kernel
            // generation may not have: skipped, as docker does.
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            add_rule(&mut filter, act, syscall, &conditions).map_err(build(name))?;
        }
    }
    export(&filter)
}

/// The architectures a profile filters: the listed ones, or from `archMap`
/// the host's own with its sub-architectures.
fn architectures(profile: &Profile) -> Result<Vec<ScmpArch>, SeccompError> {
    let parse = |name: &String| {
        name.parse::<ScmpArch>()
            .map_err(|_| SeccompError::InvalidProfile(format!("unknown architecture {name:?}")))
    };
    let mut arches = profile.architectures.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
    let native = ScmpArch::native();
    for map in &profile.arch_map {
        if parse(&map.architecture)? == native {
            arches.push(native);
            for sub in &map.sub_architectures {
                arches.push(parse(sub)?);
            }
        }
    }
    Ok(arches)
}

/// One rule per syscall; libseccomp takes one comparison per argument in a
/// rule, so comparisons that share an argument become alternative rules
/// (as runc does).
fn add_rule(
    filter: &mut ScmpFilterContext,
    act: ScmpAction,
    syscall: ScmpSyscall,
    conditions: &[(u32, ScmpArgCompare)],
) -> Result<(), libseccomp::error::SeccompError> {
    if conditions.is_empty() {
        filter.add_rule(act, syscall)?;
        return Ok(());
    }
    let mut args: Vec<u32> = conditions.iter().map(|(index, _)| *index).collect();
    args.sort_unstable();
    args.dedup();
    let compares: Vec<ScmpArgCompare> = conditions.iter().map(|(_, c)| *c).collect();
    if args.len() == conditions.len() {
        filter.add_rule_conditional(act, syscall, &compares)?;
    } else {
        for c in compares {
            filter.add_rule_conditional(act, syscall, &[c])?;
        }
    }
    Ok(())
}

fn action(name: &str, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    let errno = errno.unwrap_or(nix::libc::EPERM as u32);
    let errno =
        i32::try_from(errno).map_err(|_| SeccompError::InvalidProfile(format!("errnoRet {errno} is too large")))?;
    // A notify action needs a listener, which mocker does not run.
    if name == "SCMP_ACT_NOTIFY" {
        return Err(SeccompError::InvalidProfile("SCMP_ACT_NOTIFY is not supported".into()));
    }
    ScmpAction::from_str(name, Some(errno))
        .map_err(|_| SeccompError::InvalidProfile(format!("unknown action {name:?}")))
}

fn compare(arg: &profile::Arg) -> Result<ScmpArgCompare, SeccompError> {
    let op = match arg.op.as_str() {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        // docker's form: value is the mask, valueTwo what the masked
        // argument must equal.
        "SCMP_CMP_MASKED_EQ" if arg.index <= 5 => {
            return Ok(ScmpArgCompare::new(
                arg.index,
                ScmpCompareOp::MaskedEqual(arg.value),
                arg.value_two,
            ))
        }
        other => return Err(SeccompError::InvalidProfile(format!("unknown operator {other:?}"))),
    };
    if arg.index > 5 {
        return Err(SeccompError::InvalidProfile(format!(
            "argument index {} is past the sixth",
            arg.index
        )));
    }
    Ok(ScmpArgCompare::new(arg.index, op, arg.value))
}

/// [`compile`], kept in `cache`: libseccomp takes ~14 ms for the default
/// profile (three architectures on x86_64), paid on every create without
/// it. Keyed by everything the program depends on: the profile, the
/// capabilities, the architecture, the kernel (`minKernel`) and
/// libseccomp's version. The cache is written atomically and only read
/// back as a whole program; one that cannot be written is not an error.
pub fn compile_cached(cache: &Path, profile: &str, capabilities: &[String]) -> Result<Program, SeccompError> {
    use sha2::Digest as _;
    let mut caps = capabilities.to_vec();
    caps.sort();
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let libseccomp = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut key = sha2::Sha256::new();
    for part in [
        profile,
        &caps.join(","),
        std::env::consts::ARCH,
        &kernel,
        &libseccomp,
        COMPILER_REVISION,
    ] {
        key.update(part.as_bytes());
        key.update([0]);
    }
    let path = cache.join(format!("{}.bpf", hex::encode(key.finalize())));
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(program) = Program::from_bytes(&bytes) {
            return Ok(program);
        }
    }
    let program = compile(profile, capabilities)?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let stored = std::fs::create_dir_all(cache)
        .and_then(|_| std::fs::set_permissions(cache, std::os::unix::fs::PermissionsExt::from_mode(0o700)))
        .and_then(|_| std::fs::write(&tmp, program.to_bytes()))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if stored.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(program)
}

/// libseccomp 2.5 exports only to a file descriptor: a memfd.
fn export(filter: &ScmpFilterContext) -> Result<Program, SeccompError> {
    let fd = nix::sys::memfd::memfd_create(c"mocker-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    filter.export_bpf(fd.as_fd()).map_err(|source| SeccompError::Build {
        what: "export".into(),
        source,
    })?;
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(SeccompError::Export)?;
    Program::from_bytes(&bytes)
}

impl From<SeccompError> for crate::Error {
    fn from(e: SeccompError) -> Self {
        crate::Error::Module(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_compiles_and_round_trips() {
        let caps: Vec<String> = crate::runtime::spec::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect();
        let program = compile(DEFAULT_PROFILE, &caps).unwrap();
        assert!(program.len() > 100, "{} instructions", program.len());
        let json = serde_json::to_string(&program).unwrap();
        assert_eq!(serde_json::from_str::<Program>(&json).unwrap(), program);
        let mut admin = caps.clone();
        admin.push("CAP_SYS_ADMIN".into());
        assert_ne!(compile(DEFAULT_PROFILE, &admin).unwrap(), program);
    }

    #[test]
    fn compiled_programs_are_cached_by_everything_they_depend_on() {
        let cache = tempfile::tempdir().unwrap();
        let caps = vec!["CAP_CHOWN".to_string()];
        let first = compile_cached(cache.path(), DEFAULT_PROFILE, &caps).unwrap();
        assert_eq!(first, compile(DEFAULT_PROFILE, &caps).unwrap());
        let files = || std::fs::read_dir(cache.path()).unwrap().count();
        assert_eq!(files(), 1);
        // Read back, not compiled again: a corrupt entry would show.
        assert_eq!(compile_cached(cache.path(), DEFAULT_PROFILE, &caps).unwrap(), first);
        let admin = vec!["CAP_SYS_ADMIN".to_string()];
        assert_ne!(compile_cached(cache.path(), DEFAULT_PROFILE, &admin).unwrap(), first);
        assert_eq!(files(), 2);
        // An entry that is not a whole program is compiled over.
        let entry = std::fs::read_dir(cache.path()).unwrap().next().unwrap().unwrap().path();
        std::fs::write(&entry, b"short").unwrap();
        for c in [&caps, &admin] {
            assert_eq!(
                compile_cached(cache.path(), DEFAULT_PROFILE, c).unwrap(),
                compile(DEFAULT_PROFILE, c).unwrap()
            );
        }
    }

    #[test]
    fn bad_profiles_name_what_is_wrong() {
        let err = |json: &str| compile(json, &[]).unwrap_err().to_string();
        assert!(err(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).contains("unknown action \"SCMP_ACT_NOPE\""));
        assert!(err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOME"}]}]}"#)
            .contains("unknown operator"));
        assert!(
            err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}"#)
                .contains("unknown architecture")
        );
        assert!(err("[1]").starts_with("invalid seccomp profile"));
    }
}
