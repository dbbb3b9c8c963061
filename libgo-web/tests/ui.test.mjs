// The web console in headless Chromium (Debian's), against a libgo-server with both real
// engines, started by scripts/test-web.sh. Each test does what a person would and checks
// what they would see; screenshots land in $LIBGO_SCREENSHOTS.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const BASE = process.env.LIBGO_URL;
const ADMIN_PW = process.env.LIBGO_ADMIN_PASSWORD;
const SHOTS = process.env.LIBGO_SCREENSHOTS;
const GUEST = process.env.LIBGO_GUEST;
const run = Math.random().toString(36).slice(2, 8);
const CONTAINER = `ui-c-${run}`;
const VM = `ui-v-${run}`;
const VIEWER = { username: `ui-viewer-${run}`, password: `viewer-pw-${run}-long` };
const IMAGE_TAG = `libgo-ui-test:${run}`;

let browser;
let adminToken;

async function call(method, path, body, token = adminToken) {
  const r = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function newPage(viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  return page;
}

async function login(page, username, password) {
  await page.goto(BASE + "/");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("button", { name: "Log out" }).waitFor();
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

before(async () => {
  assert.ok(BASE && ADMIN_PW && SHOTS && GUEST, "run through scripts/test-web.sh");
  const r = await fetch(BASE + "/api/v1/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: "admin", password: ADMIN_PW }),
  });
  adminToken = (await r.json()).token;
  assert.ok(adminToken, "admin login");
  assert.equal((await call("POST", "/api/v1/users", { ...VIEWER, role: "viewer" })).status, 201);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  if (adminToken) {
    for (const name of [CONTAINER, VM]) await call("DELETE", `/api/v1/instances/${name}?force=true`);
    await call("DELETE", `/api/v1/images/${encodeURIComponent(IMAGE_TAG)}?force=true`);
  }
});

let admin; // the administrator's page, kept across tests

test("the console is served at / with its assets and security headers", async () => {
  const r = await fetch(BASE + "/instances", { headers: { Accept: "text/html" } });
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-security-policy") ?? "", /default-src 'self'/);
  const html = await r.text();
  const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
  assert.ok(script, html);
  const js = await fetch(BASE + script, { headers: { "Accept-Encoding": "gzip" } });
  assert.equal(js.status, 200);
  assert.match(js.headers.get("cache-control") ?? "", /immutable/);
  assert.equal(js.headers.get("content-encoding"), "gzip", "assets are sent compressed");
  // The API keeps answering JSON, also for unknown paths.
  const api = await fetch(BASE + "/api/v1/nope", { headers: { Accept: "text/html" } });
  assert.equal(api.status, 404);
  assert.equal((await api.json()).code, "NOT_FOUND");
});

test("log in; a container made in the form appears in another tab's list by itself", async () => {
  admin = await newPage();
  await login(admin, "admin", ADMIN_PW);
  await shot(admin, "01-dashboard");
  const listLoads = [];
  admin.on("request", (r) => /\/api\/v1\/instances\?/.test(r.url()) && listLoads.push(r.url()));
  await admin.getByRole("link", { name: "Instances" }).click();
  await admin.getByRole("table", { name: "Instances" }).waitFor();
  await admin.waitForLoadState("networkidle");
  const loadsBefore = listLoads.length;
  assert.ok(loadsBefore >= 1, "the list loaded once");

  const form = await newPage();
  await login(form, "admin", ADMIN_PW);
  await form.goto(BASE + "/create");
  await form.getByLabel("Name").fill(CONTAINER);
  await form.getByLabel("Image").fill("libgo-test/busybox:latest");
  await form.getByLabel("Command").fill("sh");
  await form.getByLabel("Interactive terminal (TTY)").check();
  await shot(form, "02-create-container");
  await form.getByRole("button", { name: "Create container" }).click();
  await form.getByText(`${CONTAINER} created`).waitFor();
  await form.context().close();

  // The first tab was never reloaded: the row comes from the event stream.
  const row = admin.locator(`[data-name="${CONTAINER}"]`);
  await row.waitFor({ timeout: 30_000 });
  await row.getByText("running").waitFor({ timeout: 30_000 });
  assert.equal(listLoads.length, loadsBefore, `no list reload: ${listLoads.join(", ")}`);
  await shot(admin, "03-instances");
});

test("the list shows each instance's group and filters by it", async () => {
  const group = `ui-g-${run}`;
  const grouped = `ui-gc-${run}`;
  assert.equal((await call("POST", "/api/v1/groups", { name: group })).status, 201);
  const made = await call("POST", `/api/v1/instances?group=${group}`, {
    name: grouped,
    kind: "container",
    image: "libgo-test/busybox:latest",
    command: ["sleep", "600"],
    start: true,
  });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const row = admin.locator(`[data-name="${grouped}"]`);
  await row.waitFor({ timeout: 30_000 });
  await row.getByText(group, { exact: true }).waitFor();
  await admin.getByLabel("Group").selectOption(group);
  await admin.locator(`[data-name="${CONTAINER}"]`).waitFor({ state: "detached" });
  await row.waitFor();
  await shot(admin, "03b-group-filter");
  await admin.getByLabel("Group").selectOption("");
  await admin.locator(`[data-name="${CONTAINER}"]`).waitFor();
  assert.equal((await call("DELETE", `/api/v1/instances/${grouped}?force=true`)).status, 204);
});

test("the container's console runs what is typed", async () => {
  await admin.getByRole("link", { name: CONTAINER }).click();
  await admin.getByRole("tab", { name: "Console" }).click();
  await admin.getByTestId("console-status").getByText("connected").waitFor({ timeout: 20_000 });
  await admin.locator(".console-box").click();
  await admin.keyboard.type("echo ui-$((6*7))\n");
  await admin.locator(".xterm-rows").getByText("ui-42", { exact: true }).waitFor({ timeout: 20_000 });
  await shot(admin, "04-console");
});

test("the container's stats chart, logs, snapshots and export", async () => {
  admin.on("dialog", (d) => d.accept());
  await admin.getByRole("tab", { name: "Stats" }).click();
  await admin.getByTestId("stats-status").getByText(/^live · CPU/).waitFor({ timeout: 20_000 });
  assert.ok((await admin.locator(".chart canvas").count()) >= 2, "two charts drawn");
  await shot(admin, "04b-stats");
  // The TTY's output is the container's log: what the console test typed is there.
  await admin.getByRole("tab", { name: "Logs" }).click();
  await admin.locator(".logs").getByText("ui-42").first().waitFor({ timeout: 20_000 });
  await admin.getByRole("tab", { name: "Snapshots" }).click();
  await admin.getByLabel("Snapshot name").fill("s1");
  await admin.getByRole("button", { name: "Create snapshot" }).click();
  const snaps = admin.getByRole("table", { name: "Snapshots" });
  await snaps.getByRole("cell", { name: "s1", exact: true }).waitFor({ timeout: 30_000 });
  await admin.getByLabel("Snapshot name").fill("s2");
  await admin.getByRole("button", { name: "Create snapshot" }).click();
  // Rows by their first cell: s2's row also names s1, as its parent.
  const row = (name) => snaps.getByRole("row", { name: new RegExp(`^${name}\\b`) });
  await row("s2").getByRole("cell", { name: "current", exact: true }).waitFor({ timeout: 30_000 });
  await row("s1").getByRole("button", { name: "Revert" }).click();
  const said = admin.locator(".messages .message.error, .messages .message:has-text('Reverted to s1')").first();
  await said.waitFor({ timeout: 90_000 });
  assert.match(await said.innerText(), /Reverted to s1/);
  // The table follows by itself: s1 is the current one now.
  await row("s1").getByRole("cell", { name: "current", exact: true }).waitFor({ timeout: 30_000 });
  assert.equal(await row("s2").getByRole("cell", { name: "current", exact: true }).count(), 0);
  await shot(admin, "04c-snapshots");
  for (const name of ["s2", "s1"]) {
    await row(name).getByRole("button", { name: "Delete" }).click();
    await snaps.getByRole("cell", { name, exact: true }).waitFor({ state: "detached", timeout: 30_000 });
  }
  await admin.getByRole("tab", { name: "Export" }).click();
  await admin.getByLabel("Format").selectOption("tar");
  await admin.getByRole("button", { name: "Export", exact: true }).click();
  await admin.locator('.task[data-status="finished"]').waitFor({ timeout: 120_000 });
  assert.equal(await admin.getByRole("progressbar", { name: "Export" }).getAttribute("aria-valuenow"), "100");
  const [download] = await Promise.all([
    admin.waitForEvent("download"),
    admin.getByRole("button", { name: "Download" }).click(),
  ]);
  const file = await download.path();
  assert.ok(file && statSync(file).size > 1024, "the export downloads");
  await shot(admin, "04d-export");
});

test("the test guest's VNC view is not blank, and its screenshot loads", async () => {
  const made = await call("POST", "/api/v1/instances", {
    name: VM, kind: "vm", memoryBytes: 256 * 1048576, disks: [{ sizeBytes: 16 * 1048576 }],
    kernelBoot: {
      kernel: join(GUEST, "vmlinuz"), initrd: join(GUEST, "initrd.img"),
      cmdline: "console=tty0 console=ttyS0 panic=-1 libgo.noagent",
    },
    start: true,
  });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  await admin.goto(`${BASE}/instances/${VM}`);
  await admin.getByRole("tab", { name: "Graphics" }).click();
  await admin.getByTestId("vnc-status").getByText("connected").waitFor({ timeout: 30_000 });
  let colours = 0;
  for (let i = 0; i < 60 && colours < 2; i++) {
    await admin.waitForTimeout(1000);
    colours = await admin.evaluate(() => {
      const c = document.querySelector(".vnc canvas");
      if (!c || !c.width || !c.height) return 0;
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      const seen = new Set();
      for (let p = 0; p < d.length && seen.size < 4; p += 4 * 97) seen.add((d[p] << 16) | (d[p + 1] << 8) | d[p + 2]);
      return seen.size;
    });
  }
  assert.ok(colours >= 2, "the VNC canvas shows something");
  await shot(admin, "05-vnc");
  await admin.getByRole("tab", { name: "Screenshot" }).click();
  await admin.getByRole("button", { name: "Take screenshot" }).click();
  const img = admin.getByRole("img", { name: `Screenshot of ${VM}` });
  await img.waitFor({ timeout: 30_000 });
  const width = await img.evaluate(async (el) => {
    await el.decode();
    return el.naturalWidth;
  });
  assert.ok(width > 0, "the screenshot is an image");
  await shot(admin, "06-screenshot");
  // The VM's serial console in the same terminal: the guest's heartbeat shows up.
  await admin.getByRole("tab", { name: "Console" }).click();
  await admin.getByTestId("console-status").getByText("connected").waitFor({ timeout: 20_000 });
  await admin.locator(".xterm-rows").getByText(/LIBGO-GUEST-ALIVE/).first().waitFor({ timeout: 30_000 });
  await shot(admin, "06a-serial-console");
  // A disk hot-plugged from the Disks tab, then detached.
  await admin.getByRole("tab", { name: "Disks" }).click();
  await admin.getByLabel("New disk size").fill("16MiB");
  await admin.getByRole("button", { name: "Attach disk" }).click();
  await admin.getByText("Attached as vdb").waitFor({ timeout: 30_000 });
  const disks = admin.getByRole("table", { name: "Disks" });
  await disks.getByRole("cell", { name: "vdb", exact: true }).waitFor();
  await shot(admin, "06b-disks");
  const listed = await call("GET", `/api/v1/instances/${VM}/disks`);
  assert.deepEqual(listed.body.map((d) => d.target), ["vda", "vdb"]);
  await disks.getByRole("row", { name: /vdb/ }).getByRole("button", { name: "Detach" }).click();
  await disks.getByRole("cell", { name: "vdb", exact: true }).waitFor({ state: "detached", timeout: 30_000 });
  await call("DELETE", `/api/v1/volumes/${VM}-vdb.qcow2`);
});

test("an image build's progress bar reaches 100 %", async () => {
  const dir = mkdtempSync(join(tmpdir(), "libgo-ui-build-"));
  writeFileSync(join(dir, "Dockerfile"), "FROM libgo-test/busybox:latest\nRUN echo built-in-the-browser > /built\n");
  const tar = join(dir, "context.tar");
  execFileSync("tar", ["-cf", tar, "-C", dir, "Dockerfile"]);
  await admin.getByRole("link", { name: "Images" }).click();
  await admin.getByLabel("Build context").setInputFiles(tar);
  await admin.getByLabel("Tags").fill(IMAGE_TAG);
  await admin.getByRole("button", { name: "Build", exact: true }).click();
  const bar = admin.getByRole("progressbar", { name: "Build" });
  await bar.waitFor({ timeout: 30_000 });
  await admin.locator('.task[data-status="finished"]').waitFor({ timeout: 120_000 });
  assert.equal(await bar.getAttribute("aria-valuenow"), "100");
  await shot(admin, "07-image-build");
  const img = await call("GET", `/api/v1/images/${encodeURIComponent(IMAGE_TAG)}`);
  assert.equal(img.status, 200, "the built image exists");
});

test("an image is tagged and deleted from its row", async () => {
  const page = await newPage();
  const copy = `libgo-ui-copy:${run}`;
  page.on("dialog", (d) => (d.type() === "prompt" ? d.accept(copy) : d.accept()));
  await login(page, "admin", ADMIN_PW);
  await page.getByRole("link", { name: "Images" }).click();
  const images = page.getByRole("table", { name: "Images" });
  const built = images.getByRole("row").filter({ hasText: IMAGE_TAG });
  await built.getByRole("button", { name: "Tag" }).click();
  // The row now carries both references, and the engine has the new one.
  await images.getByRole("row").filter({ hasText: copy }).filter({ hasText: IMAGE_TAG }).waitFor({ timeout: 20_000 });
  const tagged = await call("GET", `/api/v1/images/${encodeURIComponent(copy)}`);
  assert.equal(tagged.status, 200);
  const id = tagged.body.id;
  // Only the built tag stays: then the row's Delete removes the image itself.
  assert.equal((await call("DELETE", `/api/v1/images/${encodeURIComponent(IMAGE_TAG)}`)).status, 204);
  const row = images.getByRole("row").filter({ hasText: copy });
  await page.getByRole("button", { name: "Refresh" }).click();
  await row.filter({ hasNotText: IMAGE_TAG }).waitFor({ timeout: 20_000 });
  await row.getByRole("button", { name: "Delete" }).click();
  await row.waitFor({ state: "detached", timeout: 30_000 });
  assert.equal((await call("GET", `/api/v1/images/${encodeURIComponent(id)}`)).status, 404, "the image is gone");
  await page.context().close();
});

test("a VM volume is made, grown, wiped and deleted from its page", async () => {
  const page = await newPage();
  const vol = `ui-vol-${run}.qcow2`;
  page.on("dialog", (d) => (d.type() === "prompt" ? d.accept("32MiB") : d.accept()));
  await login(page, "admin", ADMIN_PW);
  await page.getByRole("link", { name: "Volumes" }).click();
  const form = page.getByRole("form", { name: "Create a volume" });
  await form.getByLabel("Name").fill(vol);
  await form.getByLabel("Size").fill("16MiB");
  await form.getByLabel("For").selectOption("vm");
  await form.getByRole("button", { name: "Create" }).click();
  const row = page.getByRole("table", { name: "Volumes" }).getByRole("row").filter({ hasText: vol });
  await row.waitFor({ timeout: 20_000 });
  try {
    const made = await call("GET", `/api/v1/volumes/${encodeURIComponent(vol)}?backend=kvm`);
    assert.equal(made.body.capacityBytes, 16 * 1048576, JSON.stringify(made.body));
    await row.getByRole("button", { name: "Resize" }).click();
    await row.getByText("32 MiB").first().waitFor({ timeout: 20_000 });
    const grown = await call("GET", `/api/v1/volumes/${encodeURIComponent(vol)}?backend=kvm`);
    assert.equal(grown.body.capacityBytes, 32 * 1048576);
    await row.getByRole("button", { name: "Wipe" }).click();
    await page.locator(".messages .message").filter({ hasText: "Wiped" }).waitFor({ timeout: 20_000 });
    await row.getByRole("button", { name: "Delete" }).click();
    await row.waitFor({ state: "detached", timeout: 20_000 });
    assert.equal((await call("GET", `/api/v1/volumes/${encodeURIComponent(vol)}?backend=kvm`)).status, 404);
  } finally {
    await call("DELETE", `/api/v1/volumes/${encodeURIComponent(vol)}?backend=kvm`);
    await page.context().close();
  }
});

test("an image pushed from its row to the local registry comes back by Pull, its bar at 100 %", async () => {
  const page = await newPage();
  const ref = `127.0.0.1:5000/libgo-ui-${run}:v1`;
  // The Tag prompt and the Push prompt (which of the image's tags) both get the registry name.
  page.on("dialog", (d) => (d.type() === "prompt" ? d.accept(ref) : d.accept()));
  await login(page, "admin", ADMIN_PW);
  await page.getByRole("link", { name: "Images" }).click();
  const images = page.getByRole("table", { name: "Images" });
  try {
    const busybox = images.getByRole("row").filter({ hasText: "libgo-test/busybox:latest" });
    await busybox.getByRole("button", { name: "Tag" }).click();
    const tagged = images.getByRole("row").filter({ hasText: ref });
    await tagged.waitFor({ timeout: 20_000 });
    await tagged.getByRole("button", { name: "Push" }).click();
    await tagged.locator('.task[data-status="finished"]').waitFor({ timeout: 60_000 });
    const pushed = await fetch(`http://127.0.0.1:5000/v2/libgo-ui-${run}/tags/list`);
    assert.deepEqual((await pushed.json()).tags, ["v1"], "the registry has the pushed tag");

    // Gone from the engine, then pulled back from the form.
    assert.equal((await call("DELETE", `/api/v1/images/${encodeURIComponent(ref)}`)).status, 204);
    assert.equal((await call("GET", `/api/v1/images/${encodeURIComponent(ref)}`)).status, 404);
    const pull = page.getByRole("form", { name: "Pull an image" });
    await pull.getByLabel("Reference").fill(ref);
    await pull.getByRole("button", { name: "Pull" }).click();
    await pull.locator('.task[data-status="finished"]').waitFor({ timeout: 60_000 });
    assert.equal(await pull.getByRole("progressbar", { name: "Pull" }).getAttribute("aria-valuenow"), "100");
    await shot(page, "07b-image-pull");
    assert.equal((await call("GET", `/api/v1/images/${encodeURIComponent(ref)}`)).status, 200, "pulled back");
  } finally {
    await call("DELETE", `/api/v1/images/${encodeURIComponent(ref)}`);
    await page.context().close();
  }
});

test("instances chosen together are stopped, started, paused, resumed and deleted together", async () => {
  const names = [`ui-bulk-a-${run}`, `ui-bulk-b-${run}`];
  const page = await newPage();
  page.on("dialog", (d) => d.accept());
  try {
    for (const name of names) {
      const made = await call("POST", "/api/v1/instances", {
        name, kind: "container", image: "libgo-test/busybox:latest", command: ["sleep", "600"],
      });
      assert.equal(made.status, 201, JSON.stringify(made.body));
    }
    await login(page, "admin", ADMIN_PW);
    await page.getByRole("link", { name: "Instances" }).click();
    await page.getByLabel("Search instances").fill(`ui-bulk-`);
    for (const name of names) await page.locator(`[data-name="${name}"]`).waitFor({ timeout: 20_000 });
    await page.getByLabel("Select all shown").check();
    const bulk = page.getByLabel("Selected instances");
    const states = async () =>
      Promise.all(names.map(async (n) => (await call("GET", `/api/v1/instances/${n}`)).body.state));
    for (const [action, state] of [["Stop", "stopped"], ["Start", "running"], ["Pause", "paused"], ["Resume", "running"]]) {
      await bulk.getByRole("button", { name: action, exact: true }).click();
      for (const name of names) {
        await page.locator(`[data-name="${name}"]`).getByText(state, { exact: true }).waitFor({ timeout: 30_000 });
      }
      assert.deepEqual(await states(), [state, state], `after ${action}`);
    }
    await shot(page, "03b-bulk-actions");
    await bulk.getByRole("button", { name: "Delete", exact: true }).click();
    for (const name of names) await page.locator(`[data-name="${name}"]`).waitFor({ state: "detached", timeout: 30_000 });
    for (const name of names) assert.equal((await call("GET", `/api/v1/instances/${name}`)).status, 404);
  } finally {
    for (const name of names) await call("DELETE", `/api/v1/instances/${name}?force=true`);
    await page.context().close();
  }
});

test("a network, a storage pool and a template are made and removed from their pages", async () => {
  const page = await newPage();
  page.on("dialog", (d) => d.accept());
  const net = `ui-net-${run}`;
  const subnet = `10.${150 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.0/24`;
  const pool = `ui-pool-${run}`;
  const poolDir = mkdtempSync(join(tmpdir(), "libgo-ui-pool-")) + "/pool";
  const template = `ui-tpl-${run}`;
  await login(page, "admin", ADMIN_PW);
  try {
    await page.getByRole("link", { name: "Networks" }).click();
    const nf = page.getByRole("form", { name: "Create a network" });
    await nf.getByLabel("Name").fill(net);
    await nf.getByLabel("Subnet").fill(subnet);
    await nf.getByRole("button", { name: "Create" }).click();
    const netRow = page.getByRole("table", { name: "Networks" }).getByRole("row").filter({ hasText: net });
    await netRow.getByRole("cell", { name: subnet, exact: true }).waitFor({ timeout: 20_000 });
    const madeNet = await call("GET", `/api/v1/networks/${net}?backend=docker`);
    assert.equal(madeNet.body.subnet, subnet, JSON.stringify(madeNet.body));
    await shot(page, "14b-networks");
    await netRow.getByRole("button", { name: "Delete" }).click();
    await netRow.waitFor({ state: "detached", timeout: 20_000 });
    assert.equal((await call("GET", `/api/v1/networks/${net}?backend=docker`)).status, 404);

    await page.getByRole("link", { name: "Storage pools" }).click();
    const pf = page.getByRole("form", { name: "Create a storage pool" });
    await pf.getByLabel("Name").fill(pool);
    await pf.getByLabel("Directory").fill(poolDir);
    await pf.getByRole("button", { name: "Create" }).click();
    const poolRow = page.getByRole("table", { name: "Storage pools" }).getByRole("row").filter({ hasText: pool });
    await poolRow.getByRole("cell", { name: "yes", exact: true }).waitFor({ timeout: 20_000 });
    assert.ok(statSync(poolDir).isDirectory(), "libvirt made the pool's directory");
    await poolRow.getByRole("button", { name: "Deactivate" }).click();
    await poolRow.getByRole("cell", { name: "no", exact: true }).waitFor({ timeout: 20_000 });
    assert.equal((await call("GET", `/api/v1/storage-pools/${pool}`)).body.active, false);
    await poolRow.getByRole("button", { name: "Activate" }).click();
    await poolRow.getByRole("cell", { name: "yes", exact: true }).waitFor({ timeout: 20_000 });
    await shot(page, "14c-storage-pools");
    await poolRow.getByRole("button", { name: "Delete" }).click();
    await poolRow.waitFor({ state: "detached", timeout: 20_000 });
    assert.equal((await call("GET", `/api/v1/storage-pools/${pool}`)).status, 404);

    await page.getByRole("link", { name: "Templates" }).click();
    const tf = page.getByRole("form", { name: "Create a template" });
    await tf.getByLabel("Name").fill(template);
    await tf.getByLabel("CPUs").fill("2");
    await tf.getByLabel("Memory").fill("384MiB");
    await tf.getByRole("button", { name: "Save" }).click();
    const tplRow = page.getByRole("table", { name: "Templates" }).getByRole("row").filter({ hasText: template });
    await tplRow.getByText("384 MiB").waitFor({ timeout: 20_000 });
    const saved = await call("GET", `/api/v1/templates/${template}`);
    assert.deepEqual([saved.body.cpus, saved.body.memoryBytes], [2, 384 * 1048576], JSON.stringify(saved.body));
    await shot(page, "14d-templates");
    await tplRow.getByRole("button", { name: "Delete" }).click();
    await tplRow.waitFor({ state: "detached", timeout: 20_000 });
    assert.equal((await call("GET", `/api/v1/templates/${template}`)).status, 404);
  } finally {
    await call("DELETE", `/api/v1/networks/${net}?backend=docker`);
    await call("DELETE", `/api/v1/storage-pools/${pool}`);
    await call("DELETE", `/api/v1/templates/${template}`);
    await page.context().close();
  }
});

test("a new API key is shown once, works, and stops working when revoked", async () => {
  const page = await newPage();
  page.on("dialog", (d) => d.accept());
  const name = `ui-key-${run}`;
  const asKey = async (key) =>
    (await fetch(BASE + "/api/v1/users/me", { headers: { "X-API-Key": key } })).status;
  await login(page, "admin", ADMIN_PW);
  await page.getByRole("link", { name: "Admin" }).click();
  const form = page.getByRole("form", { name: "Create an API key" });
  await form.getByLabel("Key name").fill(name);
  await form.getByLabel("Expires in days").fill("1");
  await form.getByRole("button", { name: "Create key" }).click();
  const key = (await page.getByTestId("new-key").innerText()).trim();
  assert.ok(key.length >= 32, key);
  assert.equal(await asKey(key), 200, "the key shown authenticates");
  await shot(page, "15b-api-key-shown");
  const row = page.getByRole("table", { name: "API keys" }).getByRole("row").filter({ hasText: name });
  await row.waitFor();
  assert.ok(!(await row.innerText()).includes(key), "the list shows a prefix, not the key");
  await page.getByRole("button", { name: "Done" }).click();
  await page.reload();
  await row.waitFor();
  assert.equal(await page.getByTestId("new-key").count(), 0);
  assert.ok(!(await page.content()).includes(key), "after a reload the key is nowhere on the page");
  await row.getByRole("button", { name: "Revoke" }).click();
  await row.waitFor({ state: "detached", timeout: 20_000 });
  assert.equal(await asKey(key), 401, "a revoked key is refused");
  await page.context().close();
});

test("the audit log's filters narrow it to who did what and how it ended", async () => {
  const viewerLogin = await fetch(BASE + "/api/v1/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(VIEWER),
  });
  const viewerToken = (await viewerLogin.json()).token;
  const denied = await call("POST", `/api/v1/instances/${CONTAINER}/stop`, undefined, viewerToken);
  assert.equal(denied.status, 403);
  const page = await newPage();
  await login(page, "admin", ADMIN_PW);
  await page.getByRole("link", { name: "Admin" }).click();
  const filters = page.getByRole("search", { name: "Audit filters" });
  const log = page.getByRole("table", { name: "Audit log" });
  const column = async (n) =>
    (await log.locator(`tbody tr td:nth-child(${n})`).allInnerTexts()).map((t) => t.trim());
  await filters.getByLabel("User").fill(VIEWER.username);
  await filters.getByLabel("Outcome").selectOption("denied");
  await log.getByRole("cell", { name: `/api/v1/instances/${CONTAINER}/stop`, exact: true }).waitFor({ timeout: 20_000 });
  assert.ok((await column(2)).every((u) => u === VIEWER.username), `only the viewer: ${await column(2)}`);
  assert.ok((await column(7)).every((o) => o === "denied"), `only denials: ${await column(7)}`);
  await shot(page, "15c-audit-filtered");
  await filters.getByLabel("Outcome").selectOption("success");
  await filters.getByLabel("Method").selectOption("POST");
  await log.getByRole("cell", { name: "/api/v1/login", exact: true }).first().waitFor({ timeout: 20_000 });
  assert.ok((await column(7)).every((o) => o === "success"), `only successes: ${await column(7)}`);
  assert.ok((await column(4)).every((m) => m === "POST"), `only POSTs: ${await column(4)}`);
  assert.ok(!(await column(5)).includes(`/api/v1/instances/${CONTAINER}/stop`), "the denial is filtered out");
  await page.context().close();
});

