'use strict'
// The Node package against the real dockerd (scripts/docker.sh) and libvirt's test driver.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const { Client, LibGoError } = require('..')

const IMAGE = 'libgo-test/busybox:latest'
const IDLE = ['sh', '-c', "trap 'exit 0' TERM; echo libgo-ready; while true; do sleep 1; done"]
const unique = (p) => `${p}-${crypto.randomBytes(5).toString('hex')}`

test('container life cycle, logs, events, exec, errors', async () => {
  const client = await Client.connect({ docker: 'required', kvm: 'off' })
  assert.deepEqual(await client.backends(), ['docker'])
  const name = unique('node')
  const inst = await client.create({ name, kind: 'container', image: IMAGE, command: IDLE, labels: { 'io.libgo.test': name } })
  try {
    assert.equal(inst.state, 'stopped')
    const events = await client.events({ instance: name, actions: ['started'] })
    await client.start(name)
    for await (const ev of events) {
      assert.equal(ev.action, 'started')
      assert.equal(ev.instanceId, inst.id)
      break
    }
    const page = await client.list({ labels: { 'io.libgo.test': name } })
    assert.equal(page.count, 1)
    const [got, out, stats] = await Promise.all([
      client.get(name), client.exec(name, { command: ['echo', 'node'] }), client.stats(name),
    ])
    assert.equal(got.state, 'running')
    assert.deepEqual(out, { exitCode: 0, stdout: 'node\n', stderr: '' })
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
  } finally {
    await client.delete(name, { force: true })
  }
  await assert.rejects(client.get(name), (e) => e.code === 'NOT_FOUND' && /NOT_FOUND/.test(e.message))
  await assert.rejects(client.create({ name: 'Bad!', kind: 'container', image: IMAGE }), { code: 'INVALID_INPUT' })
  await assert.rejects(Client.connect({ docker: 'sometimes' }), { code: 'INVALID_INPUT' })
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
