// LibGo's Node package against dockerode on the same dockerd.
//   node benches/node_vs_dockerode.mjs [containers=200] [cycles=10] [runs=15] [--no-build]
// Prints each side's median and the ratio dockerode / LibGo (above 1: LibGo is faster).
//
// It benchmarks the release build of the addon, as npm users get it: it runs
// `cargo build --release -p libgo-node` (in $CARGO_TARGET_DIR, default target/), copies
// the library to release/libgo-bench.node and loads the package with
// NAPI_RS_NATIVE_LIBRARY_PATH pointing there. `--no-build` uses the package's own addon.
// dockerode comes from bindings/node/node_modules (a dev dependency: `npm install` there).
// Both sides stop with timeout 0 (LibGo `timeoutSecs: 0`, dockerode `t: 0`).
import { createRequire } from 'node:module'
import { execFileSync } from 'node:child_process'
import { copyFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import crypto from 'node:crypto'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2).filter((a) => a !== '--no-build')
if (!process.argv.includes('--no-build')) {
  const target = process.env.CARGO_TARGET_DIR ?? path.join(root, 'target')
  console.error('building the release addon (cargo build --release -p libgo-node) …')
  execFileSync('cargo', ['build', '--release', '-p', 'libgo-node'], { cwd: root, stdio: 'inherit', env: { ...process.env, CARGO_TARGET_DIR: target } })
  const addon = path.join(target, 'release', 'libgo-bench.node')
  copyFileSync(path.join(target, 'release', 'liblibgo_node.so'), addon)
  process.env.NAPI_RS_NATIVE_LIBRARY_PATH = addon
}

const require = createRequire(path.join(root, 'bindings', 'node', 'package.json'))
const { Client } = require('./lib.js')
const Docker = require('dockerode')

const IMAGE = 'libgo-test/busybox:latest'
const IDLE = ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 1; done"]
const N = Number(args[0] ?? 200)
const CYCLES = Number(args[1] ?? 10)
const RUNS = Number(args[2] ?? 15)

// Each function's median time. The functions take turns within every round, so that load
// from elsewhere on the machine falls on all of them alike.
async function mediansMs(fns, runs) {
  for (const fn of fns) await fn()
  const samples = fns.map(() => [])
  for (let i = 0; i < runs; i++) {
    for (const [k, fn] of fns.entries()) {
      const t0 = process.hrtime.bigint()
      await fn()
      samples[k].push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
  }
  return samples.map((s) => s.sort((a, b) => a - b)[Math.floor(s.length / 2)])
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
  const [ours, theirs] = await mediansMs([
    async () => {
      if ((await lg.listAll({ labels: { 'io.libgo.bench': run } })).length !== N) throw new Error('count')
    },
    async () => {
      if ((await dk.listContainers({ all: true, filters: { label: [`io.libgo.bench=${run}`] } })).length !== N) throw new Error('count')
    },
  ], RUNS)
  report(`list ${N} containers`, ours, theirs)

  let n = 0
  const lgCycle = async () => {
    const name = `ncyc-${run}-lg-${n++}`
    await lg.create({ name, kind: 'container', image: IMAGE, command: IDLE })
    await lg.start(name)
    await lg.stop(name, { timeoutSecs: 0 })
    await lg.delete(name)
  }
  const dkCycle = async () => {
    const c = await dk.createContainer({ Image: IMAGE, Cmd: IDLE, name: `ncyc-${run}-dk-${n++}` })
    await c.start()
    await c.stop({ t: 0 })
    await c.remove()
  }
  report('create/start/stop/remove cycle', ...(await mediansMs([lgCycle, dkCycle], CYCLES)))
} finally {
  for (const c of made) await c.remove({ force: true })
  for (const c of await dk.listContainers({ all: true, filters: { name: [`ncyc-${run}-`] } })) await dk.getContainer(c.Id).remove({ force: true })
}
