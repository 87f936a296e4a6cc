//! `diff` and `commit`.

use anyhow::Result;
use clap::{ArgAction, Args, ValueEnum};

use mocker::commit::{CommitOptions, Compression};
use mocker::Mocker;

#[derive(Args)]
pub struct DiffArgs {
    container: String,
}

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g. "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true")]
    pause: bool,
    /// Compression of the new layer
    #[arg(long, value_enum, default_value = "gzip")]
    compression: LayerCompression,
    container: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayerCompression {
    Gzip,
    Zstd,
}

/// docker's `diff`: one `A`/`C`/`D` line per change.
pub fn diff(mocker: &Mocker, args: &DiffArgs) -> Result<i32> {
    for change in mocker::container::diff(mocker, &args.container)? {
        println!("{change}");
    }
    Ok(0)
}

/// docker's `commit`: prints the new image's ID.
pub fn commit(mocker: &Mocker, args: &CommitArgs) -> Result<i32> {
    let opts = CommitOptions {
        message: args.message.clone(),
        author: args.author.clone(),
        changes: args.change.clone(),
        pause: args.pause,
        compression: match args.compression {
            LayerCompression::Gzip => Compression::Gzip,
            LayerCompression::Zstd => Compression::Zstd,
        },
    };
    let id = mocker::commit::commit(mocker, &args.container, args.reference.as_deref(), &opts)?;
    println!("{id}");
    Ok(0)
}
