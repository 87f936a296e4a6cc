//! `-o FILE`: an archive written where the user asked. A regular file (or a
//! new one) is written beside its final name and renamed into place, so a
//! failed write leaves nothing; anything else that exists there — a device
//! such as /dev/null, a FIFO, a symlink to one — is written through, as
//! docker writes it, never replaced.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Write `path` with `write`; see the module doc for how.
pub fn write(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => write_through(path, write),
        Ok(_) => replace(
            &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            write,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => replace(path, write),
        Err(e) => Err(Error::io(format!("opening {}", path.display()), e)),
    }
}

fn write_through(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    out.flush()
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// A temporary file in the target's directory, renamed over it once whole.
fn replace(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let creating = |e| Error::io(format!("creating {}", path.display()), e);
    // 0666 less the umask, as a file the shell or docker would create.
    let temp = tempfile::Builder::new()
        .prefix(".mocker-export-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(&dir)
        .map_err(creating)?;
    let mut out = BufWriter::new(temp);
    write(&mut out)?;
    let temp = out
        .into_inner()
        .map_err(|e| Error::io(format!("writing {}", path.display()), e.into_error()))?;
    temp.persist(path).map_err(|e| creating(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(out: &mut dyn Write) -> Result<()> {
        out.write_all(b"hello").map_err(|e| Error::io("test", e))
    }

    #[test]
    fn a_regular_file_is_replaced_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tar");
        std::fs::write(&path, "old").unwrap();
        let failed = write(&path, |out| {
            out.write_all(b"partial").unwrap();
            Err(Error::Interrupted)
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left"
        );
        write(&path, hello).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello");
    }

    #[test]
    fn a_symlinked_file_is_replaced_at_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.tar");
        std::fs::write(&target, "old").unwrap();
        let link = dir.path().join("link.tar");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write(&link, hello).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "hello");
    }

    #[test]
    fn a_fifo_is_written_through_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write(&fifo, hello).unwrap();
        assert_eq!(reader.join().unwrap(), b"hello");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    }
}
