'use strict'
// The Node package against the real dockerd (scripts/docker.sh) and libvirt's test driver.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Client, LibGoError } = require('..')

const IMAGE = 'libgo-test/busybox:latest'
const IDLE = ['sh', '-c', "trap 'exit 0' TERM; echo libgo-ready; while true; do sleep 1; done"]
const unique = (p) => `${p}-${crypto.randomBytes(5).toString('hex')}`

test('container life cycle, logs, events, exec, errors', async () => {
  const client = await Client.connect({ docker: 'required', kvm: 'off' })
  assert.deepEqual(await client.backends(), ['docker'])
  const name = unique('node')
  const inst = await client.create({ name, kind: 'container', image: IMAGE, command: IDLE, labels: { 'test.libgo.test': name } })
  try {
    assert.equal(inst.state, 'stopped')
    const events = await client.events({ instance: name, actions: ['started'] })
    await client.start(name)
    for await (const ev of events) {
      assert.equal(ev.action, 'started')
      assert.equal(ev.instanceId, inst.id)
      break
    }
    const page = await client.list({ labels: { 'test.libgo.test': name } })
    assert.equal(page.count, 1)
    const [got, out, stats] = await Promise.all([
      client.get(name), client.exec(name, { command: ['echo', 'node'] }), client.stats(name),
    ])
    assert.equal(got.state, 'running')
    assert.deepEqual(out, { exitCode: 0, stdout: 'node\n', stderr: '', truncated: false })
    assert.ok(stats.memoryBytes > 0)

    let seen = ''
    for await (const entry of await client.logs(name, { follow: true })) {
      seen += entry.message
      if (seen.includes('libgo-ready')) break
    }
    assert.ok(seen.includes('libgo-ready'))

    await client.pause(name)
    assert.equal((await client.get(name)).state, 'paused')
    await client.resume(name)
    await client.stop(name, { timeoutSecs: 5 })
    assert.equal((await client.get(name)).state, 'stopped')

    await assert.rejects(client.create({ name, kind: 'container', image: IMAGE }), (e) => e instanceof LibGoError && e.code === 'RESOURCE_CONFLICT')
    // Disks are a VM's: Docker says why not; a disk without a source is refused first.
    await assert.rejects(client.diskAttach(name, { sizeBytes: 16 * 1024 * 1024 }), (e) => e.code === 'UNSUPPORTED' && /Docker cannot add mounts/.test(e.message))
    await assert.rejects(client.diskAttach(name, {}), (e) => e.code === 'INVALID_INPUT' && /volume/.test(e.message))
    await assert.rejects(client.guestPassword(name, { user: 'root', password: 'node-secret-1' }), (e) => e.code === 'UNSUPPORTED' && !/node-secret-1/.test(e.message))
  } finally {
    await client.delete(name, { force: true })
  }
  await assert.rejects(client.get(name), (e) => e.code === 'NOT_FOUND' && /NOT_FOUND/.test(e.message))
  await assert.rejects(client.create({ name: 'Bad!', kind: 'container', image: IMAGE }), { code: 'INVALID_INPUT' })
  await assert.rejects(Client.connect({ docker: 'sometimes' }), { code: 'INVALID_INPUT' })
  // Unknown options and fields are refused by name, not dropped.
  await assert.rejects(client.imageRemove(IMAGE, { forse: true }), (e) => e.code === 'INVALID_INPUT' && /forse/.test(e.message))
  await assert.rejects(client.list({ stat: 'running' }), (e) => e.code === 'INVALID_INPUT' && /stat/.test(e.message))
  // In a spread argument's options too (StopOptions), and `progress` where none is reported.
  await assert.rejects(client.stop('libgo-none', { timeoutSec: 1 }), (e) => e.code === 'INVALID_INPUT' && /timeoutSec/.test(e.message))
  await assert.rejects(client.imageInspect(IMAGE, { progress: () => {} }), (e) => e.code === 'INVALID_INPUT' && /progress/.test(e.message))
})

