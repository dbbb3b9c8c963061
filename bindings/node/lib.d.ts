// Types of the `libgo` package: the Client in lib.js over the generated native addon
// (index.d.ts). Values are the camelCase JSON of LibGo's core types.
import type { Native } from './index'

export type InstanceKind = 'vm' | 'container'
export type InstanceState = 'creating' | 'running' | 'paused' | 'stopped' | 'error' | 'unknown'
export type ErrorCode = 'NOT_FOUND' | 'INVALID_INPUT' | 'RESOURCE_CONFLICT' | 'UNAUTHORIZED' | 'FORBIDDEN' | 'UNSUPPORTED' | 'BACKEND_UNAVAILABLE' | 'TIMEOUT' | 'INTERNAL_SERVER_ERROR'
export type ExportFormat = 'qcow2' | 'vmdk' | 'vdi' | 'raw' | 'ova' | 'tar' | 'imagetar'
export type EventAction = 'created' | 'started' | 'stopped' | 'paused' | 'resumed' | 'died' | 'deleted'

export interface EngineConfig {
  docker?: 'auto' | 'required' | 'off'; dockerName?: string; dockerHost?: string | null
  kvm?: 'auto' | 'required' | 'off'; kvmName?: string; libvirtUri?: string
  accelerator?: 'auto' | 'kvm' | 'tcg'; templateDir?: string | null
  /** More engines, each under its own name. */
  backends?: BackendConfig[]
}
/** One more engine under its own name (a Docker daemon or a libvirt host). */
export interface BackendConfig {
  name: string; engine: 'docker' | 'kvm'; mode?: 'auto' | 'required' | 'off'
  url?: string | null; accelerator?: 'auto' | 'kvm' | 'tcg' | null
}
export interface PortMapping { containerPort: number; hostPort?: number | null; hostIp?: string | null; protocol?: 'tcp' | 'udp' }
export interface MountSpec { target: string; kind?: 'volume' | 'bind' | 'tmpfs'; source?: string; readOnly?: boolean }
export interface InstanceSpec {
  name: string; kind?: InstanceKind | null; backend?: string | null; image?: string | null; template?: string | null
  cpus?: number | null; memoryBytes?: number | null; disks?: Array<Record<string, unknown>>; cdrom?: string | null
  networks?: string[]; ports?: PortMapping[]; env?: Record<string, string>; mounts?: MountSpec[]; command?: string[]
  entrypoint?: string[] | null; workdir?: string | null; tty?: boolean; cloudInit?: Record<string, unknown> | null
  labels?: Record<string, string>; restartPolicy?: 'no' | 'always' | 'unless-stopped' | 'on-failure' | null
  autostart?: boolean; privileged?: boolean; devices?: string[]; start?: boolean
}
export interface Instance {
  id: string; name: string; kind: InstanceKind; backend: string; state: InstanceState; image: string | null
  cpus: number | null; memoryBytes: number | null; createdAt: string | null; labels: Record<string, string>
  ports: PortMapping[]; networks: string[]; ipAddresses: string[]; exitCode: number | null
}
export interface InstanceFilter { kind?: InstanceKind; state?: InstanceState; name?: string; labels?: Record<string, string>; backend?: string }
/** A backend whose part of a list is missing, and why. */
export interface Unavailable { backend: string; message: string }
export interface Page<T> { items: T[]; count: number; page: number; pageSize: number; unavailable?: Unavailable[] }
export interface StopOptions { timeoutSecs?: number | null; force?: boolean }
export interface Stats { timestamp: string; cpuPercent: number; memoryBytes: number; memoryLimitBytes: number; blockReadBytes: number; blockWriteBytes: number; netRxBytes: number; netTxBytes: number; pids: number | null }
export interface LogOptions { tail?: number; since?: string; until?: string; follow?: boolean; timestamps?: boolean }
export interface LogEntry { stream: 'stdout' | 'stderr' | 'console'; timestamp: string | null; message: string }
export interface ExecSpec { command: string[]; env?: Record<string, string>; workdir?: string | null; user?: string | null; tty?: boolean; maxOutputBytes?: number | null }
export interface ExecResult { exitCode: number; stdout: string; stderr: string; truncated: boolean }
export interface SnapshotSpec { name: string; description?: string | null }
export interface Snapshot { name: string; instanceId: string; createdAt: string | null; description: string | null; includesMemory: boolean; reference: string | null }
export interface ExportSpec { format: ExportFormat; destination: string }
export interface ExportResult { path: string; format: ExportFormat; sizeBytes: number }
export interface EventFilter { kind?: InstanceKind; backend?: string; instance?: string; actions?: EventAction[] }
export interface Event { time: string; backend: string; kind: InstanceKind; instanceId: string; instanceName: string | null; action: EventAction; attributes: Record<string, string> }
export interface Image { id: string; tags: string[]; kind: 'container' | 'disk' | 'iso'; backend: string; sizeBytes: number; createdAt: string | null; labels: Record<string, string>; format: string | null }
/** A progress report of a pull, push, build or export. */
export interface Progress { percent: number | null; message: string; id: string | null }
/** Called with each progress report, on the JavaScript thread. */
export type ProgressFn = (progress: Progress) => void
export interface RegistryAuth { username: string; password: string; server?: string | null }
export interface BuildSpec { dockerfile?: string | null; tags?: string[]; buildArgs?: Record<string, string>; labels?: Record<string, string> }
export interface PruneReport { deleted: string[]; spaceReclaimedBytes: number }
export interface NetworkSpec { name: string; backend?: string | null; driver?: string | null; subnet?: string | null; gateway?: string | null; internal?: boolean; labels?: Record<string, string> }
export interface Network { id: string; name: string; backend: string; driver: string; subnet: string | null; gateway: string | null; internal: boolean; active: boolean; labels: Record<string, string>; instances: string[]; hostAttached: boolean }
export interface VolumeSpec { name: string; backend?: string | null; driver?: string | null; pool?: string | null; sizeBytes?: number | null; format?: string | null; labels?: Record<string, string> }
export interface Volume { name: string; backend: string; driver: string; pool: string | null; path: string | null; format: string | null; capacityBytes: number | null; allocationBytes: number | null; createdAt: string | null; labels: Record<string, string>; usedBy: string[] }
export interface StoragePoolSpec { name: string; path: string; backend?: string | null; poolType?: string | null; autostart?: boolean }
export interface StoragePool { name: string; backend: string; poolType: string; path: string | null; active: boolean; autostart: boolean; capacityBytes: number; allocationBytes: number; availableBytes: number }
export interface Template { name: string; backend?: string; os?: string | null; image?: string | null; cpus?: number | null; memoryBytes?: number | null; disks?: Array<Record<string, unknown>>; networks?: string[]; cloudInit?: Record<string, unknown> | null }
export interface Health { backend: string; up: boolean; message: string; latencyMs: number }
export interface BackendInfo { name: string; engine: string; version: string; apiVersion: string | null; endpoint: string; kinds: InstanceKind[] }
export interface Capabilities { kinds: InstanceKind[]; pause: boolean; exec: boolean; console: boolean; consoleVnc: boolean; snapshots: boolean; liveSnapshot: boolean; cloudInit: boolean; exportFormats: ExportFormat[]; liveUpdate: boolean; imageRegistry: boolean; imageBuild: boolean; networks: boolean; volumes: boolean; storagePools: boolean; templates: boolean }

