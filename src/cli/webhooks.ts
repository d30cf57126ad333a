import type { WebhookConfig } from '../config.js';
import type { SqlClient } from '../db/sql.js';
import { isUuid } from '../ids.js';
import { WEBHOOK } from '../limits/fixed.js';
import { DeliveryQueue } from '../webhooks/delivery-queue.js';
import { EndpointStore, type WebhookEndpointInfo, endpointFields } from '../webhooks/endpoints.js';
import { WEBHOOK_EVENTS } from '../webhooks/events.js';
import { CommandError, UsageError, columns, parseCommandLine, requireWorkspace } from './command-line.js';

export const WEBHOOKS_USAGE = `Usage:
  jobs-gateway webhooks create --workspace <slug> --url <https://...> --event <event>... [--competitor-id <id>] [--job-type <type>] [--description <text>]
  jobs-gateway webhooks list --workspace <slug>
  jobs-gateway webhooks disable|enable|delete|rotate-secret <endpointId>
  jobs-gateway webhooks deliveries <endpointId> [--limit <n>]
  jobs-gateway webhooks redeliver <deliveryId>

Events: ${WEBHOOK_EVENTS.join(', ')}.`;

export type WebhooksCommand =
  | { action: 'create'; workspace: string; url: string; events: string[]; competitorId?: string; jobType?: string; description?: string }
  | { action: 'list'; workspace: string }
  | { action: 'disable' | 'enable' | 'delete' | 'rotate-secret'; endpointId: string }
  | { action: 'deliveries'; endpointId: string; limit: number }
  | { action: 'redeliver'; deliveryId: string };

/** Checks a `webhooks` command line without touching any database (exit 2, with usage, when wrong). */
export function parseWebhooksCommand(argv: string[]): WebhooksCommand {
  const [action, ...rest] = argv;
  const { values, positionals } = parseCommandLine(rest, {
    workspace: { type: 'string' },
    url: { type: 'string' },
    event: { type: 'string', multiple: true },
    'competitor-id': { type: 'string' },
    'job-type': { type: 'string' },
    description: { type: 'string' },
    limit: { type: 'string' },
  });
  const one = (what: string) => {
    if (positionals.length !== 1) throw new UsageError(`webhooks ${action} takes exactly one ${what}.`);
    return positionals[0]!;
  };
  switch (action) {
    case 'create':
      if (!values.url) throw new UsageError('--url is required.');
      if (!values.event?.length) throw new UsageError(`--event is required (one or more of ${WEBHOOK_EVENTS.join(', ')}).`);
      return {
        action,
        workspace: requireWorkspace(values.workspace),
        url: values.url,
        events: values.event,
        ...(values['competitor-id'] !== undefined && { competitorId: values['competitor-id'] }),
        ...(values['job-type'] !== undefined && { jobType: values['job-type'] }),
        ...(values.description !== undefined && { description: values.description }),
      };
    case 'list':
      return { action, workspace: requireWorkspace(values.workspace) };
    case 'disable':
    case 'enable':
    case 'delete':
    case 'rotate-secret':
      return { action, endpointId: one('endpoint id') };
    case 'deliveries': {
      const limit = values.limit === undefined ? 20 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > WEBHOOK.logPageMax) throw new UsageError(`--limit must be 1 to ${WEBHOOK.logPageMax}.`);
      return { action, endpointId: one('endpoint id'), limit };
    }
    case 'redeliver':
      return { action, deliveryId: one('delivery id') };
    default:
      throw new UsageError(action ? `Unknown command "webhooks ${action}".` : 'Missing command.');
  }
}

/**
 * Carries out a parsed `webhooks` command as an operator (any workspace, by id); returns the lines
 * to print. The checks are those of the GraphQL mutations (webhooks/endpoints.ts).
 */
