/**
 * "Did you mean": the closest known word to a mistyped one. Pure.
 *
 * Contract: returns a candidate only when it is close enough to be a typo
 * (an edit distance of at most a third of the word, at least 1, or the
 * typed word is a prefix of exactly one candidate); otherwise undefined.
 * Ties go to the candidate listed first.
 */
export function closest(typed: string, candidates: readonly string[]): string | undefined {
  const word = typed.toLowerCase();
  const prefixed = candidates.filter((c) => word.length >= 3 && c.startsWith(word));
  if (prefixed.length === 1) return prefixed[0];
  let best: { c: string; d: number } | undefined;
  for (const c of candidates) {
    const d = distance(word, c.toLowerCase());
    if (!best || d < best.d) best = { c, d };
  }
  const limit = Math.max(1, Math.floor(word.length / 3));
  return best && best.d <= limit ? best.c : undefined;
}

/** Damerau–Levenshtein distance (optimal string alignment): a swap of two neighbours counts 1. */
export function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}
