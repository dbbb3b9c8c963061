// Every VM and container in one list, kept live by the event stream (no polling), with
// filters, multi-select actions and a virtualised body so thousands of rows stay smooth.
import { useVirtualizer } from "@tanstack/react-virtual";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Link } from "wouter-preact";
import { all, api, ok, type Instance, type Schemas } from "../api/client";
import { subscribe } from "../api/events";
import { Action, Can, Loading, notify, Page, StateBadge, useCan, when } from "../ui";

export async function loadInstances(): Promise<Instance[]> {
  return all((page) =>
    ok(api.GET("/api/v1/instances", { params: { query: { page, pageSize: 100 } } })),
  );
}

/** The instances, followed live: an event re-reads the one instance it names. */
export function useLiveInstances() {
  const [byId, setById] = useState<Map<string, Instance> | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    const pending = new Map<string, number>();
    const upsert = (i: Instance) =>
      setById((m) => {
        const next = new Map(m ?? []);
        next.set(i.id, i);
        return next;
      });
    const remove = (id: string) =>
      setById((m) => {
        if (!m?.has(id)) return m;
        const next = new Map(m);
        next.delete(id);
        return next;
      });
    const off = subscribe((e) => {
      if (e.type !== "instance") return;
      const id = e.event.instanceId;
      if (e.event.action === "deleted") return remove(id);
      // A burst of events for one instance is read once.
      window.clearTimeout(pending.get(id));
      pending.set(
        id,
        window.setTimeout(() => {
          pending.delete(id);
          ok(api.GET("/api/v1/instances/{id}", { params: { path: { id } } })).then(
            (i) => live && upsert(i),
            () => live && remove(id),
          );
        }, 150),
      );
    });
    loadInstances().then(
      (list) => live && setById(new Map(list.map((i) => [i.id, i]))),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
      off();
      for (const t of pending.values()) window.clearTimeout(t);
    };
  }, []);
  return { byId, error, setById };
}

const ACTIONS = ["start", "stop", "pause", "resume"] as const;
// The label the server records an instance's group in (io.libgo.group).
const groupOf = (i: { labels?: Record<string, string> }) => i.labels?.["io.libgo.group"] ?? "";
const ROW = 40;

