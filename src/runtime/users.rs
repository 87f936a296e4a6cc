//! `--user` resolution against the image's own /etc/passwd and /etc/group,
//! as docker does: `name`, `uid`, `name:group`, `uid:gid`. Pure parsing;
//! init reads the files after pivot_root, so an image symlink cannot point
//! them at the host's.

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    #[error("invalid {field} in passwd entry for {name}")]
    BadPasswdEntry { name: String, field: &'static str },
    #[error("invalid gid in group entry for {0}")]
    BadGroupEntry(String),
}

/// Who the container's process runs as.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, as initgroups would set them: the primary
    /// group and every group listing the user by name, ascending.
    pub groups: Vec<u32>,
    pub home: String,
}

/// Resolve `spec` (empty: root) with the contents of /etc/passwd and
/// /etc/group (empty when the image has none).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<User, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let by_name = entries.iter().find(|f| f[0] == user_part);
    let (uid, mut gid, name, home) = match (by_name, user_part.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>().map_err(|_| bad_passwd(f[0], "uid"))?,
            f[3].parse::<u32>().map_err(|_| bad_passwd(f[0], "gid"))?,
            Some(f[0]),
            f[5].to_string(),
        ),
        (None, Ok(uid)) => match entries.iter().find(|f| f[2].parse::<u32>() == Ok(uid)) {
            Some(f) => (uid, f[3].parse::<u32>().unwrap_or(0), Some(f[0]), f[5].to_string()),
            None => (uid, 0, None, "/".to_string()),
        },
        (None, Err(_)) => return Err(UserError::NoSuchUser(user_part.to_string())),
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match (groups.iter().find(|f| f[0] == g), g.parse::<u32>()) {
            (Some(f), _) => f[2].parse().map_err(|_| UserError::BadGroupEntry(f[0].to_string()))?,
            (None, Ok(gid)) => gid,
            (None, Err(_)) => return Err(UserError::NoSuchGroup(g.to_string())),
        };
    }
    let mut supplementary: Vec<u32> = match name {
        Some(name) if group_part.is_none() => groups
            .iter()
            .filter(|f| f[3].split(',').any(|m| m == name))
            .filter_map(|f| f[2].parse().ok())
            .collect(),
        _ => Vec::new(),
    };
    supplementary.push(gid);
    supplementary.sort_unstable();
    supplementary.dedup();
    Ok(User {
        uid,
        gid,
        groups: supplementary,
        home,
    })
}

fn bad_passwd(name: &str, field: &'static str) -> UserError {
    UserError::BadPasswdEntry {
        name: name.to_string(),
        field,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:33:\nbob:x:1000:\naudio:x:29:bob,alice\n";

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        let root = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let www = resolve("www-data", PASSWD, GROUP).unwrap();
        assert_eq!((www.uid, www.gid, www.home.as_str()), (33, 33, "/var/www"));
        let bob = resolve("bob", PASSWD, GROUP).unwrap();
        assert_eq!(bob.groups, vec![29, 1000]);
        assert_eq!(www.groups, vec![33]);
        assert_eq!(resolve("1000", PASSWD, GROUP).unwrap().gid, 1000);
        // A uid the image does not know runs with gid 0, as in docker.
        let unknown = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((unknown.uid, unknown.gid), (4242, 0));
        assert_eq!(resolve("bob:audio", PASSWD, GROUP).unwrap().gid, 29);
        assert_eq!(resolve("33:7", PASSWD, GROUP).unwrap().gid, 7);
        // An explicit group replaces the supplementary ones.
        assert_eq!(resolve("bob:1000", PASSWD, GROUP).unwrap().groups, vec![1000]);
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = resolve("nobody", PASSWD, GROUP).unwrap_err().to_string();
        assert!(e.contains("unable to find user nobody"), "{e}");
        let e = resolve("bob:wheel", PASSWD, GROUP).unwrap_err().to_string();
        assert!(e.contains("unable to find group wheel"), "{e}");
        assert!(resolve("anyone", "", "").is_err());
        assert_eq!(resolve("0", "", "").unwrap().uid, 0);
    }
}
