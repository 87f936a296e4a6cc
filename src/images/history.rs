//! `history`: an image's build steps from its config's `history`, newest
//! first, each with the size of the layer it made (docker's table).

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::MAX_CONFIG_BYTES;
use crate::timestamp::Timestamp;
use crate::Mocker;

/// One row of `history`, newest first.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRow {
    /// The image ID on the top row; None (docker's `<missing>`) below it.
    pub id: Option<Digest>,
    pub created: Option<Timestamp>,
    pub created_by: String,
    /// Bytes of the layer this step made (0 for an empty layer).
    pub size: u64,
    pub comment: String,
}

/// The part of a config `history` reads (oci-spec's type refuses a
/// `created` that is not RFC 3339, which real configs have).
#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    history: Option<Vec<Step>>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct Step {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    empty_layer: bool,
}

/// The history of the image `input` names.
pub fn history(mocker: &Mocker, input: &str) -> Result<Vec<HistoryRow>> {
    let (image, snapshots) = mocker
        .index
        .session(|s| Ok((crate::lookup::one_in(s, input)?, s.snapshots()?)))?;
    let image = &image;
    let bytes = mocker.store.read_small(&image.config_digest, MAX_CONFIG_BYTES)?;
    let config: Config = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidDocument {
        what: format!("config of {input}"),
        reason: e.to_string(),
    })?;
    let layer_sizes: Vec<u64> = image
        .chain_ids
        .iter()
        .zip(&image.layers)
        .map(|(chain, blob)| match snapshots.get(chain.as_str()) {
            Some(s) => s.size,
            None => mocker.store.size(blob).unwrap_or(0),
        })
        .collect();
    let layer_count = config.rootfs.map_or(0, |r| r.diff_ids.len());
    let mut rows = rows_of(config.history.unwrap_or_default(), &layer_sizes, layer_count);
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = Some(image.config_digest.clone());
    }
    Ok(rows)
}

/// Oldest first: each non-empty step takes the next layer's size; a config
/// without history gets one unnamed row per layer, as docker shows it.
fn rows_of(steps: Vec<Step>, layer_sizes: &[u64], layer_count: usize) -> Vec<HistoryRow> {
    if steps.is_empty() {
        return (0..layer_count)
            .map(|i| HistoryRow {
                id: None,
                created: None,
                created_by: String::new(),
                size: layer_sizes.get(i).copied().unwrap_or(0),
                comment: String::new(),
            })
            .collect();
    }
    let mut layer = 0;
    steps
        .into_iter()
        .map(|step| {
            let size = if step.empty_layer {
                0
            } else {
                layer += 1;
                layer_sizes.get(layer - 1).copied().unwrap_or(0)
            };
            HistoryRow {
                id: None,
                created: step
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|t| t.with_timezone(&chrono::Utc)),
                created_by: step.created_by.unwrap_or_default(),
                size,
                comment: step.comment.unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(by: &str, empty: bool) -> Step {
        Step {
            created: Some("2024-01-02T03:04:05Z".into()),
            created_by: Some(by.into()),
            comment: None,
            empty_layer: empty,
        }
    }

    #[test]
    fn empty_layers_take_no_layer_size() {
        let rows = rows_of(
            vec![step("ADD rootfs", false), step("CMD sh", true), step("RUN x", false)],
            &[100, 7],
            2,
        );
        let sizes: Vec<u64> = rows.iter().map(|r| r.size).collect();
        assert_eq!(sizes, [100, 0, 7]);
        assert_eq!(rows[2].created_by, "RUN x");
        assert!(rows[0].created.is_some());
    }

    #[test]
    fn no_history_is_one_row_per_layer() {
        let rows = rows_of(Vec::new(), &[5, 6], 2);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].size, 6);
    }
}
