// Milliseconds on a monotonic clock (a wall-clock step does not move it), for
// deadlines and freshness. Not performance.now(): on Node 24 the `performance`
// global's getter loads perf_hooks and its eight internal modules, which
// nothing else in the agent needs.

/** Milliseconds since an arbitrary fixed point, monotonic. */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6
