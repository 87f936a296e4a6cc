//! `mocker pull` on a terminal: everything it writes to a pty, played on a
//! small terminal model, must leave docker's display: one row per layer
//! with its final status, then the Digest and Status rows, nothing wrapped.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::*;

/// Just enough of a terminal for the pull display: printable characters
/// (wrapping at the width, which the display must never need), `\r`, `\n`,
/// cursor up (`ESC[nA`, stopped at the screen's top row) and erase line
/// (`ESC[2K`, `ESC[K`). Anything else fails the test: the display's bytes
/// should be only these.
struct Screen {
    width: usize,
    height: usize,
    /// Every line ever shown, scrolled-off ones too.
    lines: Vec<Vec<char>>,
    row: usize,
    col: usize,
    wrapped: bool,
}

impl Screen {
    fn new(width: usize, height: usize) -> Self {
        Screen {
            width,
            height,
            lines: vec![Vec::new()],
            row: 0,
            col: 0,
            wrapped: false,
        }
    }

    fn down(&mut self) {
        self.row += 1;
        if self.row == self.lines.len() {
            self.lines.push(Vec::new());
        }
    }

    fn top(&self) -> usize {
        self.lines.len().saturating_sub(self.height)
    }

    fn feed(&mut self, text: &str) {
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => self.col = 0,
                '\n' => self.down(),
                '\x1b' => {
                    assert_eq!(chars.next(), Some('['), "unexpected escape in {text:?}");
                    let mut param = String::new();
                    let end = loop {
                        match chars.next().expect("unterminated escape") {
                            d @ ('0'..='9' | ';') => param.push(d),
                            f => break f,
                        }
                    };
                    let n: usize = param.parse().unwrap_or(0);
                    let line = &mut self.lines[self.row];
                    match (end, n) {
                        ('A', _) => self.row = self.row.saturating_sub(n.max(1)).max(self.top()),
                        ('K', 2) => line.clear(),
                        ('K', 0) => line.truncate(self.col),
                        _ => panic!("unexpected escape ESC[{param}{end}"),
                    }
                }
                c if c.is_control() => panic!("unexpected control {c:?}"),
                c => {
                    if self.col == self.width {
                        self.wrapped = true;
                        self.down();
                        self.col = 0;
                    }
                    let line = &mut self.lines[self.row];
                    if line.len() <= self.col {
                        line.resize(self.col + 1, ' ');
                    }
                    line[self.col] = c;
                    self.col += 1;
                }
            }
        }
    }

    /// The text left, trailing blanks and empty last lines dropped.
    fn rows(&self) -> Vec<String> {
        let mut rows: Vec<String> = self
            .lines
            .iter()
            .map(|l| l.iter().collect::<String>().trim_end().to_string())
            .collect();
        while rows.last().is_some_and(|r| r.is_empty()) {
            rows.pop();
        }
        rows
    }
}

/// Run `mocker pull <reference>` with its stdout on a pty of the given size;
/// returns the screen it leaves.
fn pull_on_pty(root: &Root, reference: &str, width: u16, height: u16) -> Screen {
    let size = nix::pty::Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
    let child = root
        .command()
        .args(["pull", reference])
        .stdout(Stdio::from(pty.slave))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Read until the last writer (the child) closes the pty: EIO.
    let mut master = std::fs::File::from(pty.master);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n @ 1..) = master.read(&mut buf) {
        bytes.extend_from_slice(&buf[..n]);
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));
    let mut screen = Screen::new(width as usize, height as usize);
    screen.feed(&String::from_utf8(bytes).expect("utf-8 output"));
    screen
}

/// The screen is docker's: the `Pulling from` row, one row per layer in the
/// manifest's order with a final status in `statuses`, Digest, Status, the
/// reference; nothing wrapped.
fn assert_display(screen: &Screen, reference: &str, statuses: &[&str], status: &str) {
    let rows = screen.rows();
    let shown = rows.join("\n");
    assert!(!screen.wrapped, "a row wrapped at {} columns:\n{shown}", screen.width);
    let layers = registry_layers(reference);
    assert_eq!(rows.len(), layers.len() + 4, "{shown}");
    assert!(rows[0].starts_with("latest: Pulling from "), "{shown}");
    for (row, layer) in rows[1..=layers.len()].iter().zip(&layers) {
        let (id, row_status) = row.split_once(": ").expect("id: status");
        assert_eq!(id, &hex_of(layer)[..12], "{shown}");
        assert!(statuses.contains(&row_status), "{row_status:?} in\n{shown}");
    }
    let digest = format!("sha256:{}", sha256_hex(&registry_manifest(reference)));
    assert_eq!(rows[layers.len() + 1], format!("Digest: {digest}"), "{shown}");
    assert!(rows[layers.len() + 2].starts_with(status), "{shown}");
    assert_eq!(rows[layers.len() + 3], reference, "{shown}");
}

#[test]
fn a_pull_on_a_terminal_leaves_one_row_per_layer_at_80_and_200_columns() {
    for width in [80, 200] {
        let root = Root::new();
        let reference = image("multi:latest");
        let screen = pull_on_pty(&root, &reference, width, 40);
        assert_display(
            &screen,
            &reference,
            &["Pull complete"],
            "Status: Downloaded newer image for",
        );
        if width == 80 {
            eprintln!("final screen at 80 columns:\n{}", screen.rows().join("\n"));
        }
        let again = pull_on_pty(&root, &reference, width, 40);
        assert_display(
            &again,
            &reference,
            &["Already exists"],
            "Status: Image is up to date for",
        );
    }
}

#[test]
fn a_shared_base_shows_already_exists_beside_pull_complete() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("shared-a:latest")]);
    let reference = image("shared-b:latest");
    let screen = pull_on_pty(&root, &reference, 100, 40);
    assert_display(
        &screen,
        &reference,
        &["Already exists", "Pull complete"],
        "Status: Downloaded newer image for",
    );
    let rows = screen.rows();
    assert!(rows[1].ends_with("Already exists"), "{}", rows.join("\n"));
    assert!(rows.iter().any(|r| r.ends_with("Pull complete")), "{}", rows.join("\n"));
}

#[test]
fn more_layers_than_the_screen_has_rows_still_end_one_final_row_each() {
    let root = Root::new();
    let reference = image("layers-60:latest");
    let screen = pull_on_pty(&root, &reference, 80, 24);
    assert_display(
        &screen,
        &reference,
        &["Pull complete"],
        "Status: Downloaded newer image for",
    );
}
