import type { SqlClient } from '../db/sql.js';
import { WEBHOOK } from '../limits/fixed.js';
import type { WebhookEvent } from './events.js';

/** A delivery claimed for one attempt: the event, where it goes and the secrets that sign it. */
export interface ClaimedDelivery {
  id: string;
  endpointId: string;
  workspaceId: string;
  eventId: string;
  eventType: WebhookEvent;
  /** The job as the change left it (job_webhook_snapshot()). */
  job: Record<string, unknown>;
  /** This attempt's number (1 for the first): the claim is ours while the row still has it. */
  attempts: number;
  createdAt: Date;
  url: string;
  secret: string;
  /** A rotated-out secret still inside its overlap: the attempt is signed with both. */
  previousSecret: string | null;
}

/**
 * Room for attempts on this instance: in all, per workspace and per endpoint (workspaces and
 * endpoints not listed have `perWorkspace` and `perEndpoint`).
 */
export interface ClaimRoom {
  total: number;
  perWorkspace: number;
  perEndpoint: number;
  /** Workspaces with attempts under way here, and how many more each may take. */
  workspaces: ReadonlyMap<string, number>;
  /** Endpoints with attempts under way here, and how many more each may take. */
  endpoints: ReadonlyMap<string, number>;
}

/** What a claim took, and whether due deliveries were left for want of room per workspace or endpoint. */
export interface Claim {
  deliveries: ClaimedDelivery[];
  /** Due deliveries the claim looked at (some left to the caps): more may be claimable at once. */
  scanned: number;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed';

/** One line of an endpoint's delivery log. */
export interface DeliveryLogEntry {
  id: string;
  endpointId: string;
  eventId: string;
  eventType: string;
  jobId: string;
  state: DeliveryState;
  attempts: number;
  createdAt: Date;
  lastAttemptAt: Date | null;
  lastStatus: number | null;
  lastError: string | null;
  /** While pending. */
  nextAttemptAt: Date | null;
  endedAt: Date | null;
}

/** What became of a failed attempt: retried later, or failed for good (and whether that disabled its endpoint). */
export interface FailureRecorded {
  gaveUp: boolean;
  /** Set when the endpoint has failed for longer than the retry window and was disabled now. */
  disabledEndpoint: boolean;
}

/**
 * The deliveries of every workspace in PostgreSQL (the outbox that job_webhook_events() writes), as
 * the statements the dispatcher runs: claim, record an outcome, redeliver, read the log, sweep.
 * Every statement is short and commits on its own; no transaction is held while a receiver answers.
 *
 * Order per job: a delivery is claimed only when no older delivery of its (endpoint, job) is
 * pending, so a job's events reach an endpoint one after the other; other jobs are not held up.
 * Exclusive claims across instances: `FOR UPDATE SKIP LOCKED`, then the claim itself moves
 * `nextAttemptAt` past the attempt's deadline, so no other instance sees the delivery due while it
 * is being sent, and every instance sees it due again if the one sending it dies.
 */
export class DeliveryQueue {
  constructor(private readonly sql: Pick<SqlClient, 'query'>) {}

