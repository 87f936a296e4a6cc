//! Listing, tagging, inspecting and removing images; garbage collection.

mod common;

use common::*;

#[test]
fn images_table_quiet_digests_and_json() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("busybox")]);
    let table = root.ok(&["images"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().unwrap();
    let inspect = json(root.ok(&["image", "inspect", &image("busybox")]).as_bytes());
    let id = inspect[0]["Id"].as_str().unwrap().to_string();
    assert!(
        row.starts_with(&image("busybox")) && row.contains("latest") && row.contains(&hex_of(&id)[..12]),
        "{row}"
    );
    assert!(row.contains("ago"), "{row}");

    assert_eq!(root.ok(&["images", "-q"]).trim(), &hex_of(&id)[..12]);
    let digest = format!("sha256:{}", sha256_hex(&registry_manifest(&image("busybox"))));
    assert!(root.ok(&["images", "--digests"]).contains(&digest));
    let line = root.ok(&["images", "--format", "json"]);
    let obj = json(line.trim().as_bytes());
    assert_eq!(obj["Repository"], image("busybox"));
    assert_eq!(obj["Tag"], "latest");
    assert_eq!(obj["ID"], &hex_of(&id)[..12]);
    assert_eq!(obj["Digest"], digest);
}

#[test]
fn tag_and_inspect() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("multi")]);
    root.ok(&["tag", &image("multi"), "myapp:v1"]);
    root.ok(&["image", "tag", "myapp:v1", "other/app"]);
    let ls = root.ok(&["images"]);
    assert!(ls.contains("myapp ") && ls.contains("other/app "), "{ls}");
    let inspect = json(root.ok(&["image", "inspect", "myapp:v1"]).as_bytes());
    let tags: Vec<&str> = inspect[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"myapp:v1") && tags.contains(&"other/app:latest"),
        "{tags:?}"
    );
    assert_eq!(
        inspect[0]["Manifest"]["layers"].as_array().unwrap().len(),
        registry_layers(&image("multi")).len()
    );
    assert_eq!(inspect[0]["ImageConfig"]["rootfs"]["type"], "layers");
    let err = root.fails(&["tag", "nothere:v1", "x:y"]);
    assert!(err.contains("no such image: nothere:v1"), "{err}");
    let err = root.fails(&["image", "inspect", "nothere"]);
    assert!(err.contains("no such image"), "{err}");
}

#[test]
fn rmi_collects_unshared_blobs_and_keeps_shared_ones() {
    let root = Root::new();
    let (a, b) = (image("shared-a"), image("shared-b"));
    root.ok(&["pull", "-q", &a]);
    root.ok(&["pull", "-q", &b]);
    let la = registry_layers(&a);
    let lb = registry_layers(&b);
    assert_eq!(la[0], lb[0], "fixtures must share their base layer");
    let manifest_a = sha256_hex(&registry_manifest(&a));
    let config_a = json(&registry_manifest(&a))["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let df = json(root.ok(&["system", "df", "--format", "json"]).as_bytes());
    assert_eq!(df["images"], 2);
    assert!(df["shared"].as_u64().unwrap() > 0, "{df}");

    // A second name keeps the image alive.
    root.ok(&["tag", &a, "keep:me"]);
    let out = root.ok(&["rmi", &a]);
    assert!(out.contains("Untagged:") && !out.contains("Deleted:"), "{out}");
    assert!(root.blobs().contains(&manifest_a));

    let out = root.ok(&["rmi", "keep:me"]);
    assert!(out.contains(&format!("Deleted: {config_a}")), "{out}");
    let blobs = root.blobs();
    assert!(!blobs.contains(&manifest_a), "manifest of a survived");
    assert!(!blobs.contains(&hex_of(&config_a).to_string()), "config of a survived");
    assert!(
        !blobs.contains(&hex_of(&la[1]).to_string()),
        "unshared layer of a survived"
    );
    assert!(
        blobs.contains(&hex_of(&lb[0]).to_string()),
        "shared base layer was deleted"
    );
    assert!(blobs.contains(&hex_of(&lb[1]).to_string()), "layer of b was deleted");
    root.assert_healthy();
    // b is still whole: a re-pull transfers nothing.
    let out = root.run(&["pull", &b]);
    assert!(!stdout(&out).contains("Download complete"), "{}", stdout(&out));
}

#[test]
fn rmi_by_id_needs_force_when_several_names_remain() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("busybox")]);
    root.ok(&["tag", &image("busybox"), "second:name"]);
    let id = root.ok(&["images", "-q"]).lines().next().unwrap().to_string();
    let err = root.fails(&["rmi", &id]);
    assert!(err.contains("must be forced"), "{err}");
    assert!(!root.blobs().is_empty());
    let out = root.ok(&["rmi", "-f", &id]);
    assert_eq!(out.matches("Untagged:").count(), 2, "{out}");
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert!(root.blobs().is_empty(), "{:?}", root.blobs());
    let err = root.fails(&["rmi", "nothere"]);
    assert!(err.contains("no such image"), "{err}");
}

