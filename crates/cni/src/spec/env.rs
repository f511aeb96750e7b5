//! The `CNI_*` environment variables a runtime passes with each command, parsed and validated.
//!
//! Parsing goes through a lookup function rather than `std::env` so tests need no real
//! environment. Only the variables the command uses are read: podman sends placeholder values
//! (`CNI_NETNS=dummy`) with VERSION, and VERSION must never fail.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::validate::{ID_PATTERN, ifname_problem, ip_ignoring_prefix, is_valid_id};
use crate::error::{CniError, Code, Result};

/// The CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach the container to the network.
    Add,
    /// Undo an ADD; must succeed when there is nothing left to undo.
    Del,
    /// Verify an earlier ADD is still in place (0.4.0+).
    Check,
    /// Report whether the plugin can serve ADDs now (1.1.0+).
    Status,
    /// Remove resources of attachments not in the valid set (1.1.0+).
    Gc,
    /// Report the supported spec versions.
    Version,
}

impl Command {
    /// Parses the `CNI_COMMAND` value (upper case, as the spec spells it).
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// The command as the spec spells it, e.g. `"ADD"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// Whether the command acts on one attachment (container ID, ifname, netns).
    fn is_per_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parsed `CNI_*` environment of one invocation.
///
/// `container_id`, `netns`, `ifname` and `args` are only read for ADD, DEL and CHECK; for the
/// other commands they are `None`/empty whatever the runtime set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`, validated against the libcni pattern.
    pub container_id: Option<String>,
    /// `CNI_NETNS`; `None` on a DEL sent after the netns is gone (empty or unset variable).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`, validated as a Linux interface name.
    pub ifname: Option<String>,
    /// `CNI_ARGS` (`K1=V1;K2=V2`).
    pub args: CniArgs,
    /// `CNI_PATH`, split on `:`; empty entries dropped.
    pub path: Vec<PathBuf>,
}

/// An `InvalidEnvironment` error for a missing variable.
fn missing(var: &str, command: Command) -> CniError {
    CniError::new(
        Code::InvalidEnvironment,
        format!("{var} is required for {command} but is not set"),
    )
}

impl Env {
    /// Parses the environment from `lookup` (variable name → value).
    ///
    /// An empty value counts as unset: the CRI path sends `CNI_NETNS=` on its second DEL.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Env> {
        let get = |var: &str| lookup(var).filter(|v| !v.is_empty());

        let command = match lookup("CNI_COMMAND") {
            None => {
                return Err(CniError::new(
                    Code::InvalidEnvironment,
                    "CNI_COMMAND is not set; expected one of ADD, DEL, CHECK, STATUS, GC, VERSION",
                ));
            }
            Some(value) => Command::parse(&value).ok_or_else(|| {
                CniError::new(
                    Code::InvalidEnvironment,
                    format!(
                        "CNI_COMMAND: {value:?} is not a CNI command; \
                         expected one of ADD, DEL, CHECK, STATUS, GC, VERSION"
                    ),
                )
            })?,
        };

        let path = get("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();

        let mut env = Env {
            command,
            container_id: None,
            netns: None,
            ifname: None,
            args: CniArgs::default(),
            path,
        };
        if !command.is_per_attachment() {
            return Ok(env);
        }

        let container_id =
            get("CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID", command))?;
        if !is_valid_id(&container_id) {
            return Err(CniError::new(
                Code::InvalidEnvironment,
                format!("CNI_CONTAINERID: {container_id:?} is invalid; expected {ID_PATTERN}"),
            ));
        }

        let ifname = get("CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME", command))?;
        if let Some(problem) = ifname_problem(&ifname) {
            return Err(CniError::new(
                Code::InvalidEnvironment,
                format!("CNI_IFNAME: {ifname:?} is not a valid interface name: {problem}"),
            ));
        }

        // DEL must work after the netns is gone, so only ADD and CHECK insist on it.
        let netns = get("CNI_NETNS").map(PathBuf::from);
        if netns.is_none() && command != Command::Del {
            return Err(missing("CNI_NETNS", command));
        }

        env.container_id = Some(container_id);
        env.ifname = Some(ifname);
        env.netns = netns;
        env.args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        Ok(env)
    }

    /// Parses the environment of the current process.
    pub fn from_process() -> Result<Env> {
        Env::from_lookup(|var| std::env::var(var).ok())
    }

    /// The container ID, or the `InvalidEnvironment` error saying it is needed.
    pub fn container_id(&self) -> Result<&str> {
        self.container_id
            .as_deref()
            .ok_or_else(|| missing("CNI_CONTAINERID", self.command))
    }

    /// The netns path, or the `InvalidEnvironment` error saying it is needed.
    pub fn netns(&self) -> Result<&Path> {
        self.netns
            .as_deref()
            .ok_or_else(|| missing("CNI_NETNS", self.command))
    }

    /// The interface name, or the `InvalidEnvironment` error saying it is needed.
    pub fn ifname(&self) -> Result<&str> {
        self.ifname
            .as_deref()
            .ok_or_else(|| missing("CNI_IFNAME", self.command))
    }
}

