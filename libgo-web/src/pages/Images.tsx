// Images of both engines: pull and build with task progress, tag, push, delete.
import { useState } from "preact/hooks";
import { all, api, ApiFailure, ok, token, type Task } from "../api/client";
import { Action, bytes, Can, Field, Loading, Page, Table, TaskView, useLoad, when } from "../ui";

export function Images() {
  const list = useLoad(
    () => all((page) => ok(api.GET("/api/v1/images", { params: { query: { page, pageSize: 100 } } }))),
    [],
  );
  const [reference, setReference] = useState("");
  const [pullTask, setPullTask] = useState<string | null>(null);
  const [buildTask, setBuildTask] = useState<string | null>(null);
  const [context, setContext] = useState<File | null>(null);
  const [tags, setTags] = useState("");
  const [dockerfile, setDockerfile] = useState("");
  return (
    <Page title="Images" actions={<button type="button" onClick={list.reload}>Refresh</button>}>
      <Can role="operator">
        <div class="panels">
          <form class="panel" aria-label="Pull an image" onSubmit={(e) => e.preventDefault()}>
            <h2>Pull</h2>
            <Field label="Reference" hint="e.g. busybox:latest">
              <input name="reference" value={reference} onInput={(e) => setReference(e.currentTarget.value)} />
            </Field>
            <Action
              class="primary"
              run={async () => {
                const t = await ok(api.POST("/api/v1/images/pull", { body: { reference } }));
                setPullTask(t.id);
              }}
            >
              Pull
            </Action>
            <TaskView id={pullTask} label="Pull" />
          </form>
          <form class="panel" aria-label="Build an image" onSubmit={(e) => e.preventDefault()}>
            <h2>Build</h2>
            <Field label="Build context" hint="a .tar with a Dockerfile">
              <input type="file" name="context" accept=".tar,application/x-tar" onChange={(e) => setContext(e.currentTarget.files?.[0] ?? null)} />
            </Field>
            <Field label="Tags" hint="comma-separated">
              <input name="tags" value={tags} onInput={(e) => setTags(e.currentTarget.value)} />
            </Field>
            <Field label="Dockerfile" hint="path in the context (default Dockerfile)">
              <input name="dockerfile" value={dockerfile} onInput={(e) => setDockerfile(e.currentTarget.value)} />
            </Field>
            <Action
              run={async () => {
                if (!context) throw new Error("choose a build context (.tar) first");
                const q = new URLSearchParams();
                if (tags.trim()) q.set("tags", tags.trim());
                if (dockerfile.trim()) q.set("dockerfile", dockerfile.trim());
                // A raw tar body: the typed client only speaks JSON bodies.
                const r = await fetch(`/api/v1/images/build?${q}`, {
                  method: "POST",
                  headers: { Authorization: `Bearer ${token() ?? ""}`, "Content-Type": "application/x-tar" },
                  body: context,
                });
                const body = (await r.json()) as Task & { code?: string; message?: string };
                if (!r.ok) throw new ApiFailure(r.status, body.code ?? "", body.message ?? r.statusText);
                setBuildTask(body.id);
              }}
            >
              Build
            </Action>
            <TaskView id={buildTask} label="Build" />
          </form>
        </div>
      </Can>
      {list.data ? (
        <Table
          label="Images"
          head={["Tags", "Id", "Kind", "Backend", "Size", "Created", ""]}
          rows={list.data.map((i) => [
            i.tags.join(", ") || "<none>",
            <code title={i.id}>{i.id.replace(/^sha256:/, "").slice(0, 12)}</code>,
            i.kind,
            i.backend,
            bytes(i.sizeBytes),
            when(i.createdAt),
            <ImageActions id={i.id} tags={i.tags} backend={i.backend} reload={list.reload} />,
          ])}
        />
      ) : (
        <Loading error={list.error} what="images" />
      )}
    </Page>
  );
}

function ImageActions(props: { id: string; tags: string[]; backend: string; reload: () => void }) {
  const [task, setTask] = useState<string | null>(null);
  const path = { id: props.id };
  return (
    <Can role="operator">
      <span class="row-actions">
        <Action
          run={async () => {
            const target = window.prompt("New tag (repository:tag)");
            if (!target) return;
            await ok(api.POST("/api/v1/images/{id}/tag", { params: { path }, body: { target, backend: props.backend } }));
            props.reload();
          }}
        >
          Tag
        </Action>
        <Action
          disabled={props.tags.length === 0}
          title={props.tags.length === 0 ? "An image without a tag has no name to push" : undefined}
          run={async () => {
            // A registry takes a name, not an id: with several tags, ask which one
            // (offering the first that names a registry host).
            const registryTag = props.tags.find((t) => /^[^/]*[.:][^/]*\//.test(t));
            const reference =
              props.tags.length === 1 ? props.tags[0] : window.prompt("Push which tag?", registryTag ?? props.tags[0]);
            if (!reference) return;
            const t = await ok(
              api.POST("/api/v1/images/{id}/push", { params: { path: { id: reference } }, body: { backend: props.backend } }),
            );
            setTask(t.id);
          }}
        >
          Push
        </Action>
        <Action
          class="danger"
          confirm="Delete this image?"
          run={async () => {
            await ok(api.DELETE("/api/v1/images/{id}", { params: { path, query: { backend: props.backend } } }));
            props.reload();
          }}
        >
          Delete
        </Action>
        <TaskView id={task} label="Push" />
      </span>
    </Can>
  );
}
