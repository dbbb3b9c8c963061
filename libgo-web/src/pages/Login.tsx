import { useState } from "preact/hooks";
import { api, ApiFailure, ok, setToken } from "../api/client";
import { Field } from "../ui";

export function Login() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <main class="login">
      <form
        aria-labelledby="login-title"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const r = await ok(api.POST("/api/v1/login", { body: { username, password } }));
            setToken(r.token);
          } catch (err) {
            setError(err instanceof ApiFailure ? err.message : String(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <h1 id="login-title">LibGo</h1>
        <Field label="Username">
          <input
            name="username"
            autoComplete="username"
            required
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </Field>
        <Field label="Password">
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </Field>
        {error && (
          <p class="error-text" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Log in
        </button>
      </form>
    </main>
  );
}
