/** Types of copy-worker.js (plain JavaScript, checked with // @ts-check) for the TypeScript that runs it in this thread (capture.ts's LocalEngine, tests). */
import type { CopyBatchReply, CopyJob, CopyReply, CopyTarget } from './copy-pool.ts';

export declare class Copier {
  constructor(data: { chunk: number; targets: CopyTarget[]; maxReads: number; abortFlag: Int32Array; afterRead?: (abs: string, chunkIndex: number) => void });
  /** One file, every target; never throws (a failure is a reply). */
  run(abs: string): CopyReply;
  runBatch(job: CopyJob): CopyBatchReply;
}