test("a file uploaded into a VM volume from its row is what the volume holds", async () => {
  const page = await newPage();
  const vol = `ui-up-${run}.img`;
  const made = await call("POST", "/api/v1/volumes", { name: vol, backend: "kvm", sizeBytes: 1048576, format: "raw" });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const dir = mkdtempSync(join(tmpdir(), "libgo-ui-upload-"));
  const content = Buffer.alloc(65536, `uploaded-from-the-browser-${run}\n`);
  const file = join(dir, "disk.raw");
  writeFileSync(file, content);
  try {
    await login(page, "admin", ADMIN_PW);
    await page.getByRole("link", { name: "Volumes" }).click();
    const row = page.getByRole("table", { name: "Volumes" }).getByRole("row").filter({ hasText: vol });
    // A VM volume is named pool/name on its row.
    await row.getByLabel(`Upload into ${made.body.pool}/${vol}`).setInputFiles(file);
    await page.locator(".messages .message").filter({ hasText: `Uploaded disk.raw into ${made.body.pool}/${vol}` }).waitFor({ timeout: 30_000 });
    const held = readFileSync(made.body.path).subarray(0, content.length);
    assert.ok(held.equals(content), "the volume's first 64 KiB are the uploaded file");
  } finally {
    await call("DELETE", `/api/v1/volumes/${encodeURIComponent(vol)}?backend=kvm`);
    await page.context().close();
  }
});

