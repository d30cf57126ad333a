import {
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLOutputType,
  type GraphQLSchema,
  type SelectionSetNode,
  Kind,
  getNamedType,
  getNullableType,
  isEnumType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
} from 'graphql';

/** A JSON Schema (2020-12, as OpenAPI 3.1 uses it). */
export type JsonSchema = Record<string, unknown>;

/**
 * What a field adds to the JSON Schema its GraphQL type implies, where GraphQL cannot say it (an ID
 * that is a UUID, a range): `extensions: { jsonSchema: { format: 'uuid' } }` on the Pothos field.
 */
export interface JsonSchemaExtension {
  jsonSchema?: JsonSchema;
}

/** GraphQL's scalars as JSON; a scalar missing here is a new scalar to describe. */
const SCALARS: Record<string, JsonSchema> = {
  ID: { type: 'string' },
  String: { type: 'string' },
  Int: { type: 'integer' },
  Float: { type: 'number' },
  Boolean: { type: 'boolean' },
  DateTime: { type: 'string', format: 'date-time' },
  JSON: {},
};

/** An enum's value as the REST routes write it (the Jobs API's lowercase statuses). */
export const restEnumValue = (value: string) => value.toLowerCase();

/**
 * The JSON Schema of what a fragment selects, read from the GraphQL schema: each selected field's
 * type, nullability, description and `jsonSchema` extension, with enum values as the REST routes
 * write them. Every selected field is required: a GraphQL result has them all, null where absent.
 * The REST routes' job is described this way, so a field added to the fragment is documented at
 * once. A nested object becomes a schema of its own, named by its GraphQL type, in `components`.
 */
export function fragmentJsonSchema(schema: GraphQLSchema, fragment: FragmentDefinitionNode, name: string): Record<string, JsonSchema> {
  const components: Record<string, JsonSchema> = {};
  const type = schema.getType(fragment.typeCondition.name.value);
  if (!isObjectType(type)) throw new Error(`Fragment ${fragment.name.value} is not on an object type.`);

  const objectSchema = (objectType: typeof type, selectionSet: SelectionSetNode): JsonSchema => {
    const properties: Record<string, JsonSchema> = {};
    for (const selection of selectionSet.selections) {
      if (selection.kind !== Kind.FIELD) throw new Error('Only fields can be described (no spreads within the fragment).');
      const field = objectType.getFields()[selection.name.value];
      if (!field) throw new Error(`${objectType.name} has no field ${selection.name.value}.`);
      const extension = (field.extensions as JsonSchemaExtension).jsonSchema;
      properties[selection.alias?.value ?? selection.name.value] = {
        ...typeSchema(field.type, selection.selectionSet),
        ...(field.description && { description: field.description }),
        ...extension,
      };
    }
    return { type: 'object', required: Object.keys(properties), additionalProperties: false, properties };
  };

  const typeSchema = (fieldType: GraphQLOutputType, selectionSet: SelectionSetNode | undefined): JsonSchema => {
    const inner = getNullableType(fieldType);
    let described: JsonSchema;
    if (isListType(inner)) described = { type: 'array', items: typeSchema(inner.ofType, selectionSet) };
    else if (isEnumType(inner)) described = { type: 'string', enum: inner.getValues().map((value) => restEnumValue(value.name)) };
    else if (isScalarType(inner)) {
      const scalar = SCALARS[inner.name];
      if (!scalar) throw new Error(`No JSON Schema for the scalar ${inner.name}.`);
      described = scalar;
    } else if (isObjectType(inner) && selectionSet) {
      components[inner.name] = objectSchema(inner, selectionSet);
      described = { $ref: `#/components/schemas/${inner.name}` };
    } else throw new Error(`No JSON Schema for ${inner.toString()}.`);
    if (isNonNullType(fieldType)) return described;
    if ('$ref' in described) return { anyOf: [described, { type: 'null' }] };
    if ('enum' in described) return { ...described, type: ['string', 'null'], enum: [...(described.enum as string[]), null] };
    if (typeof described.type === 'string') return { ...described, type: [described.type, 'null'] };
    return described;
  };

  const described = objectSchema(type, fragment.selectionSet);
  return { [name]: described, ...components };
}

/**
 * A function that turns an operation's result into the REST routes' values: enum values lowercase
 * (the Jobs API's `running`), all else as GraphQL answered it, in the same field order. The result
 * is walked along the operation's selections, so only enum-typed fields are touched and a JSON
 * field (metadata) is passed through whole.
 */
export function restValues(schema: GraphQLSchema, document: DocumentNode): (data: unknown) => unknown {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  const operation = document.definitions.find((definition) => definition.kind === Kind.OPERATION_DEFINITION);
  if (!operation) throw new Error('The document has no operation.');
  const root = schema.getRootType(operation.operation);
  if (!root) throw new Error(`The schema has no ${operation.operation} type.`);

  /** Per response key, how to convert its value; undefined where nothing below is an enum. */
  type Plan = Map<string, (value: unknown) => unknown>;

  const planOf = (type: typeof root, selectionSet: SelectionSetNode, plan: Plan = new Map()): Plan => {
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FRAGMENT_SPREAD) {
        const fragment = fragments.get(selection.name.value);
        if (!fragment) throw new Error(`Unknown fragment ${selection.name.value}.`);
        planOf(type, fragment.selectionSet, plan);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        planOf(type, selection.selectionSet, plan);
      } else {
        const field = type.getFields()[selection.name.value];
        if (!field) continue; // __typename
        const convert = converterOf(field.type, selection.selectionSet);
        if (convert) plan.set(selection.alias?.value ?? selection.name.value, convert);
      }
    }
    return plan;
  };

  const converterOf = (fieldType: GraphQLOutputType, selectionSet: SelectionSetNode | undefined): ((value: unknown) => unknown) | undefined => {
    const inner = getNullableType(fieldType);
    if (isListType(inner)) {
      const item = converterOf(inner.ofType, selectionSet);
      return item && ((value) => (Array.isArray(value) ? value.map(item) : value));
    }
    if (isEnumType(inner)) return (value) => (typeof value === 'string' ? restEnumValue(value) : value);
    const named = getNamedType(inner);
    if (!isObjectType(named) || !selectionSet) return undefined;
    const plan = planOf(named, selectionSet);
    if (plan.size === 0) return undefined;
    return (value) => {
      if (value === null || typeof value !== 'object') return value;
      const converted: Record<string, unknown> = {};
      for (const [key, field] of Object.entries(value)) {
        const convert = plan.get(key);
        converted[key] = convert ? convert(field) : field;
      }
      return converted;
    };
  };

  return converterOf(root, operation.selectionSet) ?? ((data) => data);
}
