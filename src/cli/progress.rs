//! Pull progress: indicatif bars on a terminal, one line per event otherwise
//! (docker's non-tty format), nothing with `-q`.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mocker::digest::Digest;
use mocker::pull::{LayerEvent, Progress};

pub trait Render: Progress {
    fn finish(&self) {}
}

pub fn for_terminal(quiet: bool, tty: bool) -> Box<dyn Render> {
    match (quiet, tty) {
        (true, _) => Box::new(Silent),
        (false, true) => Box::new(Bars::default()),
        (false, false) => Box::new(Lines),
    }
}

struct Silent;
impl Progress for Silent {}
impl Render for Silent {}

/// docker's plain output: `<12-hex>: <status>`. Byte-level progress is left out.
struct Lines;
impl Progress for Lines {
    fn layer(&self, digest: &Digest, event: LayerEvent) {
        let status = match event {
            LayerEvent::Pending { .. } => "Pulling fs layer".to_string(),
            LayerEvent::AlreadyExists => "Already exists".to_string(),
            LayerEvent::WaitingForOther => "Waiting".to_string(),
            LayerEvent::Resuming { from } => format!("Resuming download at byte {from}"),
            LayerEvent::Downloading { .. } => return,
            LayerEvent::Verifying => "Verifying Checksum".to_string(),
            LayerEvent::DownloadComplete => "Download complete".to_string(),
            LayerEvent::Extracting => "Extracting".to_string(),
            LayerEvent::PullComplete => "Pull complete".to_string(),
        };
        eprintln!("{}: {status}", digest.short());
    }
}
impl Render for Lines {}

#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Progress for Bars {
    fn layer(&self, digest: &Digest, event: LayerEvent) {
        let Ok(mut bars) = self.bars.lock() else { return };
        let bar = bars.entry(digest.clone()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix}: {msg:<18} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(digest.short().to_string());
            bar
        });
        match event {
            LayerEvent::Pending { size } => {
                bar.set_length(size);
                bar.set_message("Waiting");
            }
            LayerEvent::AlreadyExists => bar.finish_with_message("Already exists"),
            LayerEvent::WaitingForOther => bar.set_message("Waiting (other pull)"),
            LayerEvent::Resuming { from } => {
                bar.set_position(from);
                bar.set_message("Resuming");
            }
            LayerEvent::Downloading { done, total } => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message("Downloading");
            }
            LayerEvent::Verifying => bar.set_message("Verifying Checksum"),
            LayerEvent::DownloadComplete => bar.set_message("Download complete"),
            LayerEvent::Extracting => bar.set_message("Extracting"),
            LayerEvent::PullComplete => bar.finish_with_message("Pull complete"),
        }
    }
}

impl Render for Bars {
    fn finish(&self) {
        let _ = self.multi.clear();
    }
}