test("a user made on the admin page logs in, sees its sessions and logs out", async () => {
  const user = { username: `ui-user-${run}`, password: `user-pw-${run}-long` };
  const page = await newPage();
  page.on("dialog", (d) => d.accept());
  await login(page, "admin", ADMIN_PW);
  await page.getByRole("link", { name: "Admin" }).click();
  const form = page.getByRole("form", { name: "Create a user" });
  await form.getByLabel("Username").fill(user.username);
  await form.getByLabel("Password").fill(user.password);
  await form.getByLabel("Role").selectOption("viewer");
  await form.getByRole("button", { name: "Create user" }).click();
  await page.getByText("User created").waitFor();
  const row = page.getByRole("table", { name: "Users" }).getByRole("row").filter({ hasText: user.username });
  await row.getByLabel(`Role of ${user.username}`).selectOption("operator");
  await page.getByText(`${user.username} is now operator`).waitFor();
  assert.equal((await call("GET", `/api/v1/users/${user.username}`)).body.role, "operator");

  const own = await newPage();
  await login(own, user.username, user.password);
  const token = await own.evaluate(() => sessionStorage.getItem("libgo.token"));
  await own.getByRole("link", { name: "Account" }).click();
  const sessions = own.getByRole("table", { name: "Sessions" });
  await sessions.getByText("(this one)").waitFor();
  assert.equal(await sessions.locator("tbody tr").count(), 1, "one session so far");
  await shot(own, "16b-account-sessions");
  assert.equal((await call("GET", "/api/v1/users/me", undefined, token)).status, 200);
  await own.getByRole("button", { name: "Log out" }).click();
  await own.getByLabel("Username").waitFor();
  assert.equal((await call("GET", "/api/v1/users/me", undefined, token)).status, 401, "the logged-out token is refused");
  await own.context().close();

  await row.getByRole("button", { name: "Delete" }).click();
  await row.waitFor({ state: "detached", timeout: 20_000 });
  assert.equal((await call("GET", `/api/v1/users/${user.username}`)).status, 404);
  await page.context().close();
});

