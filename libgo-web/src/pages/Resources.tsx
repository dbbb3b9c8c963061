// Networks, volumes, storage pools and templates.
import { useState } from "preact/hooks";
import { all, api, ApiFailure, ok, token } from "../api/client";
import { Action, bytes, Can, Field, Loading, notify, notifyError, Page, parseBytes, Table, useLoad, when } from "../ui";

const query = (page: number) => ({ params: { query: { page, pageSize: 100 } } });
const loadNetworks = () => all((page) => ok(api.GET("/api/v1/networks", query(page))));
const loadVolumes = () => all((page) => ok(api.GET("/api/v1/volumes", query(page))));
const loadPools = () => all((page) => ok(api.GET("/api/v1/storage-pools", query(page))));
const loadTemplates = () => all((page) => ok(api.GET("/api/v1/templates", query(page))));

function sizeOrThrow(s: string, what: string): number {
  const n = parseBytes(s);
  if (n == null) throw new Error(`${what}: "${s}" is not a size such as 1GiB`);
  return n;
}

export function Networks() {
  const list = useLoad(loadNetworks, []);
  const [name, setName] = useState("");
  const [subnet, setSubnet] = useState("");
  const [kind, setKind] = useState("container");
  return (
    <Page title="Networks">
      <Can role="operator">
        <form class="row" aria-label="Create a network" onSubmit={(e) => e.preventDefault()}>
          <Field label="Name">
            <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </Field>
          <Field label="Subnet" hint="e.g. 10.42.0.0/24">
            <input value={subnet} onInput={(e) => setSubnet(e.currentTarget.value)} />
          </Field>
          <Field label="For">
            <select value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
              <option value="container">containers (docker)</option>
              <option value="vm">VMs (kvm)</option>
            </select>
          </Field>
          <Action
            run={async () => {
              await ok(
                api.POST("/api/v1/networks", {
                  body: { name, subnet: subnet || null, backend: kind === "vm" ? "kvm" : "docker" },
                }),
              );
              setName("");
              list.reload();
            }}
            done="Network created"
          >
            Create
          </Action>
        </form>
      </Can>
      {list.data ? (
        <Table
          label="Networks"
          head={["Name", "Backend", "Driver", "Subnet", "Gateway", "Active", "Instances", ""]}
          rows={list.data.map((n) => [
            n.name,
            n.backend,
            n.driver,
            n.subnet ?? "—",
            n.gateway ?? "—",
            n.active ? "yes" : "no",
            n.instances.length,
            <Can role="operator">
              <Action
                class="danger"
                confirm={`Delete network ${n.name}?`}
                run={async () => {
                  await ok(api.DELETE("/api/v1/networks/{id}", { params: { path: { id: n.name }, query: { backend: n.backend } } }));
                  list.reload();
                }}
              >
                Delete
              </Action>
            </Can>,
          ])}
        />
      ) : (
        <Loading error={list.error} what="networks" />
      )}
    </Page>
  );
}

export function Volumes() {
  const list = useLoad(loadVolumes, []);
  const [name, setName] = useState("");
  const [size, setSize] = useState("");
  const [kind, setKind] = useState("container");
  return (
    <Page title="Volumes">
      <Can role="operator">
        <form class="row" aria-label="Create a volume" onSubmit={(e) => e.preventDefault()}>
          <Field label="Name" hint="VM disks end in .qcow2">
            <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </Field>
          <Field label="Size" hint="VM disks, e.g. 1GiB">
            <input value={size} onInput={(e) => setSize(e.currentTarget.value)} />
          </Field>
          <Field label="For">
            <select value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
              <option value="container">containers (docker)</option>
              <option value="vm">VMs (kvm)</option>
            </select>
          </Field>
          <Action
            run={async () => {
              await ok(
                api.POST("/api/v1/volumes", {
                  body: {
                    name,
                    backend: kind === "vm" ? "kvm" : "docker",
                    sizeBytes: size ? sizeOrThrow(size, "size") : null,
                  },
                }),
              );
              setName("");
              list.reload();
            }}
            done="Volume created"
          >
            Create
          </Action>
        </form>
      </Can>
      {list.data ? (
        <Table
          label="Volumes"
          head={["Name", "Backend", "Pool", "Capacity", "Used", "Used by", "Created", ""]}
          rows={list.data.map((v) => [
            v.name,
            v.backend,
            v.pool ?? "—",
            bytes(v.capacityBytes),
            bytes(v.allocationBytes),
            (v.usedBy ?? []).join(", ") || "—",
            when(v.createdAt),
            <VolumeActions name={v.pool && v.backend === "kvm" ? `${v.pool}/${v.name}` : v.name} backend={v.backend} reload={list.reload} />,
          ])}
        />
      ) : (
        <Loading error={list.error} what="volumes" />
      )}
    </Page>
  );
}

