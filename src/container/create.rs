//! `create`: claim in the index, then materialize on disk.

use super::address::{claim_address, release_address};
use super::config::{ContainerConfig, CreateOptions};
use super::error::ContainerError;
use super::etc_files::write_etc_files;
use super::host::{Host, Linux};
use super::lookup::Container;
use super::names;
use super::paths::{dir_of, make_dir, snapshot_key};
use super::remove::discard;
use super::state::{self, State};
use crate::error::{Error, IoContext, Result};
use crate::index::{Batch, ContainerRecord};
use crate::manifest::MAX_CONFIG_BYTES;
use crate::runtime::cgroup;
use crate::runtime::init::{InitSpec, Volume};
use crate::runtime::network::{Bridge, Endpoint};
use crate::runtime::userns::IdMapping;
use crate::runtime::{self, Network};
use crate::Mocker;

/// Create a container from a local image (state "created").
pub fn create(mocker: &Mocker, opts: &CreateOptions) -> Result<Container> {
    create_on(&Linux, mocker, opts)
}

/// `create` on `host`: whatever fails after the claim is undone, records
/// included, as `rm` would.
pub(super) fn create_on(host: &dyn Host, mocker: &Mocker, opts: &CreateOptions) -> Result<Container> {
    let name = opts.name.as_deref().map(names::validate).transpose()?;
    let id = runtime::new_id()?;
    let bridge = match opts.network {
        Network::Bridge => Some(Bridge::from_env()?),
        _ => None,
    };
    let security = check_options(mocker, opts)?;
    let claimed = claim(host, mocker, opts, &id, name.as_ref(), bridge.as_ref())?;
    let record = claimed.record.clone();
    match materialize(host, mocker, opts, claimed, bridge.as_ref(), security) {
        Ok(config) => Ok(Container {
            record,
            config: Some(config),
            state: State::default(),
        }),
        Err(e) => {
            let _ = discard(host, mocker, &record.id, None);
            Err(e)
        }
    }
}

/// What `create` claims in the index before it makes anything on disk.
struct Claimed {
    record: ContainerRecord,
    image: crate::index::ImageRecord,
    process: runtime::spec::ProcessSpec,
    run: runtime::spec::RunConfig,
    reserved: crate::snapshot::Reserved,
}

/// One session: the image, its config, the name, the address and the
/// writable snapshot are found, checked and claimed together.
fn claim(
    host: &dyn Host,
    mocker: &Mocker,
    opts: &CreateOptions,
    id: &str,
    name: Option<&String>,
    bridge: Option<&Bridge>,
) -> Result<Claimed> {
    let seed = hex::decode(id).unwrap_or_default();
    mocker.index.session(|s| {
        let image = crate::lookup::one_in(s, &opts.image)?;
        let (process, run) = image_process(mocker, &image, opts, id)?;
        let name = claim_name(s, name, &seed)?;
        let mut batch = Batch::default();
        let reserved = mocker
            .snapshots
            .reserve(s, &snapshot_key(id), image.chain_ids.last(), &mut batch)?;
        // Last before the commit: the address is claimed host-wide (other
        // roots share the bridge), and released if the commit fails.
        let address = match bridge {
            Some(b) => Some((b.name.clone(), claim_address(host, mocker, s, b, id)?)),
            None => None,
        };
        let record = ContainerRecord {
            id: id.to_string(),
            name,
            image_manifest: image.manifest_digest.clone(),
            created: state::now(),
            address,
        };
        batch.put_container(&record);
        if let Err(e) = s.apply(&batch) {
            release_address(host, mocker, id, record.address.as_ref());
            let _ = std::fs::remove_dir(dir_of(mocker, id));
            return Err(e);
        }
        Ok(Claimed {
            record,
            image,
            process,
            run,
            reserved,
        })
    })
}

