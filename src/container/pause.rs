//! A running container frozen while its writable layer is read (docker
//! pauses it for `commit`), and thawed on every path: by the drop, and if
//! this process dies while it is frozen, even by SIGKILL, by a watchdog it
//! started first (`mocker __thaw-watch DIR`), which waits on its stdin,
//! our pipe, and thaws the container unless told it is done. Should both
//! die, the next `stop`, `kill` or `rm` thaws a freeze no reader holds
//! (see `readers`). While frozen, the signals that end a command (Ctrl-C,
//! a hang-up, a plain kill) are ignored, so the drop's thaw runs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::paths::dir_of;
use super::Writable;
use crate::error::{Error, Result};
use crate::runtime::cgroup::ContainerCgroup;
use crate::Mocker;

const SPARED_BY: [Signal; 4] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT];

/// The word the watchdog waits for: no thaw needed.
const DONE: &[u8] = b"d";

/// A frozen container (or nothing to do), thawed when dropped.
pub struct Paused(Option<Frozen>);

struct Frozen {
    cgroup: ContainerCgroup,
    previous: Vec<(Signal, SigAction)>,
    watchdog: Child,
}

/// Freeze `w`'s container if it runs and `pause` is asked.
pub fn pause(mocker: &Mocker, w: &Writable, pause: bool) -> Result<Paused> {
    if !(pause && w.running) {
        return Ok(Paused(None));
    }
    // No cgroup: it ended meanwhile, and nothing writes to its layer.
    let Some(cgroup) = ContainerCgroup::load(&w.id) else {
        return Ok(Paused(None));
    };
    let dir = dir_of(mocker, &w.id);
    // Ignored first: the watchdog inherits it across exec, so no Ctrl-C
    // can end it before it ignores the signals itself.
    let previous = ignore(&SPARED_BY);
    let spawned = Command::new("/proc/self/exe")
        .arg("__thaw-watch")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let watchdog = match spawned {
        Ok(child) => child,
        Err(e) => {
            restore(&previous);
            return Err(Error::io("starting the watchdog of a paused container", e));
        }
    };
    let paused = Paused(Some(Frozen {
        cgroup,
        previous,
        watchdog,
    }));
    if let Some(frozen) = &paused.0 {
        frozen.cgroup.freeze()?;
    }
    Ok(paused)
}

impl Drop for Paused {
    fn drop(&mut self) {
        let Some(frozen) = &mut self.0 else { return };
        let _ = frozen.cgroup.thaw();
        restore(&frozen.previous);
        if let Some(mut pipe) = frozen.watchdog.stdin.take() {
            let _ = pipe.write_all(DONE);
        }
        let _ = frozen.watchdog.wait();
    }
}

/// Ignore `signals`; their previous actions.
fn ignore(signals: &[Signal]) -> Vec<(Signal, SigAction)> {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    signals
        .iter()
        // SAFETY: installs the ignore disposition (no handler code runs).
        .filter_map(|&sig| unsafe { sigaction(sig, &ignore) }.ok().map(|old| (sig, old)))
        .collect()
}

fn restore(previous: &[(Signal, SigAction)]) {
    for (sig, action) in previous {
        // SAFETY: puts back the action this process had before.
        let _ = unsafe { sigaction(*sig, action) };
    }
}

/// Entry point of `mocker __thaw-watch DIR`: wait for the pausing command
/// to say it is done, or to die; then thaw the container of `DIR` (once
/// any other pausing commit is done with it).
pub fn watch_main() -> i32 {
    let Some(dir) = std::env::args_os().nth(2).map(PathBuf::from) else {
        eprintln!("mocker: __thaw-watch is internal to `mocker commit`");
        return 2;
    };
    // It must outlive the command it watches: the terminal's signals reach both.
    ignore(&SPARED_BY);
    let mut word = [0u8; 1];
    let done = matches!(std::io::stdin().read(&mut word), Ok(1));
    if !done {
        thaw_unless_paused(&dir);
    }
    0
}

/// Thaw the container of `dir` once no pausing commit holds it: a freeze
/// is then one whose maker died. Under the shared hold, so no commit
/// freezes it meanwhile.
pub(super) fn thaw_unless_paused(dir: &Path) {
    let Some(id) = dir.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let _unpaused = super::readers::unpaused(dir);
    if let Some(cgroup) = ContainerCgroup::load(id) {
        let _ = cgroup.thaw();
    }
}
