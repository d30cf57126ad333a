import type { Tracer } from '../telemetry/tracer.js';
import type { SqlClient } from './sql.js';

/**
 * `sql` with a span per statement (and one per transaction, its statements inside), named as
 * OpenTelemetry's database conventions ask: the operation and its table (`SELECT Job`). The
 * statement's text is recorded; its parameters, which carry tenants' data, never are. Prisma's few
 * statements (API keys, workspaces) are not traced: its driver adapters offer no hook for it.
 */
export function tracedSql(sql: SqlClient, tracer: Tracer, namespace: string): SqlClient {
  const traced = (client: Pick<SqlClient, 'query' | 'exec'>): Pick<SqlClient, 'query' | 'exec'> => ({
    query: (text, params) => tracer.span(summary(text), statementOptions(text, namespace), () => client.query(text, params)),
    exec: (script) => tracer.span(summary(script), statementOptions(script, namespace), () => client.exec(script)),
  });
  return {
    ...traced(sql),
    transaction: (fn, options) =>
      tracer.span('transaction', { kind: 'client', attributes: { 'db.system.name': 'postgresql', 'db.namespace': namespace } }, () =>
        sql.transaction((tx) => fn(traced(tx)), options),
      ),
  };
}

function statementOptions(text: string, namespace: string) {
  return { kind: 'client' as const, attributes: { 'db.system.name': 'postgresql', 'db.namespace': namespace, 'db.query.text': text } };
}

/** `SELECT Job`, `INSERT WebhookDelivery`, `WITH`: the statement's first keyword, and the first table it names. */
export function summary(text: string): string {
  const operation = /^\s*(\w+)/.exec(text)?.[1]?.toUpperCase() ?? 'SQL';
  const table = /\b(?:FROM|INTO|UPDATE|JOIN)\s+(?:ONLY\s+)?(?!LATERAL\b|SELECT\b)"?([A-Za-z_]\w*)"?/i.exec(text)?.[1];
  return table && operation !== 'WITH' ? `${operation} ${table}` : operation;
}
