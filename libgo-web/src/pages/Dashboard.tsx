import { api, ok, all, type Schemas } from "../api/client";
import { bytes, Loading, Page, StateBadge, Table, useLoad } from "../ui";
import { useLiveInstances } from "./Instances";

function Meter(props: { label: string; used?: number | null; total?: number | null; text: string }) {
  const frac = props.used != null && props.total ? props.used / props.total : null;
  return (
    <div class="meter">
      <div class="meter-head">
        <span>{props.label}</span>
        <span class="muted">{props.text}</span>
      </div>
      <div
        class="progress"
        role="meter"
        aria-label={props.label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={frac == null ? undefined : Math.round(frac * 100)}
      >
        <div class="bar" style={{ width: `${frac == null ? 0 : Math.min(100, frac * 100)}%` }} />
      </div>
    </div>
  );
}

function HostCard(props: { host: Schemas["Host"] }) {
  const h = props.host;
  return (
    <article class="card" aria-label={`Host ${h.name}`}>
      <h2>
        {h.name} <span class={h.alive ? "badge state-running" : "badge state-lost"}>{h.alive ? "up" : "down"}</span>
      </h2>
      <p class="muted">
        pool {h.pool} · {h.engines.map((e) => `${e.kind}${e.up ? "" : " (down)"}`).join(", ")}
      </p>
      <Meter
        label="CPU"
        used={h.usage.cpuPercent}
        total={h.usage.cpuPercent == null ? null : 100}
        text={`${h.usage.cpuPercent == null ? "—" : h.usage.cpuPercent.toFixed(0) + " %"} of ${h.capacity.cpus} CPUs`}
      />
      <Meter
        label="Memory"
        used={h.usage.memoryBytes}
        total={h.capacity.memoryBytes}
        text={`${bytes(h.usage.memoryBytes)} of ${bytes(h.capacity.memoryBytes)}`}
      />
      <Meter
        label="Disk"
        used={h.usage.diskBytes}
        total={h.capacity.diskBytes}
        text={`${bytes(h.usage.diskBytes)} of ${bytes(h.capacity.diskBytes)}`}
      />
    </article>
  );
}

export function Dashboard() {
  const { byId } = useLiveInstances();
  const hosts = useLoad(
    () => all((page) => ok(api.GET("/api/v1/hosts", { params: { query: { page, pageSize: 100 } } }))),
    [],
  );
  const health = useLoad(() => ok(api.GET("/health")), []);
  const counts = new Map<string, number>();
  const kinds = { vm: 0, container: 0 };
  for (const i of byId?.values() ?? []) {
    counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
    kinds[i.kind]++;
  }
  return (
    <Page title="Dashboard">
      <section class="cards" aria-label="Instances by state">
        <article class="card stat">
          <h2>Instances</h2>
          <p class="big" data-testid="total">
            {byId ? byId.size : "…"}
          </p>
          <p class="muted">
            {kinds.vm} VMs · {kinds.container} containers
          </p>
        </article>
        {["running", "stopped", "paused", "lost"].map((s) => (
          <article class="card stat" key={s}>
            <h2>
              <StateBadge state={s} />
            </h2>
            <p class="big" data-testid={`count-${s}`}>
              {byId ? (counts.get(s) ?? 0) : "…"}
            </p>
          </article>
        ))}
      </section>
      <h2>Hosts</h2>
      {hosts.data ? (
        <section class="cards">
          {hosts.data.map((h) => (
            <HostCard key={h.name} host={h} />
          ))}
        </section>
      ) : (
        <Loading error={hosts.error} what="hosts" />
      )}
      <h2>Engines</h2>
      {health.data ? (
        <Table
          label="Engines"
          head={["Backend", "Up", "Message", "Latency"]}
          rows={health.data.backends.map((b) => [b.backend, b.up ? "yes" : "no", b.message, `${b.latencyMs} ms`])}
        />
      ) : (
        <Loading error={health.error} what="engines" />
      )}
    </Page>
  );
}
