import { z } from 'zod';
import { RubiconError } from '../../core/errors.ts';
import type { SignedPermit } from '../../trust/permit.ts';

/**
 * The Pulumi stack's settings, in the project's namespace (`rubicon:`).
 * parse (zod) → normalize (every default filled, images as strings) → rules
 * (cross-field checks). Raw config never leaves this module; every error
 * names the full key (`rubicon:target.dataDisks[1].lun`) and the fix.
 *
 * Pure: `parseInfraConfig` takes plain values. Reading them from Pulumi
 * (`readInfraConfig` in ./program.ts) is the only effect, and happens when the
 * program runs, never at import time.
 *
 * Secrets are not part of this shape: they are read as Pulumi secrets
 * (`rubicon:targetAdminPassword`, `rubicon:provingGroundAdminPassword`), set
 * with `pulumi config set --secret`.
 */

export const CONFIG_NAMESPACE = 'rubicon';

/** Keys of the structured settings, as `pulumi config set --path rubicon:<key>...` sees them. */
export const CONFIG_KEYS = ['location', 'resourceGroupName', 'target', 'vault', 'provingGround', 'permit', 'proofSetHash', 'permitPublicKey', 'armed'] as const;
export type ConfigKey = (typeof CONFIG_KEYS)[number];

/** Secret keys, set with `pulumi config set --secret`. Never in the stack files. */
export const SECRET_KEYS = ['targetAdminPassword', 'provingGroundAdminPassword'] as const;

// `pulumi config set --path rubicon:x.enabled true` may store "true" as a
// string: accept the exact strings, never coerce anything else.
const bool = z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean());
const int = (min: number, max: number) =>
  z.preprocess((v) => (typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v), z.number().int().min(min).max(max));

const ImageSchema = z.strictObject({
  publisher: z.string().min(1),
  offer: z.string().min(1),
  sku: z.string().min(1),
  version: z.string().min(1).default('latest'),
});

const azureName = (re: RegExp, what: string) => z.string().regex(re, what);

/** An Azure resource name of an existing resource (adoption): letters, digits, `_`, `.`, `-`, max 80. */
const existingName = azureName(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$/, 'must be an Azure resource name (letters, digits, _ . -; max 80)');

const DataDiskSchema = z.strictObject({
  /** Suffix of the Azure disk name: `<target.name>-<name>`; also the disk's role in snapshots. */
  name: azureName(/^[a-z0-9][a-z0-9-]{0,30}$/, 'must be lowercase letters, digits and hyphens (max 31)'),
  /** The Azure name of an existing disk (adoption). Default `<target.name>-<name>`. */
  diskName: existingName.optional(),
  lun: int(0, 63),
  sizeGb: int(4, 65536),
  type: z.enum(['Premium_LRS', 'PremiumV2_LRS', 'StandardSSD_LRS', 'Standard_LRS', 'Premium_ZRS', 'StandardSSD_ZRS']).default('Premium_LRS'),
});

const targetNameRe = /^[A-Za-z][A-Za-z0-9-]{0,14}$/;

