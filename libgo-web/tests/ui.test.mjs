// The web console in headless Chromium (Debian's), against a libgo-server with both real
// engines, started by scripts/test-web.sh. Each test does what a person would and checks
// what they would see; screenshots land in $LIBGO_SCREENSHOTS.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, statSync, writeFileSync } from "node:fs";
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
  await snaps.getByRole("button", { name: "Revert" }).click();
  const said = admin.locator(".messages .message.error, .messages .message:has-text('Reverted to s1')").first();
  await said.waitFor({ timeout: 90_000 });
  assert.match(await said.innerText(), /Reverted to s1/);
  await shot(admin, "04c-snapshots");
  await snaps.getByRole("button", { name: "Delete" }).click();
  await snaps.getByRole("cell", { name: "s1", exact: true }).waitFor({ state: "detached", timeout: 30_000 });
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

test("a VM made from the form has the CPUs, memory, disk and cloud-init asked for", async () => {
  const vm = `ui-f-${run}`;
  await admin.goto(BASE + "/create");
  await admin.getByRole("radio", { name: "Virtual machine" }).check();
  await admin.getByLabel("Name", { exact: true }).fill(vm);
  await admin.getByLabel("CPUs", { exact: true }).fill("2");
  await admin.getByLabel(/^Memory/).fill("192MiB");
  await admin.getByLabel("Disk size").fill("16MiB");
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
  const forbidden = /^(Start|Stop|Restart|Pause|Resume|Delete|Create|Pull|Build|Tag|Push|Revoke|Create snapshot|Export)$/;
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
