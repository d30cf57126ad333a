import stableStringify from 'fast-json-stable-stringify';
import { type DocumentNode, type GraphQLError, parse } from 'graphql';
import { LRUCache } from 'lru-cache';
import { boundedCache } from '../limits/bounded-cache.js';
import type { Principal } from '../auth/scopes.js';
import { errors } from '../errors.js';
import { MAX_DOCUMENT_ID_LENGTH, PERSISTED_QUERIES } from '../limits/fixed.js';
import { type TrustedDocuments, sha256Hex } from './trusted-documents.js';

/** What a request may name its document by, besides sending it (`query`). */
export interface DocumentParams {
  query?: string | null | undefined;
  extensions?: Record<string, unknown> | null | undefined;
  /** GraphQL over HTTP's persisted documents: a manifest's id, optionally prefixed `sha256:`. */
  documentId?: unknown;
}

/**
 * Documents named by an id instead of sent in full, and which documents a key may run: one place
 * for every transport (yoga's HTTP and SSE through plugins/persisted-documents.ts, the WebSocket
 * server and the REST shim through the same plugin's checks).
 *
 * - **Automatic persisted queries**, Apollo's protocol (Apollo Client's PersistedQueryLink, urql's
 *   persistedExchange): `extensions.persistedQuery.sha256Hash` alone names a document registered
 *   before; with the document, the hash is checked and the document registered. Registrations are
 *   kept per workspace: a key can never learn whether another workspace sent some document.
 *   Written here rather than with @graphql-yoga/plugin-apq, whose one store serves every caller
 *   alike (and whose 3.6 pins @graphql-tools/utils 10 against the 11 the rest of the tree uses).
 * - **Trusted documents** (TRUSTED_DOCUMENTS): keys without `operations:arbitrary` may run only the
 *   manifests' documents, named by id or sent in full (matched by normalized text, as Apollo's
 *   safelisting does without `require_id`), so that the gateway's own dashboard, SDK and REST
 *   routes work unchanged.
 */
export class PersistedDocuments {
  readonly #registered = boundedCache<string, LRUCache<string, string>>(PERSISTED_QUERIES.workspaces);

  constructor(readonly trusted: TrustedDocuments | undefined) {}

  /**
   * The text of the request's document: its `query`, or what its id names. Throws the error to
   * answer (PERSISTED_QUERY_NOT_FOUND for an id not known here, which tells APQ clients to send the
   * document; BAD_USER_INPUT for a hash that does not match the document sent with it).
   */
  documentOf(params: DocumentParams, principal: Principal | null): string | undefined {
    const hash = apqHash(params.extensions);
    const documentId = params.documentId;
    if (documentId !== undefined && documentId !== null && typeof documentId !== 'string') throw errors.malformedRequest('"documentId" must be a string.');
    const id = documentId ?? hash;
    const query = params.query ?? undefined;
    if (id === undefined || id === null) return query;
    if (query !== undefined && typeof query !== 'string') throw errors.malformedRequest('"query" must be a string.');
    if (id.length > MAX_DOCUMENT_ID_LENGTH) throw errors.malformedRequest(`A document id is at most ${MAX_DOCUMENT_ID_LENGTH} characters.`);
    if (query) {
      if (hash !== undefined) {
        if (sha256Hex(query) !== hash) throw errors.malformedRequest('The document does not match extensions.persistedQuery.sha256Hash.');
        if (principal) this.#register(principal, hash, query);
      }
      return query;
    }
    const text = this.#listed(id) ?? (principal && hash !== undefined ? this.#registered.get(registryOf(principal))?.get(hash) : undefined);
    if (text === undefined) throw errors.persistedQueryNotFound();
    return text;
  }

  /** Why `principal` may not run `document` (FORBIDDEN: not a trusted document), or undefined when it may. */
  refusal(document: DocumentNode, principal: Principal | null): GraphQLError | undefined {
    if (!this.trusted || this.trusted.lists(document) || (principal && mayRunArbitrary(principal))) return undefined;
    return errors.untrustedDocument();
  }

  #listed(id: string): string | undefined {
    if (!this.trusted) return undefined;
    return this.trusted.textOf(id) ?? (id.startsWith('sha256:') ? this.trusted.textOf(id.slice('sha256:'.length)) : undefined);
  }

  /**
   * Keeps `query` under `hash` for the caller's registry: only a document that parses (and, with
   * trusted documents only, one the caller may run), so that what is kept is what a client sends.
   */
  #register(principal: Principal, hash: string, query: string): void {
    if (query.length > PERSISTED_QUERIES.bytesPerWorkspace) return;
    let document: DocumentNode;
    try {
      document = parse(query);
    } catch {
      return; // yoga answers its syntax error
    }
    if (this.refusal(document, principal)) return;
    const registry = registryOf(principal);
    let documents = this.#registered.get(registry);
    if (!documents) {
      documents = new LRUCache<string, string>({
        max: PERSISTED_QUERIES.documentsPerWorkspace,
        maxSize: PERSISTED_QUERIES.bytesPerWorkspace,
        // What an entry holds: its text (two bytes a character at most), its hash, and the entry itself.
        sizeCalculation: (text) => 2 * text.length + PERSISTED_QUERIES.bytesPerEntry,
      });
      this.#registered.set(registry, documents);
    }
    documents.set(hash, query);
  }
}

/** Whose registrations a caller shares: its workspace's keys', or those of access tokens restricted alike. */
function registryOf(principal: Principal): string {
  return principal.token ? `${principal.workspaceId}/token:${stableStringify(principal.token.restriction)}` : `${principal.workspaceId}/keys`;
}

function mayRunArbitrary(principal: Principal): boolean {
  return principal.scopes.has('operations:arbitrary');
}

/** Apollo's `extensions.persistedQuery` (version 1, a sha256 in lowercase hex), or undefined when absent; malformed: refused. */
function apqHash(extensions: DocumentParams['extensions']): string | undefined {
  const persisted = extensions?.persistedQuery;
  if (persisted === undefined || persisted === null) return undefined;
  const { version, sha256Hash } = persisted as { version?: unknown; sha256Hash?: unknown };
  if (typeof persisted !== 'object' || version !== 1 || typeof sha256Hash !== 'string') {
    throw errors.malformedRequest('extensions.persistedQuery must be { "version": 1, "sha256Hash": "<sha256 of the document, in hex>" }.');
  }
  return sha256Hash;
}
