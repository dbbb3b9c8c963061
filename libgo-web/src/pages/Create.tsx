// Create forms for a container and a VM. The server validates; its errors appear next to
// the field they name (the error body's `field`).
import { useState } from "preact/hooks";
import { useLocation } from "wouter-preact";
import { all, api, ApiFailure, ok, type Schemas } from "../api/client";
import { Field, notify, Page, parseBytes, useCan, useLoad } from "../ui";

type Spec = Schemas["InstanceSpec"];
type Errors = Record<string, string>;

const SPEC_FIELDS = [
  "name", "image", "command", "env", "ports", "mounts", "memoryBytes", "cpus", "networks",
  "template", "disks", "cloudInit", "backend", "restartPolicy", "tty", "addresses",
];

/** The form field a server error is about: the top of the JSON path the server names. */
export function fieldOf(e: ApiFailure): string | null {
  const top = e.field?.split(/[.[]/)[0];
  return top && SPEC_FIELDS.includes(top) ? top : null;
}

function lines(s: string): string[] {
  return s.split("\n").map((l) => l.trim()).filter(Boolean);
}

/** "a b 'c d'" → ["a", "b", "c d"]. */
function words(s: string): string[] {
  return [...s.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

class FormError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

function containerSpec(f: Record<string, string | boolean>): Spec {
  const s = (k: string) => String(f[k] ?? "").trim();
  const env: Record<string, string> = {};
  for (const l of lines(s("env"))) {
    const at = l.indexOf("=");
    if (at < 1) throw new FormError("env", `"${l}" is not KEY=VALUE`);
    env[l.slice(0, at)] = l.slice(at + 1);
  }
  const ports = lines(s("ports")).map((l) => {
    const m = /^(?:(\d+):)?(\d+)(?:\/(tcp|udp))?$/.exec(l);
    if (!m) throw new FormError("ports", `"${l}" is not HOST:CONTAINER[/tcp|udp]`);
    return {
      hostPort: m[1] ? Number(m[1]) : null,
      containerPort: Number(m[2]),
      protocol: (m[3] ?? "tcp") as Schemas["Protocol"],
    };
  });
  const mounts = lines(s("mounts")).map((l) => {
    const [source, target, mode] = l.split(":");
    if (!source || !target) throw new FormError("mounts", `"${l}" is not VOLUME:/PATH[:ro]`);
    return { kind: "volume" as const, source, target, readOnly: mode === "ro" };
  });
  const memory = s("memory");
  const memoryBytes = memory ? parseBytes(memory) : null;
  if (memory && memoryBytes == null) throw new FormError("memoryBytes", `"${memory}" is not a size such as 256MiB`);
  return {
    name: s("name"),
    kind: "container",
    image: s("image") || null,
    command: words(s("command")),
    env,
    ports,
    mounts,
    memoryBytes,
    cpus: s("cpus") ? Number(s("cpus")) : null,
    networks: s("networks") ? s("networks").split(",").map((n) => n.trim()) : [],
    addresses: s("addresses") ? [{ pool: s("addresses") }] : [],
    tty: Boolean(f.tty),
    start: Boolean(f.start),
  };
}

function vmSpec(f: Record<string, string | boolean>): Spec {
  const s = (k: string) => String(f[k] ?? "").trim();
  const memory = s("memory");
  const memoryBytes = memory ? parseBytes(memory) : null;
  if (memory && memoryBytes == null) throw new FormError("memoryBytes", `"${memory}" is not a size such as 512MiB`);
  const disk = s("disk");
  const sizeBytes = disk ? parseBytes(disk) : null;
  if (disk && sizeBytes == null) throw new FormError("disks", `"${disk}" is not a size such as 2GiB`);
  const disks: { baseImage?: string | null; sizeBytes: number | null }[] =
    s("baseImage") || sizeBytes ? [{ baseImage: s("baseImage") || null, sizeBytes }] : [];
  // More blank disks after the first: vdb, vdc…
  for (const size of s("extraDisks").split(",").map((x) => x.trim()).filter(Boolean)) {
    const bytes = parseBytes(size);
    if (bytes == null) throw new FormError("disks", `extra disk "${size}" is not a size such as 1GiB`);
    disks.push({ sizeBytes: bytes });
  }
  const keys = lines(s("sshKeys"));
  const runcmd = lines(s("runcmd"));
  const cloudInit = s("hostname") || keys.length || runcmd.length
    ? { hostname: s("hostname") || null, sshAuthorizedKeys: keys, runcmd }
    : null;
  return {
    name: s("name"),
    kind: "vm",
    template: s("template") || null,
    cpus: s("cpus") ? Number(s("cpus")) : null,
    memoryBytes,
    disks,
    networks: s("networks") ? s("networks").split(",").map((n) => n.trim()) : [],
    addresses: s("addresses") ? [{ pool: s("addresses") }] : [],
    cloudInit,
    start: Boolean(f.start),
  };
}

export function Create() {
  const [kind, setKind] = useState<"container" | "vm">("container");
  const [form, setForm] = useState<Record<string, string | boolean>>({ start: true });
  const [errors, setErrors] = useState<Errors>({});
  const [busy, setBusy] = useState(false);
  const [, navigate] = useLocation();
  const templates = useLoad(
    () => all((page) => ok(api.GET("/api/v1/templates", { params: { query: { page, pageSize: 100 } } }))),
    [],
  );
  const addressPools = useLoad(
    () => all((page) => ok(api.GET("/api/v1/address-pools", { params: { query: { page, pageSize: 100 } } }))),
    [],
  );
  const canCreate = useCan("operator");
  if (!canCreate) return <Page title="Create"><p>Creating instances needs the operator role.</p></Page>;
  const bind = (k: string) => ({
    name: k,
    value: String(form[k] ?? ""),
    onInput: (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value }),
    "aria-invalid": errors[k === "memory" ? "memoryBytes" : k === "disk" ? "disks" : k] ? true : undefined,
  });
  const err = (k: string) => errors[k] ?? null;
  const submit = async (e: Event) => {
    e.preventDefault();
    setErrors({});
    let spec: Spec;
    try {
      spec = kind === "container" ? containerSpec(form) : vmSpec(form);
    } catch (x) {
      if (x instanceof FormError) return setErrors({ [x.field]: x.message });
      throw x;
    }
    setBusy(true);
    try {
      const made = await ok(api.POST("/api/v1/instances", { body: spec }));
      notify("info", `${made.name} created`);
      navigate(`/instances`);
    } catch (x) {
      const field = x instanceof ApiFailure ? fieldOf(x) : null;
      if (field) setErrors({ [field]: (x as ApiFailure).message });
      else notify("error", x instanceof ApiFailure ? `${x.message} (${x.code})` : String(x));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Page title="Create">
      <div role="radiogroup" aria-label="Kind" class="row">
        {(["container", "vm"] as const).map((k) => (
          <label class="inline" key={k}>
            <input type="radio" name="kind" checked={kind === k} onChange={() => (setKind(k), setErrors({}))} />{" "}
            {k === "vm" ? "Virtual machine" : "Container"}
          </label>
        ))}
      </div>
      <form class="form" onSubmit={submit} aria-label={`Create a ${kind}`} noValidate>
        <Field label="Name" error={err("name")}>
          <input {...bind("name")} required />
        </Field>
        {kind === "container" ? (
          <>
            <Field label="Image" error={err("image")} hint="e.g. busybox or docker.io/library/nginx:1.27">
              <input {...bind("image")} required />
            </Field>
            <Field label="Command" error={err("command")} hint="words, quotes group">
              <input {...bind("command")} />
            </Field>
            <Field label="Environment" error={err("env")} hint="KEY=VALUE per line">
              <textarea {...bind("env")} rows={3} />
            </Field>
            <Field label="Ports" error={err("ports")} hint="HOST:CONTAINER[/udp] per line">
              <textarea {...bind("ports")} rows={2} />
            </Field>
            <Field label="Volumes" error={err("mounts")} hint="VOLUME:/PATH[:ro] per line">
              <textarea {...bind("mounts")} rows={2} />
            </Field>
            <div class="row">
              <Field label="Memory limit" error={err("memoryBytes")} hint="e.g. 256MiB">
                <input {...bind("memory")} />
              </Field>
              <Field label="CPU limit" error={err("cpus")}>
                <input {...bind("cpus")} inputMode="decimal" />
              </Field>
            </div>
            <label class="inline">
              <input
                type="checkbox"
                checked={Boolean(form.tty)}
                onChange={(e) => setForm({ ...form, tty: e.currentTarget.checked })}
              />{" "}
              Interactive terminal (TTY)
            </label>
          </>
        ) : (
          <>
            <Field label="Template" error={err("template")}>
              <select {...bind("template")} onChange={(e) => setForm({ ...form, template: e.currentTarget.value })}>
                <option value="">None</option>
                {(templates.data ?? []).map((t) => (
                  <option key={t.name}>{t.name}</option>
                ))}
              </select>
            </Field>
            <Field label="Base image" error={err("disks")} hint="a volume (pool/name) the disk is copied from">
              <input {...bind("baseImage")} />
            </Field>
            <div class="row">
              <Field label="CPUs" error={err("cpus")}>
                <input {...bind("cpus")} inputMode="numeric" />
              </Field>
              <Field label="Memory" error={err("memoryBytes")} hint="e.g. 512MiB">
                <input {...bind("memory")} />
              </Field>
              <Field label="Disk size" hint="e.g. 2GiB">
                <input {...bind("disk")} />
              </Field>
            </div>
            <Field label="Extra disks" error={err("disks")} hint="blank disks after the first: sizes, comma-separated (e.g. 1GiB, 512MiB)">
              <input {...bind("extraDisks")} />
            </Field>
            <fieldset>
              <legend>Cloud-init</legend>
              <Field label="Hostname" error={err("cloudInit")}>
                <input {...bind("hostname")} />
              </Field>
              <Field label="SSH keys" hint="one per line">
                <textarea {...bind("sshKeys")} rows={2} />
              </Field>
              <Field label="Commands at first boot" hint="one per line">
                <textarea {...bind("runcmd")} rows={2} />
              </Field>
            </fieldset>
          </>
        )}
        <Field label="Networks" error={err("networks")} hint="comma-separated">
          <input {...bind("networks")} />
        </Field>
        <Field label="Address from pool" error={err("addresses")}>
          <select {...bind("addresses")} onChange={(e) => setForm({ ...form, addresses: e.currentTarget.value })}>
            <option value="">None</option>
            {(addressPools.data ?? []).map((p) => (
              <option key={p.name} value={p.name}>
                {p.name} ({p.addresses - p.allocated} free)
              </option>
            ))}
          </select>
        </Field>
        <label class="inline">
          <input
            type="checkbox"
            checked={Boolean(form.start)}
            onChange={(e) => setForm({ ...form, start: e.currentTarget.checked })}
          />{" "}
          Start after creating
        </label>
        <div class="row">
          <button type="submit" class="primary" disabled={busy} aria-busy={busy}>
            Create {kind === "vm" ? "VM" : "container"}
          </button>
        </div>
      </form>
    </Page>
  );
}