export function Instances() {
  const { byId, error, setById } = useLiveInstances();
  const [query, setQuery] = useState("");
  const [kind, setKind] = useState("");
  const [state, setState] = useState("");
  const [group, setGroup] = useState("");
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const canOperate = useCan("operator");
  const rows = useMemo(() => {
    const q = query.trim().toLowerCase();
    return [...(byId?.values() ?? [])]
      .filter(
        (i) =>
          (!q || i.name.toLowerCase().includes(q) || (i.image ?? "").toLowerCase().includes(q)) &&
          (!kind || i.kind === kind) &&
          (!state || i.state === state) &&
          (!group || groupOf(i) === group),
      )
      .sort((a, b) => a.name.localeCompare(b.name));
  }, [byId, query, kind, state, group]);
  const groups = useMemo(
    () => [...new Set([...(byId?.values() ?? [])].map(groupOf).filter(Boolean))].sort(),
    [byId],
  );
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW,
    overscan: 10,
  });
  const chosen = rows.filter((r) => selected.has(r.id));
  const toggle = (id: string) =>
    setSelected((s) => {
      const n = new Set(s);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });
  const act = async (action: Schemas["Action"] | "delete") => {
    const results = await Promise.allSettled(
      chosen.map((i) =>
        action === "delete"
          ? ok(
              api.DELETE("/api/v1/instances/{id}", {
                params: { path: { id: i.id }, query: { force: true } },
              }),
            )
          : ok(
              api.POST("/api/v1/instances/{id}/{action}", {
                params: { path: { id: i.id, action } },
              }),
            ),
      ),
    );
    const failed = results
      .map((r, n) => (r.status === "rejected" ? `${chosen[n].name}: ${(r.reason as Error).message}` : null))
      .filter(Boolean);
    if (failed.length) notify("error", `${action} failed for ${failed.join("; ")}`);
    else notify("info", `${action}: ${chosen.length} done`);
    if (action === "delete") {
      setById((m) => {
        const next = new Map(m ?? []);
        results.forEach((r, n) => r.status === "fulfilled" && next.delete(chosen[n].id));
        return next;
      });
      setSelected(new Set());
    }
  };
  return (
    <Page
      title="Instances"
      actions={
        <Can role="operator">
          <Link href="/create" class="button primary">
            Create
          </Link>
        </Can>
      }
    >
      <div class="toolbar" role="search">
        <label>
          <span class="sr-only">Search</span>
          <input
            type="search"
            placeholder="Search name or image"
            aria-label="Search instances"
            value={query}
            onInput={(e) => setQuery(e.currentTarget.value)}
          />
        </label>
        <label>
          <span class="sr-only">Kind</span>
          <select aria-label="Kind" value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
            <option value="">All kinds</option>
            <option value="container">Containers</option>
            <option value="vm">VMs</option>
          </select>
        </label>
        <label>
          <span class="sr-only">State</span>
          <select aria-label="State" value={state} onChange={(e) => setState(e.currentTarget.value)}>
            <option value="">All states</option>
            {["running", "stopped", "paused", "creating", "error", "lost", "unknown"].map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          <span class="sr-only">Group</span>
          <select aria-label="Group" value={group} onChange={(e) => setGroup(e.currentTarget.value)}>
            <option value="">All groups</option>
            {groups.map((g) => (
              <option key={g}>{g}</option>
            ))}
          </select>
        </label>
        <span class="muted" data-testid="count">
          {rows.length} of {byId?.size ?? 0}
        </span>
        {canOperate && (
          <span class="bulk" aria-label="Selected instances">
            {ACTIONS.map((a) => (
              <Action key={a} run={() => act(a)} disabled={chosen.length === 0}>
                {a[0].toUpperCase() + a.slice(1)}
              </Action>
            ))}
            <Action
              class="danger"
              run={() => act("delete")}
              disabled={chosen.length === 0}
              confirm={`Delete ${chosen.length} instance(s)?`}
            >
              Delete
            </Action>
          </span>
        )}
      </div>
      {!byId ? (
        <Loading error={error} what="instances" />
      ) : (
        <div class="vlist" role="table" aria-label="Instances" aria-rowcount={rows.length + 1}>
          <div class="vrow vhead" role="row">
            {canOperate ? (
              <span role="columnheader" class="c-check">
                <input
                  type="checkbox"
                  aria-label="Select all shown"
                  checked={rows.length > 0 && chosen.length === rows.length}
                  onChange={(e) =>
                    setSelected(e.currentTarget.checked ? new Set(rows.map((r) => r.id)) : new Set())
                  }
                />
              </span>
            ) : (
              <span role="columnheader" class="c-check" />
            )}
            <span role="columnheader" class="c-name">Name</span>
            <span role="columnheader">Kind</span>
            <span role="columnheader">State</span>
            <span role="columnheader" class="c-wide">Image</span>
            <span role="columnheader">Backend</span>
            <span role="columnheader">Host</span>
            <span role="columnheader" class="c-wide">Group</span>
            <span role="columnheader" class="c-wide">IPv4</span>
            <span role="columnheader" class="c-wide">Created</span>
          </div>
          <div class="vbody" ref={scroller}>
            <div style={{ height: `${virtual.getTotalSize()}px`, position: "relative" }}>
              {virtual.getVirtualItems().map((v) => {
                const i = rows[v.index];
                return (
                  <div
                    key={i.id}
                    class="vrow"
                    role="row"
                    aria-rowindex={v.index + 2}
                    data-name={i.name}
                    style={{ position: "absolute", top: 0, transform: `translateY(${v.start}px)`, height: `${ROW}px` }}
                  >
                    <span role="cell" class="c-check">
                      {canOperate && (
                        <input
                          type="checkbox"
                          aria-label={`Select ${i.name}`}
                          checked={selected.has(i.id)}
                          onChange={() => toggle(i.id)}
                        />
                      )}
                    </span>
                    <span role="cell" class="c-name">
                      <Link href={`/instances/${encodeURIComponent(i.name)}`}>{i.name}</Link>
                    </span>
                    <span role="cell">{i.kind}</span>
                    <span role="cell">
                      <StateBadge state={i.state} />
                    </span>
                    <span role="cell" class="c-wide">{i.image ?? "—"}</span>
                    <span role="cell">{i.backend}</span>
                    <span role="cell">{i.host || "local"}</span>
                    <span role="cell" class="c-wide">{groupOf(i) || "—"}</span>
                    <span role="cell" class="c-wide">{i.ipAddresses.filter((a) => a.includes(".")).join(", ") || "—"}</span>
                    <span role="cell" class="c-wide">{when(i.createdAt)}</span>
                  </div>
                );
              })}
            </div>
          </div>
        </div>
      )}
    </Page>
  );
}
