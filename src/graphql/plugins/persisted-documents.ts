import type { Plugin } from 'graphql-yoga';
import type { GatewayContext } from '../context.js';
import type { DocumentParams, PersistedDocuments } from '../persisted-documents.js';
import type { ServerContext } from '../yoga.js';

/**
 * Documents named by id, and trusted documents (graphql/persisted-documents.ts), on yoga's
 * transports: the id is resolved to the document as the request's parameters are read (POST, GET
 * and Server-Sent Events alike); who may run what is checked as it executes or subscribes, which is
 * also where the REST shim's and the WebSocket server's operations pass.
 */
export function usePersistedDocuments(documents: PersistedDocuments): Plugin<GatewayContext, ServerContext> {
  const check = ({ document, contextValue }: { document: Parameters<PersistedDocuments['refusal']>[0]; contextValue: GatewayContext }) => {
    const refusal = documents.refusal(document, contextValue.principal);
    return refusal ? { errors: [refusal] } : undefined;
  };
  return {
    onParams: ({ params, request, setParams, context }) => {
      // yoga's GET parser keeps only the parameters it knows.
      const documentId = request.method === 'GET' ? (new URL(request.url).searchParams.get('documentId') ?? undefined) : (params as DocumentParams).documentId;
      const query = documents.documentOf({ ...params, documentId }, context.principal);
      if (query !== params.query) setParams({ ...params, query });
    },
    onExecute: ({ args, setResultAndStopExecution }) => {
      const refused = check(args);
      if (refused) setResultAndStopExecution(refused);
    },
    onSubscribe: ({ args, setResultAndStopExecution }) => {
      const refused = check(args);
      if (refused) setResultAndStopExecution(refused);
    },
  };
}
