// Users, API keys (the key shown once), the audit log; the account page with sessions.
import { useState } from "preact/hooks";
import { all, api, ok, type Role } from "../api/client";
import { Action, Field, Loading, notify, Page, Table, useCan, useLoad, when } from "../ui";

const ROLES: Role[] = ["viewer", "operator", "admin"];

export function Admin() {
  if (!useCan("admin")) return <Page title="Admin"><p role="alert">This page is for administrators.</p></Page>;
  return (
    <Page title="Admin">
      <Users />
      <Groups />
      <Roles />
      <ApiKeys />
      <Audit />
    </Page>
  );
}

function Users() {
  const users = useLoad(() => ok(api.GET("/api/v1/users", { params: { query: { pageSize: 100 } } })), []);
  const [u, setU] = useState({ username: "", password: "", role: "viewer" as Role });
  return (
    <section aria-labelledby="users-title">
      <h2 id="users-title">Users</h2>
      <form class="row" aria-label="Create a user" onSubmit={(e) => e.preventDefault()}>
        <Field label="Username">
          <input value={u.username} onInput={(e) => setU({ ...u, username: e.currentTarget.value })} />
        </Field>
        <Field label="Password">
          <input type="password" autoComplete="new-password" value={u.password} onInput={(e) => setU({ ...u, password: e.currentTarget.value })} />
        </Field>
        <Field label="Role">
          <select value={u.role} onChange={(e) => setU({ ...u, role: e.currentTarget.value as Role })}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </Field>
        <Action
          run={async () => {
            await ok(api.POST("/api/v1/users", { body: u }));
            setU({ username: "", password: "", role: "viewer" });
            users.reload();
          }}
          done="User created"
        >
          Create user
        </Action>
      </form>
      {users.data ? (
        <Table
          label="Users"
          head={["Username", "Role", "Created", ""]}
          rows={users.data.items.map((x) => [
            x.username,
            <select
              aria-label={`Role of ${x.username}`}
              value={x.role}
              onChange={async (e) => {
                const role = e.currentTarget.value as Role;
                try {
                  await ok(api.PATCH("/api/v1/users/{id}", { params: { path: { id: x.id } }, body: { role } }));
                  notify("info", `${x.username} is now ${role}`);
                } catch (err) {
                  notify("error", (err as Error).message);
                }
                users.reload();
              }}
            >
              {ROLES.map((r) => (
                <option key={r}>{r}</option>
              ))}
            </select>,
            when(x.createdAt),
            <Action
              class="danger"
              confirm={`Delete user ${x.username}?`}
              run={async () => {
                await ok(api.DELETE("/api/v1/users/{id}", { params: { path: { id: x.id } } }));
                users.reload();
              }}
            >
              Delete
            </Action>,
          ])}
        />
      ) : (
        <Loading error={users.error} what="users" />
      )}
    </section>
  );
}

function Groups() {
  const groups = useLoad(
    () => all((page) => ok(api.GET("/api/v1/groups", { params: { query: { page, pageSize: 100 } } }))),
    [],
  );
  const [g, setG] = useState({ name: "", description: "" });
  const [m, setM] = useState({ group: "", user: "" });
  return (
    <section aria-labelledby="groups-title">
      <h2 id="groups-title">Groups</h2>
      <form class="row" aria-label="Create a group" onSubmit={(e) => e.preventDefault()}>
        <Field label="Group name">
          <input value={g.name} onInput={(e) => setG({ ...g, name: e.currentTarget.value })} />
        </Field>
        <Field label="Description">
          <input value={g.description} onInput={(e) => setG({ ...g, description: e.currentTarget.value })} />
        </Field>
        <Action
          run={async () => {
            await ok(api.POST("/api/v1/groups", { body: g }));
            setG({ name: "", description: "" });
            groups.reload();
          }}
          done="Group created"
        >
          Create group
        </Action>
      </form>
      <form class="row" aria-label="Add a member" onSubmit={(e) => e.preventDefault()}>
        <Field label="Group">
          <select value={m.group} onChange={(e) => setM({ ...m, group: e.currentTarget.value })}>
            <option value="">Choose…</option>
            {(groups.data ?? []).map((x) => (
              <option key={x.name}>{x.name}</option>
            ))}
          </select>
        </Field>
        <Field label="Member">
          <input value={m.user} onInput={(e) => setM({ ...m, user: e.currentTarget.value })} />
        </Field>
        <Action
          run={async () => {
            await ok(api.PUT("/api/v1/groups/{name}/members/{user}", { params: { path: { name: m.group, user: m.user } } }));
            setM({ ...m, user: "" });
            groups.reload();
          }}
          done="Member added"
        >
          Add member
        </Action>
      </form>
      {groups.data ? (
        <Table
          label="Groups"
          head={["Name", "Members", "Description", ""]}
          empty="No group yet."
          rows={groups.data.map((x) => [
            x.name,
            x.members.join(", ") || "—",
            x.description,
            <Action
              class="danger"
              confirm={`Delete group ${x.name}?`}
              run={async () => {
                await ok(api.DELETE("/api/v1/groups/{name}", { params: { path: { name: x.name } } }));
                groups.reload();
              }}
            >
              Delete
            </Action>,
          ])}
        />
      ) : (
        <Loading error={groups.error} what="groups" />
      )}
    </section>
  );
}

