// One instance: overview and actions, live stats, logs, snapshots, export, console,
// graphics and screenshot. Calls name the instance by its name, which outlives its engine
// id (reverting a container's snapshot makes a new container).
import { useEffect, useRef, useState } from "preact/hooks";
import { useLocation } from "wouter-preact";
import { api, fetchBlob, ok, token, wsUrl, type Instance, type Schemas } from "../api/client";
import { subscribe } from "../api/events";
import {
  Action,
  bytes,
  Can,
  Field,
  Loading,
  notify,
  notifyError,
  Page,
  parseBytes,
  StateBadge,
  Table,
  TaskView,
  useCan,
  useLoad,
  when,
} from "../ui";

const TABS = ["Overview", "Stats", "Logs", "Snapshots", "Disks", "Export", "Console", "Graphics", "Screenshot"] as const;
type Tab = (typeof TABS)[number];

export function InstancePage(props: { id: string }) {
  const [inst, setInst] = useState<Instance | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [tab, setTab] = useState<Tab>("Overview");
  const [, navigate] = useLocation();
  const load = () =>
    ok(api.GET("/api/v1/instances/{id}", { params: { path: { id: props.id } } })).then(
      (i) => (setInst(i), setError(null)),
      setError,
    );
  useEffect(() => {
    load();
    return subscribe((e) => {
      if (e.type === "instance" && (e.event.instanceName === props.id || e.event.instanceId === inst?.id)) load();
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.id]);
  if (!inst) return <Page title={props.id}><Loading error={error} what={props.id} /></Page>;
  const act = (action: Schemas["Action"]) => async () => {
    setInst(await ok(api.POST("/api/v1/instances/{id}/{action}", { params: { path: { id: inst.name, action } } })));
  };
  const tabs = TABS.filter((t) => inst.kind === "vm" || (t !== "Graphics" && t !== "Screenshot" && t !== "Disks"));
  return (
    <Page
      title={inst.name}
      actions={
        <Can role="operator">
          {inst.state !== "running" && inst.state !== "paused" && <Action run={act("start")}>Start</Action>}
          {inst.state === "running" && <Action run={act("stop")}>Stop</Action>}
          {inst.state === "running" && <Action run={act("restart")}>Restart</Action>}
          {inst.state === "running" && <Action run={act("pause")}>Pause</Action>}
          {inst.state === "paused" && <Action run={act("resume")}>Resume</Action>}
          <Action
            class="danger"
            confirm={`Delete ${inst.name}?`}
            run={async () => {
              await ok(api.DELETE("/api/v1/instances/{id}", { params: { path: { id: inst.name }, query: { force: true } } }));
              navigate("/instances");
            }}
          >
            Delete
          </Action>
        </Can>
      }
    >
      <p>
        <StateBadge state={inst.state} /> {inst.kind} on {inst.backend} ({inst.host || "local"})
      </p>
      <div role="tablist" aria-label="Instance views" class="tabs">
        {tabs.map((t) => (
          <button
            key={t}
            type="button"
            role="tab"
            id={`tab-${t}`}
            aria-selected={tab === t}
            aria-controls="tabpanel"
            onClick={() => setTab(t)}
          >
            {t}
          </button>
        ))}
      </div>
      <div role="tabpanel" id="tabpanel" aria-labelledby={`tab-${tab}`} class="tabpanel">
        {tab === "Overview" && <Overview inst={inst} />}
        {tab === "Stats" && <Stats inst={inst} />}
        {tab === "Logs" && <Logs inst={inst} />}
        {tab === "Snapshots" && <Snapshots inst={inst} />}
        {tab === "Disks" && <Disks inst={inst} />}
        {tab === "Export" && <Export inst={inst} />}
        {tab === "Console" && <Console inst={inst} />}
        {tab === "Graphics" && <Graphics inst={inst} />}
        {tab === "Screenshot" && <Screenshot inst={inst} />}
      </div>
    </Page>
  );
}

function Overview(props: { inst: Instance }) {
  const i = props.inst;
  const rows: [string, string][] = [
    ["Id", i.id],
    ["Image", i.image ?? "—"],
    ["CPUs", i.cpus == null ? "—" : String(i.cpus)],
    ["Memory", bytes(i.memoryBytes)],
    ["Addresses", i.ipAddresses.join(", ") || "—"],
    ["Networks", i.networks.join(", ") || "—"],
    ["Ports", i.ports.map((p) => `${p.hostPort ?? "?"}→${p.containerPort}/${p.protocol}`).join(", ") || "—"],
    ["Labels", Object.entries(i.labels).map(([k, v]) => `${k}=${v}`).join(", ") || "—"],
    ["Created", when(i.createdAt)],
  ];
  return (
    <dl class="facts">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

function Stats(props: { inst: Instance }) {
  const cpuEl = useRef<HTMLDivElement>(null);
  const memEl = useRef<HTMLDivElement>(null);
  const [last, setLast] = useState<Schemas["Stats"] | null>(null);
  const [status, setStatus] = useState("connecting");
  useEffect(() => {
    if (props.inst.state !== "running") return;
    let closed = false;
    let ws: WebSocket | null = null;
    let charts: { push(t: number, v: number[]): void; destroy(): void }[] = [];
    import("../widgets/chart").then(({ makeChart }) => {
      if (closed || !cpuEl.current || !memEl.current) return;
      const cpu = makeChart(cpuEl.current, "CPU", [{ label: "CPU", unit: "%" }]);
      const mem = makeChart(memEl.current, "Memory", [{ label: "Used", unit: "MiB" }]);
      charts = [cpu, mem];
      ws = new WebSocket(wsUrl(`/api/v1/instances/${encodeURIComponent(props.inst.name)}/stats`));
      ws.onopen = () => setStatus("live");
      ws.onclose = () => setStatus("closed");
      ws.onmessage = (m) => {
        const s = JSON.parse(m.data as string) as Schemas["Stats"];
        if (!("cpuPercent" in s)) return;
        const t = Date.parse(s.timestamp) / 1000;
        cpu.push(t, [s.cpuPercent]);
        mem.push(t, [s.memoryBytes / 1048576]);
        setLast(s);
      };
    }, notifyError);
    return () => {
      closed = true;
      ws?.close();
      for (const c of charts) c.destroy();
    };
  }, [props.inst.name, props.inst.state]);
  if (props.inst.state !== "running") return <p class="muted">Stats are sampled while the instance runs.</p>;
  return (
    <div>
      <p class="muted" data-testid="stats-status">
        {status}
        {last &&
          ` · CPU ${last.cpuPercent.toFixed(1)} % · memory ${bytes(last.memoryBytes)} of ${bytes(last.memoryLimitBytes)} · net ↓${bytes(last.netRxBytes)} ↑${bytes(last.netTxBytes)}`}
      </p>
      <div ref={cpuEl} class="chart" />
      <div ref={memEl} class="chart" />
    </div>
  );
}

function Logs(props: { inst: Instance }) {
  const [lines, setLines] = useState<Schemas["LogEntry"][]>([]);
  const [follow, setFollow] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const box = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const abort = new AbortController();
    setLines([]);
    setError(null);
    const url = `/api/v1/instances/${encodeURIComponent(props.inst.name)}/logs?tail=500&follow=${follow}`;
    (async () => {
      const r = await fetch(url, { headers: { Authorization: `Bearer ${token() ?? ""}` }, signal: abort.signal });
      if (!r.ok) {
        const b = (await r.json().catch(() => null)) as { message?: string } | null;
        throw new Error(b?.message ?? r.statusText);
      }
      if (!follow) {
        const page = (await r.json()) as Schemas["Page_LogEntry"];
        setLines(page.items);
        return;
      }
      const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
      let rest = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += value;
        const parts = rest.split("\n");
        rest = parts.pop() ?? "";
        const got = parts.filter((p) => p.trim()).map((p) => JSON.parse(p) as Schemas["LogEntry"]);
        if (got.length) setLines((l) => [...l, ...got].slice(-5000));
      }
    })().catch((e: Error) => e.name !== "AbortError" && setError(e.message));
    return () => abort.abort();
  }, [props.inst.name, follow]);
  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines, follow]);
  return (
    <div>
      <label class="inline">
        <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> Follow
      </label>
      {error && (
        <p class="error-text" role="alert">
          {error}
        </p>
      )}
      <pre class="logs" ref={box} tabIndex={0} aria-label="Logs">
        {lines.map((l, n) => (
          <span key={n} class={l.stream === "stderr" ? "stderr" : ""}>
            {l.timestamp ? `${l.timestamp} ` : ""}
            {l.message.endsWith("\n") ? l.message : l.message + "\n"}
          </span>
        ))}
      </pre>
    </div>
  );
}