test("a VM made from the form has the CPUs, memory, disks and cloud-init asked for", async () => {
  const vm = `ui-f-${run}`;
  await admin.goto(BASE + "/create");
  await admin.getByRole("radio", { name: "Virtual machine" }).check();
  await admin.getByLabel("Name", { exact: true }).fill(vm);
  await admin.getByLabel("CPUs", { exact: true }).fill("2");
  await admin.getByLabel(/^Memory/).fill("192MiB");
  await admin.getByLabel("Disk size").fill("16MiB");
  await admin.getByLabel("Extra disks").fill("32MiB, 24MiB");
  await admin.getByLabel("Hostname").fill("from-the-form");
  await admin.getByLabel("Start after creating").uncheck();
  await shot(admin, "07b-create-vm");
  await admin.getByRole("button", { name: "Create VM" }).click();
  await admin.getByText(`${vm} created`).waitFor({ timeout: 60_000 });
  try {
    const made = await call("GET", `/api/v1/instances/${vm}`);
    assert.equal(made.status, 200);
    assert.equal(made.body.kind, "vm");
    assert.equal(made.body.cpus, 2);
    assert.equal(made.body.memoryBytes, 192 * 1048576);
    const disks = (await call("GET", `/api/v1/instances/${vm}/disks`)).body;
    assert.equal(disks[0].sizeBytes, 16 * 1048576, JSON.stringify(disks));
    const sizes = disks.filter((d) => d.device === "disk" && !d.readOnly).map((d) => d.sizeBytes);
    assert.deepEqual(sizes, [16, 32, 24].map((m) => m * 1048576), `three disks: ${JSON.stringify(disks)}`);
    assert.ok(disks.some((d) => (d.volume ?? "").includes("cidata")), `a cloud-init seed: ${JSON.stringify(disks)}`);
  } finally {
    await call("DELETE", `/api/v1/instances/${vm}?force=true`);
  }
});

