// Tasks, kept live by the event stream.
import { useEffect, useState } from "preact/hooks";
import { api, ok, type Task } from "../api/client";
import { subscribe } from "../api/events";
import { Action, Can, Loading, Page, Progress, Table, when } from "../ui";

export function Tasks() {
  const [tasks, setTasks] = useState<Map<string, Task> | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    const off = subscribe((e) => {
      if (e.type === "task") setTasks((m) => new Map(m ?? []).set(e.task.id, e.task));
    });
    ok(api.GET("/api/v1/tasks", { params: { query: { pageSize: 100 } } })).then(
      (p) => live && setTasks((m) => new Map([...p.items.map((t) => [t.id, t] as const), ...(m ?? [])])),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
      off();
    };
  }, []);
  const rows = [...(tasks?.values() ?? [])].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return (
    <Page title="Tasks">
      {tasks ? (
        <Table
          label="Tasks"
          head={["Kind", "Target", "Status", "Progress", "Message", "By", "Started", ""]}
          rows={rows.map((t) => [
            t.kind,
            t.target ?? "—",
            t.status,
            <Progress value={t.status === "finished" ? 1 : t.progress} label={`${t.kind} ${t.target ?? ""}`} />,
            t.error ? `${t.error.message} (${t.error.code})` : t.message,
            t.createdBy ?? "—",
            when(t.createdAt),
            t.status === "running" ? (
              <Can role="operator">
                <Action run={() => ok(api.POST("/api/v1/tasks/{id}/cancel", { params: { path: { id: t.id } } }))}>Cancel</Action>
              </Can>
            ) : null,
          ])}
        />
      ) : (
        <Loading error={error} what="tasks" />
      )}
    </Page>
  );
}
