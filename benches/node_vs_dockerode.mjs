// LibGo's Node package against dockerode on the same dockerd.
//   node benches/node_vs_dockerode.mjs [containers=200] [cycles=10] [runs=15] [--no-build]
// Prints each side's median, the ratio dockerode / LibGo (above 1: LibGo is faster) and a
// 95 % bootstrap interval of the per-round ratio (the contenders alternate within each round).
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

// Each function's times. The functions take turns within every round, so that load from
// elsewhere on the machine falls on all of them alike.
async function timedMs(fns, runs) {
  for (const fn of fns) await fn()
  const samples = fns.map(() => [])
  for (let i = 0; i < runs; i++) {
    for (const [k, fn] of fns.entries()) {
      const t0 = process.hrtime.bigint()
      await fn()
      samples[k].push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
  }
  return samples
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

// A 95 % interval for the median of the per-round ratios theirs/ours (bootstrap over rounds,
// fixed seed): above 1 means LibGo is faster beyond the noise of the machine.
function ratioInterval(ours, theirs, draws = 2000) {
  const ratios = ours.map((o, i) => theirs[i] / o)
  let seed = 1
  const random = () => ((seed = (seed * 48271) % 2147483647) / 2147483647)
  const medians = []
  for (let d = 0; d < draws; d++) {
    medians.push(median(ratios.map(() => ratios[Math.floor(random() * ratios.length)])))
  }
  medians.sort((a, b) => a - b)
  return [medians[Math.floor(0.025 * draws)], medians[Math.floor(0.975 * draws) - 1]]
}

function report(what, oursSamples, theirsSamples) {
  const [ours, theirs] = [median(oursSamples), median(theirsSamples)]
  const [low, high] = ratioInterval(oursSamples, theirsSamples)
  console.log(`${what.padEnd(36)} libgo ${ours.toFixed(2).padStart(8)} ms   dockerode ${theirs.toFixed(2).padStart(8)} ms   ratio ${(theirs / ours).toFixed(2)}x  (per round ${low.toFixed(2)}–${high.toFixed(2)}, 95 %)`)
}

const run = crypto.randomBytes(4).toString('hex')
const lg = await Client.connect({ docker: 'required', kvm: 'off' })
const dk = new Docker()
const made = []
try {
  for (let i = 0; i < N; i++) {
    made.push(await dk.createContainer({ Image: IMAGE, Cmd: IDLE, name: `nbench-${run}-${i}`, Labels: { 'test.libgo.bench': run } }))
  }
  const [ours, theirs] = await timedMs([
    async () => {
      if ((await lg.listAll({ labels: { 'test.libgo.bench': run } })).length !== N) throw new Error('count')
    },
    async () => {
      if ((await dk.listContainers({ all: true, filters: { label: [`test.libgo.bench=${run}`] } })).length !== N) throw new Error('count')
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
  report('create/start/stop/remove cycle', ...(await timedMs([lgCycle, dkCycle], CYCLES)))
} finally {
  for (const c of made) await c.remove({ force: true })
  for (const c of await dk.listContainers({ all: true, filters: { name: [`ncyc-${run}-`] } })) await dk.getContainer(c.Id).remove({ force: true })
}