export async function runWebhooksCommand(sql: SqlClient, config: WebhookConfig, command: WebhooksCommand): Promise<string[]> {
  const endpoints = new EndpointStore(sql);
  const deliveries = new DeliveryQueue(sql);
  const workspaceOf = async (slug: string) => {
    const [row] = await sql.query<{ id: string }>(`SELECT "id" FROM "Workspace" WHERE "slug" = $1`, [slug]);
    if (!row) throw new CommandError(`Workspace "${slug}" does not exist.`);
    return row.id;
  };
  /** The endpoint's workspace, by its id alone (an operator names no workspace). */
  const endpointWorkspace = async (id: string) => {
    const [row] = isUuid(id) ? await sql.query<{ workspaceId: string }>(`SELECT "workspaceId" FROM "WebhookEndpoint" WHERE "id" = $1::uuid`, [id]) : [];
    if (!row) throw new CommandError(`Webhook endpoint ${id} does not exist.`);
    return row.workspaceId;
  };
  switch (command.action) {
    case 'create': {
      const { endpoint, secret } = await withCommandErrors(async () => {
        const fields = endpointFields(command, config);
        return endpoints.create(
          await workspaceOf(command.workspace),
          { ...fields, url: fields.url!, events: fields.events!, progressIntervalMs: fields.progressIntervalMs ?? config.progressIntervalMs },
          config.maxEndpoints,
        );
      });
      return [
        `Created webhook endpoint ${endpoint.id} for ${endpoint.url} (${endpoint.events.join(', ')}).`,
        'Its signing secret is shown only this once; store it now:',
        secret,
      ];
    }
    case 'list': {
      const list = await endpoints.list(await workspaceOf(command.workspace));
      return list.length === 0 ? [`Workspace "${command.workspace}" has no webhook endpoints.`] : table(list);
    }
    case 'disable':
    case 'enable': {
      const workspaceId = await endpointWorkspace(command.endpointId);
      if (command.action === 'disable') await deliveries.disableEndpoint(command.endpointId, 'Disabled by an operator.');
      else await endpoints.update(workspaceId, command.endpointId, { enabled: true });
      return [`Webhook endpoint ${command.endpointId} ${command.action}d.`];
    }
    case 'delete':
      await endpoints.delete(await endpointWorkspace(command.endpointId), command.endpointId);
      return [`Deleted webhook endpoint ${command.endpointId} and its delivery log.`];
    case 'rotate-secret': {
      const rotated = await endpoints.rotateSecret(await endpointWorkspace(command.endpointId), command.endpointId, WEBHOOK.secretOverlapMs);
      if (!rotated) throw new CommandError(`Webhook endpoint ${command.endpointId} does not exist.`);
      return [
        `New signing secret for ${command.endpointId}; the previous one also signs until ${rotated.endpoint.previousSecretUntil!.toISOString()}:`,
        rotated.secret,
      ];
    }
    case 'deliveries': {
      const log = await deliveries.log(await endpointWorkspace(command.endpointId), command.endpointId, command.limit);
      if (log.length === 0) return [`No deliveries to ${command.endpointId}.`];
      return columns([
        ['ID', 'EVENT', 'JOB', 'STATE', 'ATTEMPTS', 'LAST STATUS', 'NEXT ATTEMPT', 'LAST ERROR'],
        ...log.map((d) => [
          d.id,
          d.eventType,
          d.jobId,
          d.state,
          String(d.attempts),
          String(d.lastStatus ?? '-'),
          d.nextAttemptAt?.toISOString() ?? '-',
          d.lastError ?? '-',
        ]),
      ]);
    }
    case 'redeliver': {
      const [row] = /^\d{1,18}$/.test(command.deliveryId)
        ? await sql.query<{ workspaceId: string }>(
            `SELECT e."workspaceId" FROM "WebhookDelivery" d JOIN "WebhookEndpoint" e ON e."id" = d."endpointId" WHERE d."id" = $1::bigint`,
            [command.deliveryId],
          )
        : [];
      if (!row) throw new CommandError(`Webhook delivery ${command.deliveryId} does not exist.`);
      const resent = await deliveries.redeliver(row.workspaceId, command.deliveryId, config.timeoutMs + WEBHOOK.leaseMarginMs);
      if (resent?.endpointDisabled) throw new CommandError(`The endpoint of delivery ${command.deliveryId} is disabled: enable it first.`);
      if (resent?.laterPending)
        throw new CommandError(`Later events of the job of delivery ${command.deliveryId} are still to be sent; redeliver it once they are.`);
      return [`Delivery ${command.deliveryId} will be sent again now.`];
    }
  }
}

/** A refused input (BAD_USER_INPUT of the checks the GraphQL mutations share) as the CLI's own error. */
async function withCommandErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof CommandError || (error as { extensions?: { code?: string } }).extensions?.code === 'BAD_USER_INPUT') {
      throw new CommandError((error as Error).message);
    }
    throw error;
  }
}

function table(list: WebhookEndpointInfo[]): string[] {
  return columns([
    ['ID', 'URL', 'EVENTS', 'FILTERS', 'STATE'],
    ...list.map((e) => [
      e.id,
      e.url,
      e.events.join(','),
      [e.competitorId && `competitor=${e.competitorId}`, e.jobType && `type=${e.jobType}`].filter(Boolean).join(' ') || '-',
      e.enabled ? (e.failingSince ? `failing since ${e.failingSince.toISOString()}` : 'enabled') : `disabled: ${e.disabledReason ?? ''}`,
    ]),
  ]);
}
