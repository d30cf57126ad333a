import { SCOPES, type Scope } from '../../auth/scopes.js';
import { builder } from '../builder.js';
import { principalOf } from '../context.js';

/** What a client may ask of its own key: which scopes it has (a dashboard shows Cancel only with jobs:cancel). */
const ViewerRef = builder.objectRef<{ scopes: Scope[] }>('Viewer').implement({
  description: 'The API key making the request.',
  fields: (t) => ({
    scopes: t.stringList({ description: `Its scopes, among ${SCOPES.join(', ')}.`, resolve: (viewer) => viewer.scopes }),
  }),
});

builder.queryField('viewer', (t) =>
  t.field({
    type: ViewerRef,
    description: 'The API key making the request (any valid key may ask).',
    resolve: (_root, _args, ctx) => ({ scopes: SCOPES.filter((scope) => principalOf(ctx).scopes.has(scope)) }),
  }),
);
