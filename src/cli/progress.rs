//! Pull progress as docker shows it: on a terminal one row per layer,
//! redrawn in place; otherwise one line per status change (docker's non-tty
//! format); nothing with `-q`. `pull` writes it to stdout as docker does,
//! `run`'s implicit pull to stderr (its stdout is the container's).
//!
//! The rows are drawn with three escape sequences (cursor up, carriage
//! return, erase line) rather than indicatif: its MultiProgress dropped
//! finished bars and left stale ones when several layers changed at once.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mocker::digest::Digest;
use mocker::pull::{LayerEvent, Progress};
use mocker::units::human_size;

#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn is_terminal(self) -> bool {
        match self {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        }
    }

    /// Columns and rows of the terminal; 80×24 when it does not say.
    fn size(self) -> (usize, usize) {
        let size = match self {
            Stream::Stdout => rustix::termios::tcgetwinsize(std::io::stdout()),
            Stream::Stderr => rustix::termios::tcgetwinsize(std::io::stderr()),
        };
        match size {
            Ok(w) if w.ws_col > 0 && w.ws_row > 0 => (w.ws_col as usize, w.ws_row as usize),
            _ => (80, 24),
        }
    }

    /// Best effort: a closed stream must not fail the pull.
    fn write(self, text: &str) {
        let _ = match self {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|_| out.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }
}

pub trait Render: Progress {
    /// Draw the final state; whatever is printed next starts on its own row.
    fn finish(&self) {}
}

pub fn for_stream(quiet: bool, stream: Stream) -> Box<dyn Render> {
    match (quiet, stream.is_terminal()) {
        (true, _) => Box::new(Silent),
        (false, true) => Box::new(Rows::new(stream)),
        (false, false) => Box::new(Lines(stream)),
    }
}

struct Silent;
impl Progress for Silent {}
impl Render for Silent {}

/// docker's plain output: `<12-hex>: <status>`. Byte-level progress is left out.
struct Lines(Stream);
impl Progress for Lines {
    fn layer(&self, digest: &Digest, event: LayerEvent) {
        let status = match event {
            LayerEvent::Pending { .. } => "Pulling fs layer".to_string(),
            LayerEvent::AlreadyExists => "Already exists".to_string(),
            LayerEvent::WaitingForOther => "Waiting".to_string(),
            LayerEvent::Resuming { from } => format!("Resuming download at byte {from}"),
            LayerEvent::Downloading { .. } | LayerEvent::Extracted { .. } => return,
            LayerEvent::Verifying => "Verifying Checksum".to_string(),
            LayerEvent::DownloadComplete => "Download complete".to_string(),
            LayerEvent::Extracting => "Extracting".to_string(),
            LayerEvent::PullComplete => "Pull complete".to_string(),
        };
        self.0.write(&format!("{}: {status}\n", digest.short()));
    }
}
impl Render for Lines {}

/// One layer's row: its status and, while bytes move, how many of how many.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    id: String,
    status: &'static str,
    /// The blob's size, from the manifest.
    size: u64,
    bytes: Option<(u64, u64)>,
}

/// The rows, in the manifest's order (base layer first).
#[derive(Default)]
struct Board {
    rows: Vec<Row>,
    by_digest: HashMap<Digest, usize>,
}

impl Board {
    /// Apply `event`; true when the row's status changed (worth drawing now),
    /// false when only its byte count moved.
    fn apply(&mut self, digest: &Digest, event: LayerEvent) -> bool {
        let i = *self.by_digest.entry(digest.clone()).or_insert_with(|| {
            self.rows.push(Row {
                id: digest.short().to_string(),
                status: "Pulling fs layer",
                size: 0,
                bytes: None,
            });
            self.rows.len() - 1
        });
        let row = &mut self.rows[i];
        let (status, bytes) = match event {
            LayerEvent::Pending { size } => {
                row.size = size;
                ("Pulling fs layer", None)
            }
            LayerEvent::AlreadyExists => ("Already exists", None),
            LayerEvent::WaitingForOther => ("Waiting", None),
            LayerEvent::Resuming { from } => ("Downloading", Some((from, row.size))),
            LayerEvent::Downloading { done, total } => ("Downloading", Some((done, total))),
            LayerEvent::Verifying => ("Verifying Checksum", None),
            LayerEvent::DownloadComplete => ("Download complete", None),
            LayerEvent::Extracting => ("Extracting", Some((0, row.size))),
            LayerEvent::Extracted { done, total } => ("Extracting", Some((done, total))),
            LayerEvent::PullComplete => ("Pull complete", None),
        };
        let changed = row.status != status;
        row.status = status;
        row.bytes = bytes;
        changed
    }
}