  /**
   * Claims due deliveries within `room`. The oldest due come first, but a workspace (or an
   * endpoint) at its cap is passed over, so one workspace's backlog cannot take every attempt.
   */
  async claim(room: ClaimRoom, leaseMs: number): Promise<Claim> {
    if (room.total <= 0) return { deliveries: [], scanned: 0 };
    const full = (caps: ReadonlyMap<string, number>) => [...caps].filter(([, free]) => free <= 0).map(([id]) => id);
    const partly = (caps: ReadonlyMap<string, number>) => [...caps].filter(([, free]) => free > 0);
    const endpoints = partly(room.endpoints);
    const workspaces = partly(room.workspaces);
    const rows = await this.sql.query<ClaimedDelivery & { scanned: number }>(
      `WITH heads AS (
         SELECT d."id", d."endpointId", e."workspaceId", d."nextAttemptAt"
           FROM "WebhookDelivery" d
           JOIN "WebhookEndpoint" e ON e."id" = d."endpointId" AND e."disabledAt" IS NULL
          WHERE d."state" = 'pending' AND d."nextAttemptAt" <= now()
            AND d."endpointId" <> ALL($1::uuid[]) AND e."workspaceId" <> ALL($2::uuid[])
            AND NOT EXISTS (SELECT FROM "WebhookDelivery" p
                             WHERE p."state" = 'pending' AND p."endpointId" = d."endpointId" AND p."jobId" = d."jobId" AND p."id" < d."id")
          ORDER BY d."nextAttemptAt", d."id"
          LIMIT $3
       ), ranked AS (
         SELECT "id", "endpointId", "workspaceId", "nextAttemptAt",
                row_number() OVER (PARTITION BY "endpointId" ORDER BY "nextAttemptAt", "id") AS "endpointRank",
                row_number() OVER (PARTITION BY "workspaceId" ORDER BY "nextAttemptAt", "id") AS "workspaceRank"
           FROM heads
       ), chosen AS (
         SELECT r."id" FROM ranked r
           LEFT JOIN unnest($5::uuid[], $6::int[]) AS endpoint("id", "free") ON endpoint."id" = r."endpointId"
           LEFT JOIN unnest($7::uuid[], $8::int[]) AS workspace("id", "free") ON workspace."id" = r."workspaceId"
          WHERE r."endpointRank" <= coalesce(endpoint."free", $9) AND r."workspaceRank" <= coalesce(workspace."free", $10)
       ), claimed AS (
         -- Only the chosen rows are locked (a lock is a write), each re-checked on its newest version:
         -- one another instance claimed meanwhile is no longer due, one it is claiming is skipped.
         SELECT d."id" FROM "WebhookDelivery" d
          WHERE d."id" IN (SELECT "id" FROM chosen) AND d."state" = 'pending' AND d."nextAttemptAt" <= now()
          FOR UPDATE SKIP LOCKED
       )
       UPDATE "WebhookDelivery" d
          SET "attempts" = d."attempts" + 1, "lastAttemptAt" = now(), "nextAttemptAt" = now() + $4 * interval '1 millisecond'
         FROM claimed, "WebhookEndpoint" e
        WHERE d."id" = claimed."id" AND e."id" = d."endpointId"
       RETURNING d."id"::text AS "id", d."endpointId", e."workspaceId", d."eventId", d."eventType", d."job", d."attempts", d."createdAt", e."url", e."secret",
                 CASE WHEN e."previousSecretUntil" > now() THEN e."previousSecret" END AS "previousSecret",
                 (SELECT count(*) FROM heads)::int AS "scanned"`,
      [
        full(room.endpoints),
        full(room.workspaces),
        Math.min(room.total, WEBHOOK.claimBatch),
        leaseMs,
        endpoints.map(([id]) => id),
        endpoints.map(([, free]) => free),
        workspaces.map(([id]) => id),
        workspaces.map(([, free]) => free),
        room.perEndpoint,
        room.perWorkspace,
      ],
    );
    // The window's order is lost by UPDATE ... RETURNING: oldest first again, as they were due.
    const deliveries = rows.map(({ scanned: _, ...delivery }) => delivery).sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
    return { deliveries, scanned: rows[0]?.scanned ?? 0 };
  }

  /** A 2xx: delivered, and its endpoint is no longer failing. False if the claim was lost meanwhile. */
  async recordSuccess(delivery: ClaimedDelivery, status: number): Promise<boolean> {
    const [row] = await this.sql.query<{ done: boolean }>(
      `WITH done AS (
         UPDATE "WebhookDelivery" SET "state" = 'delivered', "endedAt" = now(), "lastStatus" = $2, "lastError" = NULL
          WHERE "id" = $1 AND "attempts" = $3 AND "state" = 'pending' RETURNING "endpointId"
       ), recovered AS (
         UPDATE "WebhookEndpoint" SET "failingSince" = NULL WHERE "id" IN (SELECT "endpointId" FROM done) AND "failingSince" IS NOT NULL
       )
       SELECT EXISTS (SELECT FROM done) AS "done"`,
      [delivery.id, status, delivery.attempts],
    );
    return row?.done ?? false;
  }

