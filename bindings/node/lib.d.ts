// Types of the `libgo` package: the Client in lib.js over the generated native addon
// (index.d.ts). Values are the camelCase JSON of LibGo's core types.
import type { Native } from './index'
// The data types are generated from the core's (types.d.ts); this file adds the Client.
export * from './types'
import type {
  EngineConfig, Instance, InstanceSpec, InstanceFilter, Unavailable, StopOptions, Stats, LogOptions,
  LogEntry, ExecSpec, ExecResult, SnapshotSpec, Snapshot, ExportSpec, ExportResult, EventFilter,
  Event, Image, Progress, RegistryAuth, BuildSpec, PruneReport, NetworkSpec, Network, VolumeSpec,
  Volume, StoragePoolSpec, StoragePool, Template, Health, BackendInfo, Capabilities, VncDisplay,
  ResourceUpdate, BatchSpec, BatchReport,
} from './types'

export type ErrorCode = 'NOT_FOUND' | 'INVALID_INPUT' | 'RESOURCE_CONFLICT' | 'UNAUTHORIZED' | 'FORBIDDEN' | 'UNSUPPORTED' | 'BACKEND_UNAVAILABLE' | 'TIMEOUT' | 'INTERNAL_SERVER_ERROR'
/** A page of a list; `unavailable` names the backends whose part is missing, and why. */
export interface Page<T> { items: T[]; count: number; page: number; pageSize: number; unavailable?: Unavailable[] }
/** Called with each progress report, on the JavaScript thread. */
export type ProgressFn = (progress: Progress) => void

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
  /** Creates `count` instances from one spec, named by `namePattern` (`{n}` is the number); a failed item is reported and the batch goes on. */
  createBatch(batch: BatchSpec, options?: { progress?: ProgressFn }): Promise<BatchReport>
  /** Deletes many instances (at most 100), reporting each. */
  deleteBatch(ids: string[], options?: { force?: boolean; progress?: ProgressFn }): Promise<BatchReport>
  update(id: string, update: ResourceUpdate): Promise<Instance>
  stats(id: string): Promise<Stats>
  statsStream(id: string): Promise<Stream<Stats>>
  logs(id: string, options?: LogOptions): Promise<Stream<LogEntry>>
  exec(id: string, spec: ExecSpec): Promise<ExecResult>
  vncDisplay(id: string): Promise<VncDisplay>
  console(id: string): Promise<Console>
  screenshot(id: string): Promise<Buffer>
  snapshotCreate(id: string, spec: SnapshotSpec): Promise<Snapshot>
  snapshotList(id: string): Promise<Snapshot[]>
  snapshotRevert(id: string, snapshot: string): Promise<void>
  snapshotDelete(id: string, snapshot: string): Promise<void>
  export(id: string, spec: ExportSpec, options?: { progress?: ProgressFn }): Promise<ExportResult>
  events(filter?: EventFilter): Promise<Stream<Event>>
  imageList(): Promise<Image[]>
  /** One page of the images of every backend; `unavailable` names the backends that could not be listed. */
  imagePage(page?: { page?: number; pageSize?: number }): Promise<Page<Image>>
  imageInspect(id: string, backend?: string): Promise<Image>
  imagePull(reference: string, options?: { auth?: RegistryAuth; backend?: string; progress?: ProgressFn }): Promise<Image>
  imagePush(reference: string, options?: { auth?: RegistryAuth; backend?: string; progress?: ProgressFn }): Promise<void>
  imageBuild(contextTar: Buffer, spec?: BuildSpec, backend?: string, options?: { progress?: ProgressFn }): Promise<Image>
  imageTag(source: string, target: string, backend?: string): Promise<void>
  imageRemove(id: string, options?: { force?: boolean; backend?: string }): Promise<void>
  imagePrune(backend?: string): Promise<PruneReport>
  imageSave(id: string, destination: string, backend?: string): Promise<ExportResult>
  networkList(): Promise<Network[]>
  /** One page of the networks of every backend; `unavailable` names the backends that could not be listed. */
  networkPage(page?: { page?: number; pageSize?: number }): Promise<Page<Network>>
  networkCreate(spec: NetworkSpec): Promise<Network>
  networkInspect(id: string, backend?: string): Promise<Network>
  networkDelete(id: string, backend?: string): Promise<void>
  networkStart(id: string, backend?: string): Promise<void>
  networkStop(id: string, backend?: string): Promise<void>
  networkConnect(network: string, instance: string): Promise<void>
  networkDisconnect(network: string, instance: string): Promise<void>
  volumeList(): Promise<Volume[]>
  /** One page of the volumes of every backend; `unavailable` names the backends that could not be listed. */
  volumePage(page?: { page?: number; pageSize?: number }): Promise<Page<Volume>>
  volumeCreate(spec: VolumeSpec): Promise<Volume>
  volumeInspect(name: string, backend?: string): Promise<Volume>
  volumeDelete(name: string, options?: { force?: boolean; backend?: string }): Promise<void>
  volumePrune(backend?: string): Promise<PruneReport>
  volumeResize(name: string, sizeBytes: number, backend?: string): Promise<Volume>
  volumeWipe(name: string, backend?: string): Promise<void>
  volumeClone(source: string, target: string, backend?: string): Promise<Volume>
  volumeUpload(name: string, file: string, backend?: string): Promise<Volume>
  poolList(): Promise<StoragePool[]>
  /** One page of the storage pools of every backend; `unavailable` names the backends that could not be listed. */
  poolPage(page?: { page?: number; pageSize?: number }): Promise<Page<StoragePool>>
  poolCreate(spec: StoragePoolSpec): Promise<StoragePool>
  poolInspect(name: string, backend?: string): Promise<StoragePool>
  poolActivate(name: string, backend?: string): Promise<void>
  poolDeactivate(name: string, backend?: string): Promise<void>
  poolDelete(name: string, backend?: string): Promise<void>
  templateList(): Promise<Template[]>
  /** One page of the templates of every backend; `unavailable` names the backends that could not be listed. */
  templatePage(page?: { page?: number; pageSize?: number }): Promise<Page<Template>>
  templateCreate(template: Template, backend?: string): Promise<Template>
  templateGet(name: string, backend?: string): Promise<Template>
  templateDelete(name: string, backend?: string): Promise<void>
}