const TargetSchema = z.strictObject({
  name: azureName(targetNameRe, 'must be 1-15 letters, digits or hyphens (a Windows computer name), starting with a letter'),
  /**
   * Names this target had before (newest first). Pulumi then treats the
   * renamed resources as the same ones (aliases) and plans the rename as a
   * replace, which the guard refuses, instead of a second VM beside the first.
   */
  formerNames: z.array(azureName(targetNameRe, 'must be a former rubicon:target.name')).default([]),
  vmSize: z.string().min(1),
  image: ImageSchema,
  subnetId: z.string().regex(/^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Network\/virtualNetworks\/[^/]+\/subnets\/[^/]+$/i, 'must be a subnet resource id (/subscriptions/…/virtualNetworks/<vnet>/subnets/<subnet>)'),
  adminUsername: z.string().min(1).default('rubiconadmin'),
  osDiskType: z.enum(['Premium_LRS', 'StandardSSD_LRS', 'Standard_LRS', 'Premium_ZRS', 'StandardSSD_ZRS']).default('Premium_LRS'),
  dataDisks: z.array(DataDiskSchema).default([]),
  rdpSourcePrefixes: z.array(z.string().min(1)).default([]),
  zone: z.enum(['1', '2', '3']).optional(),
  /** Trusted Launch (Secure Boot + vTPM). Needs a Gen2 image; set false to adopt a Gen1 VM. Default true. */
  trustedLaunch: bool.default(true),
  /** Azure name of the NIC (adoption). Default `<name>-nic`. */
  nicName: existingName.optional(),
  /** Azure name of the NSG (adoption). Default `<name>-nsg`. */
  nsgName: existingName.optional(),
  /**
   * Azure name of the OS disk. Unset: Azure names it. Adoption: the existing
   * OS disk's name. Each crossing sets a fresh one (`<name>-os-<run>`), so the
   * retired OS disk keeps its name as a rollback asset.
   */
  osDiskName: existingName.optional(),
  /**
   * Set by `rubicon rollback`: the VM boots from this existing OS disk (the
   * one a crossing retired) instead of an image. Its "image" is then
   * `disk:<disk id>` for the guard, and changing it is a rebuild like any other.
   */
  /**
   * Adopt an existing server: the next `pulumi up` imports the VM, NIC, NSG
   * and data disks (by the names above) instead of creating them, and fails
   * without touching anything if their settings differ. Set it back to false
   * after that up (docs/infra.md, "Adopting an existing server"). Default false.
   */
  adopt: bool.default(false),
  restoreFromDisk: z
    .string()
    .regex(/^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Compute\/disks\/[^/]+$/i, 'must be a managed disk resource id')
    .optional(),
});

const VaultSchema = z.strictObject({
  /** Resource group of the vault (exists). Default: rubicon:resourceGroupName. */
  resourceGroupName: z.string().min(1).optional(),
  storageAccountName: azureName(/^[a-z0-9]{3,24}$/, 'must be 3-24 lowercase letters or digits (a storage account name)'),
  containerName: azureName(/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/, 'must be 3-63 lowercase letters, digits or single hyphens (a blob container name)').default('rubicon-backups'),
  sku: z.enum(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_RAGRS', 'Standard_GZRS', 'Standard_RAGZRS']).default('Standard_GRS'),
  retentionDays: int(1, 146000).default(30),
  softDeleteDays: int(1, 365).default(14),
  allowSharedKeyAccess: bool.default(false),
  keyVaultName: azureName(/^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$/, 'must be 3-24 letters, digits or hyphens, starting with a letter (a Key Vault name)'),
  tenantId: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'must be the Entra tenant id (a GUID)'),
});

const cidr = z.string().regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, 'must be an IPv4 CIDR such as 10.250.0.0/24');

const ProvingGroundSchema = z.strictObject({
  enabled: bool.default(false),
  /** Set by the driver when it provisions: the run this proving ground serves. */
  runId: z.string().min(1).default('manual'),
  /** Set by the driver when it provisions (ISO time): the start of the TTL. */
  createdAt: z.string().default(''),
  ttlHours: int(1, 24 * 14).default(8),
  vmSize: z.string().min(1).default('Standard_E4s_v5'),
  image: ImageSchema.default({ publisher: 'MicrosoftSQLServer', offer: 'sql2022-ws2022', sku: 'sqldev-gen2', version: 'latest' }),
  adminUsername: z.string().min(1).default('rubiconadmin'),
  dataDiskSizeGb: int(4, 32767).default(256),
  addressSpace: cidr.default('10.250.0.0/24'),
  subnetPrefix: cidr.default('10.250.0.0/26'),
  autoShutdownTime: z.string().regex(/^([01]\d|2[0-3])[0-5]\d$/, 'must be HHmm, e.g. 1900').default('1900'),
  timeZone: z.string().min(1).default('UTC'),
  /**
   * The regional Storage service tag of the one NSG allow rule, e.g.
   * `Storage.WestEurope`. Default: derived from rubicon:location for the
   * regions Rubicon knows (storageServiceTag in components/proving-ground.ts).
   */
  storageServiceTag: z.string().regex(/^Storage\.[A-Za-z0-9]+$/, 'must be a regional Storage service tag such as Storage.WestEurope').optional(),
});