/// The container's directory, /etc files and writable snapshot, then its
/// config.json — last: its presence is what makes the container complete.
fn materialize(
    host: &dyn Host,
    mocker: &Mocker,
    opts: &CreateOptions,
    claimed: Claimed,
    bridge: Option<&Bridge>,
    security: crate::runtime::security::Security,
) -> Result<ContainerConfig> {
    let Claimed {
        record,
        image,
        process,
        run,
        reserved,
    } = claimed;
    let id = &record.id;
    let dir = dir_of(mocker, id);
    let endpoint = match (bridge, &record.address) {
        (Some(b), Some((_, ip))) => Some(Endpoint::new(b.clone(), *ip, id)),
        _ => None,
    };
    make_dir(mocker, id)?;
    super::readers::make(&dir)?;
    std::fs::create_dir_all(dir.join("rootfs")).ctx(|| format!("creating {}", dir.display()))?;
    let files = write_etc_files(
        &dir,
        &process.hostname,
        endpoint.as_ref().map(|e| e.address),
        opts.network,
    )?;
    let overlay = mocker.snapshots.make_active(&snapshot_key(id), reserved)?;
    if let Some(mapping) = &opts.userns {
        give_to_container_root(host, mapping, &overlay, &files)?;
    }
    let init = InitSpec {
        process,
        overlay,
        rootfs: dir.join("rootfs"),
        privileged: opts.overrides.privileged,
        security,
        volumes: opts.volumes.clone(),
        files,
        read_only_root: opts.read_only,
        host_network: opts.network == Network::Host,
        init: opts.init,
        tty: opts.tty,
        userns: opts.userns,
    };
    let config = ContainerConfig {
        id: id.clone(),
        name: record.name.clone(),
        image: opts.image.clone(),
        image_id: image.config_digest.clone(),
        image_manifest: image.manifest_digest.clone(),
        created: record.created,
        init,
        network: opts.network,
        endpoint,
        ports: opts.ports.clone(),
        limits: opts.limits.clone(),
        auto_remove: opts.auto_remove,
        log_rotation: opts.log_rotation,
        open_stdin: opts.open_stdin,
        cap_add: opts.overrides.cap_add.clone(),
        cap_drop: opts.overrides.cap_drop.clone(),
        snapshot_parent: image.chain_ids.last().cloned(),
        security_opt: opts.security.shown.clone(),
        run: Some(run),
    };
    config.save(&dir)?;
    Ok(config)
}

/// Options that are wrong whatever the image: refused before anything is
/// claimed. The seccomp filter the container gets.
fn check_options(mocker: &Mocker, opts: &CreateOptions) -> Result<crate::runtime::security::Security> {
    cgroup::validate(&opts.limits)?;
    if !opts.ports.is_empty() && opts.network != Network::Bridge {
        return Err(ContainerError::PortsNeedBridge {
            network: opts.network.name().to_string(),
        }
        .into());
    }
    // As docker's: neither can be confined to the container's ids.
    if opts.userns.is_some() && (opts.overrides.privileged || opts.network == Network::Host) {
        let option = if opts.overrides.privileged {
            "--privileged"
        } else {
            "--network host"
        };
        return Err(ContainerError::UsernsConflict { option }.into());
    }
    Ok(opts.security.apply(
        &runtime::spec::capabilities(&opts.overrides)?,
        opts.overrides.privileged,
        &mocker.root.join("seccomp"),
    )?)
}

/// The name asked for, if free, or a random one that is.
fn claim_name(s: &crate::index::Session, name: Option<&String>, seed: &[u8]) -> Result<String> {
    Ok(match name {
        Some(n) => {
            if let Some(holder) = s.container_named(n)? {
                return Err(ContainerError::NameInUse {
                    name: n.clone(),
                    holder,
                }
                .into());
            }
            n.clone()
        }
        None => {
            let mut attempt = 0;
            loop {
                let candidate = names::random(seed, attempt);
                if s.container_named(&candidate)?.is_none() {
                    break candidate;
                }
                attempt += 1;
            }
        }
    })
}

