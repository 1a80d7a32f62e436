/**
 * The shape of an Azure Pipelines YAML file, for the parts Rubicon's
 * examples use, written from Microsoft's YAML schema reference
 * (https://learn.microsoft.com/azure/devops/pipelines/yaml-schema/:
 * pipeline, trigger, pr, parameters, pool, variables, stages.stage,
 * jobs.job, jobs.deployment, jobs.deployment.strategy (runOnce, rolling,
 * canary: no matrix), jobs.job.strategy (matrix, maxParallel), steps.script,
 * steps.task, steps.checkout). No Azure DevOps validator runs here (the
 * service validates pipelines only on the server): this strict schema is
 * the check, so a misspelt or misplaced key fails. Objects are strict; a
 * list item may be a template expression (`${{ each ... }}`, `${{ if ... }}`)
 * holding items of the same list.
 */
import { z } from 'zod';

const expr = /^\$\{\{.*\}\}$/;
/** A list whose items may be template-expression blocks expanding to items of the same kind. */
function expandable<T extends z.ZodType>(item: T): z.ZodType {
  const block: z.ZodType = z.lazy(() => z.record(z.string().regex(expr), z.array(z.union([item, block]))).refine((o) => Object.keys(o).length === 1, 'one template expression per block'));
  return z.array(z.union([item, block]));
}

const variables = z.union([z.record(z.string(), z.string()), z.array(z.union([z.strictObject({ name: z.string(), value: z.string() }), z.strictObject({ group: z.string() })]))]);
const pool = z.union([z.string(), z.strictObject({ name: z.string().optional(), vmImage: z.string().optional(), demands: z.union([z.string(), z.array(z.string())]).optional() })]);
const stepCommon = { displayName: z.string().optional(), condition: z.string().optional(), continueOnError: z.boolean().optional(), env: z.record(z.string(), z.string()).optional(), timeoutInMinutes: z.number().optional(), name: z.string().optional() };
const step = z.union([
  z.strictObject({ script: z.string(), workingDirectory: z.string().optional(), failOnStderr: z.boolean().optional(), ...stepCommon }),
  z.strictObject({ bash: z.string(), ...stepCommon }),
  z.strictObject({ task: z.string().regex(/^[A-Za-z][A-Za-z0-9]*@\d+$/), inputs: z.record(z.string(), z.union([z.string(), z.boolean(), z.number()])).optional(), ...stepCommon }),
  z.strictObject({ checkout: z.union([z.literal('self'), z.literal('none'), z.string()]), clean: z.boolean().optional(), fetchDepth: z.number().optional(), ...stepCommon }),
  z.strictObject({ publish: z.string(), artifact: z.string(), ...stepCommon }),
  z.strictObject({ download: z.string(), artifact: z.string().optional(), ...stepCommon }),
]);
const steps = expandable(step);
const jobCommon = {
  displayName: z.string().optional(),
  dependsOn: z.union([z.string(), z.array(z.string())]).optional(),
  condition: z.string().optional(),
  continueOnError: z.boolean().optional(),
  timeoutInMinutes: z.number().optional(),
  cancelTimeoutInMinutes: z.number().optional(),
  pool: pool.optional(),
  variables: variables.optional(),
};
const job = z.strictObject({
  job: z.string().regex(/^[A-Za-z0-9_]+$/),
  strategy: z.strictObject({ matrix: z.record(z.string().regex(/^[A-Za-z0-9_]+$/), z.record(z.string(), z.string())), maxParallel: z.number().optional() }).optional(),
  steps,
  ...jobCommon,
});
const hook = z.strictObject({ steps, pool: pool.optional() });
const deployment = z.strictObject({
  // "deploy" is a keyword and cannot name a deployment job.
  deployment: z.string().regex(/^[A-Za-z0-9_${}(). ',-]+$/).refine((n) => n !== 'deploy', 'deploy is a keyword'),
  environment: z.union([z.string(), z.strictObject({ name: z.string(), resourceType: z.string().optional(), resourceName: z.string().optional() })]),
  strategy: z.union([
    z.strictObject({ runOnce: z.strictObject({ preDeploy: hook.optional(), deploy: hook, routeTraffic: hook.optional(), postRouteTraffic: hook.optional(), on: z.unknown().optional() }) }),
    z.strictObject({ rolling: z.strictObject({ maxParallel: z.union([z.number(), z.string()]), deploy: hook, on: z.unknown().optional() }) }),
    z.strictObject({ canary: z.strictObject({ increments: z.array(z.number()), deploy: hook, on: z.unknown().optional() }) }),
  ]),
  ...jobCommon,
});
const jobs = expandable(z.union([job, deployment]));
const stage = z.strictObject({ stage: z.string().regex(/^[A-Za-z0-9_]+$/), displayName: z.string().optional(), dependsOn: z.union([z.string(), z.array(z.string())]).optional(), condition: z.string().optional(), variables: variables.optional(), pool: pool.optional(), jobs });
const paths = z.strictObject({ include: z.array(z.string()).optional(), exclude: z.array(z.string()).optional() });
const trigger = z.union([z.literal('none'), z.array(z.string()), z.strictObject({ branches: paths.optional(), paths: paths.optional(), batch: z.boolean().optional() })]);
const parameter = z.strictObject({ name: z.string(), displayName: z.string().optional(), type: z.enum(['string', 'number', 'boolean', 'object', 'step', 'stepList', 'job', 'jobList', 'stage', 'stageList']), default: z.unknown().optional(), values: z.array(z.string()).optional() });

export const azurePipeline = z
  .strictObject({
    name: z.string().optional(),
    trigger: trigger.optional(),
    pr: z.union([z.literal('none'), z.array(z.string()), z.strictObject({ branches: paths.optional(), paths: paths.optional() })]).optional(),
    parameters: z.array(parameter).optional(),
    pool: pool.optional(),
    variables: variables.optional(),
    stages: z.array(stage).optional(),
    jobs: jobs.optional(),
    steps: steps.optional(),
  })
  .refine((p) => [p.stages, p.jobs, p.steps].filter(Boolean).length === 1, 'a pipeline has exactly one of stages, jobs, steps');