const PermitSchema = z.strictObject({
  id: z.string().min(1),
  runId: z.string().min(1),
  target: z.string().min(1),
  image: z.string().min(1),
  proofIds: z.array(z.string()),
  proofSetHash: z.string().min(1),
  issuedAt: z.string().min(1),
  expiresAt: z.string().min(1),
});

/** `rubicon:permit`: the signed permit (src/trust/permit.ts), as Rubicon writes it. */
const SignedPermitSchema = z.strictObject({
  permit: PermitSchema,
  keyId: z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 hex digits'),
  signature: z.string().min(1),
});

/**
 * `rubicon:armed`: written by the driver while a crossing is armed (with
 * `rubicon:permit`), removed on every way out; what to restore after a crash.
 */
export const ArmedSchema = z.strictObject({
  runId: z.string().min(1),
  at: z.string().min(1),
  previousImage: z.string().min(1),
  previousOsDiskName: z.string().min(1).optional(),
  previousRestoreFromDisk: z.string().min(1).optional(),
  previousOsDiskId: z.string().min(1).optional(),
  previousVmUniqueId: z.string().optional(),
});
export type ArmedRecord = z.infer<typeof ArmedSchema>;

const InfraConfigSchema = z.strictObject({
  location: z.string().min(1),
  resourceGroupName: z.string().min(1),
  target: TargetSchema,
  vault: VaultSchema,
  provingGround: ProvingGroundSchema.default(() => ProvingGroundSchema.parse({})),
  permit: SignedPermitSchema.optional(),
  proofSetHash: z.string().optional(),
  armed: ArmedSchema.optional(),
  /** The public key (SPKI PEM) permits must be signed with; committed in the stack file. */
  permitPublicKey: z.string().regex(/-----BEGIN PUBLIC KEY-----/, 'must be a PEM public key (openssl pkey -pubout), see docs/trust.md').optional(),
});

export type RawInfraConfig = Partial<Record<ConfigKey, unknown>>;

export interface ImageSpec {
  publisher: string;
  offer: string;
  sku: string;
  version: string;
}

/** The settings after parse → normalize → rules. The only shape the program sees. */
export interface InfraConfig {
  location: string;
  resourceGroupName: string;
  target: {
    name: string;
    vmSize: string;
    image: ImageSpec;
    /** `publisher:offer:sku:version`, the form permits use. */
    imageUrn: string;
    formerNames: string[];
    subnetId: string;
    adminUsername: string;
    osDiskType: string;
    /** `diskName` filled (`<name>-<disk name>` unless adopted). */
    dataDisks: { name: string; diskName: string; lun: number; sizeGb: number; type: string }[];
    rdpSourcePrefixes: string[];
    zone?: string;
    trustedLaunch: boolean;
    nicName: string;
    nsgName: string;
    osDiskName?: string;
    restoreFromDisk?: string;
    adopt: boolean;
  };
  vault: z.infer<typeof VaultSchema>;
  provingGround: z.infer<typeof ProvingGroundSchema> & { imageUrn: string };
  /** The signed permit `rubicon upgrade` wrote into the stack config, if any (verified by the guard, not here). */
  permit?: SignedPermit;
  /** The proof set the permit must be bound to (written with the permit), if any. */
  proofSetHash?: string;
  /** The trusted public key permits must be signed with. */
  permitPublicKey?: string;
  warnings: string[];
}

