// Address pools: their ranges, how many addresses they hand out and to whom; administrators
// make and delete pools and ranges. Instances ask for an address in the create form.
import { useState } from "preact/hooks";
import { all, api, ok, type Schemas } from "../api/client";
import { Action, Can, Field, Loading, Page, Table, useLoad } from "../ui";

type Range = Schemas["AddressRange"];

const rangeText = (r: Range) => `${r.start}–${r.end}/${r.prefix}`;

/** "10.0.0.10-10.0.0.99/24" → a range, or null. */
function parseRange(s: string): Range | null {
  const m = /^\s*([\d.]+)\s*-\s*([\d.]+)\s*\/\s*(\d+)\s*$/.exec(s);
  return m ? { start: m[1], end: m[2], prefix: Number(m[3]) } : null;
}

export function AddressPools() {
  const pools = useLoad(
    () => all((page) => ok(api.GET("/api/v1/address-pools", { params: { query: { page, pageSize: 100 } } }))),
    [],
  );
  const [form, setForm] = useState({ name: "", gateway: "", dns: "", range: "" });
  const [more, setMore] = useState({ pool: "", range: "" });
  const bind = (k: keyof typeof form) => ({
    value: form[k],
    onInput: (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value }),
  });
  return (
    <Page title="Address pools">
      {pools.data ? (
        <Table
          label="Address pools"
          head={["Name", "Gateway", "Ranges", "Addresses", "Allocated", ""]}
          empty="No address pool yet."
          rows={pools.data.map((p) => [
            p.name,
            p.gateway,
            p.ranges.map(rangeText).join(", ") || "—",
            p.addresses,
            p.allocated,
            <Can role="admin">
              <Action
                class="danger"
                confirm={`Delete address pool ${p.name}?`}
                run={async () => {
                  await ok(api.DELETE("/api/v1/address-pools/{name}", { params: { path: { name: p.name } } }));
                  pools.reload();
                }}
              >
                Delete
              </Action>
            </Can>,
          ])}
        />
      ) : (
        <Loading error={pools.error} what="address pools" />
      )}
      {(pools.data ?? [])
        .filter((p) => p.allocations.length > 0)
        .map((p) => (
          <details key={p.name} open>
            <summary>
              {p.name}: {p.allocated} of {p.addresses} handed out
            </summary>
            <Table
              label={`Allocations of ${p.name}`}
              head={["Address", "Instance"]}
              rows={p.allocations.map((a) => [a.address, a.instance])}
            />
          </details>
        ))}
      <Can role="admin">
        <h2>New pool</h2>
        <form class="row" aria-label="Create an address pool" onSubmit={(e) => e.preventDefault()}>
          <Field label="Pool name">
            <input {...bind("name")} />
          </Field>
          <Field label="Gateway" hint="e.g. 10.0.0.1">
            <input {...bind("gateway")} />
          </Field>
          <Field label="Name servers" hint="comma-separated">
            <input {...bind("dns")} />
          </Field>
          <Field label="First range" hint="START-END/PREFIX">
            <input {...bind("range")} />
          </Field>
          <Action
            run={async () => {
              const r = form.range ? parseRange(form.range) : null;
              if (form.range && !r) throw new Error(`"${form.range}" is not START-END/PREFIX`);
              await ok(
                api.POST("/api/v1/address-pools", {
                  body: {
                    name: form.name,
                    gateway: form.gateway,
                    dns: form.dns ? form.dns.split(",").map((d) => d.trim()) : [],
                    ranges: r ? [r] : [],
                  },
                }),
              );
              setForm({ name: "", gateway: "", dns: "", range: "" });
              pools.reload();
            }}
            done="Address pool created"
          >
            Create address pool
          </Action>
        </form>
        <form class="row" aria-label="Add a range" onSubmit={(e) => e.preventDefault()}>
          <Field label="To pool">
            <select value={more.pool} onChange={(e) => setMore({ ...more, pool: e.currentTarget.value })}>
              <option value="">Choose…</option>
              {(pools.data ?? []).map((p) => (
                <option key={p.name}>{p.name}</option>
              ))}
            </select>
          </Field>
          <Field label="Range" hint="START-END/PREFIX">
            <input value={more.range} onInput={(e) => setMore({ ...more, range: e.currentTarget.value })} />
          </Field>
          <Action
            run={async () => {
              const r = parseRange(more.range);
              if (!r) throw new Error(`"${more.range}" is not START-END/PREFIX`);
              await ok(
                api.POST("/api/v1/address-pools/{name}/ranges", { params: { path: { name: more.pool } }, body: r }),
              );
              setMore({ ...more, range: "" });
              pools.reload();
            }}
            done="Range added"
          >
            Add range
          </Action>
        </form>
      </Can>
    </Page>
  );
}
