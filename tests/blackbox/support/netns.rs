//! A network namespace of the test's own, joined to the host by a veth pair on a /30 that
//! exists only between the two ends: a "remote host" whose network the test can cut (drop
//! everything inside it: silence, no FIN, no RST) or delete. Removed on every path (drop).

use std::process::Command;

pub struct Namespace {
    pub name: String,
    /// The host's end of the veth pair and its address (PostgreSQL listens there).
    host_end: String,
    pub host_address: String,
    /// The namespace's end's address: how the server sees a client inside.
    pub ns_address: String,
    /// The /30 the pair shares, for pg_hba.conf.
    pub network: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Namespace {
    /// A namespace and veth pair named and addressed after `seed` (a port the test owns, so
    /// parallel tests never share one): 10.231.X.Y/30, host .1, namespace .2.
    pub fn new(seed: u16) -> Self {
        let index = u32::from(seed) % 16_384;
        let (x, y) = (index / 64, (index % 64) * 4);
        let name = format!("roadie-t{seed}");
        let host_end = format!("rdh{seed}");
        let ns_end = format!("rdn{seed}");
        let host_address = format!("10.231.{x}.{}", y + 1);
        let ns_address = format!("10.231.{x}.{}", y + 2);
        let namespace = Namespace {
            name: name.clone(),
            host_end: host_end.clone(),
            host_address: host_address.clone(),
            ns_address: ns_address.clone(),
            network: format!("10.231.{x}.{y}/30"),
        };
        let steps: [&[&str]; 8] = [
            &["netns", "add", &name],
            &[
                "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
            ],
            &["link", "set", &ns_end, "netns", &name],
            &[
                "addr",
                "add",
                &format!("{host_address}/30"),
                "dev",
                &host_end,
            ],
            &["link", "set", &host_end, "up"],
            &[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ns_address}/30"),
                "dev",
                &ns_end,
            ],
            &["-n", &name, "link", "set", &ns_end, "up"],
            &["-n", &name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(step).unwrap_or_else(|e| panic!("making the test's namespace: {e}"));
        }
        namespace
    }

    /// `argv` run inside the namespace.
    pub fn exec_argv(&self, argv: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = ["netns", "exec", &self.name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend(argv.iter().map(|s| s.to_string()));
        all
    }

    /// Cuts the link without a word: everything in and out of the namespace is dropped, so
    /// neither side gets a FIN or a RST, as when a host or a network vanishes.
    pub fn partition(&self) {
        for chain in ["INPUT", "OUTPUT"] {
            let out = Command::new("ip")
                .args([
                    "netns", "exec", &self.name, "iptables", "-A", chain, "-j", "DROP",
                ])
                .output()
                .expect("iptables");
            assert!(
                out.status.success(),
                "iptables in {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Deletes the namespace and the veth pair: the "host" is gone.
    pub fn delete(&self) {
        let _ = ip(&["link", "del", &self.host_end]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.delete();
    }
}
