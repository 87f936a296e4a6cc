//! `history`, `save`, `load` and `import`: images in and out of archives.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;

use mocker::images::HistoryRow;
use mocker::units::human_size;
use mocker::Mocker;

use super::format::Format;
use super::output::{ago, print_table};

#[derive(Args)]
pub(super) struct HistoryArgs {
    image: String,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Format output: table, json, or a template such as '{{.ID}}\t{{.CreatedBy}}'
    #[arg(long, default_value = "table")]
    format: String,
    /// Print sizes in a human readable format (docker's default)
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
}

#[derive(Args)]
pub(super) struct SaveArgs {
    /// Images to save, by name or ID
    #[arg(required = true)]
    images: Vec<String>,
    /// Write to a file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct LoadArgs {
    /// Read from a tar archive file instead of standard input
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Suppress progress output (mocker shows none)
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub(super) struct ImportArgs {
    /// A tar archive of a root filesystem (gzip or zstd allowed): a file, an
    /// http:// or https:// URL, or - for stdin
    file: String,
    /// Name the image REPOSITORY[:TAG]
    reference: Option<String>,
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Commit message for the imported image
    #[arg(short, long)]
    message: Option<String>,
}

/// `history` template fields and their headers.
const HISTORY_FIELDS: &super::format::Fields = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

/// docker's CREATED BY width in a truncated table.
const CREATED_BY_WIDTH: usize = 45;

pub(super) fn history(mocker: &Mocker, args: &HistoryArgs) -> Result<i32> {
    let format = Format::parse(&args.format, HISTORY_FIELDS)?;
    let rows = mocker::images::history(mocker, &args.image)?;
    let now = mocker::timestamp::now();
    let id = |r: &HistoryRow| match &r.id {
        Some(d) if args.no_trunc => d.to_string(),
        Some(d) => d.short().to_string(),
        None => "<missing>".to_string(),
    };
    if args.quiet {
        for r in &rows {
            println!("{}", id(r));
        }
        return Ok(0);
    }
    let created_by = |r: &HistoryRow| {
        let text = r.created_by.replace('\t', " ");
        if args.no_trunc {
            text
        } else {
            ellipsis(&text, CREATED_BY_WIDTH)
        }
    };
    let size = |r: &HistoryRow| {
        if args.human {
            human_size(r.size)
        } else {
            r.size.to_string()
        }
    };
    let since = |r: &HistoryRow| r.created.map(|t| ago(t, now)).unwrap_or_else(|| "N/A".into());
    if !matches!(format, Format::Table) {
        let objects: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "ID": id(r),
                    "CreatedSince": since(r),
                    "CreatedAt": r.created.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default(),
                    "CreatedBy": created_by(r),
                    "Size": size(r),
                    "Comment": r.comment,
                })
            })
            .collect();
        format.print(&objects, HISTORY_FIELDS)?;
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![id(r), since(r), created_by(r), size(r), r.comment.clone()])
        .collect();
    print_table(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &table);
    Ok(0)
}

/// docker's `Ellipsis`: at most `width` characters, the last one `…` when cut.
fn ellipsis(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width - 1).collect();
    format!("{kept}…")
}

pub(super) fn save(mocker: &Mocker, args: &SaveArgs) -> Result<i32> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    super::write_tar(args.output.as_deref(), |out| {
        mocker::archive::save(mocker, &args.images, out)
    })?;
    Ok(0)
}

pub(super) fn load(mocker: &Mocker, args: &LoadArgs) -> Result<i32> {
    let loaded = match &args.input {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
            mocker::archive::load(mocker, file)?
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            mocker::archive::load(mocker, std::io::stdin().lock())?
        }
    };
    // As docker's: -q hides progress (mocker shows none), never these lines.
    for line in &loaded {
        match line {
            mocker::archive::Loaded::Named(name) => println!("Loaded image: {name}"),
            mocker::archive::Loaded::Id(id) => println!("Loaded image ID: {id}"),
        }
    }
    Ok(0)
}

pub(super) fn import(mocker: &Mocker, args: &ImportArgs) -> Result<i32> {
    let reference = args
        .reference
        .as_deref()
        .map(mocker::reference::ImageRef::parse)
        .transpose()?;
    let opts = mocker::archive::ImportOptions {
        source: &args.file,
        reference,
        changes: &args.changes,
        message: args.message.as_deref(),
    };
    use mocker::archive::ImportSource;
    let source = if args.file == "-" {
        ImportSource::Reader(Box::new(std::io::stdin().lock()))
    } else if mocker::download::is_url(&args.file) {
        ImportSource::Url(&args.file)
    } else {
        let file = std::fs::File::open(&args.file).map_err(|e| anyhow::anyhow!("opening {}: {e}", args.file))?;
        ImportSource::Reader(Box::new(file))
    };
    let id = mocker::archive::import(mocker, source, &opts)?;
    println!("{id}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::ellipsis;

    #[test]
    fn ellipsis_cuts_to_width() {
        assert_eq!(ellipsis("short", 45), "short");
        let long = "x".repeat(50);
        let cut = ellipsis(&long, 45);
        assert_eq!(cut.chars().count(), 45);
        assert!(cut.ends_with('…'));
    }
}
