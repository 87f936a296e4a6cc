//! `push`: parse, push, print docker's lines.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use mocker::digest::Digest;
use mocker::push::{PushEvent, PushOptions, PushProgress};
use mocker::reference::ImageRef;
use mocker::registry::RegistryOptions;
use mocker::Mocker;

#[derive(Args)]
pub struct PushArgs {
    /// Image reference, e.g. 127.0.0.1:5000/app:v1
    reference: String,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Maximum number of blobs uploaded at once
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_uploads: u16,
    /// Seconds to wait for a registry connection before giving up
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    connect_timeout: u64,
}

pub fn push(mocker: &Mocker, insecure_registries: &[String], args: &PushArgs) -> Result<i32> {
    let reference = ImageRef::parse(&args.reference)?;
    let opts = PushOptions {
        registry: RegistryOptions {
            insecure_registries: insecure_registries.to_vec(),
            connect_timeout: Duration::from_secs(args.connect_timeout),
            ..Default::default()
        },
        max_concurrent_uploads: args.max_concurrent_uploads as usize,
    };
    if !args.quiet {
        println!("The push refers to repository [{}]", reference.name());
    }
    let lines = Lines {
        quiet: args.quiet,
        last: Mutex::default(),
    };
    let pushed = super::runtime()?.block_on(async {
        tokio::select! {
            r = mocker::push::push(mocker, &reference, &opts, &lines) => r,
            _ = super::interrupted() => Err(mocker::Error::Interrupted),
        }
    })?;
    if args.quiet {
        println!("{}", reference.index_key());
    } else {
        let tag = reference.tag().unwrap_or("latest");
        println!("{tag}: digest: {} size: {}", pushed.digest, pushed.size);
    }
    Ok(0)
}

/// docker's plain lines, one per change of a blob's state (byte counts
/// are not printed).
struct Lines {
    quiet: bool,
    last: Mutex<Vec<(Digest, String)>>,
}

impl PushProgress for Lines {
    fn blob(&self, digest: &Digest, event: PushEvent) {
        let text = match event {
            PushEvent::Preparing => "Preparing".to_string(),
            PushEvent::Pushing { .. } => "Pushing".to_string(),
            PushEvent::Pushed => "Pushed".to_string(),
            PushEvent::AlreadyExists => "Layer already exists".to_string(),
            PushEvent::MountedFrom(repo) => format!("Mounted from {repo}"),
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.iter_mut().find(|(d, _)| d == digest) {
            Some((_, shown)) if *shown == text => return,
            Some((_, shown)) => *shown = text.clone(),
            None => last.push((digest.clone(), text.clone())),
        }
        if !self.quiet {
            println!("{}: {text}", &digest.hex()[..12]);
        }
    }
}