  /**
   * Any other outcome: retried after `retryDelayMs` unless that falls past the retry window, then
   * failed for good. An endpoint that has had no success for the whole window is disabled, and its
   * pending deliveries fail with it.
   */
  async recordFailure(
    delivery: ClaimedDelivery,
    outcome: { status: number | null; error: string },
    retryDelayMs: number,
    retryForMs: number,
  ): Promise<FailureRecorded> {
    const [row] = await this.sql.query<{ state: DeliveryState | null; failingSince: Date | null }>(
      `WITH failed AS (
         UPDATE "WebhookDelivery"
            SET "lastStatus" = $2, "lastError" = $3,
                "state" = CASE WHEN "queuedAt" + $5 * interval '1 millisecond' < now() + $4 * interval '1 millisecond' THEN 'failed' ELSE 'pending' END,
                "endedAt" = CASE WHEN "queuedAt" + $5 * interval '1 millisecond' < now() + $4 * interval '1 millisecond' THEN now() END,
                "nextAttemptAt" = now() + $4 * interval '1 millisecond'
          WHERE "id" = $1 AND "attempts" = $6 AND "state" = 'pending'
          RETURNING "endpointId", "state"
       ), failing AS (
         UPDATE "WebhookEndpoint" SET "failingSince" = coalesce("failingSince", now())
          WHERE "id" IN (SELECT "endpointId" FROM failed) RETURNING "failingSince"
       )
       SELECT (SELECT "state" FROM failed) AS "state", (SELECT "failingSince" FROM failing) AS "failingSince"`,
      [delivery.id, outcome.status, outcome.error, retryDelayMs, retryForMs, delivery.attempts],
    );
    const gaveUp = row?.state === 'failed';
    if (!row?.failingSince || row.failingSince.getTime() > Date.now() - retryForMs) return { gaveUp, disabledEndpoint: false };
    const disabled = await this.disableEndpoint(
      delivery.endpointId,
      `Every delivery failed for ${Math.round(retryForMs / 60_000)} minutes; the last: ${outcome.error}`,
    );
    return { gaveUp, disabledEndpoint: disabled };
  }