function Roles() {
  const roles = useLoad(
    () => all((page) => ok(api.GET("/api/v1/roles", { params: { query: { page, pageSize: 100 } } }))),
    [],
  );
  const permissions = useLoad(() => ok(api.GET("/api/v1/permissions")), []);
  const [name, setName] = useState("");
  const [chosen, setChosen] = useState<string[]>([]);
  return (
    <section aria-labelledby="roles-title">
      <h2 id="roles-title">Roles</h2>
      {roles.data ? (
        <Table
          label="Roles"
          head={["Name", "Kind", "Permissions", ""]}
          rows={roles.data.map((r) => [
            r.name,
            r.builtin ? "built-in" : "custom",
            r.builtin ? `${r.permissions.length} permissions` : r.permissions.join(", "),
            r.builtin ? null : (
              <Action
                class="danger"
                confirm={`Delete role ${r.name}?`}
                run={async () => {
                  await ok(api.DELETE("/api/v1/roles/{name}", { params: { path: { name: r.name } } }));
                  roles.reload();
                }}
              >
                Delete
              </Action>
            ),
          ])}
        />
      ) : (
        <Loading error={roles.error} what="roles" />
      )}
      <form class="form" aria-label="Create a role" onSubmit={(e) => e.preventDefault()}>
        <Field label="Role name">
          <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <fieldset>
          <legend>Permissions</legend>
          <div class="checks">
            {(permissions.data ?? []).map((p) => (
              <label class="inline" key={p.name} title={p.routes.join("\n")}>
                <input
                  type="checkbox"
                  checked={chosen.includes(p.name)}
                  onChange={(e) =>
                    setChosen(e.currentTarget.checked ? [...chosen, p.name] : chosen.filter((c) => c !== p.name))
                  }
                />{" "}
                {p.name}
              </label>
            ))}
          </div>
        </fieldset>
        <div class="row">
          <Action
            run={async () => {
              await ok(api.POST("/api/v1/roles", { body: { name, permissions: chosen } }));
              setName("");
              setChosen([]);
              roles.reload();
            }}
            done="Role created"
          >
            Create role
          </Action>
        </div>
      </form>
    </section>
  );
}

function ApiKeys() {
  const keys = useLoad(() => ok(api.GET("/api/v1/api-keys", { params: { query: { pageSize: 100 } } })), []);
  const [name, setName] = useState("");
  const [days, setDays] = useState("");
  const [shown, setShown] = useState<string | null>(null);
  return (
    <section aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      <form class="row" aria-label="Create an API key" onSubmit={(e) => e.preventDefault()}>
        <Field label="Key name">
          <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <Field label="Expires in days" hint="empty: never">
          <input value={days} inputMode="numeric" onInput={(e) => setDays(e.currentTarget.value)} />
        </Field>
        <Action
          run={async () => {
            const k = await ok(api.POST("/api/v1/api-keys", { body: { name, expiresInDays: days ? Number(days) : null } }));
            setShown(k.key);
            setName("");
            keys.reload();
          }}
        >
          Create key
        </Action>
      </form>
      {shown && (
        <div class="message info" role="status">
          <span>
            The new key, shown only now: <code data-testid="new-key">{shown}</code>
          </span>
          <button type="button" class="link" onClick={() => setShown(null)}>
            Done
          </button>
        </div>
      )}
      {keys.data ? (
        <Table
          label="API keys"
          head={["Name", "User", "Prefix", "Created", "Expires", "Last used", ""]}
          rows={keys.data.items.map((k) => [
            k.name,
            k.username,
            <code>{k.prefix}…</code>,
            when(k.createdAt),
            when(k.expiresAt),
            when(k.lastUsedAt),
            <Action
              class="danger"
              confirm={`Revoke key ${k.name}?`}
              run={async () => {
                await ok(api.DELETE("/api/v1/api-keys/{id}", { params: { path: { id: k.id } } }));
                keys.reload();
              }}
            >
              Revoke
            </Action>,
          ])}
        />
      ) : (
        <Loading error={keys.error} what="API keys" />
      )}
    </section>
  );
}