/// `CNI_ARGS`: `K1=V1;K2=V2`, every pair kept in order (unknown keys are the norm: containerd
/// sends `K8S_POD_NAME` and friends).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `K1=V1;K2=V2`. Empty segments are skipped; a segment without `=` is a `Decode`
    /// error naming it. A value may itself contain `=` (split at the first one).
    pub fn parse(s: &str) -> Result<CniArgs> {
        let mut pairs = Vec::new();
        for segment in s.split(';').filter(|seg| !seg.is_empty()) {
            let (k, v) = segment.split_once('=').ok_or_else(|| {
                CniError::new(
                    Code::Decode,
                    format!("CNI_ARGS: pair {segment:?} has no '='; expected K1=V1;K2=V2"),
                )
            })?;
            pairs.push((k.to_owned(), v.to_owned()));
        }
        Ok(CniArgs { pairs })
    }

    /// All pairs in the order given.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value of `key` (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `IgnoreUnknown` is set to `1` or `true` (any case), as libcni's bool parser reads it.
    pub fn ignore_unknown(&self) -> bool {
        self.get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    /// The addresses requested with `IP=` (comma-separated, each optionally `/prefix`, which is
    /// ignored). Empty when the key is absent; an unparsable entry is an `InvalidConfig` error.
    pub fn ips(&self) -> Result<Vec<IpAddr>> {
        let Some(value) = self.get("IP") else {
            return Ok(Vec::new());
        };
        value
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                ip_ignoring_prefix(s).ok_or_else(|| {
                    CniError::new(
                        Code::InvalidConfig,
                        format!(
                            "CNI_ARGS IP: {s:?} (in {value:?}) is not an IP address; \
                             expected a comma-separated list like 10.0.0.5 or fd00::5/64"
                        ),
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> Result<Env> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "8d054cb189c3"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", "/var/run/netns/cni-1"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
        (
            "CNI_ARGS",
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;IgnoreUnknown=1",
        ),
    ];

    fn with(
        base: &[(&'static str, &'static str)],
        k: &'static str,
        v: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut vars: Vec<_> = base.iter().copied().filter(|(key, _)| *key != k).collect();
        vars.push((k, v));
        vars
    }

    fn without(
        base: &[(&'static str, &'static str)],
        k: &str,
    ) -> Vec<(&'static str, &'static str)> {
        base.iter().copied().filter(|(key, _)| *key != k).collect()
    }

    #[test]
    fn add_environment_parses_every_variable() {
        let env = env_of(ADD).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.container_id().unwrap(), "8d054cb189c3");
        assert_eq!(env.ifname().unwrap(), "eth0");
        assert_eq!(env.netns().unwrap(), Path::new("/var/run/netns/cni-1"));
        assert_eq!(
            env.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(env.args.get("K8S_POD_NAME"), Some("p"));
        assert!(env.args.ignore_unknown());
    }

    #[test]
    fn del_with_empty_netns_is_accepted_without_netns() {
        let vars = with(&with(ADD, "CNI_COMMAND", "DEL"), "CNI_NETNS", "");
        let env = env_of(&vars).unwrap();
        assert_eq!(env.command, Command::Del);
        assert_eq!(env.netns, None);
        let e = env.netns().unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment);
        assert!(e.msg.contains("CNI_NETNS"), "{}", e.msg);
    }

    #[test]
    fn del_with_unset_netns_is_accepted() {
        let vars = without(&with(ADD, "CNI_COMMAND", "DEL"), "CNI_NETNS");
        assert_eq!(env_of(&vars).unwrap().netns, None);
    }

    #[test]
    fn add_and_check_without_netns_name_cni_netns() {
        for cmd in ["ADD", "CHECK"] {
            for vars in [
                without(&with(ADD, "CNI_COMMAND", cmd), "CNI_NETNS"),
                with(&with(ADD, "CNI_COMMAND", cmd), "CNI_NETNS", ""),
            ] {
                let e = env_of(&vars).unwrap_err();
                assert_eq!(e.code, Code::InvalidEnvironment);
                assert!(e.msg.contains("CNI_NETNS"), "{}", e.msg);
                assert!(e.msg.contains(cmd), "{}", e.msg);
            }
        }
    }

    #[test]
    fn missing_container_id_or_ifname_is_invalid_environment() {
        for var in ["CNI_CONTAINERID", "CNI_IFNAME"] {
            let e = env_of(&without(ADD, var)).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment);
            assert!(e.msg.contains(var), "{}", e.msg);
        }
    }

    #[test]
    fn bad_container_id_names_variable_and_value() {
        for bad in ["-abc", "a/b", "a b", "_x"] {
            let vars: Vec<(&str, &str)> = ADD
                .iter()
                .map(|&(k, v)| {
                    if k == "CNI_CONTAINERID" {
                        (k, bad)
                    } else {
                        (k, v)
                    }
                })
                .collect();
            let e = env_of(&vars).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment);
            assert!(e.msg.contains("CNI_CONTAINERID"), "{}", e.msg);
            assert!(e.msg.contains(&format!("{bad:?}")), "{}", e.msg);
        }
    }

    #[test]
    fn bad_ifname_names_variable_and_value() {
        for bad in ["eth0:1", "a/b", ".", "..", "verylonginterface0", "a b"] {
            let vars: Vec<(&str, &str)> = ADD
                .iter()
                .map(|&(k, v)| if k == "CNI_IFNAME" { (k, bad) } else { (k, v) })
                .collect();
            let e = env_of(&vars).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment);
            assert!(e.msg.contains("CNI_IFNAME"), "{}", e.msg);
            assert!(e.msg.contains(&format!("{bad:?}")), "{}", e.msg);
        }
    }

    #[test]
    fn unknown_command_is_named() {
        let e = env_of(&with(ADD, "CNI_COMMAND", "add")).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment);
        assert!(e.msg.contains("CNI_COMMAND"), "{}", e.msg);
        assert!(e.msg.contains("\"add\""), "{}", e.msg);
    }

    #[test]
    fn missing_command_is_invalid_environment() {
        let e = env_of(&without(ADD, "CNI_COMMAND")).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment);
        assert!(e.msg.contains("CNI_COMMAND"), "{}", e.msg);
    }

    #[test]
    fn version_ignores_podman_placeholders() {
        // podman/VERSION-bridge.log: empty container ID, dummy netns and path.
        let env = env_of(&[
            ("CNI_ARGS", ""),
            ("CNI_COMMAND", "VERSION"),
            ("CNI_CONTAINERID", ""),
            ("CNI_IFNAME", "dummy"),
            ("CNI_NETNS", "dummy"),
            ("CNI_PATH", "dummy"),
        ])
        .unwrap();
        assert_eq!(env.command, Command::Version);
        assert_eq!(env.container_id, None);
        assert_eq!(env.netns, None);
        assert_eq!(env.ifname, None);
    }

    #[test]
    fn status_and_gc_need_only_the_command() {
        for (cmd, want) in [("STATUS", Command::Status), ("GC", Command::Gc)] {
            let env = env_of(&[("CNI_COMMAND", cmd), ("CNI_ARGS", "not-a-pair")]).unwrap();
            assert_eq!(env.command, want);
            assert!(env.path.is_empty());
            let e = env.container_id().unwrap_err();
            assert!(
                e.msg.contains("CNI_CONTAINERID") && e.msg.contains(cmd),
                "{}",
                e.msg
            );
        }
    }

    #[test]
    fn commands_round_trip_through_their_spelling() {
        for c in [
            Command::Add,
            Command::Del,
            Command::Check,
            Command::Status,
            Command::Gc,
            Command::Version,
        ] {
            assert_eq!(Command::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn cni_args_ip_and_ignore_unknown_as_podman_sends_them() {
        let vars = with(
            ADD,
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=cnt-p1;IP=10.235.0.77",
        );
        let env = env_of(&vars).unwrap();
        assert!(env.args.ignore_unknown());
        assert_eq!(
            env.args.ips().unwrap(),
            vec!["10.235.0.77".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(env.args.pairs().len(), 3);
    }

    #[test]
    fn cni_args_ip_list_ignores_prefixes() {
        let args = CniArgs::parse("IP=10.0.0.5/24, fd00::5/64").unwrap();
        let want: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        assert_eq!(args.ips().unwrap(), want);
    }

    #[test]
    fn cni_args_bad_ip_is_invalid_config_naming_key_and_value() {
        let e = CniArgs::parse("IP=10.0.0.300").unwrap().ips().unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
        assert!(e.msg.contains("CNI_ARGS IP"), "{}", e.msg);
        assert!(e.msg.contains("10.0.0.300"), "{}", e.msg);
    }

    #[test]
    fn cni_args_without_ip_or_ignore_unknown() {
        let args = CniArgs::parse("").unwrap();
        assert!(args.ips().unwrap().is_empty());
        assert!(!args.ignore_unknown());
        assert!(
            CniArgs::parse("IgnoreUnknown=true")
                .unwrap()
                .ignore_unknown()
        );
        assert!(!CniArgs::parse("IgnoreUnknown=0").unwrap().ignore_unknown());
    }

    #[test]
    fn cni_args_pair_without_equals_is_decode_error_naming_it() {
        let e = CniArgs::parse("A=1;oops;B=2").unwrap_err();
        assert_eq!(e.code, Code::Decode);
        assert!(e.msg.contains("\"oops\""), "{}", e.msg);
        let e = env_of(&with(ADD, "CNI_ARGS", "oops")).unwrap_err();
        assert_eq!(e.code, Code::Decode);
    }

    #[test]
    fn cni_args_keep_all_pairs_and_values_with_equals() {
        let args = CniArgs::parse("A=1;;B=x=y;A=2;").unwrap();
        assert_eq!(args.pairs().len(), 3);
        assert_eq!(args.get("B"), Some("x=y"));
        assert_eq!(args.get("A"), Some("2"));
        assert_eq!(args.get("C"), None);
    }
}