/// Status column width when a bar follows ("Verifying Checksum" is the longest).
const STATUS_WIDTH: usize = 18;
/// docker's bar width on a wide terminal.
const MAX_BAR: usize = 50;
/// Narrower than this, the bar says nothing the numbers do not.
const MIN_BAR: usize = 10;

/// `<id>: <status> [bar] <done>/<total>`, in fewer than `width` columns:
/// the bar shrinks, then goes, then the row is cut. A row that filled the
/// last column would wrap on some terminals and break the in-place redraw.
fn format_row(row: &Row, width: usize) -> String {
    let room = width.saturating_sub(1);
    let text = match row.bytes {
        None => format!("{}: {}", row.id, row.status),
        Some((done, total)) => {
            let numbers = format!("{:>8}/{}", human_size(done), human_size(total));
            let head = format!("{}: {:<STATUS_WIDTH$} ", row.id, row.status);
            let bar_room = room.saturating_sub(head.len() + numbers.len() + 3);
            match bar_room.min(MAX_BAR) {
                w if w >= MIN_BAR => format!("{head}[{}] {numbers}", bar(done, total, w)),
                _ => format!("{}: {} {}", row.id, row.status, numbers.trim_start()),
            }
        }
    };
    text.chars().take(room).collect()
}

/// `=====>    ` filling `width` in proportion to `done` of `total`.
fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = match total {
        0 => width,
        _ => ((done.min(total) as u128 * width as u128) / total as u128) as usize,
    };
    if filled >= width {
        "=".repeat(width)
    } else {
        format!("{}>{}", "=".repeat(filled), " ".repeat(width - filled - 1))
    }
}

impl Row {
    /// Nothing more will happen to it.
    fn is_final(&self) -> bool {
        matches!(self.status, "Pull complete" | "Already exists")
    }
}

/// Which rows a redraw shows, given that a terminal cannot move the cursor
/// above its top row: rows from `committed` on are live (redrawn in place),
/// at most `view` of them. When there are more, final rows at the top are
/// committed (drawn once more, then left to scroll away); a later row waits
/// off screen rather than pushing a live one out of reach, so no row is ever
/// left stale. Returns the new `committed` and the end of the shown rows.
fn window(finals: &[bool], committed: usize, view: usize) -> (usize, usize) {
    let mut committed = committed;
    while finals.len() - committed > view && finals[committed] {
        committed += 1;
    }
    (committed, finals.len().min(committed.saturating_add(view)))
}