export function imageUrn(i: ImageSpec): string {
  return `${i.publisher}:${i.offer}:${i.sku}:${i.version}`;
}

/** The "image" of a VM that boots from an existing OS disk: `disk:<id>`, lower-case (ARM ids are case-insensitive). */
export function diskImageUrn(diskId: string): string {
  return `disk:${diskId.trim().replace(/\/+$/, '').toLowerCase()}`;
}

function keyOf(p: readonly PropertyKey[]): string {
  let out = `${CONFIG_NAMESPACE}:`;
  p.forEach((k, i) => {
    if (typeof k === 'number') out += `[${k}]`;
    else out += i === 0 ? String(k) : `.${String(k)}`;
  });
  return out;
}

function describe(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown setting${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}: remove or check the spelling (docs/infra.md lists every key)`;
    case 'invalid_type':
      return issue.input === undefined ? `is required (${issue.expected})` : `must be ${issue.expected === 'array' ? 'a list' : `a ${issue.expected}`}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return issue.message;
  }
}

function ipToInt(ip: string): number | undefined {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return undefined;
  return parts.reduce((acc, n) => acc * 256 + n, 0);
}

/** Pure: [first, last] address of an IPv4 CIDR, or undefined when malformed. */
export function cidrRange(c: string): [number, number] | undefined {
  const [ip, bitsText] = c.split('/');
  const base = ipToInt(ip ?? '');
  const bits = Number(bitsText);
  if (base === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) return undefined;
  const size = 2 ** (32 - bits);
  const first = Math.floor(base / size) * size;
  return [first, first + size - 1];
}

function fail(key: string, message: string, hint?: string): never {
  throw new RubiconError('ARGUMENTS_INVALID', `Pulumi config ${key} ${message}`, {
    hint: hint ?? `Fix it with \`pulumi config set --path '${key}' <value>\` (see docs/infra.md).`,
    details: { key },
  });
}

/**
 * Pure: raw config values (objects already JSON-decoded, or JSON strings) →
 * InfraConfig. Throws RubiconError(ARGUMENTS_INVALID) naming the first bad
 * key; every problem is listed in `details.problems`.
 */
export function parseInfraConfig(raw: RawInfraConfig): InfraConfig {
  const decoded: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined) continue;
    if (typeof v === 'string' && ['target', 'vault', 'provingGround', 'permit', 'armed'].includes(k)) {
      try {
        decoded[k] = JSON.parse(v);
      } catch {
        fail(keyOf([k]), 'is not valid JSON', `Set it as an object: \`pulumi config set --path '${keyOf([k])}.<field>' <value>\`.`);
      }
    } else decoded[k] = v;
  }
  const parsed = InfraConfigSchema.safeParse(decoded);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => ({ key: keyOf(i.path), message: describe(i) }));
    const first = problems[0]!;
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more: ${problems.slice(1).map((p) => p.key).join(', ')})` : '';
    throw new RubiconError('ARGUMENTS_INVALID', `Pulumi config ${first.key} ${first.message}${more}`, {
      hint: `Fix it with \`pulumi config set --path '${first.key}' <value>\` or in stacks/Pulumi.<stack>.yaml (docs/infra.md lists every key).`,
      details: { key: first.key, problems },
    });
  }
  return applyRules(normalize(parsed.data));
}

