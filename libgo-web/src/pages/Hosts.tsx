// Hosts, compute pools and the zone's status.
import { useEffect, useState } from "preact/hooks";
import { all, api, ok } from "../api/client";
import { subscribe } from "../api/events";
import { Action, bytes, Can, Field, Loading, Page, Table, useLoad } from "../ui";

export function Hosts() {
  const hosts = useLoad(
    () => all((page) => ok(api.GET("/api/v1/hosts", { params: { query: { page, pageSize: 100 } } }))),
    [],
  );
  const pools = useLoad(
    () => all((page) => ok(api.GET("/api/v1/compute-pools", { params: { query: { page, pageSize: 100 } } }))),
    [],
  );
  const zone = useLoad(() => ok(api.GET("/api/v1/zone/status")), []);
  useEffect(() => subscribe((e) => e.type === "host" && hosts.reload()), [hosts.reload]);
  const [form, setForm] = useState({ name: "", docker: "", libvirt: "", pool: "default" });
  const [poolName, setPoolName] = useState("");
  const bind = (k: keyof typeof form) => ({
    value: form[k],
    onInput: (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value }),
  });
  return (
    <Page title="Hosts">
      {zone.data && (
        <p class="muted" data-testid="zone">
          Zone: {zone.data.hosts.on} of {zone.data.hosts.on + zone.data.hosts.off} hosts up ·{" "}
          {zone.data.instances.running} running · CPU {zone.data.cpuUsage.toFixed(0)} % of {zone.data.maxCpu} · memory free{" "}
          {bytes(zone.data.availableMemoryBytes)} of {bytes(zone.data.maxMemoryBytes)}
        </p>
      )}
      {hosts.data ? (
        <Table
          label="Hosts"
          head={["Name", "Pool", "Alive", "Placement", "Engines", "CPUs", "Memory", "Running", "Stopped", "Lost", ""]}
          rows={hosts.data.map((h) => [
            h.name,
            h.pool,
            h.alive ? "yes" : "no",
            h.enabled ? "enabled" : "disabled",
            h.engines.map((e) => `${e.kind}${e.up ? "" : " (down)"}`).join(", "),
            `${h.allocated.cpus} / ${h.capacity.cpus}`,
            `${bytes(h.allocated.memoryBytes)} / ${bytes(h.capacity.memoryBytes)}`,
            h.instances.running,
            h.instances.stopped,
            h.instances.lost,
            <Can role="admin">
              <span class="row-actions">
                <Action
                  run={async () => {
                    await ok(api.PATCH("/api/v1/hosts/{name}", { params: { path: { name: h.name } }, body: { enabled: !h.enabled } }));
                    hosts.reload();
                  }}
                >
                  {h.enabled ? "Disable" : "Enable"}
                </Action>
                {h.name !== "local" && (
                  <Action
                    class="danger"
                    confirm={`Forget host ${h.name}?`}
                    run={async () => {
                      await ok(api.DELETE("/api/v1/hosts/{name}", { params: { path: { name: h.name } } }));
                      hosts.reload();
                    }}
                  >
                    Remove
                  </Action>
                )}
              </span>
            </Can>,
          ])}
        />
      ) : (
        <Loading error={hosts.error} what="hosts" />
      )}
      <Can role="admin">
        <form class="row" aria-label="Add a host" onSubmit={(e) => e.preventDefault()}>
          <Field label="Host name">
            <input {...bind("name")} />
          </Field>
          <Field label="Docker" hint="tcp://ADDR:2376">
            <input {...bind("docker")} />
          </Field>
          <Field label="libvirt" hint="qemu+tcp://ADDR/system">
            <input {...bind("libvirt")} />
          </Field>
          <Field label="Pool">
            <input {...bind("pool")} />
          </Field>
          <Action
            run={async () => {
              await ok(
                api.POST("/api/v1/hosts", {
                  body: { name: form.name, docker: form.docker || null, libvirt: form.libvirt || null, pool: form.pool || null },
                }),
              );
              hosts.reload();
            }}
            done="Host added"
          >
            Add host
          </Action>
        </form>
      </Can>
      <h2>Compute pools</h2>
      {pools.data ? (
        <Table
          label="Compute pools"
          head={["Name", "Enabled", "Hosts", ""]}
          rows={pools.data.map((p) => [
            p.name,
            p.enabled ? "yes" : "no",
            p.hosts.join(", ") || "—",
            <Can role="admin">
              <span class="row-actions">
                <Action
                  run={async () => {
                    await ok(api.PATCH("/api/v1/compute-pools/{name}", { params: { path: { name: p.name } }, body: { enabled: !p.enabled } }));
                    pools.reload();
                  }}
                >
                  {p.enabled ? "Disable" : "Enable"}
                </Action>
                <Action
                  class="danger"
                  confirm={`Delete pool ${p.name}?`}
                  run={async () => {
                    await ok(api.DELETE("/api/v1/compute-pools/{name}", { params: { path: { name: p.name } } }));
                    pools.reload();
                  }}
                >
                  Delete
                </Action>
              </span>
            </Can>,
          ])}
        />
      ) : (
        <Loading error={pools.error} what="compute pools" />
      )}
      <Can role="admin">
        <form class="row" aria-label="Create a compute pool" onSubmit={(e) => e.preventDefault()}>
          <Field label="Pool name">
            <input value={poolName} onInput={(e) => setPoolName(e.currentTarget.value)} />
          </Field>
          <Action
            run={async () => {
              await ok(api.POST("/api/v1/compute-pools", { body: { name: poolName } }));
              pools.reload();
            }}
            done="Pool created"
          >
            Create pool
          </Action>
        </form>
      </Can>
    </Page>
  );
}