function Snapshots(props: { inst: Instance }) {
  const id = props.inst.name;
  const list = useLoad(
    () => ok(api.GET("/api/v1/instances/{id}/snapshots", { params: { path: { id }, query: { pageSize: 100 } } })),
    [id],
  );
  const [name, setName] = useState("");
  return (
    <div>
      <Can role="operator">
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
          }}
        >
          <Field label="Snapshot name">
            <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </Field>
          <Action
            run={async () => {
              await ok(api.POST("/api/v1/instances/{id}/snapshots", { params: { path: { id } }, body: { name } }));
              setName("");
              list.reload();
            }}
            done="Snapshot created"
          >
            Create snapshot
          </Action>
        </form>
      </Can>
      {list.data ? (
        <Table
          label="Snapshots"
          head={["Name", "Parent", "Current", "Created", "Memory", ""]}
          rows={list.data.items.map((s) => [
            s.name,
            s.parent ?? "—",
            s.current ? "current" : "",
            when(s.createdAt),
            s.includesMemory ? "yes" : "no",
            <Can role="operator">
              <Action
                run={async () => {
                  await ok(api.POST("/api/v1/instances/{id}/snapshots/{name}/revert", { params: { path: { id, name: s.name } } }));
                  // The current snapshot moved to this one.
                  list.reload();
                }}
                confirm={`Revert ${props.inst.name} to ${s.name}?`}
                done={`Reverted to ${s.name}`}
              >
                Revert
              </Action>{" "}
              <Action
                class="danger"
                run={async () => {
                  await ok(api.DELETE("/api/v1/instances/{id}/snapshots/{name}", { params: { path: { id, name: s.name } } }));
                  list.reload();
                }}
                confirm={`Delete snapshot ${s.name}?`}
              >
                Delete
              </Action>
            </Can>,
          ])}
        />
      ) : (
        <Loading error={list.error} what="snapshots" />
      )}
    </div>
  );
}

