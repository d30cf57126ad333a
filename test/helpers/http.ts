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
export const codesOf = (result: { errors?: readonly GraphQLFormattedError[] }) =>
  (result.errors ?? []).map((e) => e.extensions?.code);

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
