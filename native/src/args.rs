//! A small flag parser: `--name value` and boolean `--flag`, every unknown flag refused.

use std::collections::BTreeMap;

pub struct Args {
    values: BTreeMap<String, String>,
    flags: Vec<String>,
    pub positional: Vec<String>,
}

impl Args {
    /// `valued` lists flags that take a value, `switches` boolean flags.
    pub fn parse(argv: &[String], valued: &[&str], switches: &[&str]) -> Result<Args, String> {
        let mut values = BTreeMap::new();
        let mut flags = Vec::new();
        let mut positional = Vec::new();
        let mut i = 0;
        while i < argv.len() {
            let a = &argv[i];
            if let Some(name) = a.strip_prefix("--") {
                let (name, inline) = match name.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (name, None),
                };
                if valued.contains(&name) {
                    let v = match inline {
                        Some(v) => v,
                        None => {
                            i += 1;
                            argv.get(i).cloned().ok_or_else(|| format!("--{name} needs a value"))?
                        }
                    };
                    if values.insert(name.to_string(), v).is_some() {
                        return Err(format!("--{name} given twice"));
                    }
                } else if switches.contains(&name) && inline.is_none() {
                    flags.push(name.to_string());
                } else {
                    return Err(format!("unknown flag --{name}"));
                }
            } else {
                positional.push(a.clone());
            }
            i += 1;
        }
        Ok(Args { values, flags, positional })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("missing --{name}"))
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

/// `--name value` parsed as `T`, or a message naming the flag, the value and `what` it should be.
pub fn parse<T: std::str::FromStr>(args: &Args, name: &str, what: &str) -> Result<Option<T>, String> {
    match args.get(name) {
        Some(v) => v.parse::<T>().map(Some).map_err(|_| format!("--{name} {v}: expected {what}")),
        None => Ok(None),
    }
}