function Disks(props: { inst: Instance }) {
  const id = props.inst.name;
  const list = useLoad(() => ok(api.GET("/api/v1/instances/{id}/disks", { params: { path: { id } } })), [id]);
  const [size, setSize] = useState("1GiB");
  const [volume, setVolume] = useState("");
  const [iso, setIso] = useState("");
  const path = { id };
  return (
    <div>
      <Can role="operator">
        <form class="row" aria-label="Attach a disk" onSubmit={(e) => e.preventDefault()}>
          <Field label="New disk size" hint="e.g. 1GiB">
            <input value={size} onInput={(e) => setSize(e.currentTarget.value)} />
          </Field>
          <Field label="Or an existing volume" hint="pool/name">
            <input value={volume} onInput={(e) => setVolume(e.currentTarget.value)} />
          </Field>
          <Action
            run={async () => {
              const sizeBytes = parseBytes(size);
              const body = volume.trim() ? { volume: volume.trim() } : { sizeBytes };
              const d = await ok(api.POST("/api/v1/instances/{id}/disks", { params: { path }, body }));
              notify("info", `Attached as ${d.target}`);
              list.reload();
            }}
          >
            Attach disk
          </Action>
        </form>
        <form class="row" aria-label="CD-ROM media" onSubmit={(e) => e.preventDefault()}>
          <Field label="ISO volume" hint="pool/name.iso">
            <input value={iso} onInput={(e) => setIso(e.currentTarget.value)} />
          </Field>
          <Action
            run={async () => {
              await ok(api.POST("/api/v1/instances/{id}/media", { params: { path }, body: { image: iso.trim() } }));
              list.reload();
            }}
          >
            Insert media
          </Action>
          <Action
            run={async () => {
              await ok(api.DELETE("/api/v1/instances/{id}/media", { params: { path } }));
              list.reload();
            }}
          >
            Eject media
          </Action>
        </form>
      </Can>
      {list.data ? (
        <Table
          label="Disks"
          head={["Target", "Device", "Bus", "Volume", "Size", "Format", ""]}
          rows={list.data.map((d) => [
            d.target,
            d.device,
            d.bus,
            d.volume ?? d.path ?? "(empty)",
            bytes(d.sizeBytes),
            d.format ?? "—",
            <Can role="operator">
              {d.device === "disk" && (
                <span class="row-actions">
                  <Action
                    run={async () => {
                      const s = window.prompt(`New size of ${d.target} (e.g. 4GiB)`);
                      const sizeBytes = s ? parseBytes(s) : null;
                      if (sizeBytes == null) return;
                      await ok(
                        api.POST("/api/v1/instances/{id}/disks/{target}/resize", {
                          params: { path: { id, target: d.target } },
                          body: { sizeBytes },
                        }),
                      );
                      list.reload();
                    }}
                  >
                    Resize
                  </Action>
                  <Action
                    class="danger"
                    confirm={`Detach ${d.target}? Its volume stays.`}
                    run={async () => {
                      await ok(api.DELETE("/api/v1/instances/{id}/disks/{target}", { params: { path: { id, target: d.target } } }));
                      list.reload();
                    }}
                  >
                    Detach
                  </Action>
                </span>
              )}
            </Can>,
          ])}
        />
      ) : (
        <Loading error={list.error} what="disks" />
      )}
    </div>
  );
}

