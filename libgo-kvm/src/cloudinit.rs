//! Cloud-init NoCloud seeds: `meta-data`, `user-data` and `network-config` in a FAT image
//! labelled `cidata`, attached to the VM as a read-only virtio disk.
//!
//! user-data is written as `#cloud-config` followed by a JSON object (JSON is YAML), so
//! every string is escaped by serde_json. The seed holds secrets (passwords): its content
//! is never logged.

use std::io::{Cursor, Write};

use libgo_core::{CloudInit, Error, Result};
use serde_json::{Map, Value, json};

/// Size of the FAT image.
const SEED_BYTES: usize = 2 << 20;
/// Largest user-data accepted.
const MAX_USER_DATA: usize = 1 << 20;

/// Checks what core validation does not: sizes.
pub(crate) fn validate(ci: &CloudInit) -> Result<()> {
    let size = ci.user_data.as_ref().map_or(0, String::len)
        + ci.network_config.as_ref().map_or(0, String::len)
        + ci.write_files
            .iter()
            .map(|f| f.content.len())
            .sum::<usize>()
        + ci.runcmd.iter().map(String::len).sum::<usize>();
    if size > MAX_USER_DATA {
        return Err(Error::invalid(format!(
            "cloud-init data is {size} bytes; at most {MAX_USER_DATA} are allowed"
        )));
    }
    Ok(())
}

/// The `meta-data` file.
pub(crate) fn meta_data(ci: &CloudInit, instance: &str) -> String {
    // Both values are DNS names (validated), so plain YAML is safe.
    let host = ci.hostname.as_deref().unwrap_or(instance);
    format!("instance-id: {instance}\nlocal-hostname: {host}\n")
}

/// The `user-data` file.
pub(crate) fn user_data(ci: &CloudInit) -> String {
    if let Some(raw) = &ci.user_data {
        return raw.clone();
    }
    let mut doc = Map::new();
    if let Some(h) = &ci.hostname {
        doc.insert("hostname".into(), json!(h));
    }
    if !ci.ssh_authorized_keys.is_empty() {
        doc.insert("ssh_authorized_keys".into(), json!(ci.ssh_authorized_keys));
    }
    if let Some(p) = &ci.password {
        doc.insert("password".into(), json!(p));
        doc.insert("chpasswd".into(), json!({ "expire": false }));
        doc.insert("ssh_pwauth".into(), json!(true));
    }
    if !ci.users.is_empty() {
        let mut users = vec![json!("default")];
        for u in &ci.users {
            let mut m = Map::new();
            m.insert("name".into(), json!(u.name));
            if !u.ssh_authorized_keys.is_empty() {
                m.insert("ssh_authorized_keys".into(), json!(u.ssh_authorized_keys));
            }
            if let Some(p) = &u.password {
                m.insert("plain_text_passwd".into(), json!(p));
                m.insert("lock_passwd".into(), json!(false));
            }
            if let Some(s) = &u.sudo {
                m.insert("sudo".into(), json!(s));
            }
            if let Some(s) = &u.shell {
                m.insert("shell".into(), json!(s));
            }
            users.push(Value::Object(m));
        }
        doc.insert("users".into(), Value::Array(users));
    }
    if !ci.write_files.is_empty() {
        let files: Vec<Value> = ci
            .write_files
            .iter()
            .map(|f| {
                let mut m = Map::new();
                m.insert("path".into(), json!(f.path));
                m.insert("content".into(), json!(f.content));
                if let Some(p) = &f.permissions {
                    m.insert("permissions".into(), json!(p));
                }
                Value::Object(m)
            })
            .collect();
        doc.insert("write_files".into(), Value::Array(files));
    }
    if !ci.runcmd.is_empty() {
        doc.insert("runcmd".into(), json!(ci.runcmd));
    }
    format!("#cloud-config\n{}\n", Value::Object(doc))
}

/// A FAT image labelled `cidata` holding the seed files.
pub(crate) fn fat_seed(ci: &CloudInit, instance: &str) -> Result<Vec<u8>> {
    validate(ci)?;
    let fail =
        |e: std::io::Error| Error::internal(format!("writing the cloud-init seed failed: {e}"));
    let mut disk = Cursor::new(vec![0u8; SEED_BYTES]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new().volume_label(*b"cidata     "),
    )
    .map_err(fail)?;
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).map_err(fail)?;
        let mut files = vec![
            ("meta-data", meta_data(ci, instance)),
            ("user-data", user_data(ci)),
        ];
        if let Some(n) = &ci.network_config {
            files.push(("network-config", n.clone()));
        }
        for (name, content) in files {
            let mut f = fs.root_dir().create_file(name).map_err(fail)?;
            f.truncate().map_err(fail)?;
            f.write_all(content.as_bytes()).map_err(fail)?;
            f.flush().map_err(fail)?;
        }
        fs.unmount().map_err(fail)?;
    }
    tracing::debug!(instance, "cloud-init seed written");
    Ok(disk.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn seed_holds_the_files() {
        let ci = CloudInit {
            hostname: Some("guest-one".into()),
            password: Some("s3cr\"et".into()),
            runcmd: vec!["echo 'hi'".into()],
            ..Default::default()
        };
        let img = fat_seed(&ci, "vm-1").unwrap();
        let mut cur = Cursor::new(img);
        let fs = fatfs::FileSystem::new(&mut cur, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label().trim(), "cidata");
        let mut s = String::new();
        fs.root_dir()
            .open_file("meta-data")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert!(s.contains("local-hostname: guest-one"));
        let mut u = String::new();
        fs.root_dir()
            .open_file("user-data")
            .unwrap()
            .read_to_string(&mut u)
            .unwrap();
        assert!(u.starts_with("#cloud-config\n"));
        let v: Value = serde_json::from_str(u.trim_start_matches("#cloud-config\n")).unwrap();
        assert_eq!(v["password"], "s3cr\"et");
    }
}