function VolumeActions(props: { name: string; backend: string; reload: () => void }) {
  const params = { path: { name: props.name }, query: { backend: props.backend } };
  return (
    <Can role="operator">
      <span class="row-actions">
        {props.backend === "kvm" && (
          <Action
            run={async () => {
              const s = window.prompt("New size (e.g. 2GiB)");
              if (!s) return;
              await ok(api.POST("/api/v1/volumes/{name}/resize", { params, body: { sizeBytes: sizeOrThrow(s, "size") } }));
              props.reload();
            }}
          >
            Resize
          </Action>
        )}
        {props.backend === "kvm" && (
          <Action confirm={`Wipe ${props.name}? Its data is lost.`} run={() => ok(api.POST("/api/v1/volumes/{name}/wipe", { params }))} done="Wiped">
            Wipe
          </Action>
        )}
        {props.backend === "kvm" && (
          <Can role="admin">
            <label class="button">
              Upload
              <input
                type="file"
                class="sr-only"
                aria-label={`Upload into ${props.name}`}
                onChange={async (e) => {
                  const file = e.currentTarget.files?.[0];
                  if (!file) return;
                  const r = await fetch(
                    `/api/v1/volumes/${encodeURIComponent(props.name)}/upload?backend=${encodeURIComponent(props.backend)}`,
                    { method: "POST", headers: { Authorization: `Bearer ${token() ?? ""}`, "Content-Type": "application/octet-stream" }, body: file },
                  );
                  if (!r.ok) {
                    const b = (await r.json().catch(() => ({}))) as { code?: string; message?: string };
                    notifyError(new ApiFailure(r.status, b.code ?? "", b.message ?? r.statusText));
                  } else {
                    notify("info", `Uploaded ${file.name} into ${props.name}`);
                  }
                  props.reload();
                }}
              />
            </label>
          </Can>
        )}
        <Action
          class="danger"
          confirm={`Delete volume ${props.name}?`}
          run={async () => {
            await ok(api.DELETE("/api/v1/volumes/{name}", { params }));
            props.reload();
          }}
        >
          Delete
        </Action>
      </span>
    </Can>
  );
}

export function StoragePools() {
  const list = useLoad(loadPools, []);
  const [name, setName] = useState("");
  const [path, setPath] = useState("");
  return (
    <Page title="Storage pools">
      <Can role="admin">
        <form class="row" aria-label="Create a storage pool" onSubmit={(e) => e.preventDefault()}>
          <Field label="Name">
            <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </Field>
          <Field label="Directory">
            <input value={path} onInput={(e) => setPath(e.currentTarget.value)} />
          </Field>
          <Action
            run={async () => {
              await ok(api.POST("/api/v1/storage-pools", { body: { name, path } }));
              list.reload();
            }}
            done="Pool created"
          >
            Create
          </Action>
        </form>
      </Can>
      {list.data ? (
        <Table
          label="Storage pools"
          head={["Name", "Type", "Path", "Active", "Capacity", "Allocated", "Available", ""]}
          rows={list.data.map((p) => [
            p.name,
            p.poolType,
            p.path ?? "—",
            p.active ? "yes" : "no",
            bytes(p.capacityBytes),
            bytes(p.allocationBytes),
            bytes(p.availableBytes),
            <Can role="admin">
              <span class="row-actions">
                <Action
                  run={async () => {
                    await ok(
                      api.POST("/api/v1/storage-pools/{name}/{action}", {
                        params: { path: { name: p.name, action: p.active ? "deactivate" : "activate" } },
                      }),
                    );
                    list.reload();
                  }}
                >
                  {p.active ? "Deactivate" : "Activate"}
                </Action>
                <Action
                  class="danger"
                  confirm={`Delete pool ${p.name}?`}
                  run={async () => {
                    await ok(api.DELETE("/api/v1/storage-pools/{name}", { params: { path: { name: p.name } } }));
                    list.reload();
                  }}
                >
                  Delete
                </Action>
              </span>
            </Can>,
          ])}
        />
      ) : (
        <Loading error={list.error} what="storage pools" />
      )}
    </Page>
  );
}

export function Templates() {
  const list = useLoad(loadTemplates, []);
  const [name, setName] = useState("");
  const [cpus, setCpus] = useState("1");
  const [memory, setMemory] = useState("512MiB");
  const [base, setBase] = useState("");
  return (
    <Page title="Templates">
      <Can role="operator">
        <form class="row" aria-label="Create a template" onSubmit={(e) => e.preventDefault()}>
          <Field label="Name">
            <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </Field>
          <Field label="CPUs">
            <input value={cpus} onInput={(e) => setCpus(e.currentTarget.value)} />
          </Field>
          <Field label="Memory">
            <input value={memory} onInput={(e) => setMemory(e.currentTarget.value)} />
          </Field>
          <Field label="Base image" hint="pool/volume">
            <input value={base} onInput={(e) => setBase(e.currentTarget.value)} />
          </Field>
          <Action
            run={async () => {
              await ok(
                api.POST("/api/v1/templates", {
                  body: {
                    name,
                    cpus: Number(cpus) || null,
                    memoryBytes: sizeOrThrow(memory, "memory"),
                    disks: base ? [{ baseImage: base }] : [],
                  },
                }),
              );
              list.reload();
            }}
            done="Template saved"
          >
            Save
          </Action>
        </form>
      </Can>
      {list.data ? (
        <Table
          label="Templates"
          head={["Name", "Backend", "CPUs", "Memory", "Disks", "OS", ""]}
          rows={list.data.map((t) => [
            t.name,
            t.backend,
            t.cpus ?? "—",
            bytes(t.memoryBytes),
            (t.disks ?? []).map((d) => d.baseImage ?? bytes(d.sizeBytes)).join(", ") || "—",
            t.os ?? "—",
            <Can role="operator">
              <Action
                class="danger"
                confirm={`Delete template ${t.name}?`}
                run={async () => {
                  await ok(api.DELETE("/api/v1/templates/{name}", { params: { path: { name: t.name } } }));
                  list.reload();
                }}
              >
                Delete
              </Action>
            </Can>,
          ])}
        />
      ) : (
        <Loading error={list.error} what="templates" />
      )}
    </Page>
  );
}