/// What the container runs: the image's config with the options applied.
fn image_process(
    mocker: &Mocker,
    image: &crate::index::ImageRecord,
    opts: &CreateOptions,
    id: &str,
) -> Result<(runtime::spec::ProcessSpec, runtime::spec::RunConfig)> {
    let image_config = mocker.store.read_small(&image.config_digest, MAX_CONFIG_BYTES)?;
    let image_config: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(&image_config).map_err(|e| Error::InvalidDocument {
            what: format!("config {}", image.config_digest),
            reason: e.to_string(),
        })?;
    let run = runtime::spec::run_config(&image_config, &opts.overrides)?;
    let mut process = runtime::spec::process_for(&run, &opts.overrides, id)?;
    if opts.tty {
        with_term(&mut process.env);
    }
    Ok((process, run))
}

/// With a user namespace, the writable layer's root (what `/` is inside)
/// and the container's /etc files belong to the container's root, as
/// docker's userns-remap makes them; the image's layers stay root's.
fn give_to_container_root(
    host: &dyn Host,
    mapping: &IdMapping,
    overlay: &crate::mount::Overlay,
    files: &[Volume],
) -> Result<()> {
    let (uid, gid) = mapping.root();
    let upper = overlay.base.join(&overlay.upper);
    for path in std::iter::once(upper.as_path()).chain(files.iter().map(|f| f.source.as_path())) {
        host.chown(path, uid, gid)?;
    }
    Ok(())
}

/// docker's `TERM=xterm` for a process with a terminal, unless set.
pub(super) fn with_term(env: &mut Vec<String>) {
    if !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::fake::{self, FakeHost};
    use crate::runtime::userns::IdRange;

    #[test]
    fn a_create_records_the_container_then_makes_it_complete() {
        let (_tmp, mocker) = fake::root_with_image();
        let host = FakeHost::new();
        let container = create_on(&host, &mocker, &fake::options(Network::Bridge)).unwrap();
        let id = &container.record.id;
        assert_eq!(host.effects(), ["claim_address"]);
        let (bridge, addr) = container.record.address.clone().unwrap();
        assert_eq!(*host.claimed.borrow(), [(bridge, addr)]);
        let mut left = fake::leftovers(&mocker);
        left.sort();
        assert_eq!(
            left,
            [
                format!("active container-{id}"),
                format!("dir {id}"),
                format!("record {id}"),
                "snapshot 1".to_string()
            ]
        );
        let dir = dir_of(&mocker, id);
        assert_eq!(ContainerConfig::load(&dir).unwrap().endpoint.unwrap().address, addr);
        let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
        assert!(hosts.contains(&addr.to_string()), "{hosts}");
    }

    #[test]
    fn a_failure_mid_create_undoes_what_was_done_and_leaves_no_record() {
        let (_tmp, mocker) = fake::root_with_image();
        let host = FakeHost::new();
        host.fail("chown");
        let range = IdRange {
            host: 100000,
            size: 65536,
        };
        let opts = CreateOptions {
            name: Some("web".into()),
            userns: Some(IdMapping { uid: range, gid: range }),
            ..fake::options(Network::Bridge)
        };
        assert!(create_on(&host, &mocker, &opts).is_err());
        // Claimed, failed after the snapshot was made, then undone as `rm`
        // would: cgroup, snapshot, directory, records, address last.
        assert_eq!(
            host.effects(),
            [
                "claim_address",
                "chown",
                "clear_cgroup",
                "wait_for_teardown",
                "release_address"
            ]
        );
        assert!(host.claimed.borrow().is_empty());
        assert_eq!(fake::leftovers(&mocker), Vec::<String>::new());
        // The name is free again.
        let host = FakeHost::new();
        create_on(&host, &mocker, &CreateOptions { userns: None, ..opts }).unwrap();
    }

    #[test]
    fn a_refused_address_leaves_nothing() {
        let (_tmp, mocker) = fake::root_with_image();
        let host = FakeHost::new();
        host.fail("claim_address");
        assert!(create_on(&host, &mocker, &fake::options(Network::Bridge)).is_err());
        assert_eq!(host.effects(), ["claim_address"]);
        assert_eq!(fake::leftovers(&mocker), Vec::<String>::new());
        // Without a bridge there is no address to claim.
        let host = FakeHost::new();
        let container = create_on(&host, &mocker, &fake::options(Network::None)).unwrap();
        assert!(host.calls.borrow().is_empty() && container.record.address.is_none());
    }
}
