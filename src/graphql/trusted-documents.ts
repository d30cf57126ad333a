import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { printExecutableGraphQLDocument, sortExecutableDocument } from '@graphql-tools/documents';
import { ConfigError } from '../config.js';
import { type DefinitionNode, type DocumentNode, type FragmentDefinitionNode, Kind, type OperationDefinitionNode, parse, print, visit } from 'graphql';

/**
 * A manifest of trusted documents, in the format graphql-codegen's client preset writes
 * (`persistedDocuments: true`): a JSON object from each document's id, the sha256 of its normalized
 * text, to that text. With TRUSTED_DOCUMENTS, keys without `operations:arbitrary` may run only the
 * documents such manifests list.
 */
export type Manifest = Record<string, string>;

/**
 * The gateway's own operations (the REST routes', the worker SDK's, the client library's and the
 * dashboard's), written by `npm run codegen`: trusted whenever TRUSTED_DOCUMENTS is set.
 */
export const PROJECT_MANIFEST = 'src/graphql/trusted-documents.json';

/** A document as the client preset prints it before hashing: sorted, white space reduced. */
export function normalizedText(document: DocumentNode): string {
  return printExecutableGraphQLDocument(document);
}

/**
 * What two documents are compared by: graphql-js's print (layout and comments gone, string values
 * exactly as written) of the document with its selections sorted, so that a field order or spacing
 * of the client's own does not matter. Not the manifest's text itself: the client preset's
 * normalization also collapses spaces inside string values, and sorts the fields of a fragment on
 * the mutation type, whose order is the order the mutations run in; such a document is compared
 * unsorted.
 */
function comparableText(document: DocumentNode): string {
  const onMutationRoot = document.definitions.some((definition) => isFragment(definition) && definition.typeCondition.name.value === 'Mutation');
  return print(onMutationRoot ? document : sortExecutableDocument(document));
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * One manifest entry per operation in `documents` (each with the fragments it uses, wherever they
 * are defined), keyed as the client preset keys them. What `npm run codegen` writes for the
 * project's own operations.
 */
export function manifestOf(documents: readonly DocumentNode[]): Manifest {
  const definitions = documents.flatMap((document) => document.definitions);
  const fragments = new Map(definitions.filter(isFragment).map((fragment) => [fragment.name.value, fragment]));
  const entries = definitions
    .filter((definition): definition is OperationDefinitionNode => definition.kind === Kind.OPERATION_DEFINITION)
    .map((operation) => normalizedText({ kind: Kind.DOCUMENT, definitions: [operation, ...fragmentsUsedBy(operation, fragments)] }))
    .map((text) => [sha256Hex(text), text] as const)
    .sort(([a], [b]) => a.localeCompare(b));
  return Object.fromEntries(entries);
}

function isFragment(definition: DefinitionNode): definition is FragmentDefinitionNode {
  return definition.kind === Kind.FRAGMENT_DEFINITION;
}

function fragmentsUsedBy(root: DefinitionNode, fragments: ReadonlyMap<string, FragmentDefinitionNode>): FragmentDefinitionNode[] {
  const used = new Map<string, FragmentDefinitionNode>();
  const walk = (node: DefinitionNode) =>
    visit(node, {
      FragmentSpread: ({ name: { value } }) => {
        const fragment = fragments.get(value);
        if (!fragment || used.has(value)) return;
        used.set(value, fragment);
        walk(fragment);
      },
    });
  walk(root);
  return [...used.values()];
}

/** A manifest that cannot be used: the gateway does not start (reported as a configuration error). */
export class ManifestError extends ConfigError {}

/** The documents of one or more manifests, looked up by id or by content. */
export class TrustedDocuments {
  /** Comparable texts: a document sent in full is trusted when its own is among them. */
  readonly #texts = new Set<string>();
  readonly #byId = new Map<string, string>();
  /** Per parsed document (yoga's parser cache hands out one object per distinct text). */
  readonly #verdicts = new WeakMap<DocumentNode, boolean>();

  constructor(manifests: readonly Manifest[]) {
    for (const manifest of manifests) {
      for (const [id, text] of Object.entries(manifest)) {
        this.#byId.set(id, text);
        this.#texts.add(comparableText(parse(text)));
      }
    }
  }

  /** Reads manifests from files; throws ManifestError naming the file and entry that is not one. */
  static load(paths: readonly string[]): TrustedDocuments {
    return new TrustedDocuments(paths.map(readManifest));
  }

  get size(): number {
    return this.#byId.size;
  }

  /** The text listed under `id`, if any. */
  textOf(id: string): string | undefined {
    return this.#byId.get(id);
  }

  /** Whether `document` is one of the listed ones (spacing, comments and field order aside). */
  lists(document: DocumentNode): boolean {
    let verdict = this.#verdicts.get(document);
    if (verdict === undefined) this.#verdicts.set(document, (verdict = this.#texts.has(comparableText(document))));
    return verdict;
  }
}

function readManifest(path: string): Manifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ManifestError(`TRUSTED_DOCUMENTS: ${path} cannot be read as JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ManifestError(`TRUSTED_DOCUMENTS: ${path} is not a manifest (a JSON object from document ids to documents)`);
  }
  for (const [id, text] of Object.entries(parsed)) {
    if (typeof text !== 'string') throw new ManifestError(`TRUSTED_DOCUMENTS: ${path}: the entry ${JSON.stringify(id).slice(0, 80)} is not a string`);
    try {
      parse(text);
    } catch (error) {
      throw new ManifestError(`TRUSTED_DOCUMENTS: ${path}: the entry ${JSON.stringify(id).slice(0, 80)} is not a GraphQL document (${String(error)})`);
    }
  }
  return parsed as Manifest;
}