  /** Disables an endpoint (if enabled) and fails its pending deliveries; true if it was enabled. */
  async disableEndpoint(endpointId: string, reason: string): Promise<boolean> {
    // It locks the endpoint, then its deliveries; recording a failure locks a delivery, then its
    // endpoint: PostgreSQL breaks such a deadlock by failing one statement, and this one is retried.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.disableEndpointOnce(endpointId, reason);
      } catch (error) {
        if ((error as { code?: string }).code !== DEADLOCK_DETECTED || attempt >= 3) throw error;
      }
    }
  }

  private async disableEndpointOnce(endpointId: string, reason: string): Promise<boolean> {
    const [row] = await this.sql.query<{ disabled: boolean }>(
      `WITH disabled AS (
         UPDATE "WebhookEndpoint" SET "disabledAt" = now(), "disabledReason" = $2, "updatedAt" = now()
          WHERE "id" = $1 AND "disabledAt" IS NULL RETURNING "id"
       ), dropped AS (
         UPDATE "WebhookDelivery" SET "state" = 'failed', "endedAt" = now(), "lastError" = coalesce("lastError" || ' (then ', '(') || 'the endpoint was disabled)'
          WHERE "endpointId" IN (SELECT "id" FROM disabled) AND "state" = 'pending'
       )
       SELECT EXISTS (SELECT FROM disabled) AS "disabled"`,
      [endpointId, reason.slice(0, WEBHOOK.errorChars * 2)],
    );
    return row?.disabled ?? false;
  }

  /**
   * Sends a delivery of the workspace again, now, with the same event id and a fresh retry window
   * (its attempts counted anew); a pending one waiting out a retry goes now. One whose attempt may
   * be under way (claimed less than `leaseMs` ago) is left alone, and so are one of a disabled
   * endpoint (`endpointDisabled`) and one whose job has later events pending (`laterPending`). Undefined if the workspace has no such delivery.
   */
  async redeliver(workspaceId: string, deliveryId: string, leaseMs: number): Promise<(DeliveryLogEntry & Refusal) | undefined> {
    const [row] = await this.sql.query<DeliveryLogEntry & Refusal>(
      `WITH target AS (
         SELECT d."id", e."disabledAt" IS NOT NULL AS "endpointDisabled",
                -- Sent again while a later event of its job is pending, it would arrive after that one.
                d."state" <> 'pending' AND EXISTS (SELECT FROM "WebhookDelivery" p WHERE p."state" = 'pending'
                  AND p."endpointId" = d."endpointId" AND p."jobId" = d."jobId" AND p."id" > d."id") AS "laterPending"
           FROM "WebhookDelivery" d JOIN "WebhookEndpoint" e ON e."id" = d."endpointId"
          WHERE d."id" = $2::bigint AND e."workspaceId" = $1::uuid
       ), resent AS (
         UPDATE "WebhookDelivery" d
            SET "state" = 'pending', "nextAttemptAt" = now(), "queuedAt" = now(), "endedAt" = NULL,
                -- A progress event keeps one: none would put it back among the unsent ones that a newer state replaces.
                "attempts" = CASE WHEN d."eventType" = 'job.progress' THEN 1 ELSE 0 END
           FROM target
          WHERE d."id" = target."id" AND NOT target."endpointDisabled" AND NOT target."laterPending"
            AND (d."state" <> 'pending' OR d."lastAttemptAt" IS NULL OR d."lastAttemptAt" < now() - $3 * interval '1 millisecond')
         RETURNING d.*
       )
       SELECT ${LOG_COLUMNS}, false AS "endpointDisabled", false AS "laterPending" FROM resent d
       UNION ALL
       SELECT ${LOG_COLUMNS}, target."endpointDisabled", target."laterPending" FROM "WebhookDelivery" d JOIN target ON target."id" = d."id"
        WHERE NOT EXISTS (SELECT FROM resent)`,
      [workspaceId, deliveryId, leaseMs],
    );
    return row;
  }

  /** An endpoint's deliveries, newest first, before the delivery `before` if given. */
  log(workspaceId: string, endpointId: string, limit: number, before?: string): Promise<DeliveryLogEntry[]> {
    return this.sql.query<DeliveryLogEntry>(
      `SELECT ${LOG_COLUMNS} FROM "WebhookDelivery" d JOIN "WebhookEndpoint" e ON e."id" = d."endpointId"
        WHERE d."endpointId" = $2::uuid AND e."workspaceId" = $1::uuid AND ($3::bigint IS NULL OR d."id" < $3::bigint)
        ORDER BY d."id" DESC LIMIT $4`,
      [workspaceId, endpointId, before ?? null, limit],
    );
  }

  /** Ended deliveries older than the log keeps, a batch at a time; returns how many went. */
  async forgetEnded(olderThanMs: number, batch: number): Promise<number> {
    const rows = await this.sql.query(
      `DELETE FROM "WebhookDelivery" WHERE "id" IN (
         SELECT "id" FROM "WebhookDelivery" WHERE "state" <> 'pending' AND "endedAt" < now() - $1 * interval '1 millisecond' LIMIT $2
       ) RETURNING 1`,
      [olderThanMs, batch],
    );
    return rows.length;
  }

  /**
   * Seconds since the oldest undelivered event of an enabled endpoint (0 with none): a backlog or a
   * failing receiver. A progress event waiting out its endpoint's interval is not late yet.
   */
  async oldestPendingAgeSeconds(): Promise<number> {
    const [row] = await this.sql.query<{ age: number | string | null }>(
      `SELECT extract(epoch FROM now() - min(d."createdAt"))::float8 AS "age"
         FROM "WebhookDelivery" d JOIN "WebhookEndpoint" e ON e."id" = d."endpointId" AND e."disabledAt" IS NULL
        WHERE d."state" = 'pending' AND NOT (d."attempts" = 0 AND d."nextAttemptAt" > now())`,
    );
    return Number(row?.age ?? 0);
  }

  /** The workspaces with an enabled endpoint: only their changes wake the dispatcher. */
  async workspacesWithEndpoints(): Promise<Set<string>> {
    const rows = await this.sql.query<{ workspaceId: string }>(`SELECT DISTINCT "workspaceId" FROM "WebhookEndpoint" WHERE "disabledAt" IS NULL`);
    return new Set(rows.map((row) => row.workspaceId));
  }
}

/** Why a redelivery was refused, if it was. */
interface Refusal {
  endpointDisabled: boolean;
  laterPending: boolean;
}

const DEADLOCK_DETECTED = '40P01';

const LOG_COLUMNS = `d."id"::text AS "id", d."endpointId", d."eventId", d."eventType", d."jobId", d."state", d."attempts", d."createdAt",
  d."lastAttemptAt", d."lastStatus", d."lastError", CASE WHEN d."state" = 'pending' THEN d."nextAttemptAt" END AS "nextAttemptAt", d."endedAt"`;