test('console is an interactive shell', async () => {
  const client = await Client.connect({ docker: 'required', kvm: 'off' })
  const name = unique('ncon')
  await client.create({ name, kind: 'container', image: IMAGE, command: IDLE, start: true })
  try {
    const shell = await client.console(name)
    // Nothing typed yet: a short read times out and loses nothing.
    await assert.rejects(async () => { for (;;) await shell.read(300) }, (e) => e.code === 'TIMEOUT')
    await shell.write('echo node-$((6*7))\n')
    let seen = ''
    while (!seen.includes('node-42')) seen += (await shell.read(10000)).toString()
    await shell.write(Buffer.from('exit\n'))
    for await (const chunk of shell) assert.ok(Buffer.isBuffer(chunk))
    assert.equal(await shell.read(), null)
    await shell.close()
    await assert.rejects(shell.write('too late\n'), (e) => e.code === 'INVALID_INPUT')
    assert.equal((await client.get(name)).state, 'running')
    const plain = await client.console(name)
    try {
      await assert.rejects(plain.resize(10, 10), (e) => e.code === 'UNSUPPORTED')
    } finally {
      await plain.close()
    }

    const cmd = await client.execInteractive(name, { command: ['sh'], tty: true })
    assert.equal(await cmd.exitCode(), null)
    await cmd.resize(33, 97)
    await cmd.write('stty size; echo tty-$((6*7)); exit 7\n')
    let out = ''
    for await (const chunk of cmd) out += chunk.toString()
    assert.ok(out.includes('33 97') && out.includes('tty-42'), out)
    assert.equal(await cmd.exitCode(), 7)
  } finally {
    await client.delete(name, { force: true })
  }
})

test('images, networks and volumes', async () => {
  const client = await Client.connect({ docker: 'required', kvm: 'off' })
  assert.ok((await client.imageList()).some((i) => i.tags.includes(IMAGE)))
  assert.equal((await client.imageInspect(IMAGE)).kind, 'container')
  const net = unique('nodenet')
  assert.equal((await client.networkCreate({ name: net })).name, net)
  assert.equal((await client.networkInspect(net)).name, net)
  await client.networkDelete(net)
  await assert.rejects(client.networkInspect(net), { code: 'NOT_FOUND' })
  const vol = unique('nodevol')
  assert.equal((await client.volumeCreate({ name: vol })).name, vol)
  assert.ok((await client.volumeList()).some((v) => v.name === vol))
  await client.volumeDelete(vol)
  await assert.rejects(client.volumeInspect(vol), { code: 'NOT_FOUND' })
})

test('hosts come from the core', async () => {
  const client = await Client.connect({ docker: 'required', kvm: 'off' })
  const hosts = await client.hostList()
  assert.deepEqual(hosts.map((h) => h.name), ['local'])
  assert.ok(hosts[0].alive && hosts[0].capacity.memoryBytes > 0)
  assert.equal((await client.zoneStatus()).hosts.on, 1)
  await assert.rejects(client.migrate('libgo-none', { host: 'nowhere' }), { code: 'NOT_FOUND' })
})

test('VM verbs on libvirt test:///default', async () => {
  const vm = await Client.connect({ docker: 'off', kvm: 'required', libvirtUri: 'test:///default' })
  const domains = await vm.listAll({ kind: 'vm' })
  assert.ok(domains.length > 0)
  const name = domains[0].name
  if ((await vm.get(name)).state !== 'running') await vm.start(name)
  await vm.pause(name)
  assert.equal((await vm.get(name)).state, 'paused')
  await vm.resume(name)
  await vm.stop(name, { force: true })
  assert.equal((await vm.get(name)).state, 'stopped')
  await assert.rejects(vm.exec(name, { command: ['true'] }), { code: 'UNSUPPORTED' })
})

// A one-file tar archive (ustar), enough for a build context.
function tarOf(name, content) {
  const data = Buffer.from(content)
  const header = Buffer.alloc(512)
  header.write(name, 0)
  header.write('0000644\0', 100)
  header.write('0000000\0', 108)
  header.write('0000000\0', 116)
  header.write(data.length.toString(8).padStart(11, '0') + '\0', 124)
  header.write('00000000000\0', 136)
  header.write('        ', 148)
  header.write('0', 156)
  header.write('ustar\0' + '00', 257)
  let sum = 0
  for (const b of header) sum += b
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148)
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512)
  return Buffer.concat([header, data, pad, Buffer.alloc(1024)])
}

