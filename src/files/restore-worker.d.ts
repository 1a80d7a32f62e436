/** Types of restore-worker.js (plain JavaScript, checked with // @ts-check) for restore.ts, which runs it in this thread for a landing too small for threads. */
export interface LanderJob {
  dest: string;
  size: number;
  sha256: string;
  mode: number;
  uid?: number;
  gid?: number;
  mtime: number;
  objects: string[];
}

export declare class Lander {
  constructor(data: { chunk: number; abortFlag: Int32Array });
  readonly abortFlag: Int32Array;
  /** In order; one reply per file (restore.ts's LandReply); never throws. */
  runBatch(job: { id: number; files: LanderJob[] }): { id: number; results: unknown[] };
}
