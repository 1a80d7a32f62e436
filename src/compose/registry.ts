import { RubiconError } from '../core/errors.ts';

/**
 * One registry per seam (transport, vault kind, engine, folder method,
 * infra kind): a runbook `kind` selects a factory; nothing outside the
 * composition root (src/compose/root.ts) names a concrete adapter. A new
 * adapter is a new file plus one `register` line there (the shape of
 * restic's backend location registry).
 */
export class Registry<F> {
  readonly seam: string;
  private readonly factories = new Map<string, F>();

  constructor(seam: string) {
    this.seam = seam;
  }

  register(kind: string, factory: F): this {
    if (this.factories.has(kind)) throw new RubiconError('INTERNAL', `${this.seam} "${kind}" is registered twice`);
    this.factories.set(kind, factory);
    return this;
  }

  /**
   * Tests only: puts `factory` in place of the registered `kind` (stand-in
   * ports behind a real adapter's wiring) and returns the undo. Throws for a
   * kind that is not registered.
   */
  override(kind: string, factory: F): () => void {
    const before = this.factories.get(kind);
    if (before === undefined) throw new RubiconError('INTERNAL', `${this.seam} "${kind}" is not registered`);
    this.factories.set(kind, factory);
    return () => {
      this.factories.set(kind, before);
    };
  }

  has(kind: string): boolean {
    return this.factories.has(kind);
  }

  kinds(): string[] {
    return [...this.factories.keys()];
  }

  /** The factory for `kind`; `field` names the runbook field that chose it, for the message. */
  get(kind: string, field: string): F {
    const f = this.factories.get(kind);
    if (!f) {
      throw new RubiconError('RUNBOOK_INVALID', `${field}: no ${this.seam} "${kind}" is built into this Rubicon`, {
        hint: `use one of ${this.kinds().map((k) => `"${k}"`).join(', ')}`,
      });
    }
    return f;
  }
}