function Export(props: { inst: Instance }) {
  const formats: Schemas["ExportFormat"][] =
    props.inst.kind === "vm" ? ["qcow2", "vmdk", "vdi", "raw", "ova"] : ["tar", "imagetar"];
  const [format, setFormat] = useState<Schemas["ExportFormat"]>(formats[0]);
  const [task, setTask] = useState<string | null>(null);
  if (!useCan("operator")) return <p class="muted">Exporting needs the operator role.</p>;
  return (
    <div>
      <div class="row">
        <Field label="Format">
          <select value={format} onChange={(e) => setFormat(e.currentTarget.value as Schemas["ExportFormat"])}>
            {formats.map((f) => (
              <option key={f}>{f}</option>
            ))}
          </select>
        </Field>
        <Action
          run={async () => {
            const t = await ok(
              api.POST("/api/v1/instances/{id}/export", { params: { path: { id: props.inst.name } }, body: { format } }),
            );
            setTask(t.id);
          }}
        >
          Export
        </Action>
      </div>
      <TaskView id={task} label="Export" />
      {task && <Download task={task} name={`${props.inst.name}.${format === "imagetar" ? "tar" : format}`} />}
    </div>
  );
}

function Download(props: { task: string; name: string }) {
  return (
    <Action
      run={async () => {
        const blob = await fetchBlob(`/api/v1/tasks/${encodeURIComponent(props.task)}/download`);
        const a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = props.name;
        a.click();
        window.setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
      }}
    >
      Download
    </Action>
  );
}

function Console(props: { inst: Instance }) {
  const el = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState("connecting");
  const allowed = useCan("operator");
  useEffect(() => {
    if (!allowed) return;
    let stop: (() => void) | null = null;
    let closed = false;
    import("../widgets/terminal").then(({ attachTerminal }) => {
      if (closed || !el.current) return;
      stop = attachTerminal(el.current, wsUrl(`/api/v1/instances/${encodeURIComponent(props.inst.name)}/console`), setStatus);
    }, notifyError);
    return () => {
      closed = true;
      stop?.();
    };
  }, [props.inst.name, allowed]);
  if (!allowed) return <p class="muted">The console needs the operator role.</p>;
  return (
    <div>
      <p class="muted" data-testid="console-status">
        Console: {status}
      </p>
      <div ref={el} class="console-box" aria-label="Console" />
    </div>
  );
}

function Graphics(props: { inst: Instance }) {
  const el = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState("connecting");
  const allowed = useCan("operator");
  useEffect(() => {
    if (!allowed || props.inst.state !== "running") return;
    let stop: (() => void) | null = null;
    let closed = false;
    import("../widgets/vnc").then(({ attachVnc }) => {
      if (closed || !el.current) return;
      stop = attachVnc(el.current, wsUrl(`/api/v1/instances/${encodeURIComponent(props.inst.name)}/vnc`), setStatus);
    }, notifyError);
    return () => {
      closed = true;
      stop?.();
    };
  }, [props.inst.name, props.inst.state, allowed]);
  if (!allowed) return <p class="muted">Graphics need the operator role.</p>;
  if (props.inst.state !== "running") return <p class="muted">Start the VM to see its screen.</p>;
  return (
    <div>
      <p class="muted" data-testid="vnc-status">
        VNC: {status}
      </p>
      <div ref={el} class="vnc" aria-label="VM screen" />
    </div>
  );
}

function Screenshot(props: { inst: Instance }) {
  const [src, setSrc] = useState<string | null>(null);
  useEffect(() => () => void (src && URL.revokeObjectURL(src)), [src]);
  return (
    <div>
      <Action
        run={async () => {
          const b = await fetchBlob(`/api/v1/instances/${encodeURIComponent(props.inst.name)}/screenshot`);
          setSrc(URL.createObjectURL(b));
        }}
      >
        Take screenshot
      </Action>
      {src && <img class="screenshot" src={src} alt={`Screenshot of ${props.inst.name}`} />}
    </div>
  );
}
