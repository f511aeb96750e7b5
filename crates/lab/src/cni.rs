//! The runtime side of CNI, as containerd's CRI plugin does it (libcni): find the node's network
//! config, run each plugin of its list with the `CNI_*` environment and the config on stdin,
//! chain `prevResult`, and keep the result for DEL.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// One pod's attachment to the node's network.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    /// The sandbox's ID (`CNI_CONTAINERID`).
    pub container_id: &'a str,
    /// Path of the pod's network namespace (`CNI_NETNS`).
    pub netns: &'a Path,
    /// The interface inside the pod (`CNI_IFNAME`).
    pub ifname: &'a str,
    /// The pod's namespace and name, passed in `CNI_ARGS` as kubelet does.
    pub pod: (&'a str, &'a str),
    /// Values for the capabilities plugins declare (`portMappings`, …), as `runtimeConfig`.
    pub capabilities: Value,
}

/// The node's CNI setup: where configs are and where plugins are.
#[derive(Debug, Clone)]
pub struct CniRuntime {
    /// The config directory (`/etc/cni/net.d` on a real node).
    pub conf_dir: PathBuf,
    /// The plugin directory (`CNI_PATH`, `/opt/cni/bin` on a real node).
    pub bin_dir: PathBuf,
}

impl CniRuntime {
    /// The network config list the runtime uses: the first `*.conflist` (or `*.conf`, wrapped
    /// into a list) in name order, as libcni picks it. `None` until the agent has written one.
    pub fn network(&self) -> Result<Option<Value>> {
        let Ok(entries) = std::fs::read_dir(&self.conf_dir) else {
            return Ok(None);
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect();
        files.sort();
        let Some(path) = files.first() else {
            return Ok(None);
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let conf: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        if conf.get("plugins").is_some() {
            return Ok(Some(conf));
        }
        Ok(Some(json!({
            "cniVersion": conf["cniVersion"],
            "name": conf["name"],
            "plugins": [conf],
        })))
    }

    /// ADD through every plugin of the list; returns the last result.
    pub fn add(&self, list: &Value, a: &Attachment<'_>) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for plugin in plugins(list)? {
            let conf = plugin_conf(list, plugin, a, prev.as_ref());
            let out = self.exec("ADD", &conf, a)?;
            prev = Some(out);
        }
        prev.context("the network config lists no plugins")
    }

    /// DEL through the plugins in reverse order, with the ADD result if there is one.
    pub fn del(&self, list: &Value, a: &Attachment<'_>, prev: Option<&Value>) -> Result<()> {
        let mut first_error = None;
        for plugin in plugins(list)?.iter().rev() {
            let conf = plugin_conf(list, plugin, a, prev);
            if let Err(e) = self.exec("DEL", &conf, a) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn exec(&self, command: &str, conf: &Value, a: &Attachment<'_>) -> Result<Value> {
        let kind = conf["type"]
            .as_str()
            .context("a plugin in the network config has no \"type\"")?;
        let binary = self.bin_dir.join(kind);
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
            a.pod.0, a.pod.1, a.container_id
        );
        let mut child = Command::new(&binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", a.container_id)
            .env("CNI_NETNS", a.netns)
            .env("CNI_IFNAME", a.ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", &self.bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", binary.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(conf.to_string().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let msg = serde_json::from_str::<Value>(&stdout)
                .ok()
                .and_then(|v| v["msg"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
            bail!("CNI {command} with {kind} failed: {msg}");
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout)
            .with_context(|| format!("CNI {command} with {kind} printed no JSON: {stdout}"))
    }
}

fn plugins(list: &Value) -> Result<&Vec<Value>> {
    list["plugins"]
        .as_array()
        .context("the network config list has no \"plugins\" array")
}

/// A plugin's config as libcni builds it: the list's name and version, `runtimeConfig` for the
/// capabilities it declares, and `prevResult`.
fn plugin_conf(list: &Value, plugin: &Value, a: &Attachment<'_>, prev: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    let mut runtime = serde_json::Map::new();
    if let Some(caps) = plugin["capabilities"].as_object() {
        for (cap, on) in caps {
            if on.as_bool() == Some(true)
                && let Some(v) = a.capabilities.get(cap)
            {
                runtime.insert(cap.clone(), v.clone());
            }
        }
    }
    if !runtime.is_empty() {
        conf["runtimeConfig"] = Value::Object(runtime);
    }
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    conf
}

/// The pod's addresses in a CNI result, without prefix lengths.
pub fn result_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_conf_carries_name_version_capabilities_and_prev_result() {
        let list = json!({"cniVersion": "1.1.0", "name": "podnet", "plugins": [
            {"type": "podnet-cni", "capabilities": {"portMappings": true, "ips": false}}
        ]});
        let a = Attachment {
            container_id: "c1",
            netns: Path::new("/run/netns/x"),
            ifname: "eth0",
            pod: ("default", "web-0"),
            capabilities: json!({"portMappings": [{"hostPort": 8080}], "ips": ["10.0.0.9"]}),
        };
        let prev = json!({"ips": []});
        let conf = plugin_conf(&list, &list["plugins"][0], &a, Some(&prev));
        assert_eq!(conf["name"], "podnet");
        assert_eq!(conf["cniVersion"], "1.1.0");
        assert_eq!(conf["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(conf["runtimeConfig"].get("ips").is_none(), "{conf}");
        assert_eq!(conf["prevResult"], prev);
    }

    #[test]
    fn result_ips_strip_the_prefix() {
        let r = json!({"ips": [{"address": "10.244.1.5/24"}, {"address": "fd00::5/64"}]});
        assert_eq!(result_ips(&r), ["10.244.1.5", "fd00::5"]);
    }
}