/** An error of LibGo; `code` is its kind's code. */
export declare class LibGoError extends Error {
  readonly code: ErrorCode
}

/** An async iterable stream; `close()` (or leaving a `for await`) ends it. */
export declare class Stream<T> implements AsyncIterableIterator<T> {
  next(): Promise<IteratorResult<T>>
  return(): Promise<IteratorResult<T>>
  close(): Promise<void>
  [Symbol.asyncIterator](): Stream<T>
}

/**
 * An interactive console (a container shell, a VM serial console). `read()` resolves to the
 * next output, `null` once the console has ended (with `timeoutMs`, it rejects with code
 * `TIMEOUT` when nothing came); `write()` types into it; `close()` ends it. Iterating it
 * with `for await` yields the output Buffers.
 */
export declare class Console implements AsyncIterableIterator<Buffer> {
  read(timeoutMs?: number): Promise<Buffer | null>
  write(data: Buffer | string): Promise<void>
  close(): Promise<void>
  next(): Promise<IteratorResult<Buffer>>
  return(): Promise<IteratorResult<Buffer>>
  [Symbol.asyncIterator](): Console
}

export declare class Client {
  private constructor(native: Native)
  static connect(config?: EngineConfig): Promise<Client>
  backends(): Promise<string[]>
  health(): Promise<Health[]>
  info(): Promise<BackendInfo[]>
  capabilities(backend: string): Promise<Capabilities>
  create(spec: InstanceSpec): Promise<Instance>
  get(id: string): Promise<Instance>
  list(filter?: InstanceFilter, page?: { page?: number; pageSize?: number }): Promise<Page<Instance>>
  listAll(filter?: InstanceFilter): Promise<Instance[]>
  start(id: string): Promise<void>
  stop(id: string, options?: StopOptions): Promise<void>
  restart(id: string, options?: StopOptions): Promise<void>
  kill(id: string, signal?: string): Promise<void>
  pause(id: string): Promise<void>
  resume(id: string): Promise<void>
  delete(id: string, options?: { force?: boolean }): Promise<void>
  update(id: string, update: { cpus?: number; memoryBytes?: number }): Promise<Instance>
  stats(id: string): Promise<Stats>
  statsStream(id: string): Promise<Stream<Stats>>
  logs(id: string, options?: LogOptions): Promise<Stream<LogEntry>>
  exec(id: string, spec: ExecSpec): Promise<ExecResult>
  vncDisplay(id: string): Promise<{ host: string; port: number }>
  console(id: string): Promise<Console>
  screenshot(id: string): Promise<Buffer>
  snapshotCreate(id: string, spec: SnapshotSpec): Promise<Snapshot>
  snapshotList(id: string): Promise<Snapshot[]>
  snapshotRevert(id: string, snapshot: string): Promise<void>
  snapshotDelete(id: string, snapshot: string): Promise<void>
  export(id: string, spec: ExportSpec, options?: { progress?: ProgressFn }): Promise<ExportResult>
  events(filter?: EventFilter): Promise<Stream<Event>>
  imageList(): Promise<Image[]>
  imageInspect(id: string, backend?: string): Promise<Image>
  imagePull(reference: string, options?: { auth?: RegistryAuth; backend?: string; progress?: ProgressFn }): Promise<Image>
  imagePush(reference: string, options?: { auth?: RegistryAuth; backend?: string; progress?: ProgressFn }): Promise<void>
  imageBuild(contextTar: Buffer, spec?: BuildSpec, backend?: string, options?: { progress?: ProgressFn }): Promise<Image>
  imageTag(source: string, target: string, backend?: string): Promise<void>
  imageRemove(id: string, options?: { force?: boolean; backend?: string }): Promise<void>
  imagePrune(backend?: string): Promise<PruneReport>
  imageSave(id: string, destination: string, backend?: string): Promise<ExportResult>
  networkList(): Promise<Network[]>
  networkCreate(spec: NetworkSpec): Promise<Network>
  networkInspect(id: string, backend?: string): Promise<Network>
  networkDelete(id: string, backend?: string): Promise<void>
  networkStart(id: string, backend?: string): Promise<void>
  networkStop(id: string, backend?: string): Promise<void>
  networkConnect(network: string, instance: string): Promise<void>
  networkDisconnect(network: string, instance: string): Promise<void>
  volumeList(): Promise<Volume[]>
  volumeCreate(spec: VolumeSpec): Promise<Volume>
  volumeInspect(name: string, backend?: string): Promise<Volume>
  volumeDelete(name: string, options?: { force?: boolean; backend?: string }): Promise<void>
  volumePrune(backend?: string): Promise<PruneReport>
  volumeResize(name: string, sizeBytes: number, backend?: string): Promise<Volume>
  volumeWipe(name: string, backend?: string): Promise<void>
  volumeClone(source: string, target: string, backend?: string): Promise<Volume>
  volumeUpload(name: string, file: string, backend?: string): Promise<Volume>
  poolList(): Promise<StoragePool[]>
  poolCreate(spec: StoragePoolSpec): Promise<StoragePool>
  poolInspect(name: string, backend?: string): Promise<StoragePool>
  poolActivate(name: string, backend?: string): Promise<void>
  poolDeactivate(name: string, backend?: string): Promise<void>
  poolDelete(name: string, backend?: string): Promise<void>
  templateList(): Promise<Template[]>
  templateCreate(template: Template, backend?: string): Promise<Template>
  templateGet(name: string, backend?: string): Promise<Template>
  templateDelete(name: string, backend?: string): Promise<void>
}
