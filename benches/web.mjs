#!/usr/bin/env node
// The web console's first load and its 1,000-instance list, in Debian's headless Chromium.
//
//     node benches/web.mjs [INSTANCES]        (default 1000; needs `bash scripts/web.sh install`)
//
// Starts a release libgo-server with no local engines, two simulated hosts (libvirt's test
// driver, one node file each) and INSTANCES VMs on them, then reports: the bytes of the
// first load over loopback (as sent, gzip) and raw; time to an interactive log-in form;
// time from navigation to the list showing every instance (10 pages of 100 fetched and
// rendered); rows in the DOM (virtualised); frame times while scrolling the whole list.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const { chromium } = createRequire(join(ROOT, "libgo-web/package.json"))("playwright-core");
const INSTANCES = Number(process.argv[2] ?? 1000);
const PASSWORD = "bench-password-for-libgo";
const RUNS = 5;
const NODE_XML = `<node><cpu><mhz>2000</mhz><model>sim</model><nodes>1</nodes><sockets>1</sockets>
<cores>64</cores><threads>1</threads><active>64</active></cpu><memory>268435456</memory></node>`;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function call(base, method, path, token, body) {
  const r = await fetch(base + path, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  const t = await r.text();
  return t ? JSON.parse(t) : null;
}

execFileSync("cargo", ["build", "--release", "-q", "-p", "libgo-http", "--bin", "libgo-server"], { cwd: ROOT, stdio: "inherit" });
const data = mkdtempSync(join(tmpdir(), "libgo-bench-web-"));
const port = 19500 + (process.pid % 400);
const base = `http://127.0.0.1:${port}`;
const server = spawn(
  join(ROOT, "target/release/libgo-server"),
  ["serve", "--no-docker", "--no-kvm", "--listen", `127.0.0.1:${port}`, "--data-dir", data],
  { env: { ...process.env, LIBGO_ADMIN_PASSWORD: PASSWORD, LIBGO_RATE_LIMIT_PER_MINUTE: "0", RUST_LOG: "error" }, stdio: "ignore" },
);
let browser;
try {
  for (let i = 0; i < 300; i++) {
    try {
      await call(base, "GET", "/health");
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const { token } = await call(base, "POST", "/login", null, { username: "admin", password: PASSWORD });
  for (const h of [0, 1]) {
    const node = join(data, `node${h}.xml`);
    writeFileSync(node, NODE_XML);
    await call(base, "POST", "/api/v1/hosts", token, { name: `sim${h}`, libvirt: `test://${node}` });
  }
  for (let made = 0; made < INSTANCES; made += 100) {
    const task = await call(base, "POST", "/api/v1/instances/batch", token, {
      spec: { name: "bench", kind: "vm", memoryBytes: 16 << 20, cpus: 1 },
      count: Math.min(100, INSTANCES - made), namePattern: "web-{n}", first: made + 1,
    });
    let t;
    do t = await call(base, "GET", `/api/v1/tasks/${task.id}?wait=60`, token);
    while (t.status === "running");
    if (t.status !== "finished") throw new Error(JSON.stringify(t));
  }

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const loads = [];
  for (let run = 0; run < RUNS; run++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    let sent = 0;
    let raw = 0;
    page.on("requestfinished", async (req) => {
      const sizes = await req.sizes().catch(() => null);
      const body = await (await req.response())?.body().catch(() => null);
      if (sizes) sent += sizes.responseBodySize + sizes.responseHeadersSize;
      if (body) raw += body.length;
    });
    const t0 = Date.now();
    await page.goto(base + "/");
    await page.getByLabel("Username").waitFor();
    const interactive = Date.now() - t0;
    await page.waitForLoadState("networkidle");
    const firstSent = sent;
    const firstRaw = raw;
    // The list, signed in (the token where the console keeps it), from a new navigation.
    await page.evaluate((t) => sessionStorage.setItem("libgo.token", t), token);
    const t1 = Date.now();
    await page.goto(base + "/instances");
    await page.getByTestId("count").getByText(`${INSTANCES} of ${INSTANCES}`).waitFor({ timeout: 120_000 });
    const listShown = Date.now() - t1;
    const rowsInDom = await page.locator(".vbody [role=row]").count();
    // Scroll the whole list a viewport at a time, one step per frame; frame intervals.
    const frames = await page.evaluate(async () => {
      const el = document.querySelector(".vbody");
      const gaps = [];
      let last = performance.now();
      while (el.scrollTop + el.clientHeight < el.scrollHeight) {
        el.scrollTop += el.clientHeight;
        await new Promise((r) => requestAnimationFrame(r));
        const now = performance.now();
        gaps.push(now - last);
        last = now;
      }
      gaps.sort((a, b) => a - b);
      return { steps: gaps.length, p50: gaps[Math.floor(gaps.length / 2)], max: gaps[gaps.length - 1] };
    });
    loads.push({ interactive, listShown, rowsInDom, frames, sent: firstSent, raw: firstRaw });
    await context.close();
  }
  const first = loads[0];
  console.log(`first load (log-in page, cold cache): ${(first.sent / 1024).toFixed(1)} KiB sent (gzip), ` +
    `${(first.raw / 1024).toFixed(1)} KiB uncompressed`);
  console.log(`time to an interactive log-in form: median ${median(loads.map((l) => l.interactive))} ms of ${RUNS}`);
  console.log(`${INSTANCES}-instance list shown (fetch + render): median ${median(loads.map((l) => l.listShown))} ms; ` +
    `${first.rowsInDom} rows in the DOM`);
  console.log(`scrolling the list (${first.frames.steps} viewports, one per frame): frame p50 ` +
    `${median(loads.map((l) => l.frames.p50)).toFixed(1)} ms, max ${median(loads.map((l) => l.frames.max)).toFixed(1)} ms (median of runs)`);
} finally {
  await browser?.close();
  server.kill("SIGTERM");
}
