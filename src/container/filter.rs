//! `ps --filter KEY=VALUE`: docker's container filters. Values of one key
//! are alternatives; different keys must all match. Errors read as docker's.

use regex::Regex;

use super::{Container, Status};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::Mocker;

/// Every state docker names; those mocker never has simply match nothing.
const STATES: [&str; 7] = [
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

#[derive(Debug, Default)]
pub struct Filter {
    ids: Vec<String>,
    names: Vec<Regex>,
    statuses: Vec<String>,
    exit_codes: Vec<i32>,
    /// Manifests of the images `ancestor=` named (none if it named none).
    ancestors: Option<Vec<Digest>>,
}

fn invalid(filter: &str) -> Error {
    Error::InvalidFilter(filter.to_string())
}

impl Filter {
    /// Parse `KEY=VALUE` specs (`id`, `name`, `status`, `exited`,
    /// `ancestor`); `ancestor` values are resolved to images now.
    pub fn parse(mocker: &Mocker, specs: &[String]) -> Result<Filter> {
        let mut filter = Filter::default();
        for spec in specs {
            let Some((key, value)) = spec.split_once('=') else {
                return Err(Error::BadFilterFormat(spec.clone()));
            };
            match key {
                "id" => filter.ids.push(value.to_string()),
                "name" => filter.names.push(Regex::new(value).map_err(|_| invalid(spec))?),
                "status" if STATES.contains(&value) => filter.statuses.push(value.to_string()),
                "exited" => filter.exit_codes.push(value.parse().map_err(|_| invalid(spec))?),
                "ancestor" => {
                    // An image nobody has matches no container.
                    let images = crate::lookup::find(mocker, value).unwrap_or_default();
                    filter
                        .ancestors
                        .get_or_insert_with(Vec::new)
                        .extend(images.into_iter().map(|i| i.manifest_digest));
                }
                "status" => return Err(invalid(spec)),
                _ => return Err(invalid(key)),
            }
        }
        Ok(filter)
    }

    /// A status filter lists stopped containers too, as `-a` does (docker).
    pub fn wants_all(&self) -> bool {
        !self.statuses.is_empty()
    }

    pub fn matches(&self, c: &Container) -> bool {
        let (id, name) = (&c.record.id, &c.record.name);
        let exited = c.state.status == Status::Exited;
        any(&self.ids, |prefix| id.starts_with(prefix.as_str()))
            && any(&self.names, |re| re.is_match(name) || re.is_match(&format!("/{name}")))
            && any(&self.statuses, |status| status == c.state.status.as_str())
            && any(&self.exit_codes, |code| exited && *code == c.state.exit_code)
            && self
                .ancestors
                .as_ref()
                .is_none_or(|digests| digests.contains(&c.record.image_manifest))
    }
}

/// No values: no condition; else one of them must hold.
fn any<T>(values: &[T], holds: impl Fn(&T) -> bool) -> bool {
    values.is_empty() || values.iter().any(holds)
}
