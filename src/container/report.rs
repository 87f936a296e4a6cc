//! What the monitor tells `start` on its status pipe: one JSON line, then
//! the pipe is closed.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::error::ContainerError;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartReport {
    /// The container's command runs as `pid`.
    Started { pid: u32 },
    /// It did not start; `code` is docker's exit code for why.
    Failed { code: i32, message: String },
}

impl StartReport {
    /// Best effort: a caller that went away needs no report.
    pub(super) fn send(&self, mut to: impl Write) {
        if let Ok(mut line) = serde_json::to_vec(self) {
            line.push(b'\n');
            let _ = to.write_all(&line);
        }
    }

    /// The report on `from` (read to its end) of the monitor of container
    /// `id`; nothing at all means the monitor died before it could report.
    pub(super) fn receive(mut from: impl Read, id: &str) -> Result<StartReport, ContainerError> {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ContainerError::MonitorExited { id: id.to_string() });
        }
        serde_json::from_slice(&bytes).map_err(|source| ContainerError::GarbledReport {
            id: id.to_string(),
            report: String::from_utf8_lossy(&bytes).trim_end().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_bad_ones_name_the_container() {
        for report in [
            StartReport::Started { pid: 42 },
            StartReport::Failed {
                code: 127,
                message: "exec: \"nope\": executable file not found in $PATH\nsecond line".into(),
            },
        ] {
            let mut pipe = Vec::new();
            report.send(&mut pipe);
            assert_eq!(pipe.iter().filter(|b| **b == b'\n').count(), 1, "one line");
            assert_eq!(StartReport::receive(pipe.as_slice(), "c1").unwrap(), report);
        }
        let empty = StartReport::receive(&b""[..], "c1").unwrap_err();
        assert!(
            matches!(&empty, ContainerError::MonitorExited { id } if id == "c1"),
            "{empty}"
        );
        let garbled = StartReport::receive(&b"ok 42\n"[..], "c1").unwrap_err();
        assert!(
            matches!(&garbled, ContainerError::GarbledReport { id, .. } if id == "c1"),
            "{garbled}"
        );
        assert!(garbled.to_string().contains("\"ok 42\""), "{garbled}");
    }
}
