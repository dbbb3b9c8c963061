'use strict'
// The TypeScript example type-checks with tsc and runs; so do the README snippets.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')

const PKG = path.resolve(__dirname, '..')
const ROOT = path.resolve(PKG, '../..')
const unique = (p) => `${p}-${crypto.randomBytes(5).toString('hex')}`

test('the TypeScript example type-checks with tsc and runs', () => {
  execFileSync(path.join(PKG, 'node_modules/.bin/tsc'), ['-p', path.join(PKG, 'tsconfig.json')], { stdio: 'inherit' })
  const js = path.join(PKG, 'dist/examples/node/hello.js')
  // The compiled example imports 'libgo': it lies inside this package, which resolves itself.
  const out = execFileSync(process.execPath, [js, unique('hello-node')], {
    encoding: 'utf8'
  })
  assert.match(out, /hello from LibGo/)
  assert.match(out, /gone: NOT_FOUND/)
})

test('the README snippets run', () => {
  for (const file of [path.join(ROOT, 'README.md'), path.join(PKG, 'README.md')]) {
    const text = fs.readFileSync(file, 'utf8')
    const blocks = [...text.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1])
    assert.ok(blocks.length >= 1, `${file} has a js example`)
    for (const code of blocks) {
      const src = code.replaceAll("'hello-node'", `'${unique('hello-node')}'`)
      const out = execFileSync(process.execPath, ['-e', src], {
        encoding: 'utf8', cwd: PKG
      })
      assert.match(out, /hello from LibGo/)
    }
  }
})