test('progress callbacks of build, export, pull and push', async () => {
  const client = await Client.connect({ docker: 'required', kvm: 'off' })
  const tag = `libgo-test/${unique('node')}:v1`
  const steps = []
  const built = await client.imageBuild(tarOf('Dockerfile', `FROM ${IMAGE}\nRUN echo built > /built\n`),
    { tags: [tag], progress: (p) => steps.push(p) })
  try {
    assert.ok(built.tags.includes(tag))
    assert.ok(steps.length > 0, 'the build reported progress')
    assert.ok(steps.every((p) => typeof p.message === 'string'), JSON.stringify(steps[0]))

    const name = unique('node-export')
    await client.create({ name, kind: 'container', image: tag, command: IDLE })
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'libgo-node-'))
    try {
      const reports = []
      const out = await client.export(name, { format: 'tar', destination: path.join(dir, 'fs.tar') },
        { progress: (p) => reports.push(p) })
      assert.equal(out.format, 'tar')
      assert.ok(out.sizeBytes > 0)
      assert.ok(reports.length >= 2, 'the export reported its start and end')
      assert.ok(reports.every((p) => typeof p.message === 'string'), JSON.stringify(reports))
      assert.equal(reports[reports.length - 1].percent, 100)
    } finally {
      await client.delete(name, { force: true })
      fs.rmSync(dir, { recursive: true, force: true })
    }

    // A push to the local registry and a pull back report their layers.
    const remote = `127.0.0.1:5000/${unique('node-progress')}:v1`
    await client.imageTag(tag, remote)
    try {
      const pushed = []
      await client.imagePush(remote, { progress: (p) => pushed.push(p) })
      assert.ok(pushed.length > 0, 'the push reported progress')
      assert.ok(pushed.every((p) => typeof p.message === 'string'), JSON.stringify(pushed))
      await client.imageRemove(remote)
      const pulled = []
      const image = await client.imagePull(remote, { progress: (p) => pulled.push(p) })
      assert.ok(image.tags.includes(remote), JSON.stringify(image.tags))
      assert.ok(pulled.length > 0, 'the pull reported progress')
      assert.ok(pulled.every((p) => typeof p.message === 'string'), JSON.stringify(pulled))
    } finally {
      await client.imageRemove(remote).catch(() => {})
    }

    // No registry listens on port 1: a LibGo error, callback or not.
    await assert.rejects(client.imagePull('127.0.0.1:1/libgo-none:v1', { progress: () => {} }),
      (e) => e instanceof LibGoError && typeof e.code === 'string')
  } finally {
    await client.imageRemove(tag, { force: true })
  }
})

test('every operation of the core is a typed method', () => {
  // The operation table (bindings/common) is the one declaration of the verbs: each is a
  // method of Client (lib.js) declared in lib.d.ts, and there is no method the table lacks.
  const { Native } = require('../index.js')
  const camel = (op) => op.replace(/_([a-z])/g, (_, c) => c.toUpperCase())
  const ops = new Set(Native.operations().map(camel))
  const methods = new Set(Object.getOwnPropertyNames(Client.prototype).filter((n) => n !== 'constructor' && !n.startsWith('_')))
  const dts = fs.readFileSync(path.join(__dirname, '..', 'lib.d.ts'), 'utf8')
  const declared = new Set([...dts.slice(dts.indexOf('export declare class Client')).matchAll(/^  ([a-zA-Z]+)\(/gm)].map((m) => m[1]))
  for (const op of ops) {
    assert.ok(methods.has(op), `Client lacks ${op}`)
    assert.ok(declared.has(op), `lib.d.ts does not declare ${op}`)
  }
  for (const m of methods) assert.ok(ops.has(m), `Client has ${m}, which no operation declares`)
})

test('batches of containers come from the core', async () => {
  const client = await Client.connect({ docker: 'required', kvm: 'off' })
  const prefix = unique('nodeb')
  const seen = []
  const report = await client.createBatch({ spec: { name: 'x', kind: 'container', image: IMAGE, command: IDLE }, count: 2, namePattern: `${prefix}-{n}` }, { progress: (p) => seen.push(p) })
  assert.equal(report.succeeded, 2, JSON.stringify(report))
  assert.deepEqual(report.items.map((i) => i.name), [`${prefix}-1`, `${prefix}-2`])
  assert.equal(seen.at(-1).message, '2/2')
  const gone = await client.deleteBatch([`${prefix}-1`, `${prefix}-2`, `${prefix}-none`], { force: true })
  assert.deepEqual([gone.succeeded, gone.failed], [2, 1])
  assert.equal(gone.items[2].error.code, 'NOT_FOUND')
  await assert.rejects(client.get(`${prefix}-1`), { code: 'NOT_FOUND' })
})

test('every list pages', async () => {
  const client = await Client.connect({ docker: 'required', kvm: 'off' })
  const whole = await client.imageList()
  const first = await client.imagePage({ page: 1, pageSize: 1 })
  assert.equal(first.count, whole.length)
  assert.deepEqual(first.items.map((i) => i.id), [whole[0].id])
  assert.equal((await client.networkPage()).count, (await client.networkList()).length)
  await assert.rejects(client.volumePage({ page: 0 }), { code: 'INVALID_INPUT' })
})
