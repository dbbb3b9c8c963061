//! Export of a VM's disk with `qemu-img` (qcow2, vmdk, vdi, raw) and as an OVA (OVF
//! descriptor, stream-optimised VMDK and SHA-256 manifest in a tar), and screenshots.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use libgo_core::*;
use quick_xml::Writer;
use quick_xml::events::BytesText;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::KvmBackend;
use crate::compute::{find_volume, is_local, lookup};
use crate::conn::LvExt;
use crate::xml;

/// The disk to export: path, format and the VM's name.
struct Source {
    path: String,
    format: String,
    name: String,
    cpus: u32,
    memory_bytes: u64,
}

async fn source(b: &KvmBackend, id: &str) -> Result<Source> {
    let inner = b.inner.clone();
    let id = id.to_string();
    b.inner
        .run(move |c| {
            let d = lookup(c, &id)?;
            let f = xml::parse_domain(&d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE).lv()?)?;
            if d.is_active().lv()? {
                return Err(Error::conflict(format!(
                    "VM {:?} is running: its disk changes under an export. Stop it, or take a \
                     snapshot and export after stopping, then export again",
                    f.name
                )));
            }
            let disk = f
                .disks
                .iter()
                .find(|d| d.device == "disk" && !d.readonly)
                .ok_or_else(|| Error::invalid(format!("VM {:?} has no disk to export", f.name)))?;
            let path = match (&disk.pool, &disk.volume, &disk.file) {
                (Some(p), Some(v), _) => {
                    find_volume(&inner, c, &format!("{p}/{v}"))?.path().lv()?
                }
                (_, _, Some(file)) => file.clone(),
                _ => return Err(Error::internal("the VM's disk has no source")),
            };
            let format = disk.format.clone().unwrap_or_else(|| "raw".into());
            if crate::chain::checkable(&inner) {
                crate::chain::check(c, &path, Some(&format))?;
            }
            Ok(Source {
                path,
                format,
                name: f.name.clone(),
                cpus: f.vcpus,
                memory_bytes: f.memory_bytes,
            })
        })
        .await
}

/// Runs `qemu-img convert -p`, reporting its progress.
async fn convert(
    src: &Source,
    out_format: &str,
    options: &[&str],
    dest: &Path,
    progress: &ProgressSink,
    part: &str,
) -> Result<()> {
    let mut cmd = tokio::process::Command::new("qemu-img");
    cmd.arg("convert")
        .arg("-p")
        .arg("-f")
        .arg(&src.format)
        .arg("-O")
        .arg(out_format);
    for o in options {
        cmd.arg("-o").arg(o);
    }
    cmd.arg(&src.path).arg(dest);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| {
        Error::unavailable(format!(
            "cannot run qemu-img (is qemu-utils installed?): {e}"
        ))
    })?;
    progress.report(Progress {
        percent: Some(0.0),
        message: format!("converting to {out_format}"),
        id: Some(part.into()),
    });
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::internal("qemu-img has no stdout"))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| Error::internal("qemu-img has no stderr"))?;
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut buf = [0u8; 4096];
    let mut pending = String::new();
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(pos) = pending.find(['\r', '\n']) {
            let line: String = pending.drain(..=pos).collect();
            if let Some(pct) = line
                .trim()
                .strip_prefix('(')
                .and_then(|l| l.split('/').next())
                .and_then(|p| p.parse::<f64>().ok())
            {
                progress.report(Progress {
                    percent: Some(pct),
                    message: format!("converting to {out_format}"),
                    id: Some(part.into()),
                });
            }
        }
    }
    let status = child.wait().await?;
    let err = err_task.await.unwrap_or_default();
    if !status.success() {
        return Err(Error::internal(format!(
            "qemu-img convert failed: {}",
            err.trim()
        )));
    }
    Ok(())
}

