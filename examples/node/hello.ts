// LibGo from TypeScript: start a container, run a command in it, read its log, delete it.
//   tsc -p bindings/node/tsconfig.json && node bindings/node/dist/examples/node/hello.js [NAME]
import { Client, LibGoError, type Instance } from 'libgo'

async function main(name: string): Promise<void> {
  const client = await Client.connect({ kvm: 'off' })
  const web: Instance = await client.create({
    name, kind: 'container', image: 'libgo-test/busybox:latest',
    command: ['sh', '-c', 'echo booted; sleep 300'], start: true,
  })
  try {
    const out = await client.exec(web.id, { command: ['echo', 'hello from LibGo'] })
    console.log(`${web.name} says: ${out.stdout.trim()}`)
    for await (const entry of await client.logs(name, { follow: true })) {
      if (entry.message.includes('booted')) break
    }
  } finally {
    await client.delete(name, { force: true })
  }
  try {
    await client.get(name)
  } catch (e) {
    if (e instanceof LibGoError) console.log(`gone: ${e.code}`)
  }
}

main(process.argv[2] ?? 'hello-node').catch((e) => { console.error(e); process.exit(1) })