test("a validation error shows next to its field, a server error as a message", async () => {
  await admin.goto(BASE + "/create");
  await admin.getByLabel("Name").fill("Not_A_Valid_Name");
  await admin.getByLabel("Image").fill("libgo-test/busybox:latest");
  await admin.getByRole("button", { name: "Create container" }).click();
  const nameField = admin.locator(".field.invalid", { has: admin.getByLabel("Name") });
  await nameField.getByRole("alert").waitFor();
  assert.match(await nameField.getByRole("alert").innerText(), /invalid/);
  await shot(admin, "08-validation-error");
  // The server's refusal of a limit lands next to the limit.
  await admin.getByLabel("Name").fill(`ui-bad-${run}`);
  await admin.getByLabel("Memory limit").fill("1");
  await admin.getByRole("button", { name: "Create container" }).click();
  const memField = admin.locator(".field.invalid", { has: admin.getByLabel("Memory limit") });
  await memField.getByRole("alert").waitFor();
  assert.equal(await admin.locator(".field.invalid").count(), 1, "only the memory field is marked");
  await admin.getByLabel("Memory limit").fill("");
  // A name in use: the server refuses (409), shown as a message.
  await admin.getByLabel("Name").fill(CONTAINER);
  await admin.getByRole("button", { name: "Create container" }).click();
  await admin.locator(".messages .message.error").getByText("RESOURCE_CONFLICT").waitFor();
  // A 500 from the server: a message, and the page stays.
  await admin.route("**/api/v1/images?*", (route) =>
    route.fulfill({
      status: 500,
      contentType: "application/json",
      body: JSON.stringify({ status: 500, code: "INTERNAL_SERVER_ERROR", message: "broken on purpose by the test" }),
    }),
  );
  await admin.getByRole("link", { name: "Images" }).click();
  await admin.getByRole("alert").getByText(/Cannot load images: broken on purpose by the test/).waitFor();
  assert.ok(await admin.getByRole("heading", { name: "Images" }).isVisible(), "the page is not blank");
  await shot(admin, "09-server-error");
  await admin.unroute("**/api/v1/images?*");
});