async fn virtual_size(path: &Path) -> Result<u64> {
    let out = tokio::process::Command::new("qemu-img")
        .arg("info")
        .arg("--output=json")
        .arg(path)
        .output()
        .await
        .map_err(|e| Error::unavailable(format!("cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "qemu-img info failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["virtual-size"]
        .as_u64()
        .ok_or_else(|| Error::internal("qemu-img info gave no virtual size"))
}

/// The OVF descriptor of a one-disk VM.
pub(crate) fn ovf(
    name: &str,
    disk_file: &str,
    disk_bytes: u64,
    capacity: u64,
    cpus: u32,
    memory_bytes: u64,
) -> Result<String> {
    let mut w = Writer::new(Vec::new());
    let t = |w: &mut Writer<Vec<u8>>, n: &str, v: &str| -> std::io::Result<()> {
        w.create_element(n).write_text_content(BytesText::new(v))?;
        Ok(())
    };
    w.create_element("Envelope")
        .with_attribute(("xmlns", "http://schemas.dmtf.org/ovf/envelope/1"))
        .with_attribute(("xmlns:ovf", "http://schemas.dmtf.org/ovf/envelope/1"))
        .with_attribute((
            "xmlns:rasd",
            "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
        ))
        .with_attribute((
            "xmlns:vssd",
            "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
        ))
        .write_inner_content(|w| {
            w.create_element("References").write_inner_content(|w| {
                w.create_element("File")
                    .with_attribute(("ovf:id", "file1"))
                    .with_attribute(("ovf:href", disk_file))
                    .with_attribute(("ovf:size", disk_bytes.to_string().as_str()))
                    .write_empty()?;
                Ok(())
            })?;
            w.create_element("DiskSection").write_inner_content(|w| {
                t(w, "Info", "Virtual disks")?;
                w.create_element("Disk")
                    .with_attribute(("ovf:diskId", "vmdisk1"))
                    .with_attribute(("ovf:fileRef", "file1"))
                    .with_attribute(("ovf:capacity", capacity.to_string().as_str()))
                    .with_attribute((
                        "ovf:format",
                        "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized",
                    ))
                    .write_empty()?;
                Ok(())
            })?;
            w.create_element("VirtualSystem")
                .with_attribute(("ovf:id", name))
                .write_inner_content(|w| {
                    t(w, "Info", "A virtual machine exported by LibGo")?;
                    t(w, "Name", name)?;
                    w.create_element("VirtualHardwareSection")
                        .write_inner_content(|w| {
                            t(w, "Info", "Virtual hardware requirements")?;
                            let item = |w: &mut Writer<Vec<u8>>,
                                        id: &str,
                                        kind: &str,
                                        desc: &str,
                                        extra: &[(&str, &str)]|
                             -> std::io::Result<()> {
                                w.create_element("Item").write_inner_content(|w| {
                                    t(w, "rasd:ElementName", desc)?;
                                    t(w, "rasd:InstanceID", id)?;
                                    t(w, "rasd:ResourceType", kind)?;
                                    for (k, v) in extra {
                                        t(w, k, v)?;
                                    }
                                    Ok(())
                                })?;
                                Ok(())
                            };
                            let cpus = cpus.to_string();
                            item(w, "1", "3", "CPUs", &[("rasd:VirtualQuantity", &cpus)])?;
                            let mib = (memory_bytes >> 20).to_string();
                            item(
                                w,
                                "2",
                                "4",
                                "Memory",
                                &[
                                    ("rasd:AllocationUnits", "byte * 2^20"),
                                    ("rasd:VirtualQuantity", &mib),
                                ],
                            )?;
                            item(
                                w,
                                "3",
                                "17",
                                "Disk 1",
                                &[("rasd:HostResource", "ovf:/disk/vmdisk1")],
                            )?;
                            Ok(())
                        })?;
                    Ok(())
                })?;
            Ok(())
        })
        .map_err(|e| Error::internal(format!("writing OVF failed: {e}")))?;
    String::from_utf8(w.into_inner()).map_err(|e| Error::internal(e.to_string()))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn write_ova(dest: &Path, name: &str, ovf_text: &str, vmdk: &Path) -> Result<()> {
    let ovf_name = format!("{name}.ovf");
    let vmdk_name = format!("{name}-disk1.vmdk");
    let ovf_sum: String = Sha256::digest(ovf_text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = format!(
        "SHA256({ovf_name})= {ovf_sum}\nSHA256({vmdk_name})= {}\n",
        sha256_file(vmdk)?
    );
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)?;
    let mut tar = tar::Builder::new(file);
    let add =
        |tar: &mut tar::Builder<std::fs::File>, n: &str, data: &[u8]| -> std::io::Result<()> {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
            h.set_cksum();
            tar.append_data(&mut h, n, data)
        };
    // OVF first, as the OVA format requires.
    add(&mut tar, &ovf_name, ovf_text.as_bytes())?;
    tar.append_path_with_name(vmdk, &vmdk_name)?;
    add(&mut tar, &format!("{name}.mf"), manifest.as_bytes())?;
    tar.into_inner()?.sync_all()?;
    Ok(())
}

pub(crate) async fn export(
    b: &KvmBackend,
    id: &str,
    spec: &ExportSpec,
    progress: ProgressSink,
) -> Result<ExportResult> {
    let (out_format, options): (&str, &[&str]) = match spec.format {
        ExportFormat::Qcow2 => ("qcow2", &[]),
        ExportFormat::Vmdk => ("vmdk", &[]),
        ExportFormat::Vdi => ("vdi", &[]),
        ExportFormat::Raw => ("raw", &[]),
        ExportFormat::Ova => ("vmdk", &["subformat=streamOptimized"]),
        other => {
            return Err(Error::unsupported(format!(
                "a VM cannot be exported as {other:?}"
            )));
        }
    };
    if !b.caps().export_formats.contains(&spec.format) {
        return Err(Error::unsupported(
            "this libvirt connection has no disk files to export",
        ));
    }
    validate::export_spec(spec)?;
    if !is_local(&b.inner) {
        return Err(Error::unsupported(
            "export reads disk files: it needs a local libvirt URI",
        ));
    }
    let src = source(b, id).await?;
    let dest = spec.destination.clone();
    let result = async {
        if spec.format == ExportFormat::Ova {
            let tmp = PathBuf::from(format!("{}.vmdk.part", dest.display()));
            let _ = tokio::fs::remove_file(&tmp).await;
            let out = async {
                convert(&src, out_format, options, &tmp, &progress, "disk1").await?;
                let capacity = virtual_size(&tmp).await?;
                let size = tokio::fs::metadata(&tmp).await?.len();
                let disk_file = format!("{}-disk1.vmdk", src.name);
                let ovf_text = ovf(
                    &src.name,
                    &disk_file,
                    size,
                    capacity,
                    src.cpus.max(1),
                    src.memory_bytes,
                )?;
                progress.report(Progress {
                    percent: Some(100.0),
                    message: "writing OVA".into(),
                    id: None,
                });
                let (d, n, t) = (dest.clone(), src.name.clone(), tmp.clone());
                tokio::task::spawn_blocking(move || write_ova(&d, &n, &ovf_text, &t))
                    .await
                    .map_err(|e| Error::internal(format!("OVA writer failed: {e}")))?
            }
            .await;
            let _ = tokio::fs::remove_file(&tmp).await;
            out
        } else {
            convert(&src, out_format, options, &dest, &progress, "disk1").await
        }
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&dest).await;
        return Err(e);
    }
    let size_bytes = tokio::fs::metadata(&dest).await?.len();
    progress.report(Progress {
        percent: Some(100.0),
        message: "export finished".into(),
        id: None,
    });
    Ok(ExportResult {
        path: dest,
        format: spec.format,
        size_bytes,
    })
}

/// Converts QEMU's screenshot (PPM, or PNG already) to PNG.
pub(crate) fn screenshot_png(mime: &str, data: &[u8]) -> Result<Vec<u8>> {
    if data.starts_with(b"\x89PNG") || mime == "image/png" {
        return Ok(data.to_vec());
    }
    let bad = || Error::internal(format!("unexpected screenshot format {mime:?}"));
    // PPM (P6): magic, width, height, maxval separated by whitespace, then RGB bytes.
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while pos < data.len() && (data[pos].is_ascii_whitespace() || data[pos] == b'#') {
            if data[pos] == b'#' {
                while pos < data.len() && data[pos] != b'\n' {
                    pos += 1;
                }
            }
            pos += 1;
        }
        let start = pos;
        while pos < data.len() && !data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if start == pos {
            return Err(bad());
        }
        fields.push(
            std::str::from_utf8(&data[start..pos])
                .map_err(|_| bad())?
                .to_string(),
        );
    }
    pos += 1;
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(bad());
    }
    let w: u32 = fields[1].parse().map_err(|_| bad())?;
    let h: u32 = fields[2].parse().map_err(|_| bad())?;
    let need = (w as usize).saturating_mul(h as usize).saturating_mul(3);
    let pixels = data.get(pos..pos.saturating_add(need)).ok_or_else(bad)?;
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| Error::internal(e.to_string()))?;
        writer
            .write_image_data(pixels)
            .map_err(|e| Error::internal(e.to_string()))?;
    }
    Ok(out)
}