function normalize(c: z.infer<typeof InfraConfigSchema>): InfraConfig {
  return {
    location: c.location,
    resourceGroupName: c.resourceGroupName,
    target: {
      ...c.target,
      image: { ...c.target.image },
      imageUrn: c.target.restoreFromDisk ? diskImageUrn(c.target.restoreFromDisk) : imageUrn(c.target.image),
      nicName: c.target.nicName ?? `${c.target.name}-nic`,
      nsgName: c.target.nsgName ?? `${c.target.name}-nsg`,
      dataDisks: [...c.target.dataDisks].sort((a, b) => a.lun - b.lun).map((d) => ({ ...d, diskName: d.diskName ?? `${c.target.name}-${d.name}` })),
    },
    vault: c.vault,
    provingGround: { ...c.provingGround, imageUrn: imageUrn(c.provingGround.image) },
    ...(c.permit ? { permit: c.permit } : {}),
    ...(c.proofSetHash ? { proofSetHash: c.proofSetHash } : {}),
    ...(c.permitPublicKey ? { permitPublicKey: c.permitPublicKey } : {}),
    warnings: [],
  };
}

function applyRules(c: InfraConfig): InfraConfig {
  const seenLun = new Map<number, number>();
  const seenName = new Map<string, number>();
  c.target.dataDisks.forEach((d, i) => {
    if (seenLun.has(d.lun)) fail(keyOf(['target', 'dataDisks', i, 'lun']), `repeats LUN ${d.lun}: every data disk needs its own LUN`);
    if (seenName.has(d.name)) fail(keyOf(['target', 'dataDisks', i, 'name']), `repeats the disk name "${d.name}": names must be unique`);
    seenLun.set(d.lun, i);
    seenName.set(d.name, i);
  });
  const space = cidrRange(c.provingGround.addressSpace);
  const subnet = cidrRange(c.provingGround.subnetPrefix);
  if (!space) fail(keyOf(['provingGround', 'addressSpace']), 'is not a valid IPv4 CIDR');
  if (!subnet) fail(keyOf(['provingGround', 'subnetPrefix']), 'is not a valid IPv4 CIDR');
  if (subnet[0] < space[0] || subnet[1] > space[1]) {
    fail(keyOf(['provingGround', 'subnetPrefix']), `(${c.provingGround.subnetPrefix}) must lie inside rubicon:provingGround.addressSpace (${c.provingGround.addressSpace})`);
  }
  if (c.provingGround.enabled && Number.isNaN(Date.parse(c.provingGround.createdAt))) {
    fail(
      keyOf(['provingGround', 'createdAt']),
      `must be an ISO time when rubicon:provingGround.enabled is true (it starts the TTL)${c.provingGround.createdAt === '' ? '; it is not set' : ''}`,
      "The driver sets it when it provisions; by hand: `pulumi config set --path 'rubicon:provingGround.createdAt' $(date -u +%FT%TZ)`.",
    );
  }
  c.target.dataDisks.forEach((d, i) => {
    // Premium SSD v2 disks attach only to zonal VMs (ARM: "PremiumV2_LRS disks can only be attached to zonal VMs").
    if (d.type === 'PremiumV2_LRS' && !c.target.zone) {
      fail(
        keyOf(['target', 'dataDisks', i, 'type']),
        'is PremiumV2_LRS, which Azure attaches only to a VM in an availability zone, but rubicon:target.zone is not set',
        "Set the zone the disk lives in (`pulumi config set --path 'rubicon:target.zone' 1`) or use Premium_LRS.",
      );
    }
  });
  if (c.target.formerNames.includes(c.target.name)) {
    fail(keyOf(['target', 'formerNames']), `lists the current name "${c.target.name}"`, 'List only names the target had before.');
  }
  if (c.permit && c.permit.permit.target !== c.target.name) {
    c.warnings.push(`rubicon:permit was issued for target "${c.permit.permit.target}", not "${c.target.name}": it does not count here.`);
  }
  if (c.target.rdpSourcePrefixes.includes('*') || c.target.rdpSourcePrefixes.includes('0.0.0.0/0') || c.target.rdpSourcePrefixes.includes('Internet')) {
    fail(keyOf(['target', 'rdpSourcePrefixes']), 'must not open RDP to the Internet', 'List the management network CIDRs only (e.g. 10.0.0.0/8), or use Azure Bastion.');
  }
  return c;
}
