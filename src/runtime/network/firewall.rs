//! The bridge's iptables rules (outbound masquerade, forwarding), run
//! through the `iptables` command: the one part not done over netlink.

use std::process::Command;

use super::{Bridge, NetworkError};

/// Run iptables with `verb` (`-C`, `-A`, `-D`) on `rule`; whether it succeeded.
pub(super) fn iptables(verb: &str, rule: &[String]) -> Result<bool, NetworkError> {
    let output = Command::new("iptables")
        .args(["-w", "5"])
        .args(with_verb(rule, verb))
        .output()
        .map_err(NetworkError::Iptables)?;
    Ok(output.status.success())
}

/// The masquerade and forward rules for `bridge`.
pub(super) fn rules(bridge: &Bridge) -> Vec<Vec<String>> {
    let subnet = bridge.subnet.to_string();
    let name = bridge.name.clone();
    vec![
        vec![
            "-t",
            "nat",
            "POSTROUTING",
            "-s",
            &subnet,
            "!",
            "-o",
            &name,
            "-j",
            "MASQUERADE",
        ],
        vec!["FORWARD", "-i", &name, "-j", "ACCEPT"],
        vec!["FORWARD", "-o", &name, "-j", "ACCEPT"],
    ]
    .into_iter()
    .map(|r| r.into_iter().map(str::to_string).collect())
    .collect()
}

/// `rule` with the verb (`-C`, `-A`, `-D`) put before the chain.
fn with_verb(rule: &[String], verb: &str) -> Vec<String> {
    let mut args = rule.to_vec();
    let chain_at = if args[0] == "-t" { 2 } else { 0 };
    args.insert(chain_at, verb.to_string());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::network::Subnet;

    #[test]
    fn iptables_rules_put_the_verb_before_the_chain() {
        let bridge = Bridge {
            name: "br9".into(),
            subnet: Subnet::parse("10.1.0.0/16").unwrap(),
        };
        let r = rules(&bridge);
        assert_eq!(with_verb(&r[0], "-A")[..4], ["-t", "nat", "-A", "POSTROUTING"]);
        assert_eq!(with_verb(&r[1], "-D")[..2], ["-D", "FORWARD"]);
    }
}