/// The bytes that go back over the `drawn` live rows above the cursor and
/// draw `lines` in their place.
fn frame(lines: &[String], drawn: usize) -> String {
    let mut out = String::new();
    if drawn > 0 {
        out.push_str(&format!("\x1b[{drawn}A"));
    }
    for line in lines {
        out.push_str("\r\x1b[2K");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The terminal display: the board, redrawn whole on each status change
/// and at most every 100 ms for byte counts.
struct Rows {
    stream: Stream,
    state: Mutex<RowsState>,
}

struct RowsState {
    board: Board,
    /// Rows drawn for the last time (scrolled away or about to be).
    committed: usize,
    /// Live rows on screen above the cursor.
    drawn: usize,
    last_draw: Option<Instant>,
}

const REDRAW_EVERY: Duration = Duration::from_millis(100);

impl Rows {
    fn new(stream: Stream) -> Self {
        Rows {
            stream,
            state: Mutex::new(RowsState {
                board: Board::default(),
                committed: 0,
                drawn: 0,
                last_draw: None,
            }),
        }
    }

    /// Redraw the live rows; `last` draws every row, final or not.
    fn draw(&self, state: &mut RowsState, now: bool, last: bool) {
        if !now && state.last_draw.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return;
        }
        let (width, height) = self.stream.size();
        let rows = &state.board.rows;
        let finals: Vec<bool> = rows.iter().map(|r| last || r.is_final()).collect();
        let view = if last {
            usize::MAX
        } else {
            height.saturating_sub(1).max(1)
        };
        let (committed, end) = window(&finals, state.committed, view);
        let lines: Vec<String> = rows[state.committed..end]
            .iter()
            .map(|r| format_row(r, width))
            .collect();
        self.stream.write(&frame(&lines, state.drawn));
        state.drawn = end - committed;
        state.committed = committed;
        state.last_draw = Some(Instant::now());
    }
}

impl Progress for Rows {
    fn layer(&self, digest: &Digest, event: LayerEvent) {
        let Ok(mut state) = self.state.lock() else { return };
        // All layers are announced at once: draw them together.
        let announced = matches!(event, LayerEvent::Pending { .. });
        let changed = state.board.apply(digest, event);
        self.draw(&mut state, changed && !announced, false);
    }
}

impl Render for Rows {
    fn finish(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        if !state.board.rows.is_empty() {
            self.draw(&mut state, true, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    fn row(status: &'static str, bytes: Option<(u64, u64)>) -> Row {
        Row {
            id: "0123456789ab".into(),
            status,
            size: 0,
            bytes,
        }
    }

    #[test]
    fn rows_fit_the_width_with_the_bar_shrunk_or_dropped() {
        let downloading = row("Downloading", Some((12_300_000, 45_600_000)));
        for width in [20, 40, 60, 80, 100, 200] {
            let text = format_row(&downloading, width);
            assert!(text.chars().count() < width, "{width}: {text:?}");
        }
        assert_eq!(
            format_row(&downloading, 200),
            format!(
                "0123456789ab: Downloading        [=============>{}]   12.3MB/45.6MB",
                " ".repeat(36)
            )
        );
        let at_80 = format_row(&downloading, 80);
        assert!(at_80.contains("[") && at_80.ends_with("12.3MB/45.6MB"), "{at_80}");
        assert_eq!(format_row(&downloading, 40), "0123456789ab: Downloading 12.3MB/45.6MB");
        assert_eq!(
            format_row(&row("Pull complete", None), 80),
            "0123456789ab: Pull complete"
        );
    }

    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(bar(0, 100, 10), ">         ");
        assert_eq!(bar(50, 100, 10), "=====>    ");
        assert_eq!(bar(100, 100, 10), "==========");
        assert_eq!(bar(5, 0, 4), "====");
    }

    #[test]
    fn a_layer_goes_from_download_through_extraction_to_complete() {
        let mut board = Board::default();
        let (a, b) = (digest(1), digest(2));
        board.apply(&a, LayerEvent::Pending { size: 100 });
        board.apply(&b, LayerEvent::Pending { size: 7 });
        assert!(board.apply(&b, LayerEvent::AlreadyExists));
        assert!(board.apply(&a, LayerEvent::Downloading { done: 10, total: 100 }));
        assert!(!board.apply(&a, LayerEvent::Downloading { done: 20, total: 100 }));
        board.apply(&a, LayerEvent::Verifying);
        board.apply(&a, LayerEvent::DownloadComplete);
        assert!(board.apply(&a, LayerEvent::Extracting));
        assert_eq!(board.rows[0].bytes, Some((0, 100)));
        assert!(!board.apply(&a, LayerEvent::Extracted { done: 60, total: 100 }));
        assert_eq!(board.rows[0].bytes, Some((60, 100)));
        board.apply(&a, LayerEvent::PullComplete);
        let shown: Vec<_> = board.rows.iter().map(|r| (r.id.as_str(), r.status, r.bytes)).collect();
        assert_eq!(
            shown,
            [
                ("010101010101", "Pull complete", None),
                ("020202020202", "Already exists", None)
            ]
        );
    }

    #[test]
    fn frames_go_back_over_the_rows_drawn() {
        let lines = ["a".to_string(), "b".to_string()];
        assert_eq!(frame(&lines, 0), "\r\x1b[2Ka\n\r\x1b[2Kb\n");
        assert_eq!(frame(&lines, 2), "\x1b[2A\r\x1b[2Ka\n\r\x1b[2Kb\n");
    }

    #[test]
    fn more_rows_than_the_screen_holds_commit_final_rows_and_hold_back_later_ones() {
        // Everything fits: all live.
        assert_eq!(window(&[false, false], 0, 5), (0, 2));
        // Three rows, room for two: the first is not final, so the third waits.
        assert_eq!(window(&[false, true, false], 0, 2), (0, 2));
        // Once it is final it is committed and the third shows.
        assert_eq!(window(&[true, true, false], 0, 2), (1, 3));
        // Committing stops at the first live row.
        assert_eq!(window(&[true, true, false, true, false], 0, 2), (2, 4));
    }
}