test("a viewer finds no button it may not use", async () => {
  const page = await newPage();
  await login(page, VIEWER.username, VIEWER.password);
  const forbidden =
    /^(Start|Stop|Restart|Pause|Resume|Delete|Create|Save|Pull|Build|Tag|Push|Revoke|Create snapshot|Export|Resize|Wipe|Upload|Activate|Deactivate|Cancel|Add range|Remove)$/;
  const mutating = async () =>
    (await page.getByRole("button").allInnerTexts()).map((t) => t.trim()).filter((t) => forbidden.test(t));
  await page.getByRole("link", { name: "Instances" }).click();
  await page.locator(`[data-name="${CONTAINER}"]`).waitFor();
  assert.deepEqual(await mutating(), []);
  assert.equal(await page.getByRole("link", { name: "Create" }).count(), 0);
  assert.equal(await page.getByRole("checkbox").count(), 0);
  await shot(page, "10-viewer-instances");
  await page.getByRole("link", { name: CONTAINER }).click();
  await page.getByRole("tab", { name: "Snapshots" }).click();
  await page.getByRole("table", { name: "Snapshots" }).waitFor();
  assert.deepEqual(await mutating(), []);
  await page.getByRole("link", { name: "Images" }).click();
  await page.getByRole("table", { name: "Images" }).waitFor();
  assert.deepEqual(await mutating(), []);
  assert.equal(await page.getByRole("link", { name: "Admin" }).count(), 0);
  for (const [link, table] of [
    ["Networks", "Networks"], ["Volumes", "Volumes"], ["Storage pools", "Storage pools"],
    ["Templates", "Templates"], ["Tasks", "Tasks"], ["Address pools", "Address pools"],
  ]) {
    await page.getByRole("link", { name: link }).click();
    await page.getByRole("heading", { name: link, level: 1 }).waitFor();
    await page.waitForLoadState("networkidle");
    assert.deepEqual(await mutating(), [], `${link}: no mutating buttons`);
    assert.equal(await page.getByRole("textbox").count(), 0, `${link}: no create form`);
    await page.getByRole("table", { name: table }).waitFor();
    assert.equal(await page.locator(".error-text").count(), 0, `${link}: loads for a viewer`);
  }
  // The server still says no.
  const token = await page.evaluate(() => sessionStorage.getItem("libgo.token"));
  const r = await call("POST", `/api/v1/instances/${CONTAINER}/stop`, undefined, token);
  assert.equal(r.status, 403);
  await page.context().close();
});

