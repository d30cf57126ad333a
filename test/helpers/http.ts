import net from 'node:net';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { type GraphQLFormattedError, print } from 'graphql';

export interface GraphQLResponse<Data> {
  status: number;
  data?: Data | null;
  errors?: GraphQLFormattedError[];
}

/** Sends a GraphQL operation over real HTTP, as a dashboard or a worker would. */
export async function graphql<Data, Variables>(
  baseUrl: string,
  document: TypedDocumentNode<Data, Variables>,
  variables: Variables,
  key?: string,
): Promise<GraphQLResponse<Data>> {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key && { 'x-api-key': key }) },
    body: JSON.stringify({ query: print(document), variables }),
  });
  const body = (await response.json()) as Omit<GraphQLResponse<Data>, 'status'>;
  return { status: response.status, ...body };
}

/** Like `graphql`, but fails the test on any error and returns the data. */
export async function graphqlOk<Data, Variables>(
  baseUrl: string,
  document: TypedDocumentNode<Data, Variables>,
  variables: Variables,
  key: string,
): Promise<Data> {
  const result = await graphql(baseUrl, document, variables, key);
  if (result.errors?.length || !result.data) {
    throw new Error(`GraphQL failed (${result.status}): ${JSON.stringify(result.errors)}`);
  }
  return result.data;
}

/** The codes of a response's errors, in order. */
export const codesOf = (result: { errors?: readonly GraphQLFormattedError[] }) => (result.errors ?? []).map((e) => e.extensions?.code);

export interface RestResult {
  status: number;
  headers: Headers;
  body: unknown;
}

/** Calls a REST route over real HTTP; the body is parsed JSON. */
export async function rest(baseUrl: string, method: string, path: string, key?: string, headers: Record<string, string> = {}): Promise<RestResult> {
  const response = await fetch(`${baseUrl}${path}`, { method, headers: { ...(key && { 'x-api-key': key }), ...headers } });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

/**
 * A `{ __typename }` query whose body is only half sent: a request in flight for as long as the
 * test wants. `finish()` sends the rest and resolves with the raw HTTP response once the server
 * has answered and closed the connection.
 */
export async function halfSentQuery(baseUrl: string, key: string): Promise<{ finish(): Promise<string> }> {
  const { port, hostname } = new URL(baseUrl);
  const body = JSON.stringify({ query: '{ __typename }' });
  const socket = net.connect(Number(port), hostname);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  let response = '';
  socket.on('data', (chunk) => (response += chunk.toString()));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(`POST /graphql HTTP/1.1\r\nHost: ${hostname}\r\nX-API-Key: ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
  socket.write(body.slice(0, 5));
  return {
    finish: async () => {
      socket.write(body.slice(5));
      await closed;
      return response;
    },
  };
}