#[test]
fn system_df_counts_dedup() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("busybox")]);
    let one = json(root.ok(&["system", "df", "--format", "json"]).as_bytes());
    root.ok(&["pull", "-q", &image("shared-a")]);
    let two = json(root.ok(&["system", "df", "--format", "json"]).as_bytes());
    let on_disk: u64 = root.blob_bytes();
    assert_eq!(two["size"].as_u64().unwrap(), on_disk);
    assert!(two["size_without_dedup"].as_u64().unwrap() > two["size"].as_u64().unwrap());
    assert!(two["shared"].as_u64().unwrap() >= one["size"].as_u64().unwrap() / 2);
    let table = root.ok(&["system", "df"]);
    assert!(table.contains("Images") && table.contains("RECLAIMABLE"), "{table}");
}

#[test]
fn digest_reference_of_a_tagged_image_is_not_listed_twice_and_one_repo_untags_together() {
    let root = Root::new();
    let reference = image("busybox");
    let digest = format!("sha256:{}", sha256_hex(&registry_manifest(&reference)));
    root.ok(&["pull", "-q", &reference]);
    root.ok(&["pull", "-q", &format!("{reference}@{digest}")]);
    assert_eq!(
        root.ok(&["images", "-q"]).lines().count(),
        1,
        "{}",
        root.ok(&["images"])
    );
    // Several tags in one repository: removing by ID needs no -f, as in docker.
    root.ok(&["tag", &reference, &format!("{reference}:v2")]);
    let id = root.ok(&["images", "-q"]).lines().next().unwrap().to_string();
    let out = root.ok(&["rmi", &id]);
    assert_eq!(out.matches("Untagged:").count(), 3, "{out}");
    assert!(root.blobs().is_empty());
}

#[test]
fn prune_removes_untagged_images_and_orphans_but_never_a_snapshot_in_use() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("shared-a")]);
    root.ok(&["pull", "-q", &image("busybox")]);
    // An untagged image, and a stray (valid) blob nothing uses.
    let id_a = root.ok(&["images", "-q", &image("shared-a")]).trim().to_string();
    root.ok(&["tag", &image("shared-a"), "keep:a"]);
    root.ok(&["rmi", &image("shared-a")]);
    root.ok(&["rmi", "keep:a"]);
    root.ok(&["pull", "-q", &image("shared-b")]);
    root.ok(&["tag", &image("shared-b"), "b:only"]);
    let stray = b"a blob nobody references";
    std::fs::write(root.path().join("blobs/sha256").join(sha256_hex(stray)), stray).unwrap();
    assert!(!id_a.is_empty());

    let out = root.ok(&["system", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert!(!root.blobs().contains(&sha256_hex(stray)), "stray blob survived prune");
    root.assert_healthy();
    let ls = root.ok(&["images"]);
    assert!(
        ls.contains("/busybox") && ls.contains("b "),
        "prune without -a removed a tagged image: {ls}"
    );

    // A mounted root filesystem keeps its layers, even when its image goes.
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    let rootfs = mocker::rootfs::mount_image(&mocker, &image("busybox")).unwrap();
    let out = root.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert!(root.ok(&["images", "-q"]).trim().is_empty());
    assert!(
        rootfs.path().join("bin/busybox").is_file(),
        "a snapshot in use was removed"
    );
    let in_use = list(&root.path().join("snapshots"))
        .into_iter()
        .filter(|n| n.parse::<u64>().is_ok())
        .count();
    assert!(
        in_use >= 2,
        "the image's layer and the writable layer must remain: {in_use}"
    );
    drop(rootfs);
    root.ok(&["system", "prune", "-a", "-f"]);
    let left = list(&root.path().join("snapshots"))
        .into_iter()
        .filter(|n| n.parse::<u64>().is_ok())
        .count();
    assert_eq!(left, 0);
    assert!(root.blobs().is_empty());
}