test("an address pool made on its page hands a container from the form its address", async () => {
  const pool = `ui-ap-${run}`;
  const made = `ui-apc-${run}`;
  const net = `10.${100 + Math.floor(Math.random() * 100)}.${Math.floor(Math.random() * 250)}`;
  try {
    await admin.getByRole("link", { name: "Address pools" }).click();
    const form = admin.getByRole("form", { name: "Create an address pool" });
    await form.getByLabel("Pool name").fill(pool);
    await form.getByLabel("Gateway").fill(`${net}.1`);
    await form.getByLabel("First range").fill(`${net}.10-${net}.20/24`);
    await form.getByRole("button", { name: "Create address pool" }).click();
    await admin.getByText("Address pool created").waitFor();
    const row = admin.getByRole("table", { name: "Address pools" }).getByRole("row").filter({ hasText: pool });
    await row.getByRole("cell", { name: "11", exact: true }).waitFor();

    await admin.goto(BASE + "/create");
    await admin.getByLabel("Name").fill(made);
    await admin.getByLabel("Image").fill("libgo-test/busybox:latest");
    await admin.getByLabel("Command").fill("sleep 600");
    await admin.getByLabel("Address from pool").selectOption(pool);
    await admin.getByRole("button", { name: "Create container" }).click();
    await admin.getByText(`${made} created`).waitFor();
    await admin.locator(`[data-name="${made}"]`).getByText(`${net}.10`).waitFor({ timeout: 30_000 });

    await admin.getByRole("link", { name: "Address pools" }).click();
    const held = admin.getByRole("table", { name: `Allocations of ${pool}` });
    await held.getByRole("cell", { name: `${net}.10`, exact: true }).waitFor();
    await shot(admin, "03c-address-pools");
  } finally {
    await call("DELETE", `/api/v1/instances/${made}?force=true`);
    await call("DELETE", `/api/v1/address-pools/${pool}`);
  }
});