function Audit() {
  const [filter, setFilter] = useState({ username: "", method: "", path: "", outcome: "" });
  const [page, setPage] = useState(1);
  const records = useLoad(
    () =>
      ok(
        api.GET("/api/v1/audit", {
          params: {
            query: {
              page,
              pageSize: 50,
              username: filter.username || undefined,
              method: filter.method || undefined,
              path: filter.path || undefined,
              outcome: filter.outcome || undefined,
            },
          },
        }),
      ),
    [filter, page],
  );
  const bind = (k: keyof typeof filter) => ({
    value: filter[k],
    onChange: (e: Event) => (setPage(1), setFilter({ ...filter, [k]: (e.currentTarget as HTMLInputElement).value })),
  });
  return (
    <section aria-labelledby="audit-title">
      <h2 id="audit-title">Audit log</h2>
      <div class="row" role="search" aria-label="Audit filters">
        <Field label="User">
          <input {...bind("username")} />
        </Field>
        <Field label="Method">
          <select {...bind("method")}>
            <option value="">any</option>
            {["GET", "POST", "PUT", "PATCH", "DELETE"].map((m) => (
              <option key={m}>{m}</option>
            ))}
          </select>
        </Field>
        <Field label="Path contains">
          <input {...bind("path")} />
        </Field>
        <Field label="Outcome">
          <select {...bind("outcome")}>
            <option value="">any</option>
            <option>success</option>
            <option>failure</option>
            <option>denied</option>
          </select>
        </Field>
      </div>
      {records.data ? (
        <>
          <Table
            label="Audit log"
            head={["Time", "User", "Role", "Method", "Path", "Status", "Outcome", "Client"]}
            rows={records.data.items.map((r) => [
              when(r.time),
              r.username ?? "—",
              r.role ?? "—",
              r.method,
              r.path,
              r.status,
              r.outcome,
              r.client ?? "—",
            ])}
          />
          <div class="row">
            <button type="button" disabled={page <= 1} onClick={() => setPage(page - 1)}>
              Previous
            </button>
            <span class="muted">page {page}</span>
            <button type="button" disabled={records.data.items.length < 50} onClick={() => setPage(page + 1)}>
              Next
            </button>
          </div>
        </>
      ) : (
        <Loading error={records.error} what="the audit log" />
      )}
    </section>
  );
}

export function Account() {
  const sessions = useLoad(() => ok(api.GET("/api/v1/sessions", { params: { query: { pageSize: 100 } } })), []);
  const [pw, setPw] = useState({ current: "", next: "" });
  return (
    <Page title="Account">
      <h2>Sessions</h2>
      {sessions.data ? (
        <Table
          label="Sessions"
          head={["Started", "Expires", "Client", "Browser", ""]}
          rows={sessions.data.items.map((s) => [
            when(s.createdAt) + (s.current ? " (this one)" : ""),
            when(s.expiresAt),
            s.client ?? "—",
            s.userAgent ?? "—",
            <Action
              class="danger"
              run={async () => {
                await ok(api.DELETE("/api/v1/sessions/{id}", { params: { path: { id: s.id } } }));
                sessions.reload();
              }}
            >
              End
            </Action>,
          ])}
        />
      ) : (
        <Loading error={sessions.error} what="sessions" />
      )}
      <h2>Password</h2>
      <form class="row" aria-label="Change password" onSubmit={(e) => e.preventDefault()}>
        <Field label="Current password">
          <input type="password" autoComplete="current-password" value={pw.current} onInput={(e) => setPw({ ...pw, current: e.currentTarget.value })} />
        </Field>
        <Field label="New password">
          <input type="password" autoComplete="new-password" value={pw.next} onInput={(e) => setPw({ ...pw, next: e.currentTarget.value })} />
        </Field>
        <Action
          run={async () => {
            await ok(api.PUT("/api/v1/users/me/password", { body: { currentPassword: pw.current, newPassword: pw.next } }));
            setPw({ current: "", next: "" });
          }}
          done="Password changed"
        >
          Change password
        </Action>
      </form>
    </Page>
  );
}
