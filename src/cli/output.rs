//! Commands whose work is printing: tables and JSON in docker's shapes.

use anyhow::Result;
use serde_json::json;

use mocker::images::ImageSummary;
use mocker::timestamp::{age, Timestamp};
use mocker::units::{human_duration, human_size};
use mocker::Mocker;

use super::format::Format;

/// Columns aligned like docker's tabwriter (at least 10 wide, 3 apart).
pub(super) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let lines: Vec<String> = std::iter::once(header.join("\t"))
        .chain(rows.iter().map(|r| r.join("\t")))
        .collect();
    print!("{}", super::format::align(&lines));
}

/// docker's CREATED column: "3 days ago".
pub(super) fn ago(then: Timestamp, now: Timestamp) -> String {
    format!("{} ago", human_duration(age(then, now)))
}

/// An image's CREATED: "N/A" when its config has no (valid) time.
fn created_since(created: Option<Timestamp>, now: Timestamp) -> String {
    created.map(|t| ago(t, now)).unwrap_or_else(|| "N/A".into())
}

/// docker's `CreatedAt` field: "2026-01-01 00:00:00 +0000 UTC".
pub(super) fn created_at(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S %z UTC").to_string()
}

/// `images` template fields and their headers.
const IMAGE_FIELDS: &super::format::Fields = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Size", "SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

pub fn images(mocker: &Mocker, args: &super::ImagesArgs) -> Result<i32> {
    let format = Format::parse(&args.format, IMAGE_FIELDS)?;
    let filter = mocker::images::Filter::parse(&args.filter)?;
    let mut rows = mocker::images::list(mocker, args.repository.as_deref())?;
    rows.retain(|r| filter.matches(r));
    let now = mocker::timestamp::now();
    let id = |r: &ImageSummary| {
        if args.no_trunc {
            r.id.to_string()
        } else {
            r.id.short().to_string()
        }
    };
    if args.quiet {
        for r in &rows {
            println!("{}", id(r));
        }
        return Ok(0);
    }
    if !matches!(format, Format::Table) {
        let objects: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "Repository": r.repository,
                    "Tag": r.tag,
                    "Digest": r.digest,
                    "ID": id(r),
                    "CreatedAt": r.created.map(created_at).unwrap_or_default(),
                    "CreatedSince": created_since(r.created, now),
                    "Size": human_size(r.size),
                    "VirtualSize": human_size(r.size),
                })
            })
            .collect();
        format.print(&objects, IMAGE_FIELDS)?;
        return Ok(0);
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![r.repository.clone(), r.tag.clone()];
            if args.digests {
                row.push(r.digest.clone());
            }
            row.extend([id(r), created_since(r.created, now), human_size(r.size)]);
            row
        })
        .collect();
    print_table(&header, &table);
    Ok(0)
}

pub fn inspect(mocker: &Mocker, inputs: &[String]) -> Result<i32> {
    print_inspected(inputs, |input| mocker::images::inspect(mocker, input))
}

/// One JSON array of what `find` returns for each name; like docker, go on
/// past a failure (one line on stderr) and exit 1 at the end.
pub(super) fn print_inspected(
    names: &[String],
    find: impl Fn(&str) -> mocker::Result<Vec<serde_json::Value>>,
) -> Result<i32> {
    let mut docs = Vec::new();
    let mut failed = false;
    for name in names {
        match find(name) {
            Ok(found) => docs.extend(found),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&docs)?);
    Ok(if failed { 1 } else { 0 })
}

pub fn df(mocker: &Mocker, format: &str) -> Result<i32> {
    let usage = mocker::images::disk_usage(mocker)?;
    let containers = mocker::container::disk_usage(mocker)?;
    if format == "json" {
        let mut doc = serde_json::to_value(&usage)?;
        doc["Containers"] = serde_json::to_value(&containers)?;
        println!("{doc}");
        return Ok(0);
    }
    let percent = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let total = usage.size + usage.unpacked;
    print_table(
        &["TYPE", "TOTAL", "ACTIVE", "SIZE", "SHARED", "RECLAIMABLE"],
        &[
            vec![
                "Images".into(),
                usage.images.to_string(),
                usage.active.to_string(),
                human_size(total),
                human_size(usage.shared),
                format!(
                    "{} ({}%)",
                    human_size(usage.reclaimable),
                    percent(usage.reclaimable, total)
                ),
            ],
            vec![
                "Containers".into(),
                containers.containers.to_string(),
                containers.running.to_string(),
                human_size(containers.size),
                human_size(0),
                format!(
                    "{} ({}%)",
                    human_size(containers.reclaimable),
                    percent(containers.reclaimable, containers.size)
                ),
            ],
        ],
    );
    println!(
        "\nBlobs: {}; unpacked layers: {}.",
        human_size(usage.size),
        human_size(usage.unpacked)
    );
    let saved = (usage.size_without_dedup - usage.size) + (usage.unpacked_without_dedup.saturating_sub(usage.unpacked));
    if saved > 0 {
        println!(
            "Deduplication saves {} (blobs and unpacked layers shared between images).",
            human_size(saved)
        );
    }
    Ok(0)
}

pub fn check(mocker: &Mocker, repair: bool) -> Result<i32> {
    let report = mocker::check::check(mocker, repair)?;
    for p in &report.problems {
        println!("problem: {p}");
    }
    for r in &report.repaired {
        println!("repaired: {r}");
    }
    for l in &report.lost {
        println!("lost: {l}");
    }
    if report.partial_downloads > 0 {
        println!(
            "note: {} partial download(s) kept for resuming",
            report.partial_downloads
        );
    }
    println!(
        "checked {} blobs and {} images: {}",
        report.blobs_checked,
        report.images_checked,
        match (report.healthy(), repair) {
            (true, _) => "no problems found".to_string(),
            (false, true) => format!("{} problem(s) found and repaired", report.problems.len()),
            (false, false) => format!(
                "{} problem(s) found; run `mocker system check --repair`",
                report.problems.len()
            ),
        }
    );
    Ok(if report.healthy() || repair { 0 } else { 1 })
}

pub fn info(mocker: &Mocker) -> Result<i32> {
    let usage = mocker::images::disk_usage(mocker)?;
    println!("Mocker Version: {}", env!("CARGO_PKG_VERSION"));
    println!("Root Dir: {}", mocker.root.display());
    let containers = mocker::container::list(mocker, true)?;
    let running = containers
        .iter()
        .filter(|c| c.state.status == mocker::container::Status::Running)
        .count();
    println!("Containers: {}", containers.len());
    println!(" Running: {running}");
    println!(" Stopped: {}", containers.len() - running);
    println!("Images: {}", usage.images);
    println!("Image Bytes: {}", human_size(usage.size));
    println!("Index Schema: {}", mocker::index::SCHEMA_VERSION);
    println!("Platform: {}", mocker::platform::Platform::host());
    Ok(0)
}