test("groups, members and custom roles are made on the admin page", async () => {
  const group = `ui-team-${run}`;
  const role = `ui-auditor-${run}`;
  await admin.getByRole("link", { name: "Admin" }).click();
  const g = admin.getByRole("form", { name: "Create a group" });
  await g.getByLabel("Group name").fill(group);
  await g.getByLabel("Description").fill("made in the console");
  await g.getByRole("button", { name: "Create group" }).click();
  await admin.getByText("Group created").waitFor();
  const m = admin.getByRole("form", { name: "Add a member" });
  await m.getByLabel("Group").selectOption(group);
  await m.getByLabel("Member").fill(VIEWER.username);
  await m.getByRole("button", { name: "Add member" }).click();
  await admin.getByText("Member added").waitFor();
  const row = admin.getByRole("table", { name: "Groups" }).getByRole("row").filter({ hasText: group });
  await row.getByText(VIEWER.username).waitFor();

  const r = admin.getByRole("form", { name: "Create a role" });
  await r.getByLabel("Role name").fill(role);
  await r.getByLabel("instances.read", { exact: true }).check();
  await r.getByLabel("audit.admin", { exact: true }).check();
  await r.getByRole("button", { name: "Create role" }).click();
  await admin.getByText("Role created").waitFor();
  const roleRow = admin.getByRole("table", { name: "Roles" }).getByRole("row").filter({ hasText: role });
  await roleRow.getByText("audit.admin, instances.read").waitFor();
  await shot(admin, "03d-groups-roles");
  // What the page made is what the server has.
  const got = await call("GET", `/api/v1/roles/${role}`);
  assert.deepEqual(got.body.permissions, ["audit.admin", "instances.read"]);
  const grp = await call("GET", `/api/v1/groups/${group}`);
  assert.deepEqual(grp.body.members, [VIEWER.username]);
  await roleRow.getByRole("button", { name: "Delete" }).click();
  await roleRow.waitFor({ state: "detached" });
  assert.equal((await call("DELETE", `/api/v1/groups/${group}`)).status, 204);
});

test("a page that fails to render says so and the rest of the console goes on", async () => {
  const page = await newPage();
  await login(page, "admin", ADMIN_PW);
  // An answer the page cannot draw (an instance without its addresses), as a broken proxy
  // or an older server might give.
  const broken = { id: "broken", name: "broken", kind: "container", backend: "docker", state: "running", labels: {} };
  await page.route(/\/api\/v1\/instances\?/, (r) =>
    r.fulfill({
      status: 200,
      contentType: "application/json",
      body: JSON.stringify({ items: [broken], count: 1, page: 1, pageSize: 100 }),
    }),
  );
  await page.getByRole("link", { name: "Instances" }).click();
  const failed = page.getByRole("alert").filter({ hasText: "This page failed" });
  await failed.waitFor({ timeout: 20_000 });
  await page.getByRole("button", { name: "Try again" }).waitFor();
  await shot(page, "13-page-failed");
  await page.getByRole("link", { name: "Images" }).click();
  await page.getByRole("heading", { name: "Images" }).waitFor({ timeout: 20_000 });
  assert.equal(await failed.count(), 0, "another page renders");
  await page.unroute(/\/api\/v1\/instances\?/);
  await page.getByRole("link", { name: "Instances" }).click();
  await page.getByRole("table", { name: "Instances" }).waitFor({ timeout: 20_000 });
  await page.context().close();
});

test("the other pages render, also in a narrow window", async () => {
  for (const [path, heading, name] of [
    ["/", "Dashboard", "11-dashboard"],
    ["/hosts", "Hosts", "12-hosts"],
    ["/address-pools", "Address pools", "12b-address-pools"],
    ["/tasks", "Tasks", "13-tasks"],
    ["/volumes", "Volumes", "14-volumes"],
    ["/admin", "Admin", "15-admin"],
    ["/account", "Account", "16-account"],
  ]) {
    await admin.goto(BASE + path);
    await admin.getByRole("heading", { name: heading, level: 1 }).waitFor();
    await admin.waitForLoadState("networkidle");
    assert.equal(await admin.locator(".error-text").count(), 0, `${path} loads without an error`);
    await shot(admin, name);
  }
  const narrow = await newPage({ width: 400, height: 800 });
  await login(narrow, "admin", ADMIN_PW);
  await narrow.getByRole("button", { name: "Menu" }).click();
  await narrow.getByRole("link", { name: "Instances" }).click();
  await narrow.locator(`[data-name="${CONTAINER}"]`).waitFor();
  await shot(narrow, "17-narrow-instances");
  await narrow.context().close();
});

test("the main pages pass axe's WCAG 2 A/AA checks and work from the keyboard", async () => {
  // axe is injected as a script: this context lets it past the server's CSP.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
  const page = await context.newPage();
  await page.goto(BASE + "/");
  // Keyboard only: fill the form, submit with Enter, then reach a page by Tab and Enter.
  await page.keyboard.press("Tab");
  await page.keyboard.type("admin");
  await page.keyboard.press("Tab");
  await page.keyboard.type(ADMIN_PW);
  await page.keyboard.press("Enter");
  await page.getByRole("button", { name: "Log out" }).waitFor();
  await page.getByRole("link", { name: "Dashboard" }).focus();
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Instances", level: 1 }).waitFor();
  const problems = [];
  for (const path of ["/", "/instances", `/instances/${CONTAINER}`, "/create", "/images", "/volumes", "/hosts", "/address-pools", "/tasks", "/admin", "/account"]) {
    await page.goto(BASE + path);
    await page.locator("h1").waitFor();
    await page.waitForLoadState("networkidle");
    await page.addScriptTag({ path: AXE });
    const found = await page.evaluate(async () => {
      const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa"] } });
      return r.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`);
    });
    problems.push(...found.map((f) => `${path} ${f}`));
  }
  assert.deepEqual(problems, [], problems.join("\n"));
  // The session list shows this session; logging out ends it, and its token is refused.
  await page.goto(BASE + "/account");
  await page.getByRole("table", { name: "Sessions" }).getByText("(this one)").waitFor();
  const token = await page.evaluate(() => sessionStorage.getItem("libgo.token"));
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByLabel("Username").waitFor();
  assert.equal((await call("GET", "/api/v1/users/me", undefined, token)).status, 401);
  await context.close();
});
