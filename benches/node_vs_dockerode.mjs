// LibGo's Node package against dockerode on the same dockerd.
//   node benches/node_vs_dockerode.mjs [containers=200] [cycles=10]
// Prints each side's median and the ratio dockerode / LibGo (above 1: LibGo is faster).
import { createRequire } from 'node:module'
import crypto from 'node:crypto'

const require = createRequire(new URL('../bindings/node/', import.meta.url))
const { Client } = require('./lib.js')
const Docker = require('dockerode')

const IMAGE = 'libgo-test/busybox:latest'
const IDLE = ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 1; done"]
const N = Number(process.argv[2] ?? 200)
const CYCLES = Number(process.argv[3] ?? 10)
const RUNS = 15

async function medianMs(fn, runs) {
  await fn()
  const s = []
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint()
    await fn()
    s.push(Number(process.hrtime.bigint() - t0) / 1e6)
  }
  s.sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

const report = (what, ours, theirs) =>
  console.log(`${what.padEnd(36)} libgo ${ours.toFixed(2).padStart(8)} ms   dockerode ${theirs.toFixed(2).padStart(8)} ms   ratio ${(theirs / ours).toFixed(2)}x`)

const run = crypto.randomBytes(4).toString('hex')
const lg = await Client.connect({ docker: 'required', kvm: 'off' })
const dk = new Docker()
const made = []
try {
  for (let i = 0; i < N; i++) {
    made.push(await dk.createContainer({ Image: IMAGE, Cmd: IDLE, name: `nbench-${run}-${i}`, Labels: { 'io.libgo.bench': run } }))
  }
  const ours = await medianMs(async () => {
    if ((await lg.listAll({ labels: { 'io.libgo.bench': run } })).length !== N) throw new Error('count')
  }, RUNS)
  const theirs = await medianMs(async () => {
    if ((await dk.listContainers({ all: true, filters: { label: [`io.libgo.bench=${run}`] } })).length !== N) throw new Error('count')
  }, RUNS)
  report(`list ${N} containers`, ours, theirs)

  let n = 0
  const lgCycle = async () => {
    const name = `ncyc-${run}-lg-${n++}`
    await lg.create({ name, kind: 'container', image: IMAGE, command: IDLE })
    await lg.start(name)
    await lg.stop(name, { timeoutSecs: 5 })
    await lg.delete(name)
  }
  const dkCycle = async () => {
    const c = await dk.createContainer({ Image: IMAGE, Cmd: IDLE, name: `ncyc-${run}-dk-${n++}` })
    await c.start()
    await c.stop({ t: 5 })
    await c.remove()
  }
  report('create/start/stop/remove cycle', await medianMs(lgCycle, CYCLES), await medianMs(dkCycle, CYCLES))
} finally {
  for (const c of made) await c.remove({ force: true })
}
